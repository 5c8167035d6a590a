// What the gRPC layer counts for /metrics: one observation per finished RPC. An interface so
// that the handlers do not depend on prometheus-cpp (server/metrics implements it; tests pass
// nullptr or a fake; docs/architecture.md, convention 7).
//
// Threading: implementations are thread-safe; RpcFinished is called from gRPC's threads.
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
};

}  // namespace loratrf::server
