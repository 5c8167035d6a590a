#include "worker/agent/checkpoint_transfer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/read_file.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace loratrf::worker::agent {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kMaxManifestBytes = 16 << 20;
constexpr int kMaxFiles = 10000;
constexpr int kMaxDepth = 8;

absl::Status FromGrpc(const grpc::Status& status, absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

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
  std::string buffer(kChunkBytes, '\0');
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
  }
  if (open) writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (canceller.cancelled()) return absl::CancelledError("the upload was cancelled");
  RETURN_IF_ERROR(FromGrpc(status, absl::StrCat("UploadCheckpoint (step ", checkpoint.step, ")")));
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

absl::Status ValidateDownloadHeader(const v1::Checkpoint& checkpoint) {
  if (checkpoint.files_size() > kMaxFiles) {
    return absl::InvalidArgumentError(absl::StrCat("the checkpoint lists ", checkpoint.files_size(),
                                                   " files (at most ", kMaxFiles, ")"));
  }
  std::set<std::string> seen;
  for (const v1::CheckpointFile& file : checkpoint.files()) {
    if (!IsSafeRelativePath(file.path()) || !seen.insert(file.path()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("the checkpoint lists a bad or repeated path '", file.path(), "'"));
    }
    // A file may not also be a directory of another ("a" and "a/b").
    for (const std::string& other : seen) {
      if (other.size() > file.path().size() && other.compare(0, file.path().size(), file.path()) == 0 &&
          other[file.path().size()] == '/') {
        return absl::InvalidArgumentError(absl::StrCat("the checkpoint lists '", file.path(),
                                                       "' as both a file and a directory"));
      }
      if (file.path().size() > other.size() && file.path().compare(0, other.size(), other) == 0 &&
          file.path()[other.size()] == '/') {
        return absl::InvalidArgumentError(absl::StrCat("the checkpoint lists '", other,
                                                       "' as both a file and a directory"));
      }
    }
    if (file.sha256().size() != 64) {
      return absl::InvalidArgumentError(absl::StrCat("the checkpoint's ", file.path(), ": bad sha256"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool IsSafeRelativePath(const std::string& path) {
  if (path.empty() || path.size() > 4096) return false;
  int depth = 0;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (++depth > kMaxDepth || part.empty() || part == "." || part == ".." || part.size() > 255) {
      return false;
    }
    for (char c : part) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-';
      if (!ok) return false;
    }
  }
  return true;
}

absl::StatusOr<LocalCheckpoint> ReadLocalCheckpoint(const std::string& dir) {
  const std::string manifest_path = dir + "/" + kManifestFile;
  absl::StatusOr<std::string> text = ReadFileWithLimit(manifest_path, kMaxManifestBytes);
  if (!text.ok()) return text.status();
  auto bad = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat(manifest_path, ": ", why));
  };
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("step") || !j["step"].is_number_unsigned() ||
      !j.contains("files") || !j["files"].is_array()) {
    return bad("not a checkpoint manifest");
  }
  LocalCheckpoint checkpoint;
  checkpoint.dir = dir;
  checkpoint.step = j["step"].get<uint64_t>();
  checkpoint.final = j.value("final", false);
  for (const auto& f : j["files"]) {
    if (!f.is_object() || !f.contains("path") || !f["path"].is_string() ||
        !f.contains("size_bytes") || !f["size_bytes"].is_number_unsigned() ||
        !f.contains("sha256") || !f["sha256"].is_string()) {
      return bad("files: each entry needs path, size_bytes and sha256");
    }
    v1::CheckpointFile file;
    file.set_path(f["path"].get<std::string>());
    file.set_size_bytes(f["size_bytes"].get<uint64_t>());
    file.set_sha256(f["sha256"].get<std::string>());
    if (!IsSafeRelativePath(file.path()) || file.path() == kManifestFile) {
      return bad(absl::StrCat("files: bad path '", file.path(), "'"));
    }
    checkpoint.files.push_back(std::move(file));
  }
  v1::CheckpointFile manifest;
  manifest.set_path(kManifestFile);
  manifest.set_size_bytes(text->size());
  manifest.set_sha256(Sha256Hex(*text));
  checkpoint.files.push_back(std::move(manifest));
  if (j.contains("metrics") && j["metrics"].is_object()) {
    const nlohmann::json& m = j["metrics"];
    if (m.contains("eval_loss") && m["eval_loss"].is_number()) {
      v1::EvalMetrics eval;
      eval.set_step(checkpoint.step);
      eval.set_loss(m["eval_loss"].get<double>());
      if (m.contains("eval_accuracy") && m["eval_accuracy"].is_number()) {
        eval.set_accuracy(m["eval_accuracy"].get<double>());
      }
      if (m.contains("eval_examples") && m["eval_examples"].is_number_unsigned()) {
        eval.set_examples(m["eval_examples"].get<uint64_t>());
      }
      checkpoint.eval = eval;
    }
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
      if (absl::Status valid = ValidateDownloadHeader(checkpoint); !valid.ok()) {
        fail(valid);
        break;
      }
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
    // Complete files before this chunk's file are closed and checked.
    while (current < files.size() && chunk.path() != files[current].expected.path() &&
           files[current].written == files[current].expected.size_bytes()) {
      if (absl::Status done = FinishFile(temp_dir, files[current]); !done.ok()) fail(done);
      ++current;
    }
    if (!failure.ok()) break;
    if (current == files.size() || chunk.path() != files[current].expected.path()) {
      fail(absl::InternalError(absl::StrCat("DownloadCheckpoint: unexpected chunk of '",
                                            chunk.path(), "'")));
      break;
    }
    IncomingFile& file = files[current];
    if (chunk.offset() != file.written || chunk.data().size() > kChunkBytes ||
        file.written + chunk.data().size() > file.expected.size_bytes()) {
      fail(absl::InternalError(absl::StrCat("DownloadCheckpoint: chunk of '", chunk.path(),
                                            "' at offset ", chunk.offset(), " is out of order")));
      break;
    }
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
  RETURN_IF_ERROR(FromGrpc(status, "DownloadCheckpoint"));
  if (!have_header) return absl::InternalError("DownloadCheckpoint: the stream was empty");
  for (; current < files.size(); ++current) {
    RETURN_IF_ERROR(FinishFile(temp_dir, files[current]));
  }
  for (const std::string& dir : made_dirs) RETURN_IF_ERROR(FsyncDirectory(dir));
  metrics.CheckpointDownloaded(bytes);
  return checkpoint;
}

}  // namespace loratrf::worker::agent
