#include "server/core/event_log.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace loratrf::server::core_internal {
namespace {

constexpr int kStoreBatch = 256;  // events read from the store at a time by a lagging watcher

}  // namespace

// One WatchJob stream: replays from next_seq_ (ring or store), then follows the ring.
class WatchStream final : public EventStream, public std::enable_shared_from_this<WatchStream> {
 public:
  WatchStream(std::shared_ptr<CoreState> core, std::string job_id, uint64_t next_seq, bool follow)
      : core_(std::move(core)), job_id_(std::move(job_id)), next_seq_(next_seq), follow_(follow) {}

  Poll Next(v1::JobEvent& event) override {
    while (true) {
      uint64_t wait_for = 0;
      Poll poll;
      {
        std::lock_guard<std::mutex> lock(core_->mu);
        poll = NextLocked(event, wait_for);
      }
      if (wait_for == 0) return poll;
      // A no_follow replay whose next events are not durable yet: wait (without mu), look again.
      core_->sync->WaitFor(wait_for);
    }
  }

  // What is next is not durable until write `written` is: a follower waits and is woken then
  // (StoreSync::OnDurable); a one-off replay, which nobody wakes, has Next wait for it.
  Poll UntilDurable(uint64_t written, uint64_t& wait_for) {
    if (follow_ && notify_) {
      core_->sync->OnDurable(written, notify_);
    } else {
      wait_for = written;
    }
    return Poll::kWait;
  }

  // Next under mu. Sets `wait_for` (and the poll is ignored) when Next must wait for that
  // store write to be durable and then look again.
  Poll NextLocked(v1::JobEvent& event, uint64_t& wait_for) {
    if (core_->draining) return Poll::kEnd;
    if (!batch_.empty()) {
      if (!core_->sync->Durable(batch_written_)) return UntilDurable(batch_written_, wait_for);
      return Pop(event);
    }
    auto log = core_->logs.find(job_id_);
    // In the ring: copy from there, as far as it is durable.
    if (log != core_->logs.end() && !log->second.recent.empty() &&
        log->second.recent.front().seq() <= next_seq_ &&
        log->second.recent.back().seq() >= next_seq_) {
      const JobEventLog& ring = log->second;
      for (size_t i = 0; i < ring.recent.size(); ++i) {
        const v1::JobEvent& e = ring.recent[i];
        if (e.seq() < next_seq_) continue;
        if (batch_.size() >= static_cast<size_t>(kStoreBatch)) break;
        if (!core_->sync->Durable(ring.recent_written[i])) {
          if (!batch_.empty()) break;
          return UntilDurable(ring.recent_written[i], wait_for);  // published, not durable yet
        }
        batch_.push_back(e);
      }
      batch_written_ = 0;
      return Pop(event);
    }
    // Caught up with a live job: nothing to read anywhere (no store query on every wake-up).
    if (auto job = core_->active.find(job_id_);
        job != core_->active.end() && next_seq_ > job->second.job.last_event_seq()) {
      return follow_ ? Poll::kWait : Poll::kEnd;
    }
    // Behind the ring, or the job is not cached (final): the store has everything.
    absl::StatusOr<std::vector<v1::JobEvent>> stored =
        core_->store->ListEvents(job_id_, next_seq_ - 1, kStoreBatch);
    if (stored.ok() && !stored->empty()) {
      batch_.assign(stored->begin(), stored->end());
      // The store shows committed writes, durable or not: hand them out once they are.
      batch_written_ = core_->sync->written();
      if (!core_->sync->Durable(batch_written_)) return UntilDurable(batch_written_, wait_for);
      return Pop(event);
    }
    if (!stored.ok()) {
      // Ending as if caught up would tell the watcher it has every event: end with an error
      // instead. UNAVAILABLE: the read may work again, and clients watch again from here.
      LOG_WARN("reading the events of job {} after seq {} for a watcher failed: {}", job_id_,
               next_seq_ - 1, stored.status().ToString());
      status_ = absl::UnavailableError(absl::StrCat(
          "reading the events of job ", job_id_, " after seq ", next_seq_ - 1,
          " failed: ", stored.status().message(), "; watch again from seq ", next_seq_));
      return Poll::kEnd;
    }
    if (!follow_) return Poll::kEnd;
    if (core_->active.count(job_id_) == 0) return Poll::kEnd;  // final, all delivered
    return Poll::kWait;
  }

  void SetNotify(std::function<void()> notify) override {
    std::lock_guard<std::mutex> lock(core_->mu);
    notify_ = std::move(notify);
    // A final job has no live events to wait for (and no log entry to keep); a replay-only
    // stream waits for nothing either.
    if (follow_ && core_->active.count(job_id_) > 0) {
      core_->logs[job_id_].watchers.push_back(weak_from_this());
    }
  }

  std::function<void()> notify() const { return notify_; }

  absl::Status status() const override {
    std::lock_guard<std::mutex> lock(core_->mu);
    return status_;
  }

 private:
  Poll Pop(v1::JobEvent& event) {
    event = std::move(batch_.front());
    batch_.pop_front();
    next_seq_ = event.seq() + 1;
    return Poll::kEvent;
  }

  std::shared_ptr<CoreState> core_;
  const std::string job_id_;
  uint64_t next_seq_;              // guarded by core_->mu
  const bool follow_;
  std::deque<v1::JobEvent> batch_;  // guarded by core_->mu
  uint64_t batch_written_ = 0;      // guarded by core_->mu: batch_ is durable once this write is
  std::function<void()> notify_;    // guarded by core_->mu
  absl::Status status_;             // guarded by core_->mu: why Next returned kEnd, if not OK
};

namespace {

void CollectWatchers(JobEventLog& log, Wakeups& wakeups) {
  auto& watchers = log.watchers;
  for (auto it = watchers.begin(); it != watchers.end();) {
    if (auto watcher = it->lock()) {
      if (auto notify = watcher->notify()) wakeups.push_back(notify);
      ++it;
    } else {
      it = watchers.erase(it);
    }
  }
}

}  // namespace

void Publish(CoreState& core, const std::string& job_id, const std::vector<v1::JobEvent>& events,
             bool final, Wakeups& wakeups) {
  JobEventLog& log = core.logs[job_id];
  const uint64_t written = core.sync->written();  // includes the write that persisted them
  for (const v1::JobEvent& event : events) {
    log.recent.push_back(event);
    log.recent_written.push_back(written);
    while (log.recent.size() > static_cast<size_t>(core.options.event_ring_size)) {
      log.recent.pop_front();
      log.recent_written.pop_front();
    }
  }
  CollectWatchers(log, wakeups);
  // A final job gets no more events: watchers read what is left from the store.
  if (final) core.logs.erase(job_id);
}

void WakeAllWatchers(CoreState& core, Wakeups& wakeups) {
  for (auto& [id, log] : core.logs) CollectWatchers(log, wakeups);
}

absl::StatusOr<std::unique_ptr<EventStream>> OpenWatch(const std::shared_ptr<CoreState>& core,
                                                       const v1::WatchJobRequest& request) {
  RETURN_IF_ERROR(core->store->GetJob(request.id()).status());  // NotFound for a bad id
  uint64_t from = std::max<uint64_t>(request.from_seq(), 1);
  auto stream = std::make_shared<WatchStream>(core, request.id(), from, !request.no_follow());
  // EventStream is handed out as a unique_ptr; the shared one stays alive inside it.
  struct Holder final : EventStream {
    std::shared_ptr<WatchStream> stream;
    Poll Next(v1::JobEvent& event) override { return stream->Next(event); }
    void SetNotify(std::function<void()> notify) override { stream->SetNotify(std::move(notify)); }
    absl::Status status() const override { return stream->status(); }
  };
  auto holder = std::make_unique<Holder>();
  holder->stream = std::move(stream);
  return std::unique_ptr<EventStream>(std::move(holder));
}

}  // namespace loratrf::server::core_internal
