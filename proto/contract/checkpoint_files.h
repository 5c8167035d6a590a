// The checkpoint file-set rule and the chunk order, shared by everyone that moves checkpoint
// files: the coordinator's artifact store (uploads), the agent (uploads and downloads) and the
// CLI (downloads). Nothing that came from a file or a request becomes a path before it passed
// CheckCheckpointFileSet.
//
//   - A path is relative, '/'-separated components of [A-Za-z0-9._-], no "." or "..", no empty
//     component, at most kMaxCheckpointPathDepth deep and kMaxCheckpointPathBytes long.
//   - A set lists 1 to kMaxCheckpointFiles files, each path once, none both a file and another's
//     directory ("a" and "a/b"), each at most kMaxCheckpointFileBytes, each with a sha256 of 64
//     lower-case hex digits.
//   - Chunks (FileChunk) come in the set's order, each file's at contiguous offsets from 0, none
//     longer than kMaxChunkBytes or past its file's size; an empty file may send no chunk.
//
// Threading: pure functions; a ChunkSequence belongs to one transfer (one thread at a time).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace loratrf::contract {

// One file of a checkpoint, as a header or a manifest lists it.
struct FileEntry {
  std::string path;
  uint64_t size_bytes = 0;
  std::string sha256;  // lower-case hex
};

// The entries of anything with path(), size_bytes() and sha256() (the CheckpointFile messages of
// a v1::Checkpoint), without making this library depend on the messages.
template <typename Files>
std::vector<FileEntry> ToFileEntries(const Files& files) {
  std::vector<FileEntry> entries;
  entries.reserve(static_cast<size_t>(files.size()));
  for (const auto& file : files) entries.push_back({file.path(), file.size_bytes(), file.sha256()});
  return entries;
}

// InvalidArgument "FIELD: 'PATH' RULE" for a path that breaks the rule; the path is quoted with
// control characters and non-ASCII bytes escaped (\x1b), cut at 200 bytes.
absl::Status CheckCheckpointFilePath(absl::string_view field, absl::string_view path);

// InvalidArgument naming `field` ("checkpoint.files") and the entry for a set that breaks the
// rule.
absl::Status CheckCheckpointFileSet(absl::string_view field, const std::vector<FileEntry>& files);

bool IsLowerHexSha256(absl::string_view text);

// Checks chunks against a file set (which passed CheckCheckpointFileSet) as they arrive.
class ChunkSequence {
 public:
  explicit ChunkSequence(std::vector<FileEntry> files);

  // Accepts a chunk of `size` bytes at `offset` of `path` and returns its file's index. Every
  // file before that index is then complete (the caller finishes the ones it has not finished).
  // InvalidArgument naming the rule for a chunk out of order, of an unknown file, too long or
  // past its file's end.
  absl::StatusOr<int> Accept(absl::string_view path, uint64_t offset, size_t size);

  // After the last chunk: InvalidArgument naming the first file that is not complete.
  absl::Status CheckComplete() const;

  const std::vector<FileEntry>& files() const { return files_; }
  uint64_t written(int file) const { return written_[static_cast<size_t>(file)]; }

 private:
  std::vector<FileEntry> files_;
  std::vector<uint64_t> written_;
  int current_ = 0;  // the file chunks go to now; files before it are complete
};

}  // namespace loratrf::contract
