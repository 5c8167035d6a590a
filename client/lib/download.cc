#include "client/lib/download.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "client/lib/format.h"

namespace loratrf::client {
namespace {

namespace fs = std::filesystem;

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(path, ": ", what, ": ", std::strerror(errno)));
}

absl::Status Corrupt(absl::string_view message) { return absl::DataLossError(message); }

}  // namespace

absl::StatusOr<std::unique_ptr<CheckpointDownload>> CheckpointDownload::Create(
    const std::string& output_dir) {
  if (output_dir.empty()) return absl::InvalidArgumentError("--output: must not be empty");
  fs::path out = fs::path(output_dir).lexically_normal();
  if (out.filename().empty()) out = out.parent_path();  // "dir/" → "dir"
  if (out.empty() || out.filename() == "." || out.filename() == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("--output ", output_dir, ": name a new directory"));
  }
  struct stat info {};
  if (::lstat(out.c_str(), &info) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--output ", output_dir, ": already exists (name a new directory)"));
  }
  fs::path parent = out.parent_path();
  if (parent.empty()) parent = ".";
  if (::stat(parent.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("--output ", output_dir, ": parent directory ",
                                                   parent.string(), " does not exist"));
  }
  std::random_device random;
  fs::path temp = parent / absl::StrCat(".", out.filename().string(), ".tmp-", ::getpid(), "-",
                                        random() % 1000000);
  if (::mkdir(temp.c_str(), 0755) != 0) {
    if (errno == EACCES || errno == EROFS) {
      return absl::InvalidArgumentError(absl::StrCat("--output ", output_dir, ": cannot create ",
                                                     temp.string(), ": ", std::strerror(errno)));
    }
    return ErrnoError("cannot create the temp directory", temp.string());
  }
  return std::unique_ptr<CheckpointDownload>(new CheckpointDownload(out.string(), temp.string()));
}

CheckpointDownload::~CheckpointDownload() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) {
    std::error_code ignored;
    fs::remove_all(temp_dir_, ignored);
  }
}

absl::Status CheckpointDownload::Begin(const v1::Checkpoint& checkpoint) {
  if (begun_) return Corrupt("the server sent the checkpoint header twice");
  std::vector<contract::FileEntry> files = contract::ToFileEntries(checkpoint.files());
  if (absl::Status s = contract::CheckCheckpointFileSet("checkpoint.files", files); !s.ok()) {
    return Corrupt(absl::StrCat("the server sent an unsafe file list: ", s.message()));
  }
  checkpoint_ = checkpoint;
  chunks_.emplace(std::move(files));
  begun_ = true;
  return absl::OkStatus();
}

absl::Status CheckpointDownload::OpenCurrent() {
  const v1::CheckpointFile& file = checkpoint_.files(current_);
  fs::path path = fs::path(temp_dir_) / file.path();
  std::error_code error;
  fs::create_directories(path.parent_path(), error);
  if (error) {
    return absl::InternalError(
        absl::StrCat(path.parent_path().string(), ": cannot create: ", error.message()));
  }
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd_ < 0) return ErrnoError("cannot create", path.string());
  hash_ = std::make_unique<Sha256>();
  return absl::OkStatus();
}

absl::Status CheckpointDownload::CloseCurrent() {
  const v1::CheckpointFile& file = checkpoint_.files(current_);
  if (fd_ < 0) RETURN_IF_ERROR(OpenCurrent());  // an empty file gets no chunks
  if (chunks_->written(current_) != file.size_bytes()) {
    return Corrupt(absl::StrCat("checkpoint file '", file.path(), "': got ",
                                chunks_->written(current_), " bytes, expected ", file.size_bytes()));
  }
  std::string digest = hash_->HexDigest();
  if (digest != file.sha256()) {
    return Corrupt(absl::StrCat("checkpoint file '", file.path(), "': sha256 ", digest,
                                " does not match ", file.sha256()));
  }
  std::string path = (fs::path(temp_dir_) / file.path()).string();
  if (::fsync(fd_) != 0) return ErrnoError("fsync", path);
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return ErrnoError("close", path);
  ++current_;
  return absl::OkStatus();
}

absl::Status CheckpointDownload::Write(const v1::FileChunk& chunk) {
  if (!begun_) return Corrupt("the server sent file bytes before the checkpoint header");
  absl::StatusOr<int> target =
      chunks_->Accept(chunk.path(), chunk.offset(), chunk.data().size());
  if (!target.ok()) {
    return Corrupt(absl::StrCat("the server sent a bad chunk: ", target.status().message()));
  }
  // Files before the one this chunk is for are complete (empty files send no chunks).
  while (current_ < *target) RETURN_IF_ERROR(CloseCurrent());
  const v1::CheckpointFile& file = checkpoint_.files(current_);
  if (fd_ < 0) RETURN_IF_ERROR(OpenCurrent());
  const char* data = chunk.data().data();
  size_t left = chunk.data().size();
  while (left > 0) {
    ssize_t n = ::write(fd_, data, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("write", (fs::path(temp_dir_) / file.path()).string());
    data += n;
    left -= static_cast<size_t>(n);
  }
  hash_->Update(chunk.data());
  bytes_written_ += chunk.data().size();
  return absl::OkStatus();
}

absl::Status CheckpointDownload::Finish() {
  if (!begun_) return Corrupt("the server sent no checkpoint header");
  while (current_ < checkpoint_.files_size()) RETURN_IF_ERROR(CloseCurrent());
  // Directories made along the way, then the temp directory itself, then the rename.
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(temp_dir_, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (it->is_directory()) RETURN_IF_ERROR(FsyncDirectory(it->path().string()));
  }
  if (error) return absl::InternalError(absl::StrCat(temp_dir_, ": ", error.message()));
  RETURN_IF_ERROR(FsyncDirectory(temp_dir_));
  if (::renameat2(AT_FDCWD, temp_dir_.c_str(), AT_FDCWD, output_dir_.c_str(), RENAME_NOREPLACE) !=
      0) {
    if (errno == EEXIST || errno == ENOTEMPTY) {
      return absl::InvalidArgumentError(
          absl::StrCat("--output ", output_dir_, ": appeared while downloading; left as it was"));
    }
    if (errno != EINVAL && errno != ENOSYS) {
      return ErrnoError(absl::StrCat("cannot rename to ", output_dir_), temp_dir_);
    }
    // A file system without RENAME_NOREPLACE: check, then rename (a narrow race).
    struct stat info {};
    if (::lstat(output_dir_.c_str(), &info) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--output ", output_dir_, ": appeared while downloading; left as it was"));
    }
    if (::rename(temp_dir_.c_str(), output_dir_.c_str()) != 0) {
      return ErrnoError(absl::StrCat("cannot rename to ", output_dir_), temp_dir_);
    }
  }
  finished_ = true;
  fs::path parent = fs::path(output_dir_).parent_path();
  return FsyncDirectory(parent.empty() ? "." : parent.string());
}

}  // namespace loratrf::client
