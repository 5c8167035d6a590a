// Starting a job's rank processes on this machine, like torchrun: one process per rank, each
// the same binary with --rank/--world-size/--master-addr/--master-port. SIGTERM or SIGINT to
// the launcher is forwarded to the ranks, which finish their step, commit a checkpoint and
// exit with contract::kRunExitStopped; the launcher waits up to stop_timeout for that (a
// second signal, or the timeout, kills them) and exits with the same status. If a rank dies,
// the others are stopped at once; ranks die with the launcher (PR_SET_PDEATHSIG), so none is
// ever orphaned.
//
// Threading: called from main; installs process-wide signal handlers while it runs.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace loratrf::worker {

struct LaunchOptions {
  std::string executable;                // /proc/self/exe
  std::vector<std::string> common_args;  // e.g. {"run", "--spec", S, "--output", D}
  int nproc = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: pick a free port
  std::chrono::seconds stop_timeout{300};  // for the ranks to checkpoint once asked to stop
};

// Runs the ranks to completion. Returns the exit status the launcher should exit with: 0 when
// every rank succeeded, contract::kRunExitStopped when they stopped as asked, else the first
// failing rank's status (128 + signal when killed).
absl::StatusOr<int> LaunchRanks(const LaunchOptions& options);

// A free TCP port on the loopback interface (bind to port 0).
int PickFreePort();

}  // namespace loratrf::worker
