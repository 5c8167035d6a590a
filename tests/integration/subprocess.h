// Runs a real binary to completion and captures what it printed (integration tests only).
#pragma once

#include <string>
#include <vector>

namespace loratrf::testing {

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;      // the signal that killed it, else 0
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) with argv, optional stdin text, and a hard timeout after which the
// child is killed with SIGKILL (exit_code -1, signal 9).
ProcessResult RunProcess(const std::vector<std::string>& argv, const std::string& stdin_text = "",
                         int timeout_seconds = 60);

// LORATRF_BIN_DIR/<name>
std::string BinaryPath(const std::string& name);

}  // namespace loratrf::testing
