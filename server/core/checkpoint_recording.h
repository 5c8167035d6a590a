// Checkpoint recording: uploads of checkpoints by node 0's agent (begin, write, commit the files,
// record the checkpoint and its event), and listing and opening recorded checkpoints for
// download or resumption.
//
// Owns: the upload objects (CheckpointUploadImpl, in checkpoint_recording.cc) and the
// final_checkpoint flag of ActiveJob records. The files are the ArtifactStore's, the records the
// JobStore's: a checkpoint counts only once both are written (files first), and files whose
// record failed are removed again. The checkpoint's event is published through event_log.
//
// Threading: PrepareUpload is called with CoreState::mu held. StartUpload, ListCheckpoints and
// OpenCheckpoint are called without it (they do file and store I/O); an upload's Finish takes
// mu itself only to record the checkpoint, and runs its wake-ups after releasing it.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "proto/loratrf/v1/job.pb.h"
#include "proto/loratrf/v1/job_service.pb.h"
#include "proto/loratrf/v1/worker_service.pb.h"
#include "server/artifacts/artifact_store.h"
#include "server/core/core_state.h"
#include "server/core/job_service.h"

namespace loratrf::server::core_internal {

// BeginUpload's checks under mu: the uploader holds its lease and is node 0 of the current
// attempt, the header lists files. Returns the checkpoint to upload, or AlreadyExists when it
// is recorded already (a retried upload).
absl::StatusOr<v1::Checkpoint> PrepareUpload(CoreState& core,
                                             const v1::UploadCheckpointRequest::Header& header);
// BeginUpload's file part, without mu: an upload into the artifact store (replacing files that
// an earlier upload committed but never recorded).
absl::StatusOr<std::unique_ptr<JobServiceCore::CheckpointUpload>> StartUpload(
    const std::shared_ptr<CoreState>& core, v1::Checkpoint checkpoint, const std::string& worker);

// The job's recorded checkpoints (store only; without mu).
absl::StatusOr<v1::ListCheckpointsResponse> ListCheckpoints(CoreState& core,
                                                            const std::string& job_id);
// The checkpoint of `job` to send (`checkpoint_id` empty: the final one, else the latest) and a
// reader of its files. Only the job's owner, or a worker (to resume), may read it. Without mu.
absl::StatusOr<std::pair<v1::Checkpoint, std::unique_ptr<ArtifactStore::Reader>>> OpenCheckpoint(
    CoreState& core, const v1::Job& job, const Caller& caller,
    const v1::DownloadCheckpointRequest& request);

}  // namespace loratrf::server::core_internal
