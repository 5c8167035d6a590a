// Crash-safe checkpoint directories. A checkpoint is a flat directory of files (the adapter or
// full model, the trainer state) plus MANIFEST.json (its schema: proto/contract/manifest.h),
// which lists every file with its size and sha256 and is written last: a checkpoint counts only once its manifest is committed and every
// file matches it, so a crash at any moment leaves the previous checkpoint as the latest.
//
//   <root>/checkpoints/<step>/          committed checkpoints
//   <root>/checkpoints/.partial-<step>-<pid>/   being written (ignored, removed on the next run)
//   <root>/final/                        the end of training, committed the same way
//
// Commit: files written and fsynced in the partial directory → MANIFEST.json written and
// fsynced → directory fsynced → renamed into place → parent fsynced.
//
// Threading: a CheckpointWriter belongs to one thread; the free functions only read (except
// PruneCheckpoints and RemovePartialCheckpoints, which the single writer process calls).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <map>

#include "absl/status/statusor.h"
#include "proto/contract/manifest.h"

namespace loratrf::engine {

// A committed checkpoint: its manifest, and where it was found.
struct CheckpointManifest : contract::Manifest {
  std::string dir;  // not stored
};

class CheckpointWriter {
 public:
  // Starts checkpoint `step` under `checkpoints_dir` (created if needed), or, with `final`, the
  // directory `final_dir` itself. Fails if that checkpoint is already committed.
  static absl::StatusOr<CheckpointWriter> Begin(const std::string& checkpoints_dir, uint64_t step);
  static absl::StatusOr<CheckpointWriter> BeginFinal(const std::string& final_dir, uint64_t step);

  CheckpointWriter(CheckpointWriter&&) noexcept;
  CheckpointWriter& operator=(CheckpointWriter&&) = delete;
  ~CheckpointWriter();  // an uncommitted checkpoint's partial directory is removed

  // Where to write the checkpoint's files (flat; AtomicFileWriter or WriteTensors).
  const std::string& dir() const { return partial_dir_; }

  // Hashes every file, writes the manifest (with `metrics`, e.g. contract::ManifestMetrics of
  // an evaluation), and renames the directory into place. Every file name must pass the
  // checkpoint file-path rule, so that the checkpoint can be uploaded as it is.
  absl::StatusOr<CheckpointManifest> Commit(const std::map<std::string, double>& metrics = {});

 private:
  CheckpointWriter(std::string partial_dir, std::string target_dir, uint64_t step, bool final);
  std::string partial_dir_;
  std::string target_dir_;
  uint64_t step_;
  bool final_;
  bool committed_ = false;
};

// Reads DIR/MANIFEST.json and checks every listed file's size and sha256, and that no other
// file is there. Any difference is an error naming the file.
absl::StatusOr<CheckpointManifest> VerifyCheckpoint(const std::string& dir);

// The committed checkpoints under `checkpoints_dir` that verify, by step (oldest first).
// Directories that do not verify are skipped (and listed in `rejected` when given).
std::vector<CheckpointManifest> ListCheckpoints(const std::string& checkpoints_dir,
                                                std::vector<std::string>* rejected = nullptr);

// Deletes committed checkpoints beyond the newest `keep_last`, except the best one by
// `metric` (higher is better when `higher_is_better`) when it is given.
absl::Status PruneCheckpoints(const std::string& checkpoints_dir, uint32_t keep_last,
                              const std::string& metric = "", bool higher_is_better = true);

// Removes partial directories a crashed run left behind.
void RemovePartialCheckpoints(const std::string& checkpoints_dir);

}  // namespace loratrf::engine
