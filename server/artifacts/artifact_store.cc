// ArtifactStore on the local file system (see artifact_store.h for the layout and the rules).
//
// An upload writes DATA_DIR/artifacts/tmp/uNNN-PID-RANDOM/f0, f1, ... while it hashes the bytes
// it is given, so Commit() needs no second read: it checks that every file is complete and its
// digest matches, fsyncs the files and the directory, then renames the directory into
// DATA_DIR/artifacts/JOB_ID/CHECKPOINT_ID (RENAME_NOREPLACE: a committed checkpoint is never
// overwritten) and fsyncs the parent, so a checkpoint is either fully there or not at all
// (docs/architecture.md, convention 9).
//
// Remove renames the committed directory into tmp/ (so the job never holds a half-deleted
// checkpoint), fsyncs the job directory, then deletes it there.
//
// A zero-byte file has no chunks on upload (one empty chunk at offset 0 is accepted too); a
// Reader sends one empty chunk for it, so that every file of a checkpoint appears in a download.
#include "server/artifacts/artifact_store.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/crash_point.h"
#include "common/sha256.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "proto/contract/checkpoint_files.h"
#include "proto/contract/limits.h"
#include "proto/contract/names.h"

namespace loratrf::server {
namespace {

namespace fs = std::filesystem;

absl::Status ErrnoError(int error, const std::string& what) {
  return absl::ErrnoToStatus(error, what);
}

void CloseNoIntr(int fd) {
  // On Linux the descriptor is released even when close() reports EINTR; never retry.
  (void)::close(fd);
}

// Job and checkpoint ids are made by the coordinator; they are checked again because they
// become directory names (and "tmp" is where uploads land).
absl::Status CheckId(const std::string& field, const std::string& id) {
  RETURN_IF_ERROR(contract::CheckId(field, id));
  if (id == "tmp") return absl::InvalidArgumentError(absl::StrCat(field, ": not a coordinator-made id"));
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, absl::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("cannot write ", path));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status FsyncFd(int fd, const std::string& path) {
  int rc;
  do {
    rc = ::fsync(fd);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return ErrnoError(errno, absl::StrCat("cannot fsync ", path));
  return absl::OkStatus();
}

// mkdir that tolerates an existing directory; fsyncs the parent when it made a new one.
absl::Status MakeDirDurable(const std::string& dir, const std::string& parent) {
  if (::mkdir(dir.c_str(), 0755) == 0) return FsyncDirectory(parent);
  if (errno == EEXIST) {
    struct stat st;
    if (::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(dir, ": exists and is not a directory"));
  }
  return ErrnoError(errno, absl::StrCat("cannot create directory ", dir));
}

std::string FileName(int index) { return absl::StrCat("f", index); }

// The bytes of the regular files under `dir` (a committed checkpoint's directory). What cannot
// be read counts as nothing: the figure is for a gauge, not for a decision.
uint64_t DirBytes(const std::string& dir) {
  uint64_t bytes = 0;
  std::error_code error;
  for (fs::recursive_directory_iterator it(dir, error), end; !error && it != end;
       it.increment(error)) {
    std::error_code size_error;
    if (it->is_regular_file(size_error)) {
      uintmax_t size = it->file_size(size_error);
      if (!size_error) bytes += size;
    }
  }
  return bytes;
}

// ArtifactStore::usage(), shared by the store and the uploads it hands out (which commit on
// their own).
class UsageCounter {
 public:
  void Add(int64_t checkpoints, int64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    usage_.checkpoints += checkpoints;
    usage_.bytes = static_cast<uint64_t>(static_cast<int64_t>(usage_.bytes) + bytes);
  }
  ArtifactStore::Usage Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return usage_;
  }

 private:
  mutable std::mutex mu_;
  ArtifactStore::Usage usage_;  // guarded by mu_
};

// ---------------------------------------------------------------------------------------------

class FsUpload final : public ArtifactStore::Upload {
 public:
  FsUpload(v1::Checkpoint checkpoint, std::string tmp_dir, std::string job_dir,
           std::string final_dir, std::string artifacts_dir, std::shared_ptr<UsageCounter> usage)
      : checkpoint_(std::move(checkpoint)),
        tmp_dir_(std::move(tmp_dir)),
        job_dir_(std::move(job_dir)),
        final_dir_(std::move(final_dir)),
        artifacts_dir_(std::move(artifacts_dir)),
        usage_(std::move(usage)),
        chunks_(contract::ToFileEntries(checkpoint_.files())) {
    files_.resize(static_cast<size_t>(checkpoint_.files_size()));
  }

  ~FsUpload() override {
    CloseCurrent();
    if (!committed_) Discard();
  }

  absl::Status Write(const v1::FileChunk& chunk) override {
    if (spent_) return absl::FailedPreconditionError("upload: already committed or failed");
    absl::Status status = WriteChunk(chunk);
    if (!status.ok()) Fail();
    return status;
  }

  absl::Status Commit() override {
    if (spent_) return absl::FailedPreconditionError("upload: already committed or failed");
    absl::Status status = CommitFiles();
    if (!status.ok()) {
      Fail();
      return status;
    }
    committed_ = true;
    spent_ = true;
    return absl::OkStatus();
  }

 private:
  struct FileState {
    bool opened = false;
    std::string sha256;  // set once the file is complete
    std::unique_ptr<Sha256> hasher;
  };

  std::string FilePath(int index) const { return tmp_dir_ + "/" + FileName(index); }
  const v1::CheckpointFile& Spec(int index) const { return checkpoint_.files(index); }

  absl::Status WriteChunk(const v1::FileChunk& chunk) {
    ASSIGN_OR_RETURN(int index, chunks_.Accept(chunk.path(), chunk.offset(), chunk.data().size()));
    // Moving on to a later file: every file before it is complete.
    for (int i = current_; i < index; ++i) RETURN_IF_ERROR(FinishFile(i));
    current_ = index;
    RETURN_IF_ERROR(OpenFile(index));
    RETURN_IF_ERROR(WriteAll(fd_, chunk.data(), FilePath(index)));
    files_[index].hasher->Update(chunk.data());
    return absl::OkStatus();
  }

  absl::Status OpenFile(int index) {
    FileState& file = files_[index];
    if (file.opened) return absl::OkStatus();
    CloseCurrent();
    std::string path = FilePath(index);
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) return ErrnoError(errno, absl::StrCat("cannot create ", path));
    fd_index_ = index;
    file.opened = true;
    file.hasher = std::make_unique<Sha256>();
    return absl::OkStatus();
  }

  // Completes file `index`: creates it if it never got a chunk (a zero-byte file), fsyncs and
  // closes it, and checks its digest.
  absl::Status FinishFile(int index) {
    FileState& file = files_[index];
    if (!file.sha256.empty()) return absl::OkStatus();
    RETURN_IF_ERROR(OpenFile(index));
    RETURN_IF_ERROR(FsyncFd(fd_, FilePath(index)));
    CloseCurrent();
    file.sha256 = file.hasher->HexDigest();
    if (file.sha256 != Spec(index).sha256()) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint file '", Spec(index).path(),
                                                     "': sha256 ", file.sha256,
                                                     " does not match the header's ",
                                                     Spec(index).sha256()));
    }
    return absl::OkStatus();
  }

  absl::Status CommitFiles() {
    RETURN_IF_ERROR(chunks_.CheckComplete());
    for (int i = 0; i < static_cast<int>(files_.size()); ++i) RETURN_IF_ERROR(FinishFile(i));
    RETURN_IF_ERROR(FsyncDirectory(tmp_dir_));
    RETURN_IF_ERROR(MakeDirDurable(job_dir_, artifacts_dir_));
    if (::renameat2(AT_FDCWD, tmp_dir_.c_str(), AT_FDCWD, final_dir_.c_str(),
                    RENAME_NOREPLACE) != 0) {
      int error = errno;
      if (error == EEXIST || error == ENOTEMPTY) {
        return absl::AlreadyExistsError(absl::StrCat("checkpoint ", checkpoint_.id(), " of job ",
                                                     checkpoint_.job_id(),
                                                     " is already committed"));
      }
      return ErrnoError(error, absl::StrCat("cannot rename ", tmp_dir_, " to ", final_dir_));
    }
    // Counted from the rename on: from then on the files are under the job, held.
    uint64_t bytes = 0;
    for (const v1::CheckpointFile& file : checkpoint_.files()) bytes += file.size_bytes();
    usage_->Add(1, static_cast<int64_t>(bytes));
    // The rename is what commits; its durability needs the new parent (and the old one, so
    // the upload does not reappear in tmp/ after a crash) synced.
    RETURN_IF_ERROR(FsyncDirectory(job_dir_));
    LogIfError(FsyncDirectory(fs::path(tmp_dir_).parent_path().string()),
               "syncing the artifacts' tmp directory after a commit");
    return absl::OkStatus();
  }

  void CloseCurrent() {
    if (fd_ >= 0) {
      CloseNoIntr(fd_);
      fd_ = -1;
      fd_index_ = -1;
    }
  }

  void Fail() {
    spent_ = true;
    CloseCurrent();
    Discard();
  }

  void Discard() {
    std::error_code ignored;
    fs::remove_all(tmp_dir_, ignored);
  }

  const v1::Checkpoint checkpoint_;
  const std::string tmp_dir_;
  const std::string job_dir_;
  const std::string final_dir_;
  const std::string artifacts_dir_;
  const std::shared_ptr<UsageCounter> usage_;
  contract::ChunkSequence chunks_;  // the order and sizes of the chunks
  std::vector<FileState> files_;
  int current_ = 0;     // the file chunks are arriving for; earlier ones are finished
  int fd_ = -1;         // the open file, if any
  int fd_index_ = -1;
  bool spent_ = false;  // committed or failed: no more calls
  bool committed_ = false;
};

// ---------------------------------------------------------------------------------------------

// Opens every file of the checkpoint when it is made (Open), so that a Remove of the checkpoint
// while a download runs (retention, DeleteJob) cannot break it: the open descriptors keep the
// bytes until the reader closes them.
class FsReader final : public ArtifactStore::Reader {
 public:
  FsReader(v1::Checkpoint checkpoint, std::string dir)
      : checkpoint_(std::move(checkpoint)), dir_(std::move(dir)), buffer_(limits::kMaxChunkBytes) {}
  ~FsReader() override {
    Close();
    for (int& fd : fds_) {
      if (fd >= 0) CloseNoIntr(fd);
      fd = -1;
    }
  }

  // Opens every file; NotFound naming the first one missing.
  absl::Status Open() {
    fds_.assign(static_cast<size_t>(checkpoint_.files_size()), -1);
    for (int i = 0; i < checkpoint_.files_size(); ++i) {
      std::string path = dir_ + "/" + FileName(i);
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        int error = errno;
        if (error == ENOENT) {
          return absl::NotFoundError(absl::StrCat("checkpoint ", checkpoint_.id(), " of job ",
                                                  checkpoint_.job_id(), ": file '",
                                                  checkpoint_.files(i).path(),
                                                  "' is missing from the artifact store"));
        }
        return ErrnoError(error, absl::StrCat("cannot open ", path));
      }
      fds_[static_cast<size_t>(i)] = fd;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<bool> Next(v1::FileChunk& chunk) override {
    if (!error_.ok()) return error_;
    absl::StatusOr<bool> result = NextChunk(chunk);
    if (!result.ok()) {
      error_ = result.status();
      Close();
    }
    return result;
  }

 private:
  absl::StatusOr<bool> NextChunk(v1::FileChunk& chunk) {
    if (index_ >= checkpoint_.files_size()) return false;
    const v1::CheckpointFile& spec = checkpoint_.files(index_);
    std::string path = dir_ + "/" + FileName(index_);
    if (fd_ < 0) {
      fd_ = fds_[static_cast<size_t>(index_)];  // handed over: Close() closes it
      fds_[static_cast<size_t>(index_)] = -1;
      if (fd_ < 0) return absl::InternalError(absl::StrCat("cannot read ", path, " twice"));
      offset_ = 0;
      hasher_ = std::make_unique<Sha256>();
    }
    uint64_t left = spec.size_bytes() - std::min(offset_, spec.size_bytes());
    size_t want = static_cast<size_t>(std::min<uint64_t>(limits::kMaxChunkBytes, left));
    size_t got = 0;
    while (got < want) {
      ssize_t n = ::read(fd_, buffer_.data() + got, want - got);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError(errno, absl::StrCat("cannot read ", path));
      }
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    if (got < want) {
      return absl::DataLossError(absl::StrCat("checkpoint file '", spec.path(),
                                              "' is shorter on disk than its recorded size"));
    }
    absl::string_view bytes(buffer_.data(), got);
    hasher_->Update(bytes);
    chunk.set_path(spec.path());
    chunk.set_offset(offset_);
    chunk.set_data(bytes.data(), bytes.size());
    offset_ += got;
    if (offset_ == spec.size_bytes()) {
      // Last chunk of the file: a digest that changed on disk is reported instead of sent.
      char extra;
      ssize_t n;
      do {
        n = ::read(fd_, &extra, 1);
      } while (n < 0 && errno == EINTR);
      std::string digest = hasher_->HexDigest();
      if (n != 0 || digest != spec.sha256()) {
        return absl::DataLossError(absl::StrCat("checkpoint file '", spec.path(),
                                                "' does not match its recorded size and sha256"));
      }
      Close();
      ++index_;
    }
    return true;
  }

  void Close() {
    if (fd_ >= 0) {
      CloseNoIntr(fd_);
      fd_ = -1;
    }
  }

  const v1::Checkpoint checkpoint_;
  const std::string dir_;
  std::vector<char> buffer_;
  std::vector<int> fds_;  // per file, open from Open() until its reading starts
  int index_ = 0;        // the file being read
  int fd_ = -1;          // open on file index_, or -1 before its first chunk
  uint64_t offset_ = 0;  // bytes of file index_ sent so far
  std::unique_ptr<Sha256> hasher_;
  absl::Status error_;   // after an error, every call returns it
};

// ---------------------------------------------------------------------------------------------

class FsArtifactStore final : public ArtifactStore {
 public:
  FsArtifactStore(std::string root, std::shared_ptr<UsageCounter> usage)
      : root_(std::move(root)), tmp_(root_ + "/tmp"), usage_(std::move(usage)) {
    std::random_device device;
    salt_ = device();
  }

  absl::StatusOr<std::unique_ptr<Upload>> BeginUpload(const v1::Checkpoint& checkpoint) override {
    RETURN_IF_ERROR(CheckId("checkpoint.job_id", checkpoint.job_id()));
    RETURN_IF_ERROR(CheckId("checkpoint.id", checkpoint.id()));
    RETURN_IF_ERROR(contract::CheckCheckpointFileSet(
        "checkpoint.files", contract::ToFileEntries(checkpoint.files())));
    std::string job_dir = root_ + "/" + checkpoint.job_id();
    std::string final_dir = job_dir + "/" + checkpoint.id();
    struct stat st;
    if (::stat(final_dir.c_str(), &st) == 0) {
      return absl::AlreadyExistsError(absl::StrCat("checkpoint ", checkpoint.id(), " of job ",
                                                   checkpoint.job_id(), " is already committed"));
    }
    std::string dir = absl::StrCat(tmp_, "/u", next_upload_.fetch_add(1), "-", ::getpid(), "-",
                                   salt_);
    if (::mkdir(dir.c_str(), 0755) != 0) {
      return ErrnoError(errno, absl::StrCat("cannot create upload directory ", dir));
    }
    return std::unique_ptr<Upload>(
        new FsUpload(checkpoint, std::move(dir), std::move(job_dir), std::move(final_dir), root_,
                     usage_));
  }

  absl::StatusOr<std::unique_ptr<Reader>> Read(const v1::Checkpoint& checkpoint) override {
    RETURN_IF_ERROR(CheckId("checkpoint.job_id", checkpoint.job_id()));
    RETURN_IF_ERROR(CheckId("checkpoint.id", checkpoint.id()));
    std::string dir = root_ + "/" + checkpoint.job_id() + "/" + checkpoint.id();
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::NotFoundError(absl::StrCat("checkpoint ", checkpoint.id(), " of job ",
                                              checkpoint.job_id(),
                                              " has no files in the artifact store"));
    }
    auto reader = std::make_unique<FsReader>(checkpoint, std::move(dir));
    RETURN_IF_ERROR(reader->Open());
    return std::unique_ptr<Reader>(std::move(reader));
  }

  absl::Status Remove(const v1::Checkpoint& checkpoint) override {
    RETURN_IF_ERROR(CheckId("checkpoint.job_id", checkpoint.job_id()));
    RETURN_IF_ERROR(CheckId("checkpoint.id", checkpoint.id()));
    std::string job_dir = root_ + "/" + checkpoint.job_id();
    std::string dir = job_dir + "/" + checkpoint.id();
    struct stat st;
    if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::NotFoundError(absl::StrCat("checkpoint ", checkpoint.id(), " of job ",
                                              checkpoint.job_id(),
                                              " has no files in the artifact store"));
    }
    const uint64_t bytes = DirBytes(dir);  // what usage() counted for it
    // Out of the job first, in one step, so that no crash leaves a partly deleted checkpoint
    // under it; what is left in tmp/ is cleared at the next Open.
    std::string trash = absl::StrCat(tmp_, "/r", next_upload_.fetch_add(1), "-", ::getpid(), "-",
                                     salt_);
    if (::renameat2(AT_FDCWD, dir.c_str(), AT_FDCWD, trash.c_str(), RENAME_NOREPLACE) != 0) {
      int error = errno;
      if (error == ENOENT) {
        return absl::NotFoundError(absl::StrCat("checkpoint ", checkpoint.id(), " of job ",
                                                checkpoint.job_id(),
                                                " has no files in the artifact store"));
      }
      return ErrnoError(error, absl::StrCat("cannot rename ", dir, " to ", trash));
    }
    usage_->Add(-1, -static_cast<int64_t>(bytes));
    CrashPoint("artifacts.removal_renamed");  // out of the job, not yet deleted
    RETURN_IF_ERROR(FsyncDirectory(job_dir));
    std::error_code ignored;  // the checkpoint is gone from its job; Open clears leftovers
    fs::remove_all(trash, ignored);
    return absl::OkStatus();
  }

  ArtifactStore::Usage usage() const override { return usage_->Get(); }

  absl::StatusOr<Usage> RemoveUnrecorded(
      const std::set<std::pair<std::string, std::string>>& recorded) override {
    Usage removed;
    std::error_code error;
    std::vector<fs::path> doomed;  // collected first: removing while iterating is undefined
    std::vector<fs::path> job_dirs;
    for (fs::directory_iterator job(root_, error), end; !error && job != end;
         job.increment(error)) {
      const std::string job_id = job->path().filename().string();
      if (job_id == "tmp") continue;
      std::error_code ignored;
      if (!job->is_directory(ignored) || job->is_symlink(ignored)) {
        doomed.push_back(job->path());
        continue;
      }
      job_dirs.push_back(job->path());
      for (fs::directory_iterator checkpoint(job->path(), error), none; !error && checkpoint != none;
           checkpoint.increment(error)) {
        const std::string checkpoint_id = checkpoint->path().filename().string();
        if (checkpoint->is_directory(ignored) && !checkpoint->is_symlink(ignored) &&
            recorded.count({job_id, checkpoint_id}) > 0) {
          continue;
        }
        doomed.push_back(checkpoint->path());
      }
    }
    if (error) {
      return absl::InternalError(
          absl::StrCat("cannot list the committed checkpoints in ", root_, ": ", error.message()));
    }
    for (const fs::path& path : doomed) {
      std::error_code ignored;
      const bool is_dir = fs::is_directory(fs::symlink_status(path, ignored));
      const uint64_t bytes = is_dir ? DirBytes(path.string()) : 0;
      // Out of the job in one step first, as Remove does.
      std::string trash = absl::StrCat(tmp_, "/o", next_upload_.fetch_add(1), "-", ::getpid(),
                                       "-", salt_);
      if (::rename(path.c_str(), trash.c_str()) != 0) {
        return ErrnoError(errno, absl::StrCat("cannot move ", path.string(), " out of the store"));
      }
      LOG_WARN("removed {} from the artifact store: no checkpoint record names it",
               path.string());
      if (is_dir) {
        ++removed.checkpoints;
        removed.bytes += bytes;
        usage_->Add(-1, -static_cast<int64_t>(bytes));
      }
      RETURN_IF_ERROR(FsyncDirectory(path.parent_path().string()));
      fs::remove_all(trash, ignored);
    }
    for (const fs::path& job : job_dirs) {
      if (::rmdir(job.c_str()) == 0) RETURN_IF_ERROR(FsyncDirectory(root_));
    }
    return removed;
  }

 private:
  const std::string root_;
  const std::string tmp_;
  const std::shared_ptr<UsageCounter> usage_;
  uint32_t salt_ = 0;  // tells this process's upload dirs from a predecessor's
  std::atomic<uint64_t> next_upload_{0};  // numbers tmp/ names: uploads (uN) and removals (rN)
};

}  // namespace

absl::StatusOr<std::vector<std::string>> ArtifactStore::Check(
    const std::string& data_dir, const std::vector<v1::Checkpoint>& recorded) {
  const std::string root = data_dir + "/artifacts";
  std::vector<std::string> problems;
  std::set<std::pair<std::string, std::string>> names;
  struct stat st;
  const bool have_root = ::stat(root.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  if (!have_root && !recorded.empty()) {
    return absl::NotFoundError(absl::StrCat(root, ": missing, but ", recorded.size(),
                                            " checkpoint record(s) name files there"));
  }
  // Every record's files: there, of their size, with their sha256, and nothing else beside.
  for (const v1::Checkpoint& checkpoint : recorded) {
    names.insert({checkpoint.job_id(), checkpoint.id()});
    const std::string what =
        absl::StrCat("checkpoint ", checkpoint.job_id(), "/", checkpoint.id());
    const std::string dir = root + "/" + checkpoint.job_id() + "/" + checkpoint.id();
    if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      problems.push_back(absl::StrCat(what, ": directory ", dir, " is missing"));
      continue;
    }
    std::set<std::string> expected;
    for (int i = 0; i < checkpoint.files_size(); ++i) {
      const v1::CheckpointFile& spec = checkpoint.files(i);
      const std::string path = dir + "/" + FileName(i);
      expected.insert(FileName(i));
      uint64_t size = 0;
      absl::StatusOr<std::string> digest = Sha256File(path, &size);
      if (!digest.ok()) {
        problems.push_back(absl::StrCat(what, ": file '", spec.path(), "' (", path,
                                        ") is missing or unreadable: ",
                                        digest.status().message()));
      } else if (size != spec.size_bytes()) {
        problems.push_back(absl::StrCat(what, ": file '", spec.path(), "' (", path, ") has ",
                                        size, " bytes, the record says ", spec.size_bytes()));
      } else if (*digest != spec.sha256()) {
        problems.push_back(absl::StrCat(what, ": file '", spec.path(), "' (", path,
                                        ") has sha256 ", *digest, ", the record says ",
                                        spec.sha256()));
      }
    }
    std::error_code error;
    for (fs::recursive_directory_iterator it(dir, error), end; !error && it != end;
         it.increment(error)) {
      const std::string relative = fs::relative(it->path(), dir, error).string();
      if (it->is_directory(error) || expected.count(relative) == 0) {
        problems.push_back(absl::StrCat("unreferenced: ", it->path().string(),
                                        " (not a file of ", what, ")"));
        if (it->is_directory(error)) it.disable_recursion_pending();
      }
    }
    if (error) {
      problems.push_back(absl::StrCat(what, ": cannot list ", dir, ": ", error.message()));
    }
  }
  if (!have_root) return problems;
  // Everything else under the artifact area is unreferenced.
  std::error_code error;
  for (fs::directory_iterator top(root, error), end; !error && top != end; top.increment(error)) {
    const std::string name = top->path().filename().string();
    std::error_code ignored;
    const bool is_dir = top->is_directory(ignored) && !top->is_symlink(ignored);
    if (name == "tmp" && is_dir) {
      for (fs::directory_iterator left(top->path(), ignored), none; !ignored && left != none;
           left.increment(ignored)) {
        problems.push_back(absl::StrCat("unreferenced: ", left->path().string(),
                                        " (an interrupted upload or removal)"));
      }
      continue;
    }
    if (!is_dir) {
      problems.push_back(absl::StrCat("unreferenced: ", top->path().string(),
                                      " (not a job directory)"));
      continue;
    }
    for (fs::directory_iterator checkpoint(top->path(), error), none; !error && checkpoint != none;
         checkpoint.increment(error)) {
      if (names.count({name, checkpoint->path().filename().string()}) == 0) {
        problems.push_back(absl::StrCat("unreferenced: ", checkpoint->path().string(),
                                        " (no checkpoint record names it)"));
      }
    }
  }
  if (error) {
    return absl::InternalError(absl::StrCat("cannot read ", root, ": ", error.message()));
  }
  return problems;
}

absl::StatusOr<std::unique_ptr<ArtifactStore>> ArtifactStore::Open(const std::string& data_dir) {
  if (data_dir.empty()) return absl::InvalidArgumentError("artifact store: data dir is empty");
  std::string root = data_dir + "/artifacts";
  std::string tmp = root + "/tmp";
  RETURN_IF_ERROR(MakeDirDurable(root, data_dir));
  // Abandoned uploads (a crash mid-upload) are never resumed: their bytes are unverified.
  std::error_code error;
  fs::remove_all(tmp, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot clear abandoned uploads in ", tmp, ": ", error.message()));
  }
  RETURN_IF_ERROR(MakeDirDurable(tmp, root));
  // Every committed checkpoint is ROOT/JOB_ID/CHECKPOINT_ID: count what a previous process
  // left, so that usage() is right from the start.
  auto usage = std::make_shared<UsageCounter>();
  for (fs::directory_iterator job(root, error), end; !error && job != end; job.increment(error)) {
    std::error_code ignored;
    if (job->path().filename() == "tmp" || !job->is_directory(ignored)) continue;
    for (fs::directory_iterator checkpoint(job->path(), ignored), none;
         !ignored && checkpoint != none; checkpoint.increment(ignored)) {
      std::error_code is_dir_error;
      if (!checkpoint->is_directory(is_dir_error)) continue;
      usage->Add(1, static_cast<int64_t>(DirBytes(checkpoint->path().string())));
    }
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot list the committed checkpoints in ", root, ": ", error.message()));
  }
  return std::unique_ptr<ArtifactStore>(new FsArtifactStore(std::move(root), std::move(usage)));
}

}  // namespace loratrf::server
