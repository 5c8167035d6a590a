// One rank process started by the agent: `loratrf-worker run ... --rank R`, in its own process
// group, stdout and stderr to files beside the attempt's job.json, and bound to the life of the
// thread that started it (PR_SET_PDEATHSIG = SIGKILL, checked against the getppid() race), so a
// killed agent leaves no orphans.
//
// Threading: single-threaded: an attempt's thread starts, polls and stops its ranks. That
// thread must outlive the ranks (PDEATHSIG follows the thread that forked).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace loratrf::worker::agent {

class RankProcess {
 public:
  // Starts `argv` (argv[0] a path) with `env` as its whole environment.
  static absl::StatusOr<RankProcess> Start(int rank, const std::vector<std::string>& argv,
                                           const std::vector<std::string>& env,
                                           const std::string& stdout_path,
                                           const std::string& stderr_path);

  int rank() const { return rank_; }
  pid_t pid() const { return pid_; }
  bool running() const { return running_; }
  // Reaps the process if it has ended; true when it is no longer running.
  bool Poll();
  // Exit status: the code, or 128 + signal when a signal ended it. Valid once !running().
  int exit_code() const { return exit_code_; }
  bool signaled() const { return signaled_; }
  // The last non-empty line the rank wrote on stderr ("" when none).
  std::string LastStderrLine() const;
  // The last `n` lines of its stderr.
  std::vector<std::string> StderrTail(size_t n) const;

  // SIGTERM to the process group.
  void Terminate();
  // SIGKILL to the process group.
  void Kill();

 private:
  RankProcess(int rank, pid_t pid, std::string stderr_path)
      : rank_(rank), pid_(pid), stderr_path_(std::move(stderr_path)) {}
  int rank_;
  pid_t pid_;
  std::string stderr_path_;
  bool running_ = true;
  bool signaled_ = false;
  int exit_code_ = 0;
};

// Terminates every running rank's process group, waits up to `grace` for them to end, then
// SIGKILLs what is left and reaps it.
void StopRanks(std::vector<RankProcess>& ranks, absl::Duration grace);

// The current environment with `overrides` (NAME=VALUE) replacing or adding variables.
std::vector<std::string> EnvironmentWith(const std::vector<std::string>& overrides);

}  // namespace loratrf::worker::agent
