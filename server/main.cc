// loratrf-coordinator: the control plane's server (docs/control-plane.md).
//
//   loratrf-coordinator --listen HOST:PORT --data-dir DIR [--metrics-listen HOST:PORT]
//       [--auth-token-file F] [--tls-cert F --tls-key F [--tls-ca F]] [--lease-ttl SECONDS]
//       [--max-running-per-owner N] [--rendezvous-ports LO-HI]
//
// Opens the SQLite job store (DATA_DIR/jobs.db) and the artifact store (DATA_DIR/artifacts),
// recovers the core from them, serves gRPC and /metrics, and calls the core's Tick() every
// 200 ms. Once listening it prints `listening on HOST:PORT` (the real port, also with port 0)
// on stderr and writes the same address to DATA_DIR/coordinator.address. SIGTERM or SIGINT
// drains: health NOT_SERVING, the core refuses new work and ends its streams, calls in flight
// get 5 s, then the stores close and the process exits 0. SIGHUP re-reads --auth-token-file
// (token rotation without a restart): a file that does not parse is logged with its line and
// the credentials in force stay.
//
// Exit status: 0 after a drain, 2 for bad flags or files (one line on stderr), 1 when the
// stores or the listening address fail.
//
// Threading: main() parses, starts everything, then waits for a signal with sigwait (the
// signals are blocked in every thread); one ticker thread calls core->Tick(); gRPC and the
// metrics exposer run their own threads.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/artifacts/artifact_store.h"
#include "common/atomic_file.h"
#include "common/command_line.h"
#include "common/logging.h"
#include "server/core/clock.h"
#include "server/core/job_service.h"
#include "server/grpc/auth.h"
#include "server/grpc/coordinator_server.h"
#include "proto/rpc/address.h"
#include "proto/rpc/channel.h"
#include "server/metrics/coordinator_metrics.h"
#include "server/store/sqlite_job_store.h"

namespace {

using namespace loratrf::server;  // NOLINT: this file is the server's main
namespace logging = loratrf::logging;
namespace rpc = loratrf::rpc;

constexpr int kExitUsage = 2;
constexpr int kExitFailure = 1;
constexpr absl::Duration kTickInterval = absl::Milliseconds(200);
constexpr absl::Duration kMinTickGap = absl::Milliseconds(10);
constexpr absl::Duration kShutdownGrace = absl::Seconds(5);

constexpr char kUsage[] =
    "usage: loratrf-coordinator --listen HOST:PORT --data-dir DIR [--metrics-listen HOST:PORT]\n"
    "           [--auth-token-file F] [--tls-cert F --tls-key F [--tls-ca F]]\n"
    "           [--lease-ttl SECONDS] [--max-running-per-owner N] [--rendezvous-ports LO-HI]\n"
    "           [--log-level debug|info|warn|error] [--log-format text|json]\n";

int UsageError(absl::string_view message) {
  std::cerr << "loratrf-coordinator: " << message << "\n";
  return kExitUsage;
}

int Failure(absl::string_view message) {
  std::cerr << "loratrf-coordinator: " << message << "\n";
  return kExitFailure;
}

struct Config {
  std::string listen;
  rpc::HostPort listen_address;
  std::string data_dir;
  std::optional<std::string> metrics_listen;
  std::optional<std::string> auth_token_file;
  std::optional<TlsFiles> tls;
  CoreOptions core;
  logging::Options logging;
};

absl::StatusOr<std::pair<uint32_t, uint32_t>> ParsePortRange(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, '-');
  uint32_t low = 0, high = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &low) ||
      !absl::SimpleAtoi(parts[1], &high) || low < 1 || high > 65535 || low > high) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--rendezvous-ports: '", text, "' is not LO-HI with 1 <= LO <= HI <= 65535"));
  }
  return std::make_pair(low, high);
}

// Every flag mistake is an InvalidArgument naming the flag.
absl::StatusOr<Config> ParseFlags(const std::vector<std::string>& args) {
  auto flags = loratrf::CommandLine::Parse(
      args, {{"--listen", true},
             {"--data-dir", true},
             {"--metrics-listen", true},
             {"--auth-token-file", true},
             {"--tls-cert", true},
             {"--tls-key", true},
             {"--tls-ca", true},
             {"--lease-ttl", true},
             {"--max-running-per-owner", true},
             {"--rendezvous-ports", true},
             {"--log-level", true},
             {"--log-format", true}});
  if (!flags.ok()) return flags.status();
  if (!flags->positional().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", flags->positional()[0], "'"));
  }
  Config config;
  absl::StatusOr<std::string> listen = flags->Require("--listen");
  if (!listen.ok()) return listen.status();
  config.listen = *listen;
  absl::StatusOr<rpc::HostPort> address = rpc::ParseHostPort("--listen", config.listen);
  if (!address.ok()) return address.status();
  config.listen_address = *address;
  absl::StatusOr<std::string> data_dir = flags->Require("--data-dir");
  if (!data_dir.ok()) return data_dir.status();
  if (data_dir->empty()) return absl::InvalidArgumentError("--data-dir: empty");
  config.data_dir = *data_dir;
  if (auto metrics = flags->Get("--metrics-listen")) {
    absl::StatusOr<rpc::HostPort> parsed = rpc::ParseHostPort("--metrics-listen", *metrics);
    if (!parsed.ok()) return parsed.status();
    config.metrics_listen = *metrics;
  }
  config.auth_token_file = flags->Get("--auth-token-file");

  bool has_cert = flags->Has("--tls-cert"), has_key = flags->Has("--tls-key");
  if (has_cert != has_key) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (flags->Has("--tls-ca") && !has_cert) {
    return absl::InvalidArgumentError("--tls-ca needs --tls-cert and --tls-key");
  }
  if (has_cert) {
    TlsFiles tls;
    absl::StatusOr<std::string> cert =
        rpc::ReadPemFile("--tls-cert", *flags->Get("--tls-cert"), /*certificate=*/true);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key =
        rpc::ReadPemFile("--tls-key", *flags->Get("--tls-key"), /*certificate=*/false);
    if (!key.ok()) return key.status();
    tls.cert = std::move(*cert);
    tls.key = std::move(*key);
    if (auto ca = flags->Get("--tls-ca")) {
      absl::StatusOr<std::string> text = rpc::ReadPemFile("--tls-ca", *ca, /*certificate=*/true);
      if (!text.ok()) return text.status();
      tls.client_ca = std::move(*text);
    }
    config.tls = std::move(tls);
  }

  absl::StatusOr<int64_t> ttl = flags->GetInt("--lease-ttl", 10, 1, 3600);
  if (!ttl.ok()) return ttl.status();
  config.core.lease_ttl = absl::Seconds(*ttl);
  absl::StatusOr<int64_t> per_owner = flags->GetInt("--max-running-per-owner", 0, 0, 1'000'000);
  if (!per_owner.ok()) return per_owner.status();
  config.core.max_running_per_owner = static_cast<int>(*per_owner);
  if (auto ports = flags->Get("--rendezvous-ports")) {
    absl::StatusOr<std::pair<uint32_t, uint32_t>> range = ParsePortRange(*ports);
    if (!range.ok()) return range.status();
    config.core.rendezvous_port_low = range->first;
    config.core.rendezvous_port_high = range->second;
  }
  config.logging.program = "loratrf-coordinator";
  config.logging.level = flags->GetOr("--log-level", "info");
  if (absl::StatusOr<spdlog::level::level_enum> level = logging::ParseLevel(config.logging.level);
      !level.ok()) {
    return level.status();
  }
  absl::StatusOr<bool> json_logs = logging::ParseFormat(flags->GetOr("--log-format", "text"));
  if (!json_logs.ok()) return json_logs.status();
  config.logging.json = *json_logs;

  if (!config.auth_token_file && !rpc::IsLoopbackHost(config.listen_address.host)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen ", config.listen,
        ": without --auth-token-file the coordinator listens only on a loopback address "
        "(127.0.0.1, [::1], localhost)"));
  }
  return config;
}

// Creates the data directory if needed and takes an exclusive lock on it, so that a second
// coordinator on the same directory stops at once instead of sharing the store.
absl::StatusOr<int> LockDataDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::InvalidArgumentError(
        absl::StrCat("--data-dir: cannot create ", dir, ": ", std::strerror(errno)));
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("--data-dir: ", dir, " is not a directory"));
  }
  std::string path = dir + "/coordinator.lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--data-dir: cannot open ", path, ": ", std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("--data-dir: ", dir, " is in use by another coordinator"));
  }
  return fd;  // held until the process exits
}

// Calls core->Tick() every kTickInterval, and soon after the core says there is scheduling work
// (a finished job's slots are refilled at once, not at the next period), until Stop().
class Ticker {
 public:
  explicit Ticker(JobServiceCore* core) : core_(core), thread_([this] { Run(); }) {
    core_->SetScheduleHook([this] { Poke(); });
  }
  ~Ticker() { Stop(); }
  // Idempotent; the first call must come while the core is still alive.
  void Stop() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    wake_.notify_one();
    thread_.join();
    core_->SetScheduleHook(nullptr);
  }
  void Poke() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      poked_ = true;
    }
    wake_.notify_one();
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      poked_ = false;
      lock.unlock();
      core_->Tick();
      lock.lock();
      // At most one scheduling pass per kMinTickGap however often it is poked: a pass sorts
      // the whole queue.
      wake_.wait_for(lock, absl::ToChronoMilliseconds(kMinTickGap), [this] { return stop_; });
      wake_.wait_for(lock, absl::ToChronoMilliseconds(kTickInterval - kMinTickGap),
                     [this] { return stop_ || poked_; });
    }
  }

  JobServiceCore* const core_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;   // guarded by mu_
  bool poked_ = false;  // guarded by mu_
  std::thread thread_;
};

int Run(const Config& config) {
  // Block the shutdown signals before any thread starts, so that only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Authenticator auth;
  if (config.auth_token_file) {
    absl::StatusOr<Authenticator> loaded = Authenticator::FromFile(*config.auth_token_file);
    if (!loaded.ok()) {
      return UsageError(absl::StrCat("--auth-token-file: ", loaded.status().message()));
    }
    auth = std::move(*loaded);
  }

  absl::StatusOr<int> lock = LockDataDir(config.data_dir);
  if (!lock.ok()) {
    return lock.status().code() == absl::StatusCode::kInvalidArgument
               ? UsageError(lock.status().message())
               : Failure(lock.status().message());
  }

  // Group commit: the core fsyncs once for all the writes that wait at the same time, outside
  // its lock, and answers nothing that depends on a write before it is durable.
  auto store = SqliteJobStore::Open(config.data_dir + "/jobs.db",
                                    SqliteJobStore::SyncMode::kGroupCommit);
  if (!store.ok()) return Failure(absl::StrCat("job store: ", store.status().message()));
  auto artifacts = ArtifactStore::Open(config.data_dir);
  if (!artifacts.ok()) {
    return Failure(absl::StrCat("artifact store: ", artifacts.status().message()));
  }

  CoordinatorMetrics metrics;
  metrics.WatchDataDir(config.data_dir);
  if (config.metrics_listen) {
    absl::Status serving = metrics.Serve(*config.metrics_listen);
    if (!serving.ok()) return Failure(serving.message());
  }

  RealClock clock;
  auto core = JobServiceCore::Create(store->get(), artifacts->get(), &clock, &metrics, config.core);
  if (!core.ok()) return Failure(absl::StrCat("recovery: ", core.status().message()));

  std::optional<TlsFiles> tls = config.tls;
  auto server = CoordinatorServer::Start(config.listen,
                                         MakeServerCredentials(tls ? &*tls : nullptr),
                                         core->get(), &auth, &metrics);
  if (!server.ok()) return Failure(server.status().message());

  std::string address = rpc::FormatHostPort(config.listen_address.host, (*server)->port());
  absl::Status written =
      loratrf::WriteFileAtomically(config.data_dir + "/coordinator.address", address + "\n");
  if (!written.ok()) return Failure(written.message());
  LOG_INFO("listening on {}", address);
  if (config.auth_token_file && !config.tls && !rpc::IsLoopbackHost(config.listen_address.host)) {
    LOG_WARN("without --tls-cert, bearer tokens cross the network in cleartext");
  }
  if (config.metrics_listen) {
    const std::string& listen = *config.metrics_listen;
    LOG_INFO("metrics on {}:{}", listen.substr(0, listen.rfind(':')), metrics.port());
  }

  Ticker ticker(core->get());
  int signal = 0;
  while (true) {
    if (sigwait(&signals, &signal) != 0) continue;
    if (signal != SIGHUP) break;
    if (!config.auth_token_file) {
      LOG_WARN("SIGHUP: no --auth-token-file to reload");
      continue;
    }
    // Swapped atomically: calls in flight finish with the old set, the next ones use the new.
    absl::Status reloaded = auth.Reload(*config.auth_token_file);
    metrics.AuthReloaded(reloaded.ok());
    if (reloaded.ok()) {
      LOG_INFO("reloaded {} credential(s) from {}", auth.size(), *config.auth_token_file);
    } else {
      LOG_ERROR("reloading the token file failed, the previous credentials stay: {}",
                std::string(reloaded.message()));
    }
  }
  LOG_INFO("draining ({})", strsignal(signal));

  // Drain: health says NOT_SERVING (load balancers stop sending), the core refuses new work
  // and ends its streams, calls in flight finish within the grace period. Every change was
  // persisted before it was acknowledged, so nothing is lost.
  (*server)->SetServing(false);
  (*core)->Drain();
  (*server)->Shutdown(kShutdownGrace);
  ticker.Stop();
  server->reset();
  core->reset();
  artifacts->reset();
  store->reset();
  LOG_INFO("stopped");
  spdlog::default_logger()->flush();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  if (args[0] == "-h" || args[0] == "--help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  absl::StatusOr<Config> config = ParseFlags(args);
  if (!config.ok()) return UsageError(config.status().message());
  if (absl::Status s = logging::Init(config->logging); !s.ok()) return UsageError(s.message());
  return Run(*config);
}
