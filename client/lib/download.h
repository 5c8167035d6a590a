// Writing a downloaded checkpoint: the files arrive as FileChunks (docs/control-plane.md,
// "Checkpoints") and land in a fresh temp directory next to the output directory; only when
// every file has its declared size and sha256 is the temp directory renamed to the output
// (which must not exist). Nothing the server sends becomes a path before ValidateCheckpointFiles
// accepted it. A download that fails leaves nothing behind.
//
// Threading: single-threaded; one instance per download.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/sha256.h"
#include "proto/contract/checkpoint_files.h"
#include "proto/loratrf/v1/job.pb.h"

namespace loratrf::client {

class CheckpointDownload {
 public:
  // Checks `output_dir` (must not exist; its parent must be a directory) and creates the temp
  // directory `.NAME.tmp-PID-RANDOM` beside it. InvalidArgument for a bad `output_dir` (the
  // user's input); other codes for I/O errors.
  static absl::StatusOr<std::unique_ptr<CheckpointDownload>> Create(const std::string& output_dir);
  // Removes the temp directory unless Finish() succeeded.
  ~CheckpointDownload();
  CheckpointDownload(const CheckpointDownload&) = delete;
  CheckpointDownload& operator=(const CheckpointDownload&) = delete;

  // The checkpoint header (first message). DataLoss when its file list is unsafe.
  absl::Status Begin(const v1::Checkpoint& checkpoint);
  // The next chunk: files in the header's order, each file's chunks in offset order without
  // gaps or overlap. DataLoss on anything else.
  absl::Status Write(const v1::FileChunk& chunk);
  // Checks that every file is complete with its sha256, fsyncs, renames the temp directory to
  // the output directory (never over an existing one) and fsyncs its parent.
  absl::Status Finish();

  const std::string& output_dir() const { return output_dir_; }
  const std::string& temp_dir() const { return temp_dir_; }
  uint64_t bytes_written() const { return bytes_written_; }

 private:
  CheckpointDownload(std::string output_dir, std::string temp_dir)
      : output_dir_(std::move(output_dir)), temp_dir_(std::move(temp_dir)) {}
  absl::Status OpenCurrent();
  absl::Status CloseCurrent();  // verifies size and sha256 of the current file, moves on

  const std::string output_dir_;
  const std::string temp_dir_;
  v1::Checkpoint checkpoint_;
  bool begun_ = false;
  bool finished_ = false;
  int current_ = 0;        // index of the file being written
  int fd_ = -1;            // open file of `current_`, -1 when none
  std::optional<contract::ChunkSequence> chunks_;  // set by Begin
  std::unique_ptr<Sha256> hash_;
  uint64_t bytes_written_ = 0;
};

}  // namespace loratrf::client
