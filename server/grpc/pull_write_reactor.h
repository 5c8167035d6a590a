// A server-streaming reactor fed by one of the core's pull streams (EventStream for WatchJob,
// CommandStream for StreamCommands): it pulls an item, writes it, and on OnWriteDone pulls the
// next; when the stream says "wait", it waits for the stream's notify callback.
//
// The notify callback may run on any thread, even under the core's lock, and must not block or
// call back into the core. It therefore only flags the reactor and posts a pull to the
// StreamPump thread. The callback holds a Link, not the reactor: OnDone detaches the Link
// first, so a late notify never touches a deleted reactor. The reactor is reference counted
// (gRPC's reference until OnDone, one per queued pull) and deletes itself at zero, which also
// destroys the core's stream.
//
// Threading: all fields below mu_ are guarded by it. Nothing that takes the core's lock (the
// source's Next, `end_status`) runs with mu_ held: a notify may take mu_ under the core's lock,
// so the opposite order would deadlock. `pumping_` makes sure only one thread pulls at a time.
//
// No pulled item is dropped here. The core's streams pop an item when Next returns it and
// cannot take it back, so: (1) Next is never called once the RPC is cancelled or finished: the
// puller checks under mu_ in the same critical section that keeps `pumping_` set; (2) while a
// pull runs only the puller may finish the RPC: OnCancel, seeing `pumping_`, just records the
// cancel and leaves finishing to the puller (as it leaves it to OnWriteDone while a write is in
// flight); (3) an item the pull returns always goes to StartWrite, even if the client cancelled
// during the pull. What remains is outside this layer's reach: a cancel that lands during a pull
// makes that write fail (OnWriteDone(false)), and a write that completed only reached gRPC's
// transport, not necessarily the worker. Commands are not acknowledged (docs/control-plane.md),
// so the core's re-sending of assignments (on a new stream, and on heartbeats that do not list
// an attempt the worker holds) is the safety net for those windows.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/grpc/rpc_metrics.h"
#include "proto/rpc/status.h"
#include "server/grpc/stream_pump.h"
#include "grpcpp/support/server_callback.h"

namespace loratrf::server {

// The reactor's view of a core stream.
template <typename Msg>
class PullSource {
 public:
  virtual ~PullSource() = default;
  enum class Poll { kItem, kWait, kEnd };
  virtual Poll Next(Msg& message) = 0;
  virtual void SetNotify(std::function<void()> notify) = 0;
  // After kEnd: not OK when the source ended on an error (the RPC then finishes with it).
  virtual absl::Status Failure() const { return absl::OkStatus(); }
};

// Whether a core stream says why it ended (EventStream::status).
template <typename Stream, typename = void>
struct HasEndStatus : std::false_type {};
template <typename Stream>
struct HasEndStatus<Stream, std::void_t<decltype(std::declval<const Stream&>().status())>>
    : std::true_type {};

// Adapts a core stream whose Next returns (kEvent|kCommand, kWait, kEnd).
template <typename Msg, typename Stream>
class CorePullSource final : public PullSource<Msg> {
 public:
  explicit CorePullSource(std::unique_ptr<Stream> stream) : stream_(std::move(stream)) {}
  typename PullSource<Msg>::Poll Next(Msg& message) override {
    switch (stream_->Next(message)) {
      case Stream::Poll::kWait:
        return PullSource<Msg>::Poll::kWait;
      case Stream::Poll::kEnd:
        return PullSource<Msg>::Poll::kEnd;
      default:
        return PullSource<Msg>::Poll::kItem;
    }
  }
  void SetNotify(std::function<void()> notify) override { stream_->SetNotify(std::move(notify)); }
  absl::Status Failure() const override {
    if constexpr (HasEndStatus<Stream>::value) {
      return stream_->status();
    } else {
      return absl::OkStatus();
    }
  }

 private:
  std::unique_ptr<Stream> stream_;
};

// Records one RPC's outcome in RpcMetrics (which may be null).
class RpcTimer {
 public:
  RpcTimer(RpcMetrics* metrics, const char* method)
      : metrics_(metrics), method_(method), start_(absl::Now()) {}
  void Done(grpc::StatusCode code) const {
    if (metrics_ == nullptr) return;
    metrics_->RpcFinished(method_, rpc::GrpcCodeName(code), absl::Now() - start_);
  }

 private:
  RpcMetrics* metrics_;
  const char* method_;
  absl::Time start_;
};

// A write reactor that only finishes with `status` (an RPC rejected before its stream began).
template <typename Msg>
class FailedWriteReactor final : public grpc::ServerWriteReactor<Msg> {
 public:
  FailedWriteReactor(RpcTimer timer, grpc::Status status)
      : timer_(timer), code_(status.error_code()) {
    this->Finish(std::move(status));
  }
  void OnDone() override {
    timer_.Done(code_);
    delete this;
  }

 private:
  RpcTimer timer_;
  grpc::StatusCode code_;
};

template <typename Msg>
class PullWriteReactor final : public grpc::ServerWriteReactor<Msg> {
 public:
  // `end_status`: how the RPC finishes when the source ends (OK, or UNAVAILABLE while the
  // coordinator drains, so that clients reconnect instead of believing the stream complete).
  // `open`: the stream as RpcMetrics counts it; closed in OnDone.
  PullWriteReactor(std::unique_ptr<PullSource<Msg>> source, StreamPump* pump,
                   std::function<grpc::Status()> end_status, RpcTimer timer, OpenStream open)
      : source_(std::move(source)),
        pump_(pump),
        end_status_(std::move(end_status)),
        timer_(timer),
        open_(std::move(open)),
        link_(std::make_shared<Link>()) {
    link_->reactor = this;
  }

  // Call once, from the handler, before returning the reactor to gRPC.
  void Start() {
    std::shared_ptr<Link> link = link_;
    source_->SetNotify([link] {
      std::lock_guard<std::mutex> lock(link->mu);
      if (link->reactor != nullptr) link->reactor->Notified();
    });
    Pump();
  }

  void OnWriteDone(bool ok) override {
    bool finish = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!ok || cancelled_) {
        // The client went away mid-write; nothing more can be sent.
        if (!FinishOnceLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"))) return;
        finish = true;
      }
    }
    if (finish) return DoFinish();
    Pump();
  }

  void OnCancel() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      // With a write in flight, its OnWriteDone(false) finishes; with a pull running, the
      // puller finishes (after handing any item it got to StartWrite): finishing here would
      // make it drop that item.
      if (writing_ || pumping_) return;
      if (!FinishOnceLocked(CancelledStatus())) return;
    }
    DoFinish();
  }

  void OnDone() override {
    timer_.Done(final_code_);
    // Here, not at destruction: a queued pull may keep the object a little longer, but the
    // call is over.
    open_.Close();
    {
      std::lock_guard<std::mutex> lock(link_->mu);  // a notify in progress completes first
      link_->reactor = nullptr;
    }
    Unref();
  }

 private:
  struct Link {
    std::mutex mu;
    PullWriteReactor* reactor = nullptr;  // guarded by mu; null once the RPC is done
  };

  static grpc::Status CancelledStatus() {
    return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  }

  // From the core's notify (any thread, maybe under the core's lock): never pulls here.
  void Notified() {
    std::lock_guard<std::mutex> lock(mu_);
    // Writing: OnWriteDone pulls next anyway. Cancelled: nothing more is pulled.
    if (finished_ || cancelled_ || writing_) return;
    if (pumping_) {
      again_ = true;  // the running pull looks again before it waits
      return;
    }
    if (posted_) return;
    posted_ = true;
    refs_.fetch_add(1);
    pump_->Post([this] {
      {
        std::lock_guard<std::mutex> lock(mu_);
        posted_ = false;
      }
      Pump();
      Unref();
    });
  }

  // Pulls until there is something to write, the source waits, or the stream ends.
  void Pump() {
    std::unique_lock<std::mutex> lock(mu_);
    if (finished_ || writing_) return;
    if (pumping_) {
      again_ = true;
      return;
    }
    pumping_ = true;
    while (true) {
      // Checked under mu_ with pumping_ set: from here until the pull returns, OnCancel leaves
      // finishing to this thread, so a pulled item always reaches StartWrite below.
      again_ = false;
      if (cancelled_) return FinishFromPumpLocked(lock, CancelledStatus());
      lock.unlock();
      typename PullSource<Msg>::Poll poll = source_->Next(message_);  // mu_ not held
      // Asks the core (its lock): also with mu_ not held.
      grpc::Status end;
      if (poll == PullSource<Msg>::Poll::kEnd) {
        const absl::Status failure = source_->Failure();
        end = failure.ok() ? end_status_() : rpc::ToGrpcStatus(failure);
      }
      lock.lock();
      // Only this thread finishes while pumping_ is set (OnCancel defers, OnWriteDone needs a
      // write, which needs this thread).
      if (poll == PullSource<Msg>::Poll::kItem) {
        // Written even if the client cancelled meanwhile: the core has let go of the item, and
        // the write is its only way out (it then fails, and OnWriteDone finishes the RPC).
        pumping_ = false;
        writing_ = true;
        lock.unlock();
        this->StartWrite(&message_);
        return;
      }
      if (poll == PullSource<Msg>::Poll::kEnd) return FinishFromPumpLocked(lock, std::move(end));
      // kWait.
      if (again_) continue;
      if (cancelled_) return FinishFromPumpLocked(lock, CancelledStatus());
      pumping_ = false;
      return;
    }
  }

  // Ends the pull loop by finishing the RPC with `status`. Needs mu_ (in `lock`); releases it.
  void FinishFromPumpLocked(std::unique_lock<std::mutex>& lock, grpc::Status status) {
    pumping_ = false;
    if (!FinishOnceLocked(std::move(status))) return;
    lock.unlock();
    DoFinish();
  }

  // Marks the RPC finished with `status`; false if it already was. Needs mu_.
  bool FinishOnceLocked(grpc::Status status) {
    if (finished_) return false;
    finished_ = true;
    final_status_ = std::move(status);
    final_code_ = final_status_.error_code();
    return true;
  }

  void DoFinish() { this->Finish(final_status_); }

  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

  std::unique_ptr<PullSource<Msg>> source_;
  StreamPump* const pump_;
  const std::function<grpc::Status()> end_status_;
  const RpcTimer timer_;
  OpenStream open_;  // touched only in OnDone (gRPC calls it once)
  std::shared_ptr<Link> link_;
  std::atomic<int> refs_{1};  // gRPC's, until OnDone; +1 per queued pull

  std::mutex mu_;
  Msg message_;                 // the item being written; touched only by the one puller or
                                // by gRPC while writing_
  bool pumping_ = false;        // guarded by mu_: a thread is inside Pump's pull loop
  bool again_ = false;          // guarded by mu_: notified during a pull; pull once more
  bool posted_ = false;         // guarded by mu_: a pull is queued on the pump
  bool writing_ = false;        // guarded by mu_: a StartWrite awaits OnWriteDone
  bool cancelled_ = false;      // guarded by mu_: OnCancel ran (an in-flight write or pull
                                // then finishes the RPC)
  bool finished_ = false;       // guarded by mu_: Finish was (or is about to be) called
  grpc::Status final_status_;   // set once with finished_
  grpc::StatusCode final_code_ = grpc::StatusCode::OK;
};

}  // namespace loratrf::server
