#include "server/core/gc.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/crash_point.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/core/job_access.h"
#include "server/core/retention.h"

namespace loratrf::server::core_internal {
namespace {

uint64_t FileBytes(const v1::Checkpoint& checkpoint) {
  uint64_t bytes = 0;
  for (const v1::CheckpointFile& file : checkpoint.files()) bytes += file.size_bytes();
  return bytes;
}

// Needs mu: from here until RemoveCheckpointFiles is done, an upload of these is refused.
void MarkBeingRemoved(CoreState& core, const std::vector<v1::Checkpoint>& checkpoints) {
  for (const v1::Checkpoint& checkpoint : checkpoints) {
    core.checkpoints_being_removed.insert({checkpoint.job_id(), checkpoint.id()});
  }
}

}  // namespace

absl::StatusOr<std::vector<v1::Checkpoint>> ApplyRetention(CoreState& core,
                                                           const ActiveJob& entry) {
  const std::string& job_id = entry.job.id();
  ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> checkpoints, core.store->ListCheckpoints(job_id));
  std::set<std::string> pinned;
  if (!entry.resume_checkpoint.empty()) pinned.insert(entry.resume_checkpoint);
  std::vector<std::string> doomed = CheckpointsToDelete(
      checkpoints, entry.job.spec().training().keep_checkpoints(), pinned);
  if (doomed.empty()) return std::vector<v1::Checkpoint>();
  ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> deleted,
                   StoreWrite(core, [&] { return core.store->DeleteCheckpoints(job_id, doomed); }));
  LOG_INFO("job {}: retention deleted {} checkpoint(s) (keeping the last {}, the best, the final)",
           job_id, deleted.size(), entry.job.spec().training().keep_checkpoints());
  MarkBeingRemoved(core, deleted);
  return deleted;
}

absl::StatusOr<v1::DeleteJobResponse> DeleteJobRecords(CoreState& core, const Caller& caller,
                                                       const v1::DeleteJobRequest& request,
                                                       std::vector<v1::Checkpoint>& deleted) {
  ASSIGN_OR_RETURN(v1::Job job, core.store->GetJob(request.id()));
  RETURN_IF_ERROR(CheckJobAccess(caller, job));
  if (core.active.count(request.id()) > 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", request.id(), " is not final; cancel it first, then delete it"));
  }
  if (!IsFinal(job.state())) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", request.id(), " is not final; cancel it first, then delete it"));
  }
  v1::DeleteJobResponse response;
  if (request.purge()) {
    ASSIGN_OR_RETURN(deleted, StoreWrite(core, [&] { return core.store->DeleteJob(job.id()); }));
  } else {
    ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> all, core.store->ListCheckpoints(job.id()));
    std::vector<std::string> ids;
    for (const v1::Checkpoint& checkpoint : all) ids.push_back(checkpoint.id());
    if (!ids.empty()) {
      ASSIGN_OR_RETURN(deleted, StoreWrite(core, [&] {
                         return core.store->DeleteCheckpoints(job.id(), ids);
                       }));
    }
    *response.mutable_job() = std::move(job);
  }
  MarkBeingRemoved(core, deleted);
  uint64_t bytes = 0;
  for (const v1::Checkpoint& checkpoint : deleted) bytes += FileBytes(checkpoint);
  response.set_checkpoints_deleted(static_cast<uint32_t>(deleted.size()));
  response.set_bytes_freed(bytes);
  LOG_INFO("job {} {} by {}: {} checkpoint(s), {} bytes", request.id(),
           request.purge() ? "purged" : "deleted its checkpoints", caller.principal,
           deleted.size(), bytes);
  return response;
}

void RemoveCheckpointFiles(CoreState& core, const std::vector<v1::Checkpoint>& checkpoints) {
  if (checkpoints.empty()) return;
  CrashPoint("gc.records_deleted");  // records gone, every file still there
  uint64_t bytes = 0;
  for (const v1::Checkpoint& checkpoint : checkpoints) {
    bytes += FileBytes(checkpoint);
    if (core.artifacts == nullptr) continue;
    if (&checkpoint != &checkpoints.front()) CrashPoint("gc.some_files_removed");
    absl::Status removed = core.artifacts->Remove(checkpoint);
    // NotFound: already gone (a repeated deletion after a crash). Anything else leaves files
    // without a record, which the sweep at the next start removes.
    if (!removed.ok() && !absl::IsNotFound(removed)) {
      LOG_WARN("removing the files of checkpoint {} of job {} failed: {}; the next start "
               "removes them",
               checkpoint.id(), checkpoint.job_id(), removed.ToString());
    }
  }
  {
    std::lock_guard<std::mutex> lock(core.mu);
    for (const v1::Checkpoint& checkpoint : checkpoints) {
      core.checkpoints_being_removed.erase({checkpoint.job_id(), checkpoint.id()});
    }
  }
  if (core.metrics != nullptr) {
    core.metrics->GcDeleted(static_cast<int64_t>(checkpoints.size()), bytes);
  }
}

void CollectGarbage(CoreState& core) {
  const CoreOptions& options = core.options;
  std::vector<v1::Checkpoint> deleted;
  {
    std::lock_guard<std::mutex> lock(core.mu);
    if (core.draining) return;
    const absl::Time now = core.Now();
    if (options.finished_job_ttl > absl::ZeroDuration()) {
      absl::StatusOr<std::vector<v1::Job>> expired =
          core.store->ListJobsFinishedBefore(now - options.finished_job_ttl, kMaxJobsPerGcPass);
      if (!expired.ok()) {
        LOG_WARN("finished-job TTL: listing expired jobs failed: {}", expired.status().ToString());
      } else {
        for (const v1::Job& job : *expired) {
          absl::StatusOr<std::vector<v1::Checkpoint>> purged =
              StoreWrite(core, [&] { return core.store->DeleteJob(job.id()); });
          if (!purged.ok()) {
            LOG_WARN("finished-job TTL: purging job {} failed: {}", job.id(),
                     purged.status().ToString());
            continue;
          }
          LOG_INFO("job {} purged: finished more than {} ago ({} checkpoint(s))", job.id(),
                   absl::FormatDuration(options.finished_job_ttl), purged->size());
          MarkBeingRemoved(core, *purged);
          deleted.insert(deleted.end(), purged->begin(), purged->end());
        }
      }
    }
    if (options.lost_worker_ttl > absl::ZeroDuration()) {
      for (auto it = core.workers.begin(); it != core.workers.end();) {
        const WorkerEntry& entry = it->second;
        if (entry.worker.state() != v1::WORKER_STATE_LOST ||
            now - entry.lease_expires < options.lost_worker_ttl) {
          ++it;
          continue;
        }
        absl::Status forgotten =
            StoreWrite(core, [&] { return core.store->DeleteWorker(it->first); });
        if (!forgotten.ok() && !absl::IsNotFound(forgotten)) {
          LOG_WARN("lost-worker TTL: forgetting worker {} failed: {}", it->first,
                   forgotten.ToString());
          ++it;
          continue;
        }
        LOG_INFO("worker {} forgotten: lost for more than {}", it->first,
                 absl::FormatDuration(options.lost_worker_ttl));
        it = core.workers.erase(it);
      }
    }
    if (options.idempotency_window > absl::ZeroDuration()) {
      absl::StatusOr<int64_t> expired = StoreWrite(core, [&] {
        return core.store->ExpireIdempotencyKeys(now - options.idempotency_window);
      });
      if (!expired.ok()) {
        LOG_WARN("idempotency window: expiring keys failed: {}", expired.status().ToString());
      } else if (*expired > 0) {
        LOG_INFO("{} idempotency key(s) expired", *expired);
      }
    }
  }
  RemoveCheckpointFiles(core, deleted);
}

void SweepOrphans(CoreState& core) {
  if (core.artifacts == nullptr) return;
  absl::StatusOr<std::vector<v1::Checkpoint>> recorded = core.store->ListAllCheckpoints();
  if (!recorded.ok()) {
    LOG_WARN("orphan sweep skipped: listing the checkpoint records failed: {}",
             recorded.status().ToString());
    return;
  }
  std::set<std::pair<std::string, std::string>> names;
  for (const v1::Checkpoint& checkpoint : *recorded) {
    names.insert({checkpoint.job_id(), checkpoint.id()});
  }
  absl::StatusOr<ArtifactStore::Usage> removed = core.artifacts->RemoveUnrecorded(names);
  if (!removed.ok()) {
    LOG_WARN("orphan sweep failed: {}", removed.status().ToString());
  } else if (removed->checkpoints > 0) {
    LOG_INFO("orphan sweep: removed {} unrecorded checkpoint director(ies), {} bytes",
             removed->checkpoints, removed->bytes);
  }
}

}  // namespace loratrf::server::core_internal
