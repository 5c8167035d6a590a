// Priority preemption as a pure function (docs/control-plane.md, "Preemption"): which running
// jobs to stop so that a queued job of higher priority fits, tested without a coordinator.
//
//   - only strictly lower priority, never a job with spec.never_preempt, never an attempt that
//     has run for less than `min_run` (it would be preempted again before it progressed);
//   - gang-aware: only whole jobs are evicted, and only when evicting them lets the waiting
//     job's whole gang fit (on READY workers of its device, with each worker's free slots plus
//     what the victims hold there); otherwise nothing is evicted;
//   - preference: the fewest victims, then the lowest priorities, then the most recently
//     started (the least work to redo), then the job id.
//
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "server/core/scheduler.h"

namespace loratrf::server {

// A SCHEDULED or RUNNING job that might be stopped.
struct PreemptionCandidate {
  std::string id;
  int32_t priority = 0;
  std::vector<std::string> workers;  // the workers its attempt holds
  uint32_t slots_per_worker = 1;
  bool never_preempt = false;
  absl::Duration ran_for;  // since its current attempt was placed
};

struct PreemptionPlan {
  std::vector<std::string> victims;  // job ids, in preference order
  std::vector<std::string> workers;  // where the waiting job then fits (node rank order)
};

// The victims that let `waiting` fit on `fleet` (free slots as they are now), or nothing when
// no allowed set of victims would.
std::optional<PreemptionPlan> PickVictims(const SchedulerJob& waiting,
                                          const std::vector<SchedulerWorker>& fleet,
                                          const std::vector<PreemptionCandidate>& running,
                                          absl::Duration min_run);

}  // namespace loratrf::server
