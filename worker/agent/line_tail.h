// Follows a file that a rank appends lines to, returning each complete line once. A file
// replaced (a new inode) or truncated is read again from its start; a line longer than
// `max_line` is skipped, all of it, rather than waited for. A missing file is not an error: it has no lines
// yet.
//
// Threading: single-threaded.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace loratrf::worker::agent {

class LineTail {
 public:
  LineTail(std::string path, size_t max_line);
  // The complete lines appended since the last call, in file order, without their newlines.
  std::vector<std::string> Poll();

 private:
  std::string path_;
  size_t max_line_;
  ino_t inode_ = 0;
  uint64_t offset_ = 0;    // bytes of the current file consumed
  bool skipping_ = false;  // inside an over-long line, until its newline
};

}  // namespace loratrf::worker::agent
