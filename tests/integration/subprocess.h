// Runs a real binary to completion and captures what it printed (integration tests only).
#pragma once

#include <sys/types.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
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

// A process left running in the background (a coordinator, an agent), its stdout and stderr
// appended to `log_path`. Killed with SIGKILL and reaped when the object goes, if still running.
class BackgroundProcess {
 public:
  BackgroundProcess(const std::vector<std::string>& argv, const std::string& log_path);
  ~BackgroundProcess();
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int signal);
  // Waits for it to exit: its exit code, 128 + signal when killed, -1 on timeout.
  int Wait(int timeout_seconds);
  bool running();

 private:
  pid_t pid_ = -1;
  int status_ = -1;  // the exit code once reaped
};

// The interpreter of the reference scripts: $LORATRF_PYTHON when set (tests/gpu/run.sh sets the
// GPU machine's, which has PyTorch), else Debian's, which has python3-torch (the `python3` on
// PATH may be another one).
inline const std::string kPython = [] {
  const char* python = std::getenv("LORATRF_PYTHON");
  return std::string(python != nullptr && *python != '\0' ? python : "/usr/bin/python3");
}();

// The whole file (empty when it cannot be read).
std::string Slurp(const std::string& path);

// `text` without trailing white space (a command's output, a file's last newline).
std::string Trimmed(std::string text);

// iproute2's `ip` (for tests that make network namespaces), or "" when it is not installed.
std::string IpBinary();

// Polls `condition` every 100 ms for up to `seconds`; its last answer.
bool WaitFor(const std::function<bool()>& condition, int seconds);

// A fresh directory under /tmp, removed with everything in it when the object goes.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace loratrf::testing
