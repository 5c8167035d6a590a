// The agent's metrics, defined in this one place (docs/architecture.md, convention 7) and injected:
// the agent's parts call this interface; `--metrics-listen` serves the Prometheus implementation,
// and without it (or in tests) the no-op one is used. The housekeeping families have no
// per-job labels; the training series of a running attempt carry its job id, attempt and rank
// (the job id is the only label value that comes from a user) and go when the attempt ends, so
// their number follows the ranks running, not the history. Families: docs/metrics.md.
//
// Threading: every method is safe from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "proto/contract/metrics_jsonl.h"

namespace loratrf::worker::agent {

// The series of one running attempt on this worker; destroying it removes them.
class AttemptSeries {
 public:
  virtual ~AttemptSeries() = default;
  // One row of rank `rank`'s telemetry (proto/contract/metrics_jsonl.h).
  virtual void Observe(int rank, const contract::RankRow& row) = 0;
  virtual void CheckpointUploaded(double seconds) = 0;
};

class AgentMetrics {
 public:
  virtual ~AgentMetrics() = default;
  virtual void SetSlots(int64_t slots) = 0;
  virtual void Registered() = 0;            // each successful Register
  virtual void HeartbeatFailed() = 0;
  // `outcome`: succeeded | failed | restarting | preempted | cancelled | stale |
  // stopped (preempted: stopped after a checkpoint, for a drain or a checkpoint_first Cancellation)
  virtual void AttemptFinished(const std::string& outcome) = 0;
  virtual void RanksRunning(int64_t delta) = 0;
  virtual void EventsReported(uint64_t count) = 0;
  virtual void ReportFailed() = 0;
  virtual void CheckpointUploaded(uint64_t bytes) = 0;
  virtual void CheckpointDownloaded(uint64_t bytes) = 0;
  virtual void CheckpointUploadFailed() = 0;  // an upload that will be retried or given up
  virtual std::unique_ptr<AttemptSeries> StartAttempt(const std::string& job_id,
                                                      uint32_t attempt) = 0;
};

// Does nothing.
std::unique_ptr<AgentMetrics> MakeNullAgentMetrics();

// Serves /metrics on `listen` (HOST:PORT). The free and total space of `work_dir` are read at
// each scrape. Errors name the address.
absl::StatusOr<std::unique_ptr<AgentMetrics>> MakePrometheusAgentMetrics(
    const std::string& listen, const std::string& work_dir);

}  // namespace loratrf::worker::agent
