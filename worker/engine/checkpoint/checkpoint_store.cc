#include "worker/engine/checkpoint/checkpoint_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/crash_point.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "proto/contract/limits.h"
#include "proto/contract/run_output.h"

namespace loratrf::engine {
namespace {

namespace fs = std::filesystem;

using contract::kManifestFileName;
using contract::kPartialCheckpointPrefix;

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

CheckpointWriter::CheckpointWriter(std::string partial_dir, std::string target_dir,
                                   uint64_t step, bool final)
    : partial_dir_(std::move(partial_dir)), target_dir_(std::move(target_dir)), step_(step),
      final_(final) {}

CheckpointWriter::CheckpointWriter(CheckpointWriter&& other) noexcept
    : partial_dir_(std::move(other.partial_dir_)), target_dir_(std::move(other.target_dir_)),
      step_(other.step_), final_(other.final_), committed_(other.committed_) {
  other.committed_ = true;  // the moved-from object must not remove anything
}

CheckpointWriter::~CheckpointWriter() {
  if (!committed_ && !partial_dir_.empty()) {
    std::error_code ignored;
    fs::remove_all(partial_dir_, ignored);
  }
}

absl::StatusOr<CheckpointWriter> CheckpointWriter::Begin(const std::string& checkpoints_dir,
                                                         uint64_t step) {
  std::error_code ec;
  fs::create_directories(checkpoints_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat(checkpoints_dir, ": cannot create: ", ec.message()));
  std::string target = absl::StrCat(checkpoints_dir, "/", step);
  if (fs::exists(target)) {
    return absl::AlreadyExistsError(absl::StrCat(target, ": checkpoint already committed"));
  }
  std::string partial = absl::StrCat(checkpoints_dir, "/", kPartialCheckpointPrefix, step, "-", ::getpid());
  fs::remove_all(partial, ec);
  if (!fs::create_directory(partial, ec)) {
    return absl::InternalError(absl::StrCat(partial, ": cannot create: ", ec.message()));
  }
  return CheckpointWriter(partial, target, step, /*final=*/false);
}

absl::StatusOr<CheckpointWriter> CheckpointWriter::BeginFinal(const std::string& final_dir,
                                                              uint64_t step) {
  fs::path target(final_dir);
  std::error_code ec;
  if (fs::exists(target)) {
    return absl::AlreadyExistsError(absl::StrCat(final_dir, ": already exists"));
  }
  fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  fs::create_directories(parent, ec);
  std::string partial =
      (parent / absl::StrCat(kPartialCheckpointPrefix, target.filename().string(), "-", ::getpid())).string();
  fs::remove_all(partial, ec);
  if (!fs::create_directory(partial, ec)) {
    return absl::InternalError(absl::StrCat(partial, ": cannot create: ", ec.message()));
  }
  return CheckpointWriter(partial, final_dir, step, /*final=*/true);
}

absl::StatusOr<CheckpointManifest> CheckpointWriter::Commit(
    const std::map<std::string, double>& metrics) {
  CheckpointManifest manifest;
  manifest.step = step_;
  manifest.final = final_;
  manifest.metrics = metrics;
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(partial_dir_)) {
    std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || name == kManifestFileName) {
      return absl::InternalError(absl::StrCat(entry.path().string(), ": checkpoints hold plain files only"));
    }
    RETURN_IF_ERROR(contract::CheckCheckpointFilePath(entry.path().string(), name));
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    contract::FileEntry file{name, 0, ""};
    ASSIGN_OR_RETURN(file.sha256, Sha256File(partial_dir_ + "/" + name, &file.size_bytes));
    manifest.files.push_back(std::move(file));
  }
  CrashPoint("checkpoint.files_written");  // every file there, no manifest yet
  RETURN_IF_ERROR(WriteFileAtomically(partial_dir_ + "/" + kManifestFileName,
                                      contract::SerializeManifest(manifest)));
  RETURN_IF_ERROR(FsyncDirectory(partial_dir_));
  CrashPoint("checkpoint.manifest_written");  // complete, still under its partial name
  if (::rename(partial_dir_.c_str(), target_dir_.c_str()) != 0) {
    return Errno(absl::StrCat(target_dir_, ": cannot commit"));
  }
  committed_ = true;
  CrashPoint("checkpoint.renamed");  // committed here, not yet uploaded by the agent
  fs::path target(target_dir_);
  RETURN_IF_ERROR(FsyncDirectory(target.has_parent_path() ? target.parent_path().string() : "."));
  manifest.dir = target_dir_;
  return manifest;
}

absl::StatusOr<CheckpointManifest> VerifyCheckpoint(const std::string& dir) {
  std::string path = dir + "/" + kManifestFileName;
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) {
    return absl::DataLossError(absl::StrCat(dir, ": no ", kManifestFileName, " (not committed)"));
  }
  if (static_cast<uint64_t>(info.st_size) > limits::kMaxManifestBytes) {
    return absl::DataLossError(absl::StrCat(path, ": too large"));
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<contract::Manifest> parsed = contract::ParseManifest(text.str());
  if (!parsed.ok()) {
    return absl::DataLossError(absl::StrCat(path, ": ", parsed.status().message()));
  }
  CheckpointManifest manifest;
  static_cast<contract::Manifest&>(manifest) = *std::move(parsed);
  manifest.dir = dir;
  std::set<std::string> listed;
  for (const contract::FileEntry& file : manifest.files) {
    listed.insert(file.path);
    uint64_t size = 0;
    absl::StatusOr<std::string> digest = Sha256File(dir + "/" + file.path, &size);
    if (!digest.ok()) {
      return absl::DataLossError(absl::StrCat(dir, "/", file.path, ": listed in the manifest but missing"));
    }
    if (size != file.size_bytes || *digest != file.sha256) {
      return absl::DataLossError(absl::StrCat(dir, "/", file.path, ": does not match the manifest (",
                                              size, " bytes, sha256 ", digest->substr(0, 12), "...)"));
    }
  }
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (name != kManifestFileName && !listed.count(name)) {
      return absl::DataLossError(absl::StrCat(dir, "/", name, ": not in the manifest"));
    }
  }
  return manifest;
}

std::vector<CheckpointManifest> ListCheckpoints(const std::string& checkpoints_dir,
                                                std::vector<std::string>* rejected) {
  std::vector<CheckpointManifest> out;
  std::error_code ec;
  if (!fs::is_directory(checkpoints_dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(checkpoints_dir, ec)) {
    std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !contract::IsCheckpointStepDirName(name)) continue;
    absl::StatusOr<CheckpointManifest> manifest = VerifyCheckpoint(entry.path().string());
    if (manifest.ok() && std::to_string(manifest->step) == name) {
      out.push_back(*std::move(manifest));
    } else if (rejected != nullptr) {
      rejected->push_back(manifest.ok() ? absl::StrCat(entry.path().string(), ": step differs")
                                        : std::string(manifest.status().message()));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.step < b.step; });
  return out;
}

absl::Status PruneCheckpoints(const std::string& checkpoints_dir, uint32_t keep_last,
                              const std::string& metric, bool higher_is_better) {
  std::vector<CheckpointManifest> all = ListCheckpoints(checkpoints_dir);
  std::optional<uint64_t> best;
  double best_value = 0;
  for (const CheckpointManifest& m : all) {
    auto value = m.metrics.find(metric);
    if (metric.empty() || value == m.metrics.end()) continue;
    double v = value->second;
    if (!best || (higher_is_better ? v > best_value : v < best_value)) best = m.step, best_value = v;
  }
  size_t keep_from = all.size() > keep_last ? all.size() - keep_last : 0;
  for (size_t i = 0; i < keep_from; ++i) {
    if (best && all[i].step == *best) continue;
    std::error_code ec;
    fs::remove_all(all[i].dir, ec);
    if (ec) return absl::InternalError(absl::StrCat(all[i].dir, ": cannot remove: ", ec.message()));
  }
  return FsyncDirectory(checkpoints_dir);
}

void RemovePartialCheckpoints(const std::string& checkpoints_dir) {
  std::error_code ec;
  if (!fs::is_directory(checkpoints_dir, ec)) return;
  for (const auto& entry : fs::directory_iterator(checkpoints_dir, ec)) {
    if (entry.path().filename().string().rfind(kPartialCheckpointPrefix, 0) == 0) {
      fs::remove_all(entry.path(), ec);
    }
  }
}

}  // namespace loratrf::engine
