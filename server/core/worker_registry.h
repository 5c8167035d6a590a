// The worker registry: registration, leases renewed by heartbeat, lease expiry (a lost worker),
// re-attachment of running attempts after an agent or coordinator restart, each worker's slot
// count and its queue of commands (assignments, cancellations) with the stream that pulls it.
//
// Owns: CoreState::workers (WorkerEntry records), CoreState::next_lease_id,
// CoreState::fleet_changed, and the command streams (CommandStreamImpl, in
// worker_registry.cc). It also writes the re-attach fields of ActiveJob records (attached,
// missing_beats, assigned_at) and asks job_lifecycle to restart the attempts a worker lost.
//
// Logs one INFO line when a worker registers and when it is lost, and a warning for every
// failure it cannot return.
//
// Threading: every function is called with CoreState::mu held and queues wake-ups in `wakeups`
// (run after mu is released), except ValidateRegistration, which needs no state. A command
// stream's Next and SetNotify take mu themselves.
#pragma once

#include <cstdint>
#include <memory>
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
#include "server/core/scheduler.h"

namespace loratrf::server::core_internal {

// ---- the worker calls -----------------------------------------------------------------------

// The checks Register makes before taking the lock: name, slots and address.
absl::Status ValidateRegistration(const v1::RegisterRequest& request);
// A new lease for the worker (ending any stream of the old one); re-attaches the attempts it
// still runs, restarts those it lost, cancels stale ones and re-sends pending assignments.
absl::StatusOr<v1::RegisterResponse> RegisterWorker(CoreState& core,
                                                    const v1::RegisterRequest& request,
                                                    Wakeups& wakeups);
// Renews the lease; an attempt the worker holds but no longer lists gets its assignment again
// (SCHEDULED) or, two beats in a row while RUNNING, restarts.
absl::StatusOr<v1::HeartbeatResponse> Heartbeat(CoreState& core,
                                                const v1::HeartbeatRequest& request,
                                                Wakeups& wakeups);
// The worker's command stream; ends the previous one.
absl::StatusOr<std::unique_ptr<CommandStream>> OpenCommandStream(
    const std::shared_ptr<CoreState>& core, const v1::StreamCommandsRequest& request,
    Wakeups& wakeups);
// The worker `name` holding lease `lease_id`, or FAILED_PRECONDITION telling it to register.
absl::StatusOr<WorkerEntry*> LeasedWorker(CoreState& core, const std::string& name,
                                          uint64_t lease_id);

// ---- periodic -------------------------------------------------------------------------------

// Lapsed leases: the worker is LOST (its stream ends) and every attempt it held restarts;
// attempts recovered from the store whose workers did not re-attach in time restart too.
void ExpireLeases(CoreState& core, Wakeups& wakeups);

// ---- slots and commands, for job_lifecycle ----------------------------------------------------

// Queues a command for the worker and wakes its stream; a lost or unknown worker gets nothing.
void Send(CoreState& core, const std::string& worker_name, v1::WorkerCommand command,
          Wakeups& wakeups);
// A Cancellation of the job's current attempt to each of its workers.
void SendCancellation(CoreState& core, const v1::Job& job, const std::string& reason,
                      Wakeups& wakeups);
// The placed job's slots are held on each of `workers`.
void TakeSlots(CoreState& core, const std::vector<std::string>& workers, const std::string& job_id,
               uint32_t slots_per_worker);
// Gives the job's slots back (it left SCHEDULED/RUNNING), on the workers that still hold it.
void ReleaseSlots(CoreState& core, const v1::Job& job);
// The workers a scheduling pass may place on (registered in this process, not lost).
std::vector<SchedulerWorker> SchedulableFleet(const CoreState& core);

// ---- views and lifecycle --------------------------------------------------------------------

v1::ListWorkersResponse ListWorkers(const CoreState& core);
// Queues the wake-up of every command stream (Drain: they end).
void WakeAllCommandStreams(CoreState& core, Wakeups& wakeups);
// Fills the registry from the store after a restart, at `now` (after RecoverJobs; CoreState is
// not shared yet): workers are listed until they register again or their grace lease lapses,
// and none takes new work before it registers in this process. Slots held by recovered
// attempts stay held.
void RecoverWorkers(CoreState& core, std::vector<v1::Worker>& workers, absl::Time now);

}  // namespace loratrf::server::core_internal
