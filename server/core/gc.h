// Garbage collection on the coordinator: checkpoint retention as checkpoints commit, DeleteJob,
// the TTL passes (finished jobs, LOST workers, idempotency keys) and the orphan sweep at start
// (docs/operations.md, "Retention and garbage collection").
//
// Owns: the deletion of checkpoint records and files, of expired job records and of forgotten
// LOST workers (CoreState::workers entries in state LOST, which nothing else reads but
// listings). Crash safety comes from the order: a checkpoint's record is deleted first (one
// store transaction), its files after (ArtifactStore::Remove, which moves them out of the job
// in one rename), so a SIGKILL anywhere leaves at worst files without a record, which
// SweepOrphans removes at the next start; never a record without its files. A Reader open on
// deleted files reads on (it holds them open), so a download in flight is never broken. Between
// a record's deletion and its files' removal the checkpoint is listed in
// CoreState::checkpoints_being_removed, and an upload of the same checkpoint is refused
// (UNAVAILABLE, the agent retries): its new files must not be removed as the old ones.
//
// Threading: functions that say "needs mu" are called with CoreState::mu held and do store
// writes only; RemoveCheckpointFiles does the file I/O without mu; CollectGarbage takes mu
// itself around each store write and never holds it for file I/O; SweepOrphans runs in
// JobServiceCore::Create, before the core is shared.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/loratrf/v1/job.pb.h"
#include "proto/loratrf/v1/job_service.pb.h"
#include "server/core/core_state.h"
#include "server/core/job_service.h"

namespace loratrf::server::core_internal {

// After a checkpoint of `entry`'s job was recorded: deletes the records of the checkpoints
// retention no longer keeps (retention.h; the attempt's resume checkpoint is pinned) and
// returns them, for RemoveCheckpointFiles once mu is released. Needs mu.
absl::StatusOr<std::vector<v1::Checkpoint>> ApplyRetention(CoreState& core,
                                                           const ActiveJob& entry);

// DeleteJob's record part: the job must be final (FailedPrecondition otherwise) and the
// caller's (PermissionDenied). Deletes its checkpoint records, with `purge` the job's record,
// events and idempotency key too; `deleted` gets the checkpoints whose files are to go.
// Needs mu.
absl::StatusOr<v1::DeleteJobResponse> DeleteJobRecords(CoreState& core, const Caller& caller,
                                                       const v1::DeleteJobRequest& request,
                                                       std::vector<v1::Checkpoint>& deleted);

// Removes the files of checkpoints whose records are gone and counts them
// (loratrf_gc_checkpoints_deleted_total, loratrf_gc_bytes_freed_total). Without mu.
void RemoveCheckpointFiles(CoreState& core, const std::vector<v1::Checkpoint>& checkpoints);

// One pass of the TTLs (CoreOptions: finished_job_ttl, lost_worker_ttl, idempotency_window),
// bounded: at most kMaxJobsPerGcPass jobs are purged. Without mu.
inline constexpr int kMaxJobsPerGcPass = 16;
void CollectGarbage(CoreState& core);

// Files no record names (an upload committed but not recorded, a deletion interrupted between
// the record and the files) are removed. At start only. Logs what it cannot do.
void SweepOrphans(CoreState& core);

}  // namespace loratrf::server::core_internal
