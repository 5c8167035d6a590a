#include "proto/contract/checkpoint_files.h"

#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proto/contract/limits.h"

namespace loratrf::contract {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", rule));
}

bool IsPlainChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == '-';
}

}  // namespace

bool IsLowerHexSha256(absl::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

absl::Status CheckCheckpointFilePath(absl::string_view field, absl::string_view path) {
  // The path is quoted with control characters and non-ASCII bytes escaped: it came from a file
  // or a request, and must not move a terminal's cursor.
  auto invalid = [&](absl::string_view rule) {
    return Invalid(field, absl::StrCat("'", absl::CHexEscape(path.substr(0, 200)),
                                       path.size() > 200 ? "...' " : "' ", rule));
  };
  if (path.empty()) return Invalid(field, "empty");
  if (path.size() > limits::kMaxCheckpointPathBytes) {
    return invalid(absl::StrCat("is longer than ", limits::kMaxCheckpointPathBytes, " bytes"));
  }
  if (path.front() == '/') return invalid("must be relative, not absolute");
  std::vector<absl::string_view> parts = absl::StrSplit(path, '/');
  if (static_cast<int>(parts.size()) > limits::kMaxCheckpointPathDepth) {
    return invalid(absl::StrCat("is more than ", limits::kMaxCheckpointPathDepth,
                                " components deep"));
  }
  for (absl::string_view part : parts) {
    if (part.empty()) return invalid("must not have empty components ('//' or a trailing '/')");
    if (part == "." || part == "..") return invalid("must not have '.' or '..' components");
    if (part.size() > limits::kMaxPathComponentBytes) {
      return invalid(absl::StrCat("has a component longer than ", limits::kMaxPathComponentBytes,
                                  " bytes"));
    }
    for (char c : part) {
      if (!IsPlainChar(c)) return invalid("may contain only [A-Za-z0-9._-] and '/'");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckCheckpointFileSet(absl::string_view field, const std::vector<FileEntry>& files) {
  if (files.empty()) return Invalid(field, "a checkpoint needs at least one file");
  if (files.size() > static_cast<size_t>(limits::kMaxCheckpointFiles)) {
    return Invalid(field, absl::StrCat(files.size(), " files, at most ",
                                       limits::kMaxCheckpointFiles, " allowed"));
  }
  std::set<absl::string_view> paths;
  for (size_t i = 0; i < files.size(); ++i) {
    const FileEntry& file = files[i];
    const std::string entry = absl::StrCat(field, "[", i, "]");
    if (absl::Status s = CheckCheckpointFilePath(entry + ".path", file.path); !s.ok()) return s;
    if (!paths.insert(file.path).second) {
      return Invalid(entry + ".path", absl::StrCat("'", file.path, "' is listed twice"));
    }
    if (file.size_bytes > limits::kMaxCheckpointFileBytes) {
      return Invalid(entry + ".size_bytes", absl::StrCat(file.size_bytes, " is more than the limit of ",
                                                         limits::kMaxCheckpointFileBytes));
    }
    if (!IsLowerHexSha256(file.sha256)) {
      return Invalid(entry + ".sha256", "must be 64 lower-case hex characters");
    }
  }
  // In sorted order a directory's files follow it directly: "a" < "a/b" < "a0".
  for (auto it = paths.begin(); it != paths.end(); ++it) {
    auto next = std::next(it);
    if (next != paths.end() && next->size() > it->size() && next->substr(0, it->size()) == *it &&
        (*next)[it->size()] == '/') {
      return Invalid(field, absl::StrCat("'", *it, "' is both a file and a directory"));
    }
  }
  return absl::OkStatus();
}

ChunkSequence::ChunkSequence(std::vector<FileEntry> files)
    : files_(std::move(files)), written_(files_.size(), 0) {}

absl::StatusOr<int> ChunkSequence::Accept(absl::string_view path, uint64_t offset, size_t size) {
  const std::string field = absl::StrCat("chunk of '", path.substr(0, 256), "'");
  if (size > limits::kMaxChunkBytes) {
    return Invalid(field, absl::StrCat(size, " bytes, more than the chunk limit of ",
                                       limits::kMaxChunkBytes));
  }
  int index = current_;
  while (index < static_cast<int>(files_.size()) && files_[index].path != path) ++index;
  if (index == static_cast<int>(files_.size())) {
    for (int i = 0; i < current_; ++i) {
      if (files_[i].path == path) {
        return Invalid(field, "out of order (that file was already finished)");
      }
    }
    return Invalid(field, "not a file of this checkpoint");
  }
  // Moving on to a later file: every file before it must be complete.
  for (int i = current_; i < index; ++i) {
    if (written_[i] != files_[i].size_bytes) {
      return Invalid(field, absl::StrCat("out of order ('", files_[i].path, "' has ", written_[i],
                                         " of ", files_[i].size_bytes, " bytes)"));
    }
  }
  current_ = index;
  uint64_t& written = written_[index];
  if (offset != written) {
    return Invalid(field, absl::StrCat("offset ", offset, " is out of order (expected ", written,
                                       ")"));
  }
  if (size > files_[index].size_bytes - written) {
    return Invalid(field, absl::StrCat("bytes ", offset, "..", offset + size,
                                       " go past the file's size of ", files_[index].size_bytes));
  }
  written += size;
  return index;
}

absl::Status ChunkSequence::CheckComplete() const {
  for (size_t i = 0; i < files_.size(); ++i) {
    if (written_[i] != files_[i].size_bytes) {
      return Invalid(absl::StrCat("checkpoint file '", files_[i].path, "'"),
                     absl::StrCat("incomplete: ", written_[i], " of ", files_[i].size_bytes,
                                  " bytes arrived"));
    }
  }
  return absl::OkStatus();
}

}  // namespace loratrf::contract
