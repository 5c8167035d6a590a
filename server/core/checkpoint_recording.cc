#include "server/core/checkpoint_recording.h"

#include <algorithm>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crash_point.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/core/event_log.h"
#include "server/core/gc.h"
#include "server/core/job_access.h"
#include "server/core/job_lifecycle.h"
#include "server/core/worker_registry.h"

namespace loratrf::server::core_internal {
namespace {

// The upload of one checkpoint by node 0's agent.
class CheckpointUploadImpl final : public JobServiceCore::CheckpointUpload {
 public:
  CheckpointUploadImpl(std::shared_ptr<CoreState> core, v1::Checkpoint checkpoint,
                       std::string worker, std::unique_ptr<ArtifactStore::Upload> upload)
      : core_(std::move(core)), checkpoint_(std::move(checkpoint)), worker_(std::move(worker)),
        upload_(std::move(upload)) {}

  absl::Status Write(const v1::FileChunk& chunk) override { return upload_->Write(chunk); }

  absl::StatusOr<v1::Checkpoint> Finish() override {
    RETURN_IF_ERROR(upload_->Commit());
    CrashPoint("upload.files_committed");  // files in place, no record yet
    Wakeups wakeups;
    std::vector<v1::Checkpoint> retired;  // records retention deleted; their files go below
    absl::StatusOr<v1::Checkpoint> result = Record(wakeups, retired);
    RunWakeups(wakeups);
    RemoveCheckpointFiles(*core_, retired);
    // Files without a record would block a retried upload and never be listed: remove them.
    if (!result.ok()) {
      LogIfError(core_->artifacts->Remove(checkpoint_),
                 absl::StrCat("removing the files of checkpoint ", checkpoint_.id(), " of job ",
                              checkpoint_.job_id(), " after recording it failed (",
                              result.status().ToString(), ")"));
    }
    return result;
  }

 private:
  absl::StatusOr<v1::Checkpoint> Record(Wakeups& wakeups, std::vector<v1::Checkpoint>& retired) {
    std::lock_guard<std::mutex> lock(core_->mu);
    ASSIGN_OR_RETURN(ActiveJob * entry,
                     CurrentAttempt(*core_, checkpoint_.job_id(), checkpoint_.attempt(), worker_));
    *checkpoint_.mutable_created_at() = ToProto(core_->Now());
    v1::JobEvent event;
    *event.mutable_checkpoint() = checkpoint_;
    event.set_attempt(checkpoint_.attempt());
    *event.mutable_time() = ToProto(core_->Now());
    ASSIGN_OR_RETURN(std::optional<v1::JobEvent> stored,
                     StoreWrite(*core_, [&] {
                       return core_->store->AddCheckpoint(checkpoint_, event);
                     }));
    if (checkpoint_.final()) entry->final_checkpoint = true;
    uint64_t bytes = 0;
    for (const v1::CheckpointFile& file : checkpoint_.files()) bytes += file.size_bytes();
    if (core_->metrics != nullptr) core_->metrics->CheckpointBytes(bytes);
    if (stored.has_value()) {
      entry->job.set_last_event_seq(stored->seq());
      Publish(*core_, checkpoint_.job_id(), {*stored}, false, wakeups);
    }
    // Retention, now that a newer checkpoint is safe. A failure keeps the old ones until the
    // next commit tries again: nothing is lost, some space is held longer.
    absl::StatusOr<std::vector<v1::Checkpoint>> retention = ApplyRetention(*core_, *entry);
    if (retention.ok()) {
      retired = std::move(*retention);
    } else {
      LOG_WARN("job {}: checkpoint retention failed: {}", checkpoint_.job_id(),
               retention.status().ToString());
    }
    return checkpoint_;
  }

  std::shared_ptr<CoreState> core_;
  v1::Checkpoint checkpoint_;
  const std::string worker_;
  std::unique_ptr<ArtifactStore::Upload> upload_;
};

}  // namespace

absl::StatusOr<v1::Checkpoint> PrepareUpload(CoreState& core,
                                             const v1::UploadCheckpointRequest::Header& header) {
  RETURN_IF_ERROR(LeasedWorker(core, header.worker(), header.lease_id()).status());
  ASSIGN_OR_RETURN(ActiveJob * entry,
                   CurrentAttempt(core, header.job_id(), header.attempt(), header.worker()));
  if (entry->job.workers(0) != header.worker()) {
    return absl::FailedPreconditionError("only node rank 0 uploads checkpoints");
  }
  if (header.files_size() == 0) return absl::InvalidArgumentError("files: none given");
  v1::Checkpoint checkpoint;
  checkpoint.set_id(absl::StrCat("s", header.step(), "-a", header.attempt(),
                                 header.final() ? "-final" : ""));
  checkpoint.set_job_id(header.job_id());
  checkpoint.set_step(header.step());
  checkpoint.set_attempt(header.attempt());
  checkpoint.set_final(header.final());
  *checkpoint.mutable_files() = header.files();
  if (header.has_eval()) *checkpoint.mutable_eval() = header.eval();
  if (core.checkpoints_being_removed.count({header.job_id(), checkpoint.id()}) > 0) {
    return absl::UnavailableError(absl::StrCat(
        "checkpoint ", checkpoint.id(), " of job ", header.job_id(),
        " is being deleted by retention; retry the upload in a moment"));
  }
  // A retried upload of a checkpoint that is already recorded.
  absl::StatusOr<v1::Checkpoint> existing =
      core.store->GetCheckpoint(header.job_id(), checkpoint.id());
  if (existing.ok()) {
    if (header.final()) entry->final_checkpoint = true;
    return absl::AlreadyExistsError(
        absl::StrCat("checkpoint ", checkpoint.id(), " is already stored"));
  }
  if (!absl::IsNotFound(existing.status())) {
    // Uploading again is safe: recording it then fails if it was stored after all.
    LOG_WARN("checking whether checkpoint {} of job {} is stored failed: {}; accepting the upload",
             checkpoint.id(), header.job_id(), existing.status().ToString());
  }
  return checkpoint;
}

absl::StatusOr<std::unique_ptr<JobServiceCore::CheckpointUpload>> StartUpload(
    const std::shared_ptr<CoreState>& core, v1::Checkpoint checkpoint, const std::string& worker) {
  absl::StatusOr<std::unique_ptr<ArtifactStore::Upload>> upload =
      core->artifacts->BeginUpload(checkpoint);
  if (absl::IsAlreadyExists(upload.status())) {
    // Files committed by an upload whose record was never written (a crash between the two,
    // or a record that failed): not a checkpoint until recorded, so replace them.
    RETURN_IF_ERROR(core->artifacts->Remove(checkpoint));
    upload = core->artifacts->BeginUpload(checkpoint);
  }
  if (!upload.ok()) return upload.status();
  return std::unique_ptr<JobServiceCore::CheckpointUpload>(
      new CheckpointUploadImpl(core, std::move(checkpoint), worker, std::move(*upload)));
}

absl::StatusOr<v1::ListCheckpointsResponse> ListCheckpoints(CoreState& core,
                                                            const std::string& job_id) {
  ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> checkpoints, core.store->ListCheckpoints(job_id));
  v1::ListCheckpointsResponse response;
  for (v1::Checkpoint& checkpoint : checkpoints) *response.add_checkpoints() = std::move(checkpoint);
  return response;
}

absl::StatusOr<std::pair<v1::Checkpoint, std::unique_ptr<ArtifactStore::Reader>>> OpenCheckpoint(
    CoreState& core, const v1::Job& job, const Caller& caller,
    const v1::DownloadCheckpointRequest& request) {
  // Adapters are their owner's (and the workers' that resume them): a user may not download
  // another user's.
  RETURN_IF_ERROR(CheckJobAccess(caller, job, JobAccess::kResume));
  v1::Checkpoint checkpoint;
  if (!request.checkpoint_id().empty()) {
    ASSIGN_OR_RETURN(checkpoint, core.store->GetCheckpoint(request.job_id(), request.checkpoint_id()));
  } else {
    ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> all, core.store->ListCheckpoints(request.job_id()));
    if (all.empty()) {
      return absl::NotFoundError(absl::StrCat("job ", request.job_id(), " has no checkpoints yet"));
    }
    // The final one if there is one, else the latest.
    auto final_it = std::find_if(all.rbegin(), all.rend(),
                                 [](const v1::Checkpoint& c) { return c.final(); });
    checkpoint = final_it != all.rend() ? *final_it : all.back();
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ArtifactStore::Reader> reader, core.artifacts->Read(checkpoint));
  return std::make_pair(std::move(checkpoint), std::move(reader));
}

}  // namespace loratrf::server::core_internal
