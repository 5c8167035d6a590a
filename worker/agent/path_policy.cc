#include "worker/agent/path_policy.h"

#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/text.h"

namespace loratrf::worker::agent {
namespace fs = std::filesystem;
namespace {

// Kernel pseudo file systems: reading them tells about this node and its processes (the
// agent's environment, its command line, its memory maps), never a model or a data set.
constexpr const char* kSystemDirs[] = {"/proc", "/sys", "/dev"};

// How much of a user's path an error repeats.
constexpr size_t kMaxShownPathBytes = 512;

std::string Shown(absl::string_view path) { return SanitizeText(path, kMaxShownPathBytes); }

// realpath for the part of `path` that exists, the rest appended and normalised lexically.
absl::StatusOr<std::string> Resolve(const std::string& path, const std::string& base_dir) {
  fs::path p(path);
  if (p.is_relative()) p = fs::path(base_dir) / p;
  std::error_code ec;
  fs::path resolved = fs::weakly_canonical(p, ec);
  if (ec || resolved.empty() || !resolved.is_absolute()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot be resolved: ", ec ? ec.message() : "not an absolute path"));
  }
  std::string out = resolved.string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

}  // namespace

bool IsUnder(absl::string_view path, absl::string_view root) {
  while (root.size() > 1 && root.back() == '/') root.remove_suffix(1);
  if (root == "/") return !path.empty() && path.front() == '/';
  if (path.substr(0, root.size()) != root) return false;
  return path.size() == root.size() || path[root.size()] == '/';
}

absl::StatusOr<PathPolicy> PathPolicy::Create(const std::vector<std::string>& roots,
                                              const std::string& work_dir) {
  PathPolicy policy;
  policy.enforce_ = !roots.empty();
  for (const std::string& root : roots) {
    std::error_code ec;
    fs::path resolved = root.empty() ? fs::path() : fs::canonical(root, ec);
    if (root.empty() || ec || !fs::is_directory(resolved, ec)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--allow-path ", Shown(root), ": not a directory",
          ec ? absl::StrCat(" (", ec.message(), ")") : std::string()));
    }
    policy.roots_.push_back(resolved.string());
  }
  std::error_code ec;
  fs::path work = fs::weakly_canonical(work_dir, ec);
  if (ec || work.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--work-dir ", Shown(work_dir), ": ",
                                                   ec ? ec.message() : "cannot be resolved"));
  }
  policy.work_dir_ = work.string();
  while (policy.work_dir_.size() > 1 && policy.work_dir_.back() == '/') policy.work_dir_.pop_back();
  return policy;
}

std::string PathPolicy::Refusal(const std::string& resolved) const {
  if (!enforce_) return "";
  if (IsUnder(resolved, work_dir_)) return "is inside the agent's work dir, which jobs may not read";
  bool under_root = false;
  for (const std::string& root : roots_) under_root |= IsUnder(resolved, root);
  if (!under_root) return "is outside the allowed paths (--allow-path)";
  for (const char* system : kSystemDirs) {
    if (!IsUnder(resolved, system)) continue;
    bool opted_in = false;
    for (const std::string& root : roots_) {
      opted_in |= IsUnder(resolved, root) && IsUnder(root, system);
    }
    if (!opted_in) return absl::StrCat("is under ", system, ", which jobs may not read");
  }
  return "";
}

absl::StatusOr<std::string> PathPolicy::CheckFile(absl::string_view field, const std::string& path,
                                                  const std::string& base_dir) const {
  absl::StatusOr<std::string> resolved = Resolve(path, base_dir);
  if (!resolved.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", Shown(path), " ", resolved.status().message()));
  }
  if (std::string why = Refusal(*resolved); !why.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", Shown(path), " ", why));
  }
  return resolved;
}

absl::StatusOr<std::string> PathPolicy::CheckDirectory(absl::string_view field,
                                                       const std::string& path,
                                                       const std::string& base_dir) const {
  absl::StatusOr<std::string> resolved = CheckFile(field, path, base_dir);
  if (!resolved.ok() || !enforce_) return resolved;
  std::error_code ec;
  if (!fs::is_directory(*resolved, ec)) return resolved;  // the ranks say what is wrong
  fs::directory_iterator it(*resolved, ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::error_code link_ec;
    if (!it->is_symlink(link_ec)) continue;
    const std::string name = it->path().filename().string();
    absl::StatusOr<std::string> target = Resolve(it->path().string(), *resolved);
    std::string why = target.ok() ? Refusal(*target) : std::string(target.status().message());
    if (!why.empty()) {
      std::string shown = path;
      if (shown.empty() || shown.back() != '/') shown.push_back('/');
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": ", Shown(shown + name), " (a symbolic link) ", why));
    }
  }
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": ", Shown(path), " cannot be listed to check its links: ", ec.message()));
  }
  return resolved;
}

}  // namespace loratrf::worker::agent
