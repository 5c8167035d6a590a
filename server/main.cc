// loratrf-coordinator: the control plane's server (docs/control-plane.md).
//
//   loratrf-coordinator --listen HOST:PORT --data-dir DIR [--metrics-listen HOST:PORT]
//       [--auth-token-file F] [--tls-cert F --tls-key F [--tls-ca F]] [--lease-ttl SECONDS]
//       [--max-running-per-owner N] [--rendezvous-ports LO-HI]
//       [--finished-job-ttl D] [--lost-worker-ttl D] [--idempotency-window D]
//       [--stop-timeout D] [--min-run-before-preempt D]
//       [--max-running-slots-per-owner N] [--max-queued-per-owner N] [--owner-weight NAME=W]...
//   loratrf-coordinator fsck --data-dir DIR
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
// Garbage collection (server/core/gc.h) runs on the ticker thread every kGcInterval: the
// TTL flags take a duration (`90s`, `30m`, `24h`, or plain seconds); 0 turns one off.
//
// `fsck` checks a data dir while no coordinator runs on it (the store opened read-only): every
// file under DATA_DIR/artifacts belongs to a committed checkpoint record, and every record's
// files are there with their size and sha256. Prints one line per problem (exit 1) or a
// summary (exit 0); bad flags or a missing or unreadable data dir: one line, exit 2.
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
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/artifacts/artifact_store.h"
#include "common/atomic_file.h"
#include "common/command_line.h"
#include "common/logging.h"
#include "server/core/clock.h"
#include "server/core/job_service.h"
#include "proto/contract/names.h"
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
constexpr absl::Duration kMinTickGap = absl::Milliseconds(1);
constexpr absl::Duration kShutdownGrace = absl::Seconds(5);
// How often the ticker thread runs a garbage-collection pass (each is bounded).
constexpr absl::Duration kGcInterval = absl::Seconds(1);

constexpr char kUsage[] =
    "usage: loratrf-coordinator --listen HOST:PORT --data-dir DIR [--metrics-listen HOST:PORT]\n"
    "           [--auth-token-file F] [--tls-cert F --tls-key F [--tls-ca F]]\n"
    "           [--lease-ttl SECONDS] [--max-running-per-owner N] [--rendezvous-ports LO-HI]\n"
    "           [--finished-job-ttl D] [--lost-worker-ttl D] [--idempotency-window D]\n"
    "           [--stop-timeout D] [--min-run-before-preempt D]\n"
    "           [--max-running-slots-per-owner N] [--max-queued-per-owner N]\n"
    "           [--owner-weight NAME=W]...\n"
    "           [--log-level debug|info|warn|error] [--log-format text|json]\n"
    "       loratrf-coordinator fsck --data-dir DIR\n";

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

// `--owner-weight NAME=W`, repeatable: taken out of `args` into `weights` (fair share between
// owners of equal priority; an owner not named weighs 1).
absl::Status ExtractOwnerWeights(std::vector<std::string>& args,
                                 std::map<std::string, double>& weights) {
  constexpr absl::string_view kFlag = "--owner-weight";
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    std::optional<std::string> value;
    if (args[i] == "--") {
      rest.insert(rest.end(), args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
      break;
    }
    if (args[i] == kFlag) {
      if (i + 1 >= args.size()) return absl::InvalidArgumentError("--owner-weight: needs a value");
      value = args[++i];
    } else if (absl::StartsWith(args[i], "--owner-weight=")) {
      value = args[i].substr(kFlag.size() + 1);
    } else {
      rest.push_back(args[i]);
      continue;
    }
    const size_t eq = value->find('=');
    double weight = 0;
    if (eq == std::string::npos ||
        !loratrf::contract::CheckUserName("--owner-weight", value->substr(0, eq)).ok() ||
        !absl::SimpleAtod(value->substr(eq + 1), &weight) || !(weight > 0) || weight > 1e6) {
      return absl::InvalidArgumentError(
          "--owner-weight: expected NAME=W, a user name and a weight in (0, 1e6]");
    }
    if (!weights.emplace(value->substr(0, eq), weight).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--owner-weight: ", value->substr(0, eq), " given more than once"));
    }
  }
  args = std::move(rest);
  return absl::OkStatus();
}

// Every flag mistake is an InvalidArgument naming the flag.
absl::StatusOr<Config> ParseFlags(std::vector<std::string> args) {
  std::map<std::string, double> owner_weights;
  if (absl::Status s = ExtractOwnerWeights(args, owner_weights); !s.ok()) return s;
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
             {"--max-running-slots-per-owner", true},
             {"--max-queued-per-owner", true},
             {"--rendezvous-ports", true},
             {"--finished-job-ttl", true},
             {"--lost-worker-ttl", true},
             {"--idempotency-window", true},
             {"--stop-timeout", true},
             {"--min-run-before-preempt", true},
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
  // Pause, drain and preemption: how long a stop may take to checkpoint before it is forced,
  // and how long an attempt runs before a higher-priority job may preempt it.
  absl::StatusOr<absl::Duration> stop_timeout = flags->GetDuration(
      "--stop-timeout", config.core.stop_timeout, absl::Seconds(1), absl::Hours(24));
  if (!stop_timeout.ok()) return stop_timeout.status();
  config.core.stop_timeout = *stop_timeout;
  absl::StatusOr<absl::Duration> min_run =
      flags->GetDuration("--min-run-before-preempt", config.core.min_run_before_preempt,
                         absl::ZeroDuration(), absl::Hours(7 * 24));
  if (!min_run.ok()) return min_run.status();
  config.core.min_run_before_preempt = *min_run;
  absl::StatusOr<int64_t> slots_per_owner =
      flags->GetInt("--max-running-slots-per-owner", 0, 0, 1'000'000);
  if (!slots_per_owner.ok()) return slots_per_owner.status();
  config.core.max_running_slots_per_owner = static_cast<uint64_t>(*slots_per_owner);
  absl::StatusOr<int64_t> queued_per_owner =
      flags->GetInt("--max-queued-per-owner", 0, 0, 1'000'000);
  if (!queued_per_owner.ok()) return queued_per_owner.status();
  config.core.max_queued_per_owner = static_cast<int>(*queued_per_owner);
  config.core.owner_weights = std::move(owner_weights);
  if (auto ports = flags->Get("--rendezvous-ports")) {
    absl::StatusOr<std::pair<uint32_t, uint32_t>> range = ParsePortRange(*ports);
    if (!range.ok()) return range.status();
    config.core.rendezvous_port_low = range->first;
    config.core.rendezvous_port_high = range->second;
  }
  for (auto [flag, field] : {std::pair{"--finished-job-ttl", &config.core.finished_job_ttl},
                              std::pair{"--lost-worker-ttl", &config.core.lost_worker_ttl},
                              std::pair{"--idempotency-window", &config.core.idempotency_window}}) {
    // 0: never.
    absl::StatusOr<absl::Duration> ttl = flags->GetDuration(flag, *field, absl::ZeroDuration());
    if (!ttl.ok()) return ttl.status();
    *field = *ttl;
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

// Calls core->Tick() every kTickInterval, and a scheduling pass alone (ScheduleIfChanged) soon
// after the core says there is scheduling work (a finished job's slots are refilled at once,
// not at the next period), until Stop().
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
    auto next_tick = std::chrono::steady_clock::now();
    while (!stop_) {
      poked_ = false;
      lock.unlock();
      if (const auto now = std::chrono::steady_clock::now(); now >= next_tick) {
        core_->Tick();
        next_tick = now + absl::ToChronoMilliseconds(kTickInterval);
      } else {
        core_->ScheduleIfChanged();
      }
      if (const auto now = std::chrono::steady_clock::now(); now >= next_gc_) {
        core_->CollectGarbage();
        next_gc_ = now + absl::ToChronoMilliseconds(kGcInterval);
      }
      lock.lock();
      // At most one scheduling pass per kMinTickGap however often it is poked. A pass is cheap
      // (the queue stays ordered and a pass stops once nothing more fits), so the gap is short:
      // a freed slot or a new job waits about that long, not a whole tick. Pokes that arrive
      // during a pass or the gap are served by one pass.
      wake_.wait_for(lock, absl::ToChronoMilliseconds(kMinTickGap), [this] { return stop_; });
      wake_.wait_until(lock, next_tick, [this] { return stop_ || poked_; });
    }
  }

  JobServiceCore* const core_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;   // guarded by mu_
  bool poked_ = false;  // guarded by mu_
  std::chrono::steady_clock::time_point next_gc_;  // the ticker thread's own
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

// `fsck --data-dir DIR` (see the top of this file).
int Fsck(const std::vector<std::string>& args) {
  auto flags = loratrf::CommandLine::Parse(args, {{"--data-dir", true}});
  if (!flags.ok()) return UsageError(absl::StrCat("fsck: ", flags.status().message()));
  if (!flags->positional().empty()) {
    return UsageError(absl::StrCat("fsck: unexpected argument '", flags->positional()[0], "'"));
  }
  absl::StatusOr<std::string> data_dir = flags->Require("--data-dir");
  if (!data_dir.ok()) return UsageError(absl::StrCat("fsck: ", data_dir.status().message()));
  struct stat st;
  if (data_dir->empty() || ::stat(data_dir->c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
      ::access(data_dir->c_str(), R_OK | X_OK) != 0) {
    return UsageError(absl::StrCat("fsck: --data-dir: ", *data_dir,
                                   " is missing, not a directory or not readable"));
  }
  std::vector<loratrf::v1::Checkpoint> recorded;
  const std::string db = *data_dir + "/jobs.db";
  if (::stat(db.c_str(), &st) == 0) {
    auto store = SqliteJobStore::OpenReadOnly(db);
    if (!store.ok()) return UsageError(absl::StrCat("fsck: ", store.status().message()));
    absl::StatusOr<std::vector<loratrf::v1::Checkpoint>> all = (*store)->ListAllCheckpoints();
    if (!all.ok()) return UsageError(absl::StrCat("fsck: ", all.status().message()));
    recorded = std::move(*all);
  }
  absl::StatusOr<std::vector<std::string>> problems = ArtifactStore::Check(*data_dir, recorded);
  if (!problems.ok()) return UsageError(absl::StrCat("fsck: ", problems.status().message()));
  for (const std::string& problem : *problems) std::cout << problem << "\n";
  if (!problems->empty()) {
    std::cout << "fsck: " << problems->size() << " problem(s) in " << *data_dir << "\n";
    return kExitFailure;
  }
  uint64_t files = 0, bytes = 0;
  for (const loratrf::v1::Checkpoint& checkpoint : recorded) {
    for (const loratrf::v1::CheckpointFile& file : checkpoint.files()) {
      ++files;
      bytes += file.size_bytes();
    }
  }
  std::cout << "fsck: " << *data_dir << " is consistent: " << recorded.size()
            << " checkpoint(s), " << files << " file(s), " << bytes << " bytes\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  if (args[0] == "fsck") return Fsck(std::vector<std::string>(args.begin() + 1, args.end()));
  if (args[0] == "-h" || args[0] == "--help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  absl::StatusOr<Config> config = ParseFlags(args);
  if (!config.ok()) return UsageError(config.status().message());
  if (absl::Status s = logging::Init(config->logging); !s.ok()) return UsageError(s.message());
  return Run(*config);
}
