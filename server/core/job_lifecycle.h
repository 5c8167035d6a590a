// The job lifecycle: the state machine of job_service.h (QUEUED → SCHEDULED → RUNNING → final,
// RESTARTING with a new attempt), submit and cancel, the scheduling pass that places queued
// jobs, and recovery of the job table after a coordinator restart.
//
// Owns: CoreState::active (ActiveJob records: created on submit or recovery, erased when the
// job is final), CoreState::next_order, CoreState::ports_in_use (rendezvous ports of placed
// attempts). Every transition goes through CommitJob: persist the job and its events, then
// update the table and publish (event_log), then the caller replies. Slots and commands on the
// workers' side are worker_registry's: a transition asks it to take or give back slots and to
// send assignments and cancellations.
//
// Logs one INFO line per lifecycle moment (submitted, scheduled, restarted, final, with the
// reason) and a warning for every failure it cannot return.
//
// Threading: every function is called with CoreState::mu held and queues wake-ups in `wakeups`
// (run after mu is released), except ValidateSubmission, which needs no state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/loratrf/v1/job.pb.h"
#include "proto/loratrf/v1/job_service.pb.h"
#include "proto/loratrf/v1/worker_service.pb.h"
#include "server/core/core_state.h"
#include "server/core/job_service.h"
#include "server/store/job_store.h"

namespace loratrf::server::core_internal {

// ---- submit, cancel, read -------------------------------------------------------------------

// The checks SubmitJob makes before taking the lock: the idempotency key's shape and
// spec::ValidateJobSpec (InvalidArgument naming the field).
absl::Status ValidateSubmission(const v1::SubmitJobRequest& request);
// Stores a new QUEUED job (or finds the one its idempotency key names) and queues it.
absl::StatusOr<v1::SubmitJobResponse> SubmitJob(CoreState& core, const Caller& caller,
                                                const v1::SubmitJobRequest& request,
                                                Wakeups& wakeups);
// The live view of an active job, or null (final or unknown: ask the store).
const v1::Job* CachedJob(const CoreState& core, const std::string& id);
// Idempotent: a final job comes back as stored. Only the owner or an admin may cancel
// (CheckJobAccess), a final job included.
absl::StatusOr<v1::Job> CancelJob(CoreState& core, const Caller& caller,
                                  const v1::CancelJobRequest& request, Wakeups& wakeups);

// ---- transitions ----------------------------------------------------------------------------

// Persists `job` with `events`, then updates the table (erasing a final job's entry) and
// publishes the events.
absl::Status CommitJob(CoreState& core, v1::Job job, std::vector<v1::JobEvent> events,
                       Wakeups& wakeups);
// Moves an active job to a final state: persists first, then frees its slots and cancels its
// ranks (unless it succeeded). Erases `entry`.
absl::Status FinishJob(CoreState& core, ActiveJob& entry, v1::JobState to,
                       const std::string& reason, Wakeups& wakeups);
// How an attempt ended when the job is requeued.
enum class AttemptEnd {
  kLost,       // a worker or rank died: counts against max_restarts
  kPreempted,  // stopped on purpose after a checkpoint (drain, pause, preemption): does not
               // count, and the job goes ahead of the queued jobs of its priority
};
// The attempt ended: requeue with attempt + 1 (kLost: while max_restarts allows, else FAILED).
// An attempt with a stop pending (ActiveJob::stop) ends as kPreempted whatever `end` says; a
// paused job is requeued held (QUEUE_REASON_PAUSED).
absl::Status RestartJob(CoreState& core, ActiveJob& entry, const std::string& reason,
                        Wakeups& wakeups, AttemptEnd end = AttemptEnd::kLost);
// RestartJob for the active job `job_id` (nothing if it is no longer active), for callers that
// cannot act on a failure: it is logged, and the attempt stays as it was until the caller's
// next sweep (a tick, a heartbeat) tries again.
void RestartJobOrLog(CoreState& core, const std::string& job_id, const std::string& reason,
                     Wakeups& wakeups);

// ---- scheduling -----------------------------------------------------------------------------

// One pass of the scheduler (scheduler.h) over the queued jobs (CoreState::queue, kept in
// scheduling order) and the schedulable workers: places what fits (QUEUED → SCHEDULED,
// assignments sent), fails what never will once the fleet settled.
// Gives every queued job its QueueStatus (Job.queue, in memory only: CommitJob clears it before
// a write) in the same ordered walk; with a long queue, the statuses only every so often
// (QueueStatusRefreshDue), and a pass with nothing to place then ends at once.
void ScheduleQueued(CoreState& core, Wakeups& wakeups);
// A pass skipped the statuses and they are due now (Tick runs a pass for them).
bool QueueStatusRefreshDue(const CoreState& core, absl::Time now);
// How long the longest-waiting queued job has waited (0 when none): from a walk of the queue,
// which with a long queue is made only as often as the queue statuses are refreshed (the
// answer may lag by that much).
absl::Duration LongestQueuedWait(CoreState& core, absl::Time now);
// The assignment of `entry`'s current attempt for the worker at `node_rank`.
v1::WorkerCommand MakeAssignment(const CoreState& core, const ActiveJob& entry,
                                 uint32_t node_rank);

// ---- attempts -------------------------------------------------------------------------------

// The active job whose current attempt `worker` runs, or FAILED_PRECONDITION (a stale
// attempt: the worker must stop those ranks).
absl::StatusOr<ActiveJob*> CurrentAttempt(CoreState& core, const std::string& job_id,
                                          uint32_t attempt, const std::string& worker);

// ---- recovery -------------------------------------------------------------------------------

// Fills the table from the store after a restart, at `now` (CoreState is not shared yet):
// queued jobs keep their order; active attempts get one lease TTL for their workers to
// re-attach.
absl::Status RecoverJobs(CoreState& core, RecoveredState& recovered, absl::Time now);

}  // namespace loratrf::server::core_internal
