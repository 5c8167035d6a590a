// `loratrf-worker agent`: the command line, the node's devices, the signal thread and the exit.
// The agent itself (worker/agent/) knows nothing of flags, torch or signals.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/command_line.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "proto/contract/limits.h"
#include "proto/contract/names.h"
#include "proto/rpc/address.h"
#include "proto/rpc/channel.h"
#include "worker/agent/agent.h"
#include "worker/commands/commands.h"
#include "worker/engine/runtime_info.h"

namespace loratrf::worker {
namespace {

std::string HostName() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) return "";
  return host;
}

// A gRPC target the agent can dial: unix:PATH, or HOST:PORT with a port of 1-65535.
absl::StatusOr<std::string> CoordinatorHost(const std::string& target) {
  if (target.rfind("unix:", 0) == 0 && target.size() > 5) return std::string();
  ASSIGN_OR_RETURN(rpc::HostPort address, rpc::ParseHostPort("--coordinator", target));
  if (address.host.empty() || address.port == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--coordinator '", target, "': expected HOST:PORT with a port of 1-65535"));
  }
  return address.host;
}

// The device ids a rank may be given: CUDA_VISIBLE_DEVICES's entries when the agent runs under
// one, else 0..count-1.
std::vector<std::string> GpuIds(int count) {
  std::vector<std::string> ids;
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES"); visible != nullptr && *visible) {
    for (absl::string_view id : absl::StrSplit(visible, ',', absl::SkipEmpty())) {
      ids.emplace_back(id);
    }
  }
  if (ids.size() < static_cast<size_t>(count)) {
    ids.clear();
    for (int i = 0; i < count; ++i) ids.push_back(std::to_string(i));
  }
  ids.resize(static_cast<size_t>(count));
  return ids;
}

absl::StatusOr<agent::AgentOptions> ParseOptions(const CommandLine& flags) {
  agent::AgentOptions options;
  ASSIGN_OR_RETURN(options.coordinator, flags.Require("--coordinator"));
  ASSIGN_OR_RETURN(std::string coordinator_host, CoordinatorHost(options.coordinator));
  ASSIGN_OR_RETURN(options.work_dir, flags.Require("--work-dir"));
  ASSIGN_OR_RETURN(int64_t slots, flags.GetInt("--slots", -1, 1, limits::kMaxWorkerSlots));
  ASSIGN_OR_RETURN(std::string device, flags.GetChoice("--device", "auto", {"auto", "cpu", "cuda"}));
  const std::string default_name = contract::WorkerNameFromHostName(HostName());
  options.name = flags.GetOr("--name", default_name);
  RETURN_IF_ERROR(contract::CheckWorkerName("--name", options.name));
  options.address = flags.GetOr("--address", "");
  if (options.address.empty()) {
    options.address = rpc::IsLoopbackHost(coordinator_host) ? "127.0.0.1" : default_name;
  }
  if (options.address.size() > limits::kMaxAddressBytes ||
      options.address.find_first_of(" \t\n/") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--address '", options.address, "': not a host name"));
  }
  std::error_code ec;
  std::filesystem::create_directories(options.work_dir + "/jobs", ec);
  if (ec || ::access((options.work_dir + "/jobs").c_str(), W_OK) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("--work-dir ", options.work_dir,
                                                   ": cannot create or write it"));
  }
  options.work_dir = std::filesystem::absolute(options.work_dir).lexically_normal().string();
  if (options.work_dir.size() > 1 && options.work_dir.back() == '/') options.work_dir.pop_back();
  ASSIGN_OR_RETURN(options.paths,
                   agent::PathPolicy::Create(flags.GetAll("--allow-path"), options.work_dir));

  // Slots: the GPUs when CUDA is here (at most --slots of them), else --slots CPU slots.
  const engine::RuntimeInfo runtime = engine::GetRuntimeInfo();
  options.version = runtime.loratrf_version;
  const int gpus = runtime.cuda_device_count;
  if (device == "cuda" && gpus == 0) {
    return absl::InvalidArgumentError("--device cuda: this node has no usable GPU");
  }
  if (device != "cpu" && gpus > 0) {
    options.device = v1::DEVICE_CUDA;
    options.slots = static_cast<uint32_t>(slots > 0 ? std::min<int64_t>(slots, gpus) : gpus);
    options.gpus = GpuIds(gpus);
  } else {
    options.device = v1::DEVICE_CPU;
    options.slots = static_cast<uint32_t>(slots > 0 ? slots : 1);
  }
  ASSIGN_OR_RETURN(options.drain_timeout,
                   flags.GetDuration("--drain-timeout", options.drain_timeout, absl::Nanoseconds(1)));
  ASSIGN_OR_RETURN(options.collective_timeout,
                   flags.GetDuration("--collective-timeout", options.collective_timeout,
                                     absl::Seconds(1), absl::Hours(24)));
  ASSIGN_OR_RETURN(options.keep_failed_for,
                   flags.GetDuration("--keep-failed-for", options.keep_failed_for,
                                     absl::Nanoseconds(1)));
  char self[PATH_MAX] = {};
  ssize_t length = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (length <= 0) return absl::InternalError("cannot find this executable (/proc/self/exe)");
  options.executable = std::string(self, static_cast<size_t>(length));
  return options;
}

agent::Agent* g_agent = nullptr;

}  // namespace

int RunAgent(const std::vector<std::string>& args) {
  // SIGINT/SIGTERM are taken by one thread and blocked everywhere else: blocked here, before
  // any thread exists (the metrics server's, gRPC's, libtorch's inherit the mask); rank
  // processes unblock them before exec.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  absl::StatusOr<CommandLine> flags = CommandLine::Parse(
      args, {{"--coordinator", true}, {"--slots", true}, {"--work-dir", true}, {"--name", true},
             {"--metrics-listen", true}, {"--token-file", true}, {"--tls-ca", true},
             {"--address", true}, {"--device", true}, {"--log-level", true},
             {"--log-format", true}, {"--drain-timeout", true}, {"--keep-failed-for", true},
             {"--collective-timeout", true},
             {"--allow-path", true, /*repeatable=*/true}});
  auto fail = [](const absl::Status& status) {
    std::cerr << "loratrf-worker: " << status.message() << "\n";
    return status.code() == absl::StatusCode::kInternal ? 1 : 2;
  };
  if (!flags.ok()) return fail(flags.status());
  if (!flags->positional().empty()) {
    return fail(absl::InvalidArgumentError("agent takes no arguments, got '" +
                                           flags->positional()[0] + "'"));
  }
  logging::Options log_options;
  log_options.program = "loratrf-worker agent";
  log_options.level = flags->GetOr("--log-level", "info");
  absl::StatusOr<bool> json_logs = logging::ParseFormat(flags->GetOr("--log-format", "text"));
  if (!json_logs.ok()) return fail(json_logs.status());
  log_options.json = *json_logs;
  if (absl::Status s = logging::Init(log_options); !s.ok()) return fail(s);

  absl::StatusOr<agent::AgentOptions> options = ParseOptions(*flags);
  if (!options.ok()) return fail(options.status());
  rpc::ChannelOptions channel_options;
  channel_options.target = options->coordinator;
  channel_options.token_file = flags->GetOr("--token-file", "");
  channel_options.tls_ca_file = flags->GetOr("--tls-ca", "");
  channel_options.keepalive = true;  // a lost coordinator is noticed between commands
  channel_options.max_reconnect_backoff_ms = 5000;
  absl::StatusOr<rpc::ClientChannel> channel = rpc::ClientChannel::Open(channel_options);
  if (!channel.ok()) return fail(channel.status());
  std::unique_ptr<agent::AgentMetrics> metrics = agent::MakeNullAgentMetrics();
  if (std::optional<std::string> listen = flags->Get("--metrics-listen")) {
    absl::StatusOr<std::unique_ptr<agent::AgentMetrics>> served =
        agent::MakePrometheusAgentMetrics(*listen, options->work_dir);
    if (!served.ok()) return fail(served.status());
    metrics = *std::move(served);
  }

  // Once every flag is good: a refused command line stays one line.
  if (!options->paths.restricted()) {
    LOG_WARN("no --allow-path: jobs may read any file this agent can (its environment and other "
             "jobs' checkpoints included); on a shared fleet, give the model and data directories");
  } else {
    LOG_INFO("jobs may read under: {}", absl::StrJoin(options->paths.roots(), ", "));
  }
  agent::Agent agent(*std::move(options), *std::move(channel), std::move(metrics));
  g_agent = &agent;
  // The first signal drains (ranks checkpoint, uploads, reports; what Kubernetes wants within
  // its grace period); a second one stops at once.
  std::thread signals([stop_signals] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    LOG_INFO("{}: draining (send it again to stop at once)", signal == SIGINT ? "SIGINT" : "SIGTERM");
    g_agent->Drain();
    sigwait(&stop_signals, &signal);
    LOG_INFO("{} again: stopping now", signal == SIGINT ? "SIGINT" : "SIGTERM");
    g_agent->Shutdown();
  });
  signals.detach();  // it may still wait when Run() returns on its own; exit ends it
  int code = agent.Run();
  spdlog::default_logger()->flush();
  std::cerr.flush();
  // Threads gRPC or a detached waiter still hold may outlive `agent`: leave without unwinding.
  std::_Exit(code);
}

}  // namespace loratrf::worker
