// What the gRPC layer counts for /metrics: one observation per finished RPC. An interface so
// that the handlers do not depend on prometheus-cpp (server/metrics implements it; tests pass
// nullptr or a fake; docs/architecture.md, convention 7).
//
// Threading: implementations are thread-safe; every method is called from gRPC's threads.
#pragma once

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace loratrf::server {

class RpcMetrics {
 public:
  virtual ~RpcMetrics() = default;
  // `method`: one of a fixed set ("JobService/SubmitJob"); `code`: a gRPC code name ("OK",
  // "INVALID_ARGUMENT"). Never a job id or a caller's string, so label sets stay bounded.
  virtual void RpcFinished(absl::string_view method, absl::string_view code,
                           absl::Duration latency) = 0;

  // The long-lived server streams, counted while open: a stream is opened once the core
  // accepted it (a refused call is not a stream) and closed when gRPC is done with the call.
  enum class StreamKind {
    kWatch,     // JobService/WatchJob
    kCommands,  // WorkerService/StreamCommands
  };
  virtual void StreamOpened(StreamKind kind) = 0;
  virtual void StreamClosed(StreamKind kind) = 0;
};

// Holds one open stream in RpcMetrics (which may be null) from construction until Close() or
// destruction, whichever comes first; movable, so a reactor can own it.
class OpenStream {
 public:
  OpenStream(RpcMetrics* metrics, RpcMetrics::StreamKind kind) : metrics_(metrics), kind_(kind) {
    if (metrics_ != nullptr) metrics_->StreamOpened(kind_);
  }
  OpenStream(OpenStream&& other) noexcept : metrics_(other.metrics_), kind_(other.kind_) {
    other.metrics_ = nullptr;
  }
  OpenStream(const OpenStream&) = delete;
  OpenStream& operator=(const OpenStream&) = delete;
  OpenStream& operator=(OpenStream&&) = delete;
  ~OpenStream() { Close(); }

  void Close() {
    if (metrics_ != nullptr) metrics_->StreamClosed(kind_);
    metrics_ = nullptr;
  }

 private:
  RpcMetrics* metrics_;  // null once closed (or moved from)
  RpcMetrics::StreamKind kind_;
};

}  // namespace loratrf::server
