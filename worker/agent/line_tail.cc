#include "worker/agent/line_tail.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace loratrf::worker::agent {
namespace {

// At most this much is read per poll; the rest comes on the next one.
constexpr size_t kMaxReadPerPoll = 4 << 20;

}  // namespace

LineTail::LineTail(std::string path, size_t max_line)
    : path_(std::move(path)), max_line_(max_line) {}

std::vector<std::string> LineTail::Poll() {
  std::vector<std::string> lines;
  int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return lines;
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    return lines;
  }
  if (info.st_ino != inode_ || static_cast<uint64_t>(info.st_size) < offset_) {
    inode_ = info.st_ino;  // replaced or truncated: read it again from the start
    offset_ = 0;
    skipping_ = false;
  }
  std::string data;
  while (data.size() < kMaxReadPerPoll) {
    char buffer[64 << 10];
    ssize_t n = ::pread(fd, buffer, sizeof buffer, static_cast<off_t>(offset_ + data.size()));
    if (n <= 0) break;
    data.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  size_t start = 0;
  while (true) {
    size_t newline = data.find('\n', start);
    if (newline == std::string::npos) {
      // An over-long line is dropped as it comes, not waited for; the rest of it, when it
      // arrives, is dropped too (it is not a line of its own).
      if (data.size() - start > max_line_) {
        start = data.size();
        skipping_ = true;
      }
      break;
    }
    if (!skipping_ && newline - start <= max_line_) {
      lines.push_back(data.substr(start, newline - start));
    }
    skipping_ = false;
    start = newline + 1;
  }
  offset_ += start;
  return lines;
}

}  // namespace loratrf::worker::agent
