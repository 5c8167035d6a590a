// Which files a job may make this node's ranks read: the model directory and data files named
// in its spec are resolved (realpath: symlinks and `..` followed) and refused unless they lie
// under one of the agent's allowed roots (`--allow-path DIR`, repeatable). A job's spec comes
// from any user of the coordinator, and the ranks run with the agent's identity: without this
// a spec could read /proc/self/environ (the agent's environment) or another tenant's files.
//
// Rules (docs/security.md, "Path confinement"):
// - With roots: a path is allowed when its resolved form is a root or lies under one,
//   compared component by component (root /data does not admit /data2).
// - Without roots (a single-user machine; DESIGN.md's contract: no flag, no restriction):
//   every path is allowed.
// - With roots, never under the kernel's pseudo file systems (/proc, /sys, /dev), which never
//   hold a model or data set, unless a root lies under one of them (--allow-path /dev/shm
//   opts that subtree in); and never under the agent's own work dir (other jobs' attempts,
//   checkpoints and logs), even when a root contains it.
// - A relative path is taken relative to `base_dir` (the directory of the attempt's job.json,
//   as the ranks resolve it), then checked like any other.
// - A path that does not exist is resolved as far as it exists, the rest appended lexically:
//   it is refused when that lies outside, and otherwise left for the ranks to report missing,
//   so the answer for a path outside the roots does not depend on whether it exists.
// - For the model directory, each entry of the directory that is a symbolic link is checked
//   too (the engine opens config.json, the weights and tokenizer.json inside it; shard names
//   from an index are plain file names).
//
// What this does not guarantee: the check runs when an attempt starts, and the ranks open the
// resolved paths afterwards. A tenant who can write inside an allowed root can swap a
// directory on that path for a symbolic link in between (or hard-link a file it can read into
// a root). Give tenants read-only views of the roots, or roots of their own, where that
// matters.
//
// Threading: immutable after Create(); Check* are safe from any thread.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace loratrf::worker::agent {

class PathPolicy {
 public:
  // `roots`: the --allow-path values, each an existing directory (else INVALID_ARGUMENT
  // naming it); none: unrestricted. `work_dir`: the agent's work dir, refused whatever the
  // roots.
  static absl::StatusOr<PathPolicy> Create(const std::vector<std::string>& roots,
                                           const std::string& work_dir);
  // Allows everything: for tests and tools that run ranks outside an agent.
  static PathPolicy Unrestricted() { return PathPolicy(); }

  // The resolved form of `path` (relative: to `base_dir`) when it is allowed; otherwise
  // INVALID_ARGUMENT "FIELD: PATH is outside the allowed paths (--allow-path)" (or "...is
  // inside the agent's work dir", "...is under /proc, which jobs may not read"). The message
  // holds the path as given, never the target of a link or anything read from a file.
  absl::StatusOr<std::string> CheckFile(absl::string_view field, const std::string& path,
                                        const std::string& base_dir) const;
  // CheckFile, and each symbolic link directly inside the directory.
  absl::StatusOr<std::string> CheckDirectory(absl::string_view field, const std::string& path,
                                             const std::string& base_dir) const;

  const std::vector<std::string>& roots() const { return roots_; }
  bool restricted() const { return !roots_.empty(); }

 private:
  PathPolicy() = default;
  // Empty when allowed, else why not (without the field and path).
  std::string Refusal(const std::string& resolved) const;

  bool enforce_ = false;           // false: Unrestricted()
  std::vector<std::string> roots_;  // resolved, no trailing '/'
  std::string work_dir_;            // resolved
};

// `path` lies at or under `root` (both absolute and normalised), component by component.
bool IsUnder(absl::string_view path, absl::string_view root);

}  // namespace loratrf::worker::agent
