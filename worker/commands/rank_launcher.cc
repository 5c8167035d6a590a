#include "worker/commands/rank_launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <iostream>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/cpu_threads.h"
#include "proto/contract/run_output.h"

namespace loratrf::worker {
namespace {

volatile sig_atomic_t g_forward_signal = 0;
volatile sig_atomic_t g_signals_seen = 0;

void RememberSignal(int signal) {
  g_forward_signal = signal;
  if (g_signals_seen < 2) g_signals_seen = g_signals_seen + 1;
}

void StopAll(const std::vector<pid_t>& pids, const std::vector<bool>& running) {
  for (size_t i = 0; i < pids.size(); ++i) {
    if (running[i]) ::kill(pids[i], SIGTERM);
  }
  // A rank stuck in a collective may ignore SIGTERM; give the others a moment, then SIGKILL.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::vector<bool> alive = running;
  while (std::chrono::steady_clock::now() < deadline) {
    bool any = false;
    for (size_t i = 0; i < pids.size(); ++i) {
      if (!alive[i]) continue;
      int status = 0;
      if (::waitpid(pids[i], &status, WNOHANG) == pids[i]) {
        alive[i] = false;
      } else {
        any = true;
      }
    }
    if (!any) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (size_t i = 0; i < pids.size(); ++i) {
    if (alive[i]) {
      ::kill(pids[i], SIGKILL);
      ::waitpid(pids[i], nullptr, 0);
    }
  }
}

}  // namespace

int PickFreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

absl::StatusOr<int> LaunchRanks(const LaunchOptions& options) {
  int port = options.master_port != 0 ? options.master_port : PickFreePort();
  if (port == 0) return absl::UnavailableError("no free TCP port for the rendezvous");

  struct sigaction forward {};
  forward.sa_handler = RememberSignal;
  sigemptyset(&forward.sa_mask);
  struct sigaction old_int {}, old_term {};
  sigaction(SIGINT, &forward, &old_int);
  sigaction(SIGTERM, &forward, &old_term);
  g_forward_signal = 0;
  g_signals_seen = 0;
  const pid_t launcher = ::getpid();

  std::vector<pid_t> pids;
  // Each rank's share of the cores, unless the operator chose OMP_NUM_THREADS.
  std::optional<std::string> threads_setting = OmpThreadsSetting(options.nproc);
  for (int rank = 0; rank < options.nproc; ++rank) {
    std::vector<std::string> args = {options.executable};
    args.insert(args.end(), options.common_args.begin(), options.common_args.end());
    for (const std::string& extra :
         {std::string("--rank"), std::to_string(rank), std::string("--world-size"),
          std::to_string(options.nproc), std::string("--master-addr"), options.master_addr,
          std::string("--master-port"), std::to_string(port)}) {
      args.push_back(extra);
    }
    pid_t pid = ::fork();
    if (pid < 0) {
      std::vector<bool> running(pids.size(), true);
      StopAll(pids, running);
      return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != launcher) _exit(1);  // the launcher died before we got here
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      if (threads_setting) ::putenv(threads_setting->data());  // made before fork: no malloc here
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      std::fprintf(stderr, "loratrf-worker: exec %s: %s\n", argv[0], std::strerror(errno));
      _exit(127);
    }
    pids.push_back(pid);
  }

  std::vector<bool> running(pids.size(), true);
  int remaining = static_cast<int>(pids.size());
  int result = 0;        // the first failing rank's status
  bool stopped = false;  // a rank exited after the checkpoint it was asked for
  // Set once the ranks were asked to stop (forwarded signal, or a rank stopping on its own):
  // they finish their step and commit a checkpoint, which may take a while, but not forever.
  std::optional<std::chrono::steady_clock::time_point> stop_deadline;
  while (remaining > 0) {
    if (g_forward_signal != 0) {
      const int signal = g_forward_signal;
      g_forward_signal = 0;
      if (stop_deadline.has_value() && g_signals_seen > 1) {
        // Asked again: stop at once.
        std::cerr << "loratrf-worker: asked again; killing the ranks\n";
        for (size_t i = 0; i < pids.size(); ++i) {
          if (running[i]) ::kill(pids[i], SIGKILL);
        }
        if (result == 0) result = 128 + signal;
      } else {
        for (size_t i = 0; i < pids.size(); ++i) {
          if (running[i]) ::kill(pids[i], signal);
        }
        if (!stop_deadline) stop_deadline = std::chrono::steady_clock::now() + options.stop_timeout;
      }
    }
    if (stop_deadline && std::chrono::steady_clock::now() > *stop_deadline) {
      std::cerr << "loratrf-worker: the ranks did not stop within "
                << std::chrono::duration_cast<std::chrono::seconds>(options.stop_timeout).count()
                << " s; killing them\n";
      for (size_t i = 0; i < pids.size(); ++i) {
        if (running[i]) ::kill(pids[i], SIGKILL);
      }
      if (result == 0) result = 128 + SIGKILL;
      stop_deadline = std::chrono::steady_clock::time_point::max();
    }
    int status = 0;
    pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    for (size_t i = 0; i < pids.size(); ++i) {
      if (pids[i] != done || !running[i]) continue;
      running[i] = false;
      --remaining;
      int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (code == contract::kRunExitStopped) {
        // Every rank agreed on the step to stop after: the others follow within moments.
        stopped = true;
        if (!stop_deadline) stop_deadline = std::chrono::steady_clock::now() + options.stop_timeout;
      } else if (code != 0 && result == 0) {
        result = code;
        std::cerr << "loratrf-worker: rank " << i << " exited with status " << code
                  << "; stopping the other ranks\n";
        StopAll(pids, running);
        remaining = 0;
      }
    }
  }
  if (result == 0 && stopped) {
    result = contract::kRunExitStopped;
    std::cerr << "loratrf-worker: stopped as asked; run the same command again to resume\n";
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace loratrf::worker
