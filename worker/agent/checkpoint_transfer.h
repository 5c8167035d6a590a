// Moving checkpoints between a worker's output directory and the coordinator
// (docs/control-plane.md, "Checkpoints"): uploads of committed checkpoint directories (their
// MANIFEST.json lists every file's size and sha256) and downloads of the checkpoint an attempt
// resumes from. Both send a header (every file's relative path, size and sha256) and then each
// file's bytes as FileChunks of at most 1 MiB, in the header's order.
//
// A download lands in a fresh temp directory, every file checked against its size and sha256
// and fsynced; the caller renames the directory into place, so a checkpoint directory is either
// complete or absent.
//
// Threading: free functions; each call runs on the calling thread and can be cancelled from
// another through its CallCanceller.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/agent/agent_metrics.h"
#include "worker/agent/coordinator_link.h"
#include "proto/loratrf/v1/job.pb.h"

namespace loratrf::worker::agent {

// A committed checkpoint directory as its manifest describes it.
struct LocalCheckpoint {
  std::string dir;
  uint64_t step = 0;
  bool final = false;
  std::vector<v1::CheckpointFile> files;  // the manifest's files, then MANIFEST.json itself
  std::optional<v1::EvalMetrics> eval;    // from the manifest's metrics, when it has them
};

// Reads DIR/MANIFEST.json (proto/contract/manifest.h). NotFound when there is none yet,
// DataLoss naming the file when it is not a manifest.
absl::StatusOr<LocalCheckpoint> ReadLocalCheckpoint(const std::string& dir);

// Uploads `checkpoint` for the attempt. Each file is hashed again as it is sent; a file that
// changed since its manifest was written aborts the upload (DATA_LOSS) before the coordinator
// commits anything. FAILED_PRECONDITION after the lease was checked means the attempt is stale.
absl::StatusOr<v1::Checkpoint> UploadCheckpoint(CoordinatorLink& link, const std::string& job_id,
                                                uint32_t attempt, const LocalCheckpoint& checkpoint,
                                                CallCanceller& canceller, AgentMetrics& metrics);

// Downloads checkpoint `checkpoint_id` of `job_id` into `temp_dir` (removed first, then made).
// Returns the checkpoint the coordinator described.
absl::StatusOr<v1::Checkpoint> DownloadCheckpoint(CoordinatorLink& link, const std::string& job_id,
                                                  const std::string& checkpoint_id,
                                                  const std::string& temp_dir,
                                                  CallCanceller& canceller, AgentMetrics& metrics);

}  // namespace loratrf::worker::agent
