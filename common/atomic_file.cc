#include "common/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"

namespace loratrf {
namespace {

// Leaves room for the ".tmp-<pid>-<16 hex>" suffix within NAME_MAX (255) for long names.
constexpr size_t kMaxTempStem = 200;
constexpr int kMaxCreateAttempts = 64;

uint64_t RandomSuffix() {
  uint64_t value = 0;
  if (::getrandom(&value, sizeof(value), GRND_NONBLOCK) == static_cast<ssize_t>(sizeof(value))) {
    return value;
  }
  // No entropy yet (early boot): uniqueness, not secrecy, is what matters, and O_EXCL retries.
  static std::atomic<uint64_t> counter{0};
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return (static_cast<uint64_t>(now.tv_sec) * 1000000007ULL) ^
         static_cast<uint64_t>(now.tv_nsec) ^ (counter.fetch_add(1) << 48);
}

int CloseNoIntr(int fd) {
  // Linux releases the descriptor even when close() reports EINTR, so never retry it.
  return ::close(fd);
}

}  // namespace

absl::StatusOr<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Open(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("atomic write: empty file path");
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a file path"));
  }
  std::string prefix = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  std::string stem = name.substr(0, std::min(name.size(), kMaxTempStem));
  for (int attempt = 0;; ++attempt) {
    std::string temp_path =
        absl::StrCat(prefix, ".", stem, ".tmp-", ::getpid(), "-",
                     absl::Hex(RandomSuffix(), absl::kZeroPad16));
    int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    int error = errno;
    if (fd >= 0) {
      return std::unique_ptr<AtomicFileWriter>(
          new AtomicFileWriter(path, std::move(dir), std::move(temp_path), fd));
    }
    if (error != EEXIST || attempt + 1 >= kMaxCreateAttempts) {
      return absl::ErrnoToStatus(
          error, absl::StrCat("cannot create a temp file for ", path, " (", temp_path, ")"));
    }
  }
}

AtomicFileWriter::AtomicFileWriter(std::string path, std::string dir, std::string temp_path,
                                   int fd)
    : path_(std::move(path)), dir_(std::move(dir)), temp_path_(std::move(temp_path)), fd_(fd) {}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) CloseNoIntr(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

absl::Status AtomicFileWriter::Fail(absl::Status status) {
  failed_ = true;
  return status;
}

absl::Status AtomicFileWriter::Write(absl::string_view bytes) {
  if (committed_ || fd_ < 0) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": write after commit"));
  }
  if (failed_) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": write after an earlier error"));
  }
  const char* data = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    // Linux caps a single write at ~2 GiB anyway; a bounded chunk keeps the arithmetic simple.
    size_t chunk = std::min<size_t>(left, size_t{1} << 30);
    ssize_t written = ::write(fd_, data, chunk);
    int error = errno;
    if (written < 0) {
      if (error == EINTR) continue;
      return Fail(absl::ErrnoToStatus(error, absl::StrCat("cannot write ", path_)));
    }
    if (written == 0) {
      return Fail(absl::DataLossError(
          absl::StrCat("cannot write ", path_, ": no progress")));
    }
    data += written;
    left -= static_cast<size_t>(written);
  }
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Commit() {
  if (committed_) return absl::FailedPreconditionError(absl::StrCat(path_, ": already committed"));
  if (failed_) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": not committed because an earlier write failed"));
  }
  int rc;
  do {
    rc = ::fsync(fd_);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int error = errno;
    // A failed fsync may have dropped the dirty pages; retrying could "succeed" on lost data.
    return Fail(absl::ErrnoToStatus(error, absl::StrCat("cannot fsync ", path_)));
  }
  int fd = fd_;
  fd_ = -1;
  if (CloseNoIntr(fd) != 0 && errno != EINTR) {
    int error = errno;
    return Fail(absl::ErrnoToStatus(error, absl::StrCat("cannot close ", path_)));
  }
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    int error = errno;
    return Fail(absl::ErrnoToStatus(error,
                                    absl::StrCat("cannot rename ", temp_path_, " to ", path_)));
  }
  committed_ = true;
  absl::Status synced = FsyncDirectory(dir_);
  if (!synced.ok()) {
    return absl::Status(synced.code(), absl::StrCat(path_, " was replaced but may not survive a "
                                                           "crash: ",
                                                    synced.message()));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view bytes) {
  absl::StatusOr<std::unique_ptr<AtomicFileWriter>> writer = AtomicFileWriter::Open(path);
  if (!writer.ok()) return writer.status();
  absl::Status status = (*writer)->Write(bytes);
  if (!status.ok()) return status;
  return (*writer)->Commit();
}

absl::Status FsyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int error = errno;
    return absl::ErrnoToStatus(error, absl::StrCat("cannot open directory ", dir));
  }
  int rc;
  do {
    rc = ::fsync(fd);
  } while (rc != 0 && errno == EINTR);
  int saved_errno = errno;
  CloseNoIntr(fd);
  if (rc != 0) {
    return absl::ErrnoToStatus(saved_errno, absl::StrCat("cannot fsync directory ", dir));
  }
  return absl::OkStatus();
}

}  // namespace loratrf
