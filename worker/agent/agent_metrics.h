// The agent's metrics, defined in this one place (docs/architecture.md, convention 7) and injected:
// the agent's parts call this interface; `--metrics-listen` serves the Prometheus implementation,
// and without it (or in tests) the no-op one is used. No per-job or per-user labels.
//
// Threading: every method is safe from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace loratrf::worker::agent {

class AgentMetrics {
 public:
  virtual ~AgentMetrics() = default;
  virtual void SetSlots(int64_t slots) = 0;
  virtual void Registered() = 0;            // each successful Register
  virtual void HeartbeatFailed() = 0;
  // `outcome`: succeeded | failed | restarting | cancelled | stale | stopped
  virtual void AttemptFinished(const std::string& outcome) = 0;
  virtual void RanksRunning(int64_t delta) = 0;
  virtual void EventsReported(uint64_t count) = 0;
  virtual void ReportFailed() = 0;
  virtual void CheckpointUploaded(uint64_t bytes) = 0;
  virtual void CheckpointDownloaded(uint64_t bytes) = 0;
};

// Does nothing.
std::unique_ptr<AgentMetrics> MakeNullAgentMetrics();

// Serves /metrics on `listen` (HOST:PORT). Errors name the address.
absl::StatusOr<std::unique_ptr<AgentMetrics>> MakePrometheusAgentMetrics(const std::string& listen);

}  // namespace loratrf::worker::agent
