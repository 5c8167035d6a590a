// Stops on purpose: pause and resume, cordon / drain / uncordon of a worker, and priority
// preemption. All three stop a running attempt the same way (a stop with checkpoint): its
// workers get a Cancellation with checkpoint_first, its ranks finish their step and commit a
// checkpoint, and the attempt's preempted report requeues it (job_lifecycle's RestartJob with
// AttemptEnd::kPreempted: no restart used, ahead of its priority's queue). A stop that has not
// ended by CoreOptions::stop_timeout is restarted anyway, from the latest committed checkpoint.
//
// Owns: ActiveJob::stop (set here; RestartJob clears it and turns a priority stop into
// ActiveJob::held_for), the persisted Job.paused flag and Worker.cordoned flag. Slots and
// commands are worker_registry's; transitions are job_lifecycle's.
//
// Logs one INFO line per stop asked, pause, resume and cordon change, and a warning when a
// stop runs past its deadline.
//
// Threading: every function is called with CoreState::mu held and queues wake-ups in `wakeups`
// (run after mu is released), except ValidateCordon, which needs no state, and RecoverStops,
// which runs before CoreState is shared.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/loratrf/v1/job.pb.h"
#include "proto/loratrf/v1/job_service.pb.h"
#include "proto/loratrf/v1/worker.pb.h"
#include "server/core/core_state.h"
#include "server/core/job_service.h"

namespace loratrf::server::core_internal {

// ---- the stop itself ------------------------------------------------------------------------

// Asks `entry`'s attempt (SCHEDULED or RUNNING) to checkpoint and stop: persists an event with
// `reason` (and `paused`, when set), then sends the Cancellation and counts the preemption.
// A stop already pending changes nothing (the flag aside).
absl::Status RequestStop(CoreState& core, ActiveJob& entry, StopKind kind,
                         const std::string& requested_by, const std::string& reason,
                         const std::string& for_job, bool pause, Wakeups& wakeups);
// Stops past their deadline restart anyway (kPreempted: the latest committed checkpoint is
// used and the ranks get a plain cancellation); recovered stops are sent once their workers
// are back.
void ExpireStops(CoreState& core, Wakeups& wakeups);
// Whether the scheduler must leave this QUEUED job alone: paused, or preempted for a job that
// still waits on other victims.
bool IsHeld(const CoreState& core, const ActiveJob& entry);

// ---- the calls ------------------------------------------------------------------------------

absl::StatusOr<v1::Job> PauseJob(CoreState& core, const Caller& caller,
                                 const v1::PauseJobRequest& request, Wakeups& wakeups);
absl::StatusOr<v1::Job> ResumeJob(CoreState& core, const Caller& caller,
                                  const v1::ResumeJobRequest& request, Wakeups& wakeups);
// The checks CordonWorker makes before taking the lock (the action).
absl::Status ValidateCordon(const v1::CordonWorkerRequest& request);
absl::StatusOr<v1::Worker> CordonWorker(CoreState& core, const Caller& caller,
                                        const v1::CordonWorkerRequest& request,
                                        Wakeups& wakeups);

// ---- priority preemption --------------------------------------------------------------------

// After a scheduling pass: each queued job that still does not fit, highest priority first,
// may stop lower-priority jobs (preemption.h picks them). A waiting job whose victims are
// still stopping gets no more.
void PreemptForWaiting(CoreState& core, Wakeups& wakeups);

// ---- recovery -------------------------------------------------------------------------------

// After RecoverJobs and RecoverWorkers: an attempt whose job is paused was being paused when
// the coordinator stopped; its stop is asked again once its workers register.
void RecoverStops(CoreState& core, absl::Time now);

}  // namespace loratrf::server::core_internal
