#include "worker/agent/checkpoint_transfer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/crash_point.h"
#include "common/read_file.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "proto/contract/checkpoint_files.h"
#include "proto/contract/limits.h"
#include "proto/contract/manifest.h"
#include "proto/contract/run_output.h"
#include "proto/rpc/status.h"

namespace loratrf::worker::agent {
namespace {

namespace fs = std::filesystem;

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// Owns a file descriptor: closed on every path out of its scope.
class ScopedFd {
 public:
  ScopedFd() = default;
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() { Reset(); }
  ScopedFd(ScopedFd&& other) noexcept : fd_(other.Release()) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = other.Release();
    }
    return *this;
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

absl::StatusOr<v1::Checkpoint> UploadOnce(CoordinatorLink& link, uint64_t lease,
                                          const std::string& job_id, uint32_t attempt,
                                          const LocalCheckpoint& checkpoint,
                                          CallCanceller& canceller, AgentMetrics& metrics) {
  std::unique_ptr<grpc::ClientContext> context = link.NewContext(absl::InfiniteDuration());
  ScopedCall scoped(canceller, context.get());
  v1::UploadCheckpointResponse response;
  std::unique_ptr<grpc::ClientWriterInterface<v1::UploadCheckpointRequest>> writer =
      link.workers().UploadCheckpoint(context.get(), &response);
  v1::UploadCheckpointRequest request;
  v1::UploadCheckpointRequest::Header* header = request.mutable_header();
  header->set_worker(link.worker_name());
  header->set_lease_id(lease);
  header->set_job_id(job_id);
  header->set_attempt(attempt);
  header->set_step(checkpoint.step);
  header->set_final(checkpoint.final);
  for (const v1::CheckpointFile& file : checkpoint.files) *header->add_files() = file;
  if (checkpoint.eval) *header->mutable_eval() = *checkpoint.eval;

  // Any local failure cancels the call, so the coordinator never commits a partial upload.
  auto abort = [&](absl::Status status) {
    context->TryCancel();
    writer->Finish();
    return status;
  };
  bool open = writer->Write(request);
  uint64_t bytes = 0;
  std::string buffer(limits::kMaxChunkBytes, '\0');
  for (const v1::CheckpointFile& file : checkpoint.files) {
    if (!open) break;
    const std::string path = checkpoint.dir + "/" + file.path();
    ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
      return abort(absl::DataLossError(absl::StrCat(path, ": ", std::strerror(errno))));
    }
    Sha256 hash;
    uint64_t offset = 0;
    while (open) {
      ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return abort(Errno(path));
      if (n == 0) break;
      hash.Update(absl::string_view(buffer.data(), static_cast<size_t>(n)));
      v1::UploadCheckpointRequest chunk;
      chunk.mutable_chunk()->set_path(file.path());
      chunk.mutable_chunk()->set_offset(offset);
      chunk.mutable_chunk()->set_data(buffer.data(), static_cast<size_t>(n));
      offset += static_cast<uint64_t>(n);
      if (offset > file.size_bytes()) break;
      open = writer->Write(chunk);
    }
    fd.Reset();
    if (open && (offset != file.size_bytes() || hash.HexDigest() != file.sha256())) {
      return abort(absl::DataLossError(
          absl::StrCat(path, ": changed since its manifest was written")));
    }
    bytes += offset;
    // Part of the checkpoint sent, the rest not: the coordinator must record nothing.
    if (&file == &checkpoint.files.front()) CrashPoint("upload.first_file_sent");
  }
  if (open) writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (canceller.cancelled()) return absl::CancelledError("the upload was cancelled");
  RETURN_IF_ERROR(
      rpc::FromGrpcStatus(status, absl::StrCat("UploadCheckpoint (step ", checkpoint.step, ")")));
  metrics.CheckpointUploaded(bytes);
  return response.checkpoint();
}

// One file of a download being written.
struct IncomingFile {
  v1::CheckpointFile expected;
  ScopedFd fd;  // open while its chunks arrive; closed on every path out of the download
  uint64_t written = 0;
  Sha256 hash;
};

absl::Status FinishFile(const std::string& dir, IncomingFile& file) {
  const std::string path = dir + "/" + file.expected.path();
  if (!file.fd.valid()) {  // no chunk came: an empty file
    file.fd = ScopedFd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!file.fd.valid()) return Errno(path);
  }
  ScopedFd fd = std::move(file.fd);
  if (::fsync(fd.get()) != 0) return Errno(path);
  if (::close(fd.Release()) != 0) return Errno(path);
  const std::string digest = file.hash.HexDigest();
  if (file.written != file.expected.size_bytes() || digest != file.expected.sha256()) {
    return absl::DataLossError(absl::StrCat(
        "downloaded ", file.expected.path(), " does not match the checkpoint (", file.written,
        " of ", file.expected.size_bytes(), " bytes, sha256 ", digest.substr(0, 12), "...)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LocalCheckpoint> ReadLocalCheckpoint(const std::string& dir) {
  const std::string manifest_path = absl::StrCat(dir, "/", contract::kManifestFileName);
  absl::StatusOr<std::string> text = ReadFileWithLimit(manifest_path, limits::kMaxManifestBytes);
  if (!text.ok()) return text.status();
  absl::StatusOr<contract::Manifest> manifest = contract::ParseManifest(*text);
  if (!manifest.ok()) {
    return absl::DataLossError(absl::StrCat(manifest_path, ": ", manifest.status().message()));
  }
  LocalCheckpoint checkpoint;
  checkpoint.dir = dir;
  checkpoint.step = manifest->step;
  checkpoint.final = manifest->final;
  for (const contract::FileEntry& entry : manifest->files) {
    v1::CheckpointFile file;
    file.set_path(entry.path);
    file.set_size_bytes(entry.size_bytes);
    file.set_sha256(entry.sha256);
    checkpoint.files.push_back(std::move(file));
  }
  v1::CheckpointFile manifest_file;
  manifest_file.set_path(contract::kManifestFileName);
  manifest_file.set_size_bytes(text->size());
  manifest_file.set_sha256(Sha256Hex(*text));
  checkpoint.files.push_back(std::move(manifest_file));
  if (std::optional<contract::EvalRow> eval = contract::ManifestEval(*manifest)) {
    v1::EvalMetrics metrics;
    metrics.set_step(eval->step);
    metrics.set_loss(eval->loss);
    metrics.set_accuracy(eval->accuracy);
    metrics.set_examples(eval->examples);
    checkpoint.eval = metrics;
  }
  return checkpoint;
}

absl::StatusOr<v1::Checkpoint> UploadCheckpoint(CoordinatorLink& link, const std::string& job_id,
                                                uint32_t attempt, const LocalCheckpoint& checkpoint,
                                                CallCanceller& canceller, AgentMetrics& metrics) {
  for (int tries = 0;; ++tries) {
    const uint64_t lease = link.lease_id();
    absl::StatusOr<v1::Checkpoint> result =
        UploadOnce(link, lease, job_id, attempt, checkpoint, canceller, metrics);
    if (result.ok() || result.status().code() != absl::StatusCode::kFailedPrecondition ||
        tries > 0) {
      return result;
    }
    ASSIGN_OR_RETURN(bool renewed, link.RecoverLease(lease));
    if (!renewed) return result;  // the lease is fine: the attempt is stale
  }
}

absl::StatusOr<v1::Checkpoint> DownloadCheckpoint(CoordinatorLink& link, const std::string& job_id,
                                                  const std::string& checkpoint_id,
                                                  const std::string& temp_dir,
                                                  CallCanceller& canceller, AgentMetrics& metrics) {
  std::error_code ec;
  fs::remove_all(temp_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat(temp_dir, ": cannot remove: ", ec.message()));
  fs::create_directories(temp_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat(temp_dir, ": cannot create: ", ec.message()));

  std::unique_ptr<grpc::ClientContext> context = link.NewContext(absl::InfiniteDuration());
  ScopedCall scoped(canceller, context.get());
  v1::DownloadCheckpointRequest request;
  request.set_job_id(job_id);
  request.set_checkpoint_id(checkpoint_id);
  std::unique_ptr<grpc::ClientReaderInterface<v1::DownloadCheckpointResponse>> reader =
      link.jobs().DownloadCheckpoint(context.get(), request);

  std::vector<IncomingFile> files;
  std::optional<contract::ChunkSequence> chunks;  // once the header came
  v1::Checkpoint checkpoint;
  bool have_header = false;
  size_t current = 0;
  uint64_t bytes = 0;
  absl::Status failure;
  std::set<std::string> made_dirs = {temp_dir};
  v1::DownloadCheckpointResponse part;
  auto fail = [&](absl::Status status) {
    if (failure.ok()) failure = std::move(status);
    context->TryCancel();
  };
  while (failure.ok() && reader->Read(&part)) {
    if (!have_header) {
      if (!part.has_checkpoint()) {
        fail(absl::InternalError("DownloadCheckpoint: the first message is not the checkpoint"));
        break;
      }
      checkpoint = part.checkpoint();
      std::vector<contract::FileEntry> entries = contract::ToFileEntries(checkpoint.files());
      if (absl::Status valid = contract::CheckCheckpointFileSet("checkpoint.files", entries);
          !valid.ok()) {
        fail(absl::InternalError(absl::StrCat("DownloadCheckpoint: ", valid.message())));
        break;
      }
      chunks.emplace(std::move(entries));
      files.resize(static_cast<size_t>(checkpoint.files_size()));
      for (size_t i = 0; i < files.size(); ++i) {
        files[i].expected = checkpoint.files(static_cast<int>(i));
        // Every parent directory exists before any byte arrives.
        fs::path parent = fs::path(temp_dir) / files[i].expected.path();
        parent = parent.parent_path();
        if (made_dirs.insert(parent.string()).second) {
          fs::create_directories(parent, ec);
          if (ec) fail(absl::InternalError(absl::StrCat(parent.string(), ": ", ec.message())));
        }
      }
      have_header = true;
      continue;
    }
    if (!part.has_chunk()) {
      fail(absl::InternalError("DownloadCheckpoint: a second checkpoint header"));
      break;
    }
    const v1::FileChunk& chunk = part.chunk();
    absl::StatusOr<int> target =
        chunks->Accept(chunk.path(), chunk.offset(), chunk.data().size());
    if (!target.ok()) {
      fail(absl::InternalError(absl::StrCat("DownloadCheckpoint: ", target.status().message())));
      break;
    }
    // Complete files before this chunk's file are closed and checked.
    for (; current < static_cast<size_t>(*target) && failure.ok(); ++current) {
      if (absl::Status done = FinishFile(temp_dir, files[current]); !done.ok()) fail(done);
    }
    if (!failure.ok()) break;
    IncomingFile& file = files[current];
    if (!file.fd.valid()) {
      const std::string path = temp_dir + "/" + file.expected.path();
      file.fd = ScopedFd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
      if (!file.fd.valid()) {
        fail(Errno(path));
        break;
      }
    }
    const std::string& data = chunk.data();
    size_t at = 0;
    while (at < data.size()) {
      ssize_t n = ::write(file.fd.get(), data.data() + at, data.size() - at);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        fail(Errno(temp_dir + "/" + file.expected.path()));
        break;
      }
      at += static_cast<size_t>(n);
    }
    file.hash.Update(data);
    file.written += data.size();
    bytes += data.size();
  }
  grpc::Status status = reader->Finish();
  // Every path below that returns leaves the rest to `files`, whose descriptors close with it.
  if (canceller.cancelled()) return absl::CancelledError("the download was cancelled");
  RETURN_IF_ERROR(failure);
  RETURN_IF_ERROR(rpc::FromGrpcStatus(status, "DownloadCheckpoint"));
  if (!have_header) return absl::InternalError("DownloadCheckpoint: the stream was empty");
  for (; current < files.size(); ++current) {
    RETURN_IF_ERROR(FinishFile(temp_dir, files[current]));
  }
  for (const std::string& dir : made_dirs) RETURN_IF_ERROR(FsyncDirectory(dir));
  metrics.CheckpointDownloaded(bytes);
  return checkpoint;
}

}  // namespace loratrf::worker::agent
