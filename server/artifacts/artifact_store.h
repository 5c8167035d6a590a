// ArtifactStore: checkpoint files under the coordinator's data directory, by server-made names.
//
//   DATA_DIR/artifacts/tmp/UPLOAD_ID/f0, f1, ...     an upload in progress
//   DATA_DIR/artifacts/JOB_ID/CHECKPOINT_ID/f0, ...   a committed checkpoint
//
// No string from a request ever becomes part of a path: job and checkpoint ids are made by the
// coordinator (checked again here), and files are numbered in the order of the checkpoint's file
// list. An upload is verified (every size and sha256) before it is renamed into place, so a
// committed directory is always complete; leftovers in tmp/ are removed at Open. Remove renames
// a committed directory back into tmp/ before deleting it, so a crash mid-removal never leaves
// a half directory under the job either.
//
// Threading: thread-safe. Each Upload and Reader is used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/contract/limits.h"
#include "proto/loratrf/v1/job.pb.h"

namespace loratrf::server {

class ArtifactStore {
 public:
  // One upload: chunks in the file order of the checkpoint, each file's chunks in offset order.
  class Upload {
   public:
    virtual ~Upload() = default;
    // InvalidArgument naming the problem for a chunk out of order, past a file's size, larger
    // than limits::kMaxChunkBytes, or for an unknown path.
    virtual absl::Status Write(const v1::FileChunk& chunk) = 0;
    // Checks that every file is complete and matches its sha256, then moves the files into
    // place. InvalidArgument (naming the file) on a mismatch; the upload is then discarded.
    virtual absl::Status Commit() = 0;
  };

  // Reads a committed checkpoint back as chunks of at most limits::kMaxChunkBytes.
  class Reader {
   public:
    virtual ~Reader() = default;
    // The next chunk, or false after the last one.
    virtual absl::StatusOr<bool> Next(v1::FileChunk& chunk) = 0;
  };

  // Creates DATA_DIR/artifacts if needed and clears abandoned uploads.
  static absl::StatusOr<std::unique_ptr<ArtifactStore>> Open(const std::string& data_dir);
  virtual ~ArtifactStore() = default;

  // `checkpoint` has the coordinator-made id and job_id and the file list (relative paths,
  // sizes, sha256) from the worker's header; paths are validated here (plain components
  // [A-Za-z0-9._-], no "." or "..", at most 8 deep, no duplicates).
  //
  // AlreadyExists when a directory for this checkpoint is already committed (Commit checks
  // again, atomically). The store keeps no records, so that includes an orphan: a directory
  // committed by an upload whose checkpoint record the coordinator never wrote (a crash between
  // the rename and the record). Telling the two apart is the caller's job: the core, finding no
  // record of the checkpoint, calls Remove and then BeginUpload again.
  virtual absl::StatusOr<std::unique_ptr<Upload>> BeginUpload(const v1::Checkpoint& checkpoint) = 0;
  // NotFound when the checkpoint's files are not in the store.
  virtual absl::StatusOr<std::unique_ptr<Reader>> Read(const v1::Checkpoint& checkpoint) = 0;
  // Deletes a committed checkpoint's directory (only `id` and `job_id` are used). It is first
  // renamed into tmp/ (and the job directory fsynced), then deleted there: after a crash the
  // checkpoint is either whole under its job or gone, and a leftover in tmp/ is cleared at the
  // next Open. NotFound when there is no such directory. A Reader already open on it reads on
  // to the end: it holds every file of the checkpoint open from Read on, and the bytes stay on
  // disk until it closes them.
  virtual absl::Status Remove(const v1::Checkpoint& checkpoint) = 0;


  // What the store holds on disk: committed checkpoint directories and the bytes of their files.
  struct Usage {
    int64_t checkpoints = 0;
    uint64_t bytes = 0;
  };
  // Counted by walking the committed directories at Open, then kept by every Commit and Remove,
  // so it is right after a restart without asking the job store. An orphan (a directory whose
  // record was never written) counts until it is removed: it takes the disk space all the same.
  virtual Usage usage() const = 0;

  // The orphan sweep at a coordinator's start: removes every committed directory that names no
  // checkpoint in `recorded` (pairs of job id and checkpoint id), anything else that does not
  // belong under DATA_DIR/artifacts, and job directories left empty. Only while no upload runs:
  // an upload between its commit and its record would look like an orphan. Returns what it
  // removed (directories and their bytes).
  virtual absl::StatusOr<Usage> RemoveUnrecorded(
      const std::set<std::pair<std::string, std::string>>& recorded) = 0;

  // fsck: checks DATA_DIR/artifacts against the committed checkpoint records `recorded`
  // without opening the store (nothing is created, moved or removed). Returns one line per
  // problem, empty when every recorded checkpoint's files are there with their size and sha256
  // and every stored file belongs to a recorded checkpoint (leftovers in tmp/ count as
  // unreferenced). NotFound when DATA_DIR/artifacts is missing while records name files,
  // another error when the directory cannot be read.
  static absl::StatusOr<std::vector<std::string>> Check(
      const std::string& data_dir, const std::vector<v1::Checkpoint>& recorded);
};

}  // namespace loratrf::server
