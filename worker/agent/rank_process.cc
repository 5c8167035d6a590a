#include "worker/agent/rank_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace loratrf::worker::agent {

absl::StatusOr<RankProcess> RankProcess::Start(int rank, const std::vector<std::string>& argv,
                                               const std::vector<std::string>& env,
                                               const std::string& stdout_path,
                                               const std::string& stderr_path) {
  // Everything the child needs is made before fork: after it, in a threaded process, the child
  // may only make async-signal-safe calls.
  int out = ::open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0) return absl::InternalError(absl::StrCat(stdout_path, ": ", std::strerror(errno)));
  int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (err < 0) {
    ::close(out);
    return absl::InternalError(absl::StrCat(stderr_path, ": ", std::strerror(errno)));
  }
  std::vector<std::string> args = argv, vars = env;
  std::vector<char*> c_argv, c_env;
  for (std::string& a : args) c_argv.push_back(a.data());
  c_argv.push_back(nullptr);
  for (std::string& v : vars) c_env.push_back(v.data());
  c_env.push_back(nullptr);
  const pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) {
    int error = errno;
    ::close(out);
    ::close(err);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(error)));
  }
  if (pid == 0) {
    // Die with the thread that started us; if the agent died before prctl, we were already
    // reparented: go.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) _exit(1);
    ::setpgid(0, 0);
    // The agent blocks SIGINT/SIGTERM in its threads and handles them on one; a rank must not
    // inherit that.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int signal : {SIGINT, SIGTERM, SIGPIPE, SIGCHLD, SIGHUP}) ::signal(signal, SIG_DFL);
    int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::execve(c_argv[0], c_argv.data(), c_env.data());
    const char message[] = "loratrf-worker agent: cannot exec the rank process\n";
    ssize_t ignored = ::write(2, message, sizeof message - 1);
    (void)ignored;
    _exit(127);
  }
  ::setpgid(pid, pid);  // also here, so that no kill(-pid) can come before the child's own call
  ::close(out);
  ::close(err);
  return RankProcess(rank, pid, stderr_path);
}

bool RankProcess::Poll() {
  if (!running_) return true;
  int status = 0;
  pid_t done = ::waitpid(pid_, &status, WNOHANG);
  if (done == 0) return false;
  if (done < 0) {
    // Not our child any more (cannot happen unless someone else reaped it): count it as killed.
    running_ = false;
    signaled_ = true;
    exit_code_ = 128 + SIGKILL;
    return true;
  }
  running_ = false;
  if (WIFEXITED(status)) {
    exit_code_ = WEXITSTATUS(status);
  } else {
    signaled_ = true;
    exit_code_ = 128 + WTERMSIG(status);
  }
  return true;
}

void RankProcess::Terminate() {
  if (running_) ::kill(-pid_, SIGTERM);
}

void RankProcess::Kill() {
  if (running_) ::kill(-pid_, SIGKILL);
}

std::vector<std::string> RankProcess::StderrTail(size_t n) const {
  std::vector<std::string> lines;
  int fd = ::open(stderr_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return lines;
  off_t size = ::lseek(fd, 0, SEEK_END);
  constexpr off_t kTail = 16 << 10;
  off_t start = size > kTail ? size - kTail : 0;
  std::string text(static_cast<size_t>(size - start), '\0');
  ssize_t got = ::pread(fd, text.data(), text.size(), start);
  ::close(fd);
  text.resize(got > 0 ? static_cast<size_t>(got) : 0);
  size_t begin = 0;
  if (start > 0) {  // the first line is cut: skip it
    size_t newline = text.find('\n');
    begin = newline == std::string::npos ? text.size() : newline + 1;
  }
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(begin, end - begin);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(std::move(line));
    begin = end + 1;
  }
  if (lines.size() > n) lines.erase(lines.begin(), lines.end() - static_cast<long>(n));
  return lines;
}

std::string RankProcess::LastStderrLine() const {
  std::vector<std::string> tail = StderrTail(1);
  return tail.empty() ? std::string() : tail.back();
}

void StopRanks(std::vector<RankProcess>& ranks, absl::Duration grace) {
  for (RankProcess& rank : ranks) {
    if (!rank.Poll()) rank.Terminate();
  }
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(grace);
  while (std::chrono::steady_clock::now() < deadline) {
    bool any = false;
    for (RankProcess& rank : ranks) any |= !rank.Poll();
    if (!any) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (RankProcess& rank : ranks) {
    if (!rank.Poll()) {
      rank.Kill();
      while (!rank.Poll()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
}

std::vector<std::string> EnvironmentWith(const std::vector<std::string>& overrides) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string var(*e);
    std::string name = var.substr(0, var.find('='));
    bool replaced = false;
    for (const std::string& o : overrides) replaced |= o.substr(0, o.find('=')) == name;
    if (!replaced) env.push_back(std::move(var));
  }
  env.insert(env.end(), overrides.begin(), overrides.end());
  return env;
}

}  // namespace loratrf::worker::agent
