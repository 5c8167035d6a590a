// Infrastructure faults injected into real processes, each asserting the outcome:
//
//   DiskFullTest: a small tmpfs mounted by the test, filled up with a filler file, under the
//   coordinator's data dir (store writes and checkpoint uploads refused with an error naming
//   the lack of space) and under an agent's work dir (the job fails saying so); nothing
//   committed is damaged (downloads match their sha256, `fsck` exits 0, SQLite's
//   integrity_check is ok), and once the filler is gone the service works again.
//   PartitionTest: an agent in a network namespace of its own, its link taken down and up: for
//   less than the lease nothing happens to the job; for longer the job moves to another agent,
//   the stale agent's late reports are refused and its ranks stop.
//   CoordinatorCrashTest: seeded runs (LORATRF_COORDINATOR_CRASH_SEED=N re-runs one) that
//   SIGKILL the coordinator at a random moment while a client submits jobs and two scripted
//   workers run them; after each kill the SQLite file passes integrity_check, and after the
//   restart every acknowledged submit is there, no job ran on two workers at once, and `fsck`
//   exits 0.
//
// Mounting and namespaces need root: the tests probe (a real mount, a real `ip netns add`) and
// skip saying why only where that fails. Every mount, namespace and process is removed on every
// path (RAII), before the temp directory goes.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/sha256.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proto/loratrf/v1/job_service.grpc.pb.h"
#include "proto/loratrf/v1/worker_service.grpc.pb.h"
#include "proto/spec/job_spec.h"
#include "tests/integration/cli_queries.h"
#include "tests/integration/fake_agent.h"
#include "tests/integration/subprocess.h"

namespace loratrf::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const std::string kSourceDir = LORATRF_SOURCE_DIR;

// A TCP port on 127.0.0.1 that nothing listens on right now.
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

// ---- tmpfs ------------------------------------------------------------------------------------

// A tmpfs of a fixed size mounted at a directory, and a filler file that takes all of its
// space. Unmounted (lazily, so that a file still open cannot keep it) when the object goes.
class Tmpfs {
 public:
  // Empty, with `why` set, when the mount fails (not root, no CAP_SYS_ADMIN, no tmpfs).
  static std::unique_ptr<Tmpfs> Mount(const std::string& path, uint64_t bytes, std::string* why) {
    fs::create_directories(path);
    const std::string options = "size=" + std::to_string(bytes);
    if (::mount("tmpfs", path.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      *why = "cannot mount a tmpfs at " + path + " (uid " + std::to_string(::geteuid()) +
             "): " + std::strerror(errno);
      return nullptr;
    }
    return std::unique_ptr<Tmpfs>(new Tmpfs(path));
  }
  ~Tmpfs() {
    if (::umount2(path_.c_str(), MNT_DETACH) != 0) {
      std::fprintf(stderr, "umount %s: %s\n", path_.c_str(), std::strerror(errno));
    }
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;

  // Writes PATH/filler until the file system refuses (ENOSPC), in ever smaller pieces, so that
  // not even a page is left. False (with the error) if it stopped for another reason.
  bool Fill(std::string* error) {
    int fd = ::open(filler().c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0) {
      *error = std::strerror(errno);
      return false;
    }
    const std::string block(1 << 20, 'x');
    for (size_t size = block.size(); size >= 1; size /= 2) {
      while (true) {
        ssize_t written = ::write(fd, block.data(), size);
        if (written > 0) continue;
        if (written < 0 && errno == EINTR) continue;
        if (written < 0 && errno != ENOSPC) {
          *error = std::strerror(errno);
          ::close(fd);
          return false;
        }
        break;
      }
    }
    ::close(fd);
    return true;
  }
  void Free() { fs::remove(filler()); }
  std::string filler() const { return path_ + "/filler"; }

 private:
  explicit Tmpfs(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// ---- checks on a data dir ---------------------------------------------------------------------

// PRAGMA integrity_check on DATA_DIR/jobs.db, opened by SQLite itself (its WAL is replayed the
// way the coordinator's next start would): "ok", or what it found.
std::string IntegrityCheck(const std::string& data_dir) {
  sqlite3* db = nullptr;
  const std::string path = data_dir + "/jobs.db";
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    std::string error = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return "cannot open " + path + ": " + error;
  }
  sqlite3_busy_timeout(db, 5000);
  std::string result;
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &statement, nullptr) != SQLITE_OK) {
    result = std::string("prepare: ") + sqlite3_errmsg(db);
  } else {
    int rc;
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
      if (!result.empty()) result += "\n";
      result += reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
    }
    if (rc != SQLITE_DONE) result += std::string("step: ") + sqlite3_errmsg(db);
  }
  sqlite3_finalize(statement);
  sqlite3_close(db);
  return result;
}

ProcessResult Fsck(const std::string& data_dir) {
  return RunProcess({BinaryPath("loratrf-coordinator"), "fsck", "--data-dir", data_dir});
}

v1::JobSpec FakeSpec(const std::string& name) {
  auto spec = spec::LoadJobSpecFile(kSourceDir + "/tests/data/specs/sst2-loratrf.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status();
  spec->set_name(name);
  spec->mutable_resources()->set_workers(1);
  spec->mutable_resources()->set_slots_per_worker(1);
  spec->set_max_restarts(2);
  return *spec;
}

// What a store or upload error says when the disk is full: SQLite's words or strerror(ENOSPC).
::testing::Matcher<std::string> NamesNoSpace() {
  return AnyOf(HasSubstr("No space left on device"), HasSubstr("database or disk is full"));
}

// ---- disk full under the coordinator's data dir -----------------------------------------------

TEST(DiskFullTest, AFullDataDirRefusesWritesNamingItDamagesNothingAndRecovers) {
  TempDir dir;
  const std::string data = dir / "data";
  std::string why;
  std::unique_ptr<Tmpfs> tmpfs = Tmpfs::Mount(data, 16 << 20, &why);
  if (!tmpfs) GTEST_SKIP() << why;
  std::mt19937_64 random(15);
  {
    Coordinator coordinator(data, dir / "coordinator.log");
    ASSERT_TRUE(coordinator.ok()) << Slurp(dir / "coordinator.log");
    FakeAgent agent(coordinator);
    ASSERT_TRUE(agent.Register());
    const std::string id = agent.Start(FakeSpec("before-full"));
    ASSERT_FALSE(id.empty()) << Slurp(dir / "coordinator.log");
    const std::string first_bytes = RandomBytes(random, 300000);
    auto first = agent.Upload(id, 10, false, first_bytes);
    ASSERT_TRUE(first.has_value());

    std::string error;
    ASSERT_TRUE(tmpfs->Fill(&error)) << error;

    // A checkpoint upload: refused, saying why; nothing of it is listed.
    grpc::Status status;
    const std::string second_bytes = RandomBytes(random, 300000);
    EXPECT_FALSE(agent.Upload(id, 20, false, second_bytes, &status).has_value());
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
    EXPECT_THAT(status.error_message(), NamesNoSpace());
    // Store writes: submits and reports fail once SQLite needs a new page (one may still fit
    // in the WAL's last page); the error says the disk is full.
    grpc::Status refused;
    for (int i = 0; i < 50 && refused.ok(); ++i) {
      v1::SubmitJobRequest request;
      *request.mutable_spec() = FakeSpec("while-full-" + std::to_string(i));
      v1::SubmitJobResponse response;
      refused = coordinator.jobs->SubmitJob(Context().get(), request, &response);
    }
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
    EXPECT_THAT(refused.error_message(), NamesNoSpace());
    refused = agent.ReportStatus(id, v1::JOB_STATE_RUNNING);  // a duplicate: nothing to write
    EXPECT_TRUE(refused.ok()) << refused.error_message();
    // What was committed before is whole.
    EXPECT_EQ(DownloadSha(coordinator, id, *first), Sha256Hex(first_bytes));

    // Space again: the same calls succeed and the job completes.
    tmpfs->Free();
    auto second = agent.Upload(id, 20, false, second_bytes, &status);
    ASSERT_TRUE(second.has_value()) << status.error_message();
    auto final_checkpoint = agent.Upload(id, 30, true, RandomBytes(random, 1000), &status);
    ASSERT_TRUE(final_checkpoint.has_value()) << status.error_message();
    ASSERT_TRUE(agent.Report(id, v1::JOB_STATE_SUCCEEDED));
    v1::GetJobRequest get;
    get.set_id(id);
    v1::Job job;
    ASSERT_TRUE(coordinator.jobs->GetJob(Context().get(), get, &job).ok());
    EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
    const std::string later = agent.Start(FakeSpec("after-full"));
    EXPECT_FALSE(later.empty()) << Slurp(dir / "coordinator.log");
    EXPECT_EQ(DownloadSha(coordinator, id, *first), Sha256Hex(first_bytes));
    EXPECT_EQ(DownloadSha(coordinator, id, *second), Sha256Hex(second_bytes));
    EXPECT_EQ(coordinator.Stop(), 0) << Slurp(dir / "coordinator.log");
  }
  EXPECT_EQ(IntegrityCheck(data), "ok");
  ProcessResult fsck = Fsck(data);
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
}

// ---- the whole service: coordinator, real agents, the CLI -------------------------------------

// Processes whose command line mentions `needle` and " run " (an agent's rank processes carry
// their work dir), zombies excluded.
std::vector<int> RanksUnder(const std::string& needle) {
  std::vector<int> pids;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = Slurp(entry.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    std::string state = Slurp(entry.path() / "stat");
    if (state.find(") Z") == std::string::npos && cmdline.find(needle) != std::string::npos &&
        cmdline.find(" run ") != std::string::npos) {
      pids.push_back(std::stoi(name));
    }
  }
  return pids;
}

class Service : public ::testing::Test {
 protected:
  void SetUp() override {
    ProcessResult made = RunProcess(
        {kPython, kSourceDir + "/tests/reference/make_tiny_model.py", "--arch", "llama", "--head",
         "causal_lm", "--output", dir_ / "model", "--hidden", "32", "--intermediate", "64",
         "--layers", "1"},
        "", 120);
    ASSERT_EQ(made.exit_code, 0) << made.err;
    WriteData(dir_ / "train.jsonl", 256);
    std::ofstream(dir_ / "tokens") << "user alice infra-fault-user-token-0123\n"
                                   << "worker node-a infra-fault-worker-a-token-0123\n"
                                   << "worker node-b infra-fault-worker-b-token-0123\n";
    std::ofstream(dir_ / "alice.token") << "infra-fault-user-token-0123\n";
    std::ofstream(dir_ / "node-a.token") << "infra-fault-worker-a-token-0123\n";
    std::ofstream(dir_ / "node-b.token") << "infra-fault-worker-b-token-0123\n";
    int low = 30000 + static_cast<int>(std::random_device()() % 20000);
    ports_ = std::to_string(low) + "-" + std::to_string(low + 99);
  }

  void TearDown() override {
    for (auto& [name, agent] : agents_) agent->Signal(SIGTERM);
    for (auto& [name, agent] : agents_) agent->Wait(10);
    agents_.clear();
    if (coordinator_) {
      coordinator_->Signal(SIGTERM);
      coordinator_->Wait(10);
    }
    if (HasFailure()) std::cerr << Logs();
  }

  // Sequences of 4 to 8 tokens; class 1 when the first token is in [32, 64).
  static void WriteData(const std::string& path, int examples) {
    std::mt19937 random(7);
    std::ofstream out(path);
    for (int i = 0; i < examples; ++i) {
      int first = 1 + static_cast<int>(random() % 63);
      json ids = {first};
      for (int j = 3 + static_cast<int>(random() % 5); j > 0; --j) {
        ids.push_back(1 + static_cast<int>(random() % 63));
      }
      out << json({{"input_ids", ids}, {"label", first >= 32 ? 1 : 0}}).dump() << "\n";
    }
  }

  std::string Spec(const std::string& name, int max_steps, int checkpoint_every,
                   int max_restarts) {
    std::string path = dir_ / (name + ".yaml");
    std::ofstream(path) << "name: " << name << "\nmodel: {path: " << (dir_ / "model")
                        << "}\ntask: classification\ndata: {train: " << (dir_ / "train.jsonl")
                        << "}\nadapter: {method: lora, rank: 2, alpha: 4, dropout: 0.0, "
                           "target_modules: [q_proj, v_proj]}\n"
                        << "training: {epochs: 1000, max_steps: " << max_steps
                        << ", batch_size: 4, micro_batch_size: 4, learning_rate: 0.001, "
                           "eval_every_steps: 0, checkpoint_every_steps: "
                        << checkpoint_every << ", keep_checkpoints: 2, max_seq_len: 16}\n"
                        << "resources: {workers: 1, slots_per_worker: 1, device: cpu}\n"
                        << "max_restarts: " << max_restarts << "\n";
    return path;
  }

  void StartCoordinator(const std::string& host, const std::vector<std::string>& extra = {}) {
    fs::create_directories(dir_ / "data");
    fs::remove(dir_ / "data/coordinator.address");
    std::vector<std::string> argv = {BinaryPath("loratrf-coordinator"),
                                     "--listen", host + ":0",
                                     "--data-dir", dir_ / "data",
                                     "--auth-token-file", dir_ / "tokens",
                                     "--rendezvous-ports", ports_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    coordinator_ = std::make_unique<BackgroundProcess>(argv, dir_ / "coordinator.log");
    ASSERT_TRUE(WaitFor([&] { return fs::exists(dir_ / "data/coordinator.address"); }, 30))
        << Slurp(dir_ / "coordinator.log");
    address_ = Trimmed(Slurp(dir_ / "data/coordinator.address"));
  }

  // `wrap`: what runs the agent (`ip netns exec NS`), empty for this namespace.
  void StartAgent(const std::string& name, const std::string& work_dir,
                  const std::vector<std::string>& wrap = {},
                  const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = wrap;
    for (const std::string& arg :
         {BinaryPath("loratrf-worker"), std::string("agent"), std::string("--coordinator"),
          address_, std::string("--slots"), std::string("1"), std::string("--work-dir"),
          work_dir, std::string("--name"), name, std::string("--token-file"),
          dir_ / (name + ".token")}) {
      argv.push_back(arg);
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    agents_[name] = std::make_unique<BackgroundProcess>(argv, dir_ / (name + ".log"));
  }

  void WaitForWorkers(size_t count) {
    ASSERT_TRUE(WaitFor([&] { return CliReadyWorkers(Runner()) >= static_cast<int>(count); },
                        60))
        << Logs();
  }

  ProcessResult Cli(std::vector<std::string> args, int timeout = 60) {
    args.insert(args.begin(), {BinaryPath("loratrf"), "--coordinator", address_,
                               "--token-file", dir_ / "alice.token"});
    return RunProcess(args, "", timeout);
  }

  std::string Submit(const std::string& spec) {
    ProcessResult submitted = Cli({"submit", spec});
    EXPECT_EQ(submitted.exit_code, 0) << submitted.err;
    return SubmittedJobId(submitted.out);
  }

  CliRunner Runner() {
    return [this](std::vector<std::string> args, int timeout) { return Cli(std::move(args), timeout); };
  }
  json Get(const std::string& id) { return CliGetJob(Runner(), id); }

  int Step(const json& job) {
    if (!job.contains("latest_train")) return 0;
    return std::stoi(job["latest_train"].value("step", std::string("0")));
  }

  json Checkpoints(const std::string& id) { return CliCheckpoints(Runner(), id); }
  // Every event of a final job, through `watch -o json`.
  std::vector<json> Events(const std::string& id) { return CliEvents(Runner(), id); }

  std::string Logs() {
    std::string logs = "--- coordinator\n" + Slurp(dir_ / "coordinator.log");
    for (const std::string name : {"node-a", "node-b"}) {
      if (fs::exists(dir_ / (name + ".log"))) {
        logs += "--- " + name + "\n" + Slurp(dir_ / (name + ".log"));
      }
    }
    return logs.size() > 30000 ? logs.substr(logs.size() - 30000) : logs;
  }

  TempDir dir_;
  std::string ports_;
  std::string address_;
  std::unique_ptr<BackgroundProcess> coordinator_;
  std::map<std::string, std::unique_ptr<BackgroundProcess>> agents_;
};

// ---- disk full under an agent's work dir ------------------------------------------------------

class DiskFullAgentTest : public Service {
 protected:
  void TearDown() override {
    Service::TearDown();  // the agents and their ranks go before the mount
    tmpfs_.reset();
  }
  std::unique_ptr<Tmpfs> tmpfs_;
};

// The sha256 of every file under `dir`, by relative path.
std::map<std::string, std::string> Hashes(const fs::path& dir) {
  std::map<std::string, std::string> hashes;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file()) {
      hashes[fs::relative(it->path(), dir).string()] = Sha256Hex(Slurp(it->path().string()));
    }
  }
  return hashes;
}

TEST_F(DiskFullAgentTest, AFullWorkDirFailsTheJobSayingSoAndANewJobRunsOnceThereIsSpace) {
  const std::string work = dir_ / "work-node-a";
  std::string why;
  tmpfs_ = Tmpfs::Mount(work, 32 << 20, &why);
  if (!tmpfs_) GTEST_SKIP() << why;
  StartCoordinator("127.0.0.1");
  if (HasFatalFailure()) return;
  StartAgent("node-a", work);
  WaitForWorkers(1);
  // Long enough to be caught between checkpoints; no restarts, so the first failure decides.
  const std::string id = Submit(Spec("filled", 100000, 5, 0));
  ASSERT_FALSE(id.empty());
  json committed;
  ASSERT_TRUE(WaitFor([&] {
    committed = Checkpoints(id);
    return !committed.empty();
  }, 120)) << Logs();
  // The rank's committed checkpoints on the agent's disk, as they are now.
  const fs::path local = work + "/jobs/" + id + "/output/checkpoints";
  std::map<std::string, std::string> before = Hashes(local);

  std::string error;
  ASSERT_TRUE(tmpfs_->Fill(&error)) << error;
  ProcessResult watched = Cli({"watch", id}, 120);
  EXPECT_EQ(watched.exit_code, 1) << watched.out << watched.err;
  json job = Get(id);
  ASSERT_EQ(job.value("state", ""), "JOB_STATE_FAILED") << Logs();
  EXPECT_THAT(job.value("state_reason", ""), HasSubstr("No space left on device")) << Logs();
  EXPECT_TRUE(WaitFor([&] { return RanksUnder(work).empty(); }, 10));
  // Committed checkpoints are whole: every one the coordinator lists downloads with its
  // sha256 (the CLI checks it), and those on the agent's disk are unchanged, or gone whole.
  committed = Checkpoints(id);
  EXPECT_FALSE(committed.empty());
  for (const json& checkpoint : committed) {
    const std::string name = checkpoint.value("id", "");
    ProcessResult downloaded =
        Cli({"download", id, "--checkpoint", name, "--output", dir_ / ("downloaded-" + name)});
    EXPECT_EQ(downloaded.exit_code, 0) << name << ": " << downloaded.err;
  }
  std::map<std::string, std::string> after = Hashes(local);
  for (const auto& [path, sha] : after) {
    if (path.find(".tmp") != std::string::npos || path.rfind("partial", 0) == 0) continue;
    if (before.count(path) > 0) {
      EXPECT_EQ(sha, before[path]) << path;
    }
  }

  // Space again: a new job runs to the end on the same agent.
  tmpfs_->Free();
  const std::string again = Submit(Spec("again", 12, 6, 0));
  ProcessResult finished = Cli({"watch", again}, 120);
  EXPECT_EQ(finished.exit_code, 0) << finished.err << Logs();
  EXPECT_EQ(Get(again).value("state", ""), "JOB_STATE_SUCCEEDED");

  coordinator_->Signal(SIGTERM);
  EXPECT_EQ(coordinator_->Wait(30), 0);
  coordinator_.reset();
  EXPECT_EQ(IntegrityCheck(dir_ / "data"), "ok");
  ProcessResult fsck = Fsck(dir_ / "data");
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
}

// ---- network partition ----------------------------------------------------------------------

// One network namespace (the agent's "host") joined to this one by a veth pair on a private
// /30: 10.79.N.(4K+1) here, 10.79.N.(4K+2) inside. Names carry this process's id and a count:
// "lrtf-np-PID-K" for the namespace, "lrtfnPIDK" for the end in this namespace. The link cut
// is the inside end going down (the agent's cable pulled); this side keeps its address, so
// processes here reach the coordinator on it all the while.
class Partitionable {
 public:
  static constexpr char kPrefix[] = "lrtf-np-";

  // Empty, with `why` set, when namespaces cannot be made here, or with `error` set when one
  // could be but setting it up failed.
  static std::unique_ptr<Partitionable> Create(std::string* why, std::string* error) {
    std::string ip = IpBinary();
    if (ip.empty()) {
      *why = "iproute2's `ip` is not installed";
      return nullptr;
    }
    RemoveLeftovers(ip);
    static int count = 0;
    auto made = std::unique_ptr<Partitionable>(new Partitionable(ip, ::getpid(), count++));
    ProcessResult probe = made->Ip({"netns", "add", made->ns_});
    if (probe.exit_code != 0) {
      *why = "`ip netns add` failed (uid " + std::to_string(::geteuid()) +
             "): " + Trimmed(probe.err);
      return nullptr;
    }
    *error = made->Build();
    if (!error->empty()) return nullptr;
    return made;
  }
  ~Partitionable() { Remove(ip_, ns_, link_); }
  Partitionable(const Partitionable&) = delete;
  Partitionable& operator=(const Partitionable&) = delete;

  const std::string& outside() const { return outside_; }
  const std::string& inside() const { return inside_; }
  std::vector<std::string> In() const { return {ip_, "netns", "exec", ns_}; }
  // The inside end down or up; the error, else "".
  std::string SetLink(bool up) {
    ProcessResult done = Ip({"-n", ns_, "link", "set", "eth0", up ? "up" : "down"});
    return done.exit_code == 0 ? "" : Trimmed(done.err);
  }

 private:
  Partitionable(std::string ip, int pid, int count)
      : ip_(std::move(ip)),
        ns_(kPrefix + std::to_string(pid) + "-" + std::to_string(count)),
        link_("lrtfn" + std::to_string(pid) + std::to_string(count)) {}

  ProcessResult Ip(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {ip_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, "", 30);
  }

  std::string Build() {
    const std::string used = Ip({"-o", "-4", "addr", "show"}).out;
    for (int i = 0; i < 250 * 64 && outside_.empty(); ++i) {
      const int n = (::getpid() + i) % (250 * 64);
      const std::string prefix = "10.79." + std::to_string(n / 64 + 1) + ".";
      const std::string out = prefix + std::to_string(4 * (n % 64) + 1);
      if (used.find(" " + out + "/") == std::string::npos) {
        outside_ = out;
        inside_ = prefix + std::to_string(4 * (n % 64) + 2);
      }
    }
    if (outside_.empty()) return "no free /30 under 10.79.0.0/16";
    const std::vector<std::vector<std::string>> steps = {
        {"link", "add", link_, "type", "veth", "peer", "name", "eth0", "netns", ns_},
        {"addr", "add", outside_ + "/30", "dev", link_},
        {"link", "set", link_, "up"},
        {"-n", ns_, "link", "set", "lo", "up"},
        {"-n", ns_, "addr", "add", inside_ + "/30", "dev", "eth0"},
        {"-n", ns_, "link", "set", "eth0", "up"}};
    for (const std::vector<std::string>& step : steps) {
      ProcessResult done = Ip(step);
      if (done.exit_code != 0) {
        std::string command = "ip";
        for (const std::string& arg : step) command += " " + arg;
        return command + ": " + Trimmed(done.err);
      }
    }
    return "";
  }

  // Kills what runs in the namespace (the agent and its ranks, started by this test), then
  // removes the link and the namespace; each step runs whatever happened to the others.
  static void Remove(const std::string& ip, const std::string& ns, const std::string& link) {
    if (fs::exists("/run/netns/" + ns)) {
      for (int round = 0; round < 50; ++round) {
        std::istringstream pids(RunProcess({ip, "netns", "pids", ns}, "", 30).out);
        bool any = false;
        for (int victim; pids >> victim;) {
          if (victim > 1 && victim != ::getpid()) {
            ::kill(victim, SIGKILL);
            any = true;
          }
        }
        if (!any) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    if (fs::exists("/sys/class/net/" + link)) RunProcess({ip, "link", "del", link}, "", 30);
    if (fs::exists("/run/netns/" + ns)) RunProcess({ip, "netns", "del", ns}, "", 30);
  }

  // Namespaces of earlier runs whose process is gone (killed by a timeout).
  static void RemoveLeftovers(const std::string& ip) {
    std::istringstream listed(RunProcess({ip, "netns", "list"}, "", 30).out);
    for (std::string line; std::getline(listed, line);) {
      if (line.rfind(kPrefix, 0) != 0) continue;
      std::string name = line.substr(0, line.find(' '));
      std::string rest = name.substr(sizeof kPrefix - 1);
      size_t dash = rest.find('-');
      if (dash == std::string::npos || dash == 0 ||
          rest.substr(0, dash).find_first_not_of("0123456789") != std::string::npos ||
          rest.substr(dash + 1).find_first_not_of("0123456789") != std::string::npos) {
        continue;
      }
      const std::string pid = rest.substr(0, dash);
      if (std::stoi(pid) != ::getpid() && !fs::exists("/proc/" + pid)) {
        Remove(ip, name, "lrtfn" + pid + rest.substr(dash + 1));
      }
    }
  }

  std::string ip_;
  std::string ns_;
  std::string link_;
  std::string outside_;
  std::string inside_;
};

// A coordinator metric's value summed over the series whose labels contain every one of
// `labels` (0 when there is none).
double MetricSum(const std::string& text, const std::string& family,
                 const std::vector<std::string>& labels) {
  double sum = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(family + "{", 0) != 0 && line.rfind(family + " ", 0) != 0) continue;
    bool all = true;
    for (const std::string& label : labels) all &= line.find(label) != std::string::npos;
    if (all) sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

class PartitionTest : public Service {
 protected:
  void SetUp() override {
    std::string why, error;
    net_ = Partitionable::Create(&why, &error);
    if (!error.empty()) FAIL() << "setting up the namespace: " << error;
    if (!net_) GTEST_SKIP() << why;
    Service::SetUp();
  }
  void TearDown() override {
    if (net_) net_->SetLink(true);
    Service::TearDown();
    net_.reset();  // after the processes: it kills whatever still runs inside
  }

  std::string Scrape() {
    ProcessResult scraped = RunProcess(
        {kPython, "-c",
         "import sys, urllib.request; "
         "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())",
         "http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics"});
    return scraped.exit_code == 0 ? scraped.out : std::string();
  }

  // The coordinator on this side's address; node-a inside the namespace.
  void StartInside(int lease_seconds) {
    metrics_port_ = FreePort();
    ASSERT_NE(metrics_port_, 0);
    StartCoordinator(net_->outside(), {"--lease-ttl", std::to_string(lease_seconds),
                                       "--metrics-listen",
                                       "127.0.0.1:" + std::to_string(metrics_port_)});
    if (HasFatalFailure()) return;
    StartAgent("node-a", dir_ / "work-node-a", net_->In(), {"--address", net_->inside()});
  }

  std::unique_ptr<Partitionable> net_;
  int metrics_port_ = 0;
};

TEST_F(PartitionTest, ACutShorterThanTheLeaseIsInvisibleToTheJob) {
  // A heartbeat sent as the link goes down is retransmitted by TCP with backoff: the lease
  // leaves room for that on top of the cut.
  StartInside(5);
  if (HasFatalFailure()) return;
  WaitForWorkers(1);
  const std::string id = Submit(Spec("short-cut", 400, 100, 0));
  ASSERT_TRUE(WaitFor([&] { return Step(Get(id)) >= 5; }, 120)) << Logs();
  // One second without the link: less than the lease, about a heartbeat interval.
  ASSERT_EQ(net_->SetLink(false), "");
  std::this_thread::sleep_for(std::chrono::seconds(1));
  ASSERT_EQ(net_->SetLink(true), "");
  ProcessResult watched = Cli({"watch", id}, 180);
  ASSERT_EQ(watched.exit_code, 0) << watched.err << Logs();
  json job = Get(id);
  EXPECT_EQ(job["state"], "JOB_STATE_SUCCEEDED");
  EXPECT_EQ(job["attempt"], 1);
  EXPECT_EQ(job["workers"], json::array({"node-a"}));
  EXPECT_EQ(MetricSum(Scrape(), "loratrf_lease_expiries_total", {}), 0.0);
  // Every step reported once, in order.
  int expected = 1;
  for (const json& event : Events(id)) {
    if (event.contains("train")) {
      EXPECT_EQ(std::stoi(event["train"]["step"].get<std::string>()), expected++);
    }
  }
  EXPECT_EQ(expected, 401);
}

TEST_F(PartitionTest, ACutLongerThanTheLeaseMovesTheJobAndFencesTheStaleAgent) {
  StartInside(3);
  if (HasFatalFailure()) return;
  WaitForWorkers(1);
  // Far longer than the test: it is cancelled once the move is seen through.
  const std::string id = Submit(Spec("long-cut", 1000000, 20, 2));
  ASSERT_TRUE(WaitFor([&] { return !Checkpoints(id).empty(); }, 120)) << Logs();
  // node-b, outside the namespace, joins only now: attempt 1 is node-a's.
  StartAgent("node-b", dir_ / "work-node-b");
  WaitForWorkers(2);
  ASSERT_EQ(Get(id)["workers"], json::array({"node-a"}));
  const std::string inside_ranks = dir_ / "work-node-a";
  ASSERT_FALSE(RanksUnder(inside_ranks).empty());

  ASSERT_EQ(net_->SetLink(false), "");
  // The lease lapses: the job restarts on node-b while node-a's ranks, cut off, train on.
  json job;
  ASSERT_TRUE(WaitFor([&] {
    job = Get(id);
    return job.value("attempt", 0) == 2 && job["workers"] == json::array({"node-b"});
  }, 30)) << Logs();
  EXPECT_FALSE(RanksUnder(inside_ranks).empty()) << "node-a's ranks stopped without being told";
  ASSERT_EQ(net_->SetLink(true), "");
  // Back on the network: node-a's reports for attempt 1 are refused, and its ranks stop.
  EXPECT_TRUE(WaitFor([&] { return RanksUnder(inside_ranks).empty(); }, 60))
      << "the stale agent's ranks are still running\n" << Logs();
  EXPECT_TRUE(WaitFor([&] {
    return MetricSum(Scrape(), "loratrf_grpc_requests_total",
                     {"code=\"FAILED_PRECONDITION\"", "method=\"WorkerService/ReportEvents\""}) > 0;
  }, 30)) << Scrape();
  EXPECT_GE(MetricSum(Scrape(), "loratrf_lease_expiries_total", {}), 1.0);
  // Attempt 2 trains on from the checkpoint, on node-b alone.
  const int moved_at = Step(Get(id));
  ASSERT_TRUE(WaitFor([&] { return Step(Get(id)) >= moved_at + 30; }, 120)) << Logs();
  job = Get(id);
  EXPECT_EQ(job["attempt"], 2);
  EXPECT_EQ(job["workers"], json::array({"node-b"}));
  ASSERT_EQ(Cli({"cancel", id}).exit_code, 0);
  // Nothing from the stale attempt got in: every step once, in order, and no line of node-a's
  // after the restart.
  int expected = 1;
  bool restarted = false;
  for (const json& event : Events(id)) {
    if (event.contains("train")) {
      EXPECT_EQ(std::stoi(event["train"]["step"].get<std::string>()), expected++);
    }
    if (event.contains("state_change") &&
        event["state_change"].value("to", "") == "JOB_STATE_RESTARTING") {
      restarted = true;
    }
    if (restarted && event.contains("log")) {
      EXPECT_THAT(event["log"].value("text", ""), ::testing::Not(HasSubstr("node-a"))) << event;
    }
  }
  EXPECT_TRUE(restarted);
  EXPECT_GE(expected, moved_at + 30);
}

// ---- SIGKILL of the coordinator during submissions and reports --------------------------------

// A channel to a coordinator that may be down for a while. gRPC's own reconnection backs off
// for seconds after refused connects, longer than the lease here, so a call that finds no
// coordinator makes the next one use a fresh channel.
//
// Threading: thread-safe.
class Link {
 public:
  explicit Link(std::string target) : target_(std::move(target)) { Renew(); }
  std::shared_ptr<grpc::Channel> channel() {
    std::lock_guard<std::mutex> lock(mu_);
    return channel_;
  }
  // Drops the channel (once no call is left): a coordinator's drain waits for open ones.
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    channel_.reset();
  }
  // After each call: UNAVAILABLE replaces the channel (at most every 20 ms).
  void Note(const grpc::Status& status) {
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (std::chrono::steady_clock::now() - made_ > std::chrono::milliseconds(20)) Renew();
  }

 private:
  void Renew() {
    channel_ = grpc::CreateChannel(target_, grpc::InsecureChannelCredentials());
    made_ = std::chrono::steady_clock::now();
  }
  const std::string target_;
  std::mutex mu_;
  std::shared_ptr<grpc::Channel> channel_;
  std::chrono::steady_clock::time_point made_;
};

// What the client and the workers saw, shared by their threads.
struct Ledger {
  std::mutex mu;
  std::set<std::string> acked;  // submits the coordinator answered OK: their job ids
  // job → worker → the attempt that worker runs (from its assignment until it stops it).
  std::map<std::string, std::map<std::string, uint32_t>> holders;
  std::vector<std::string> violations;
  int assignments = 0;  // received by the workers
  int ended = 0;        // attempts whose end the coordinator acknowledged
};

// A scripted worker: registers (listing what it runs), follows its command stream, heartbeats,
// and walks each attempt through RUNNING, a train step, then either RESTARTING or a final
// checkpoint and SUCCEEDED. Calls that fail for want of a coordinator are retried; a refused
// lease registers again; an attempt the coordinator calls stale is dropped. Holds are entered
// in the ledger when an assignment arrives and left before the attempt's end is reported (as
// an agent stops its ranks before it reports), so that two holders of one job at once mean
// the coordinator ran it twice.
//
// Threading: its own loop thread and a stream reader thread; Stop() from the test thread.
class ScriptedWorker {
 public:
  ScriptedWorker(std::string name, Link& link, Ledger& ledger, uint64_t seed)
      : name_(std::move(name)), link_(link), ledger_(ledger),
        random_(seed) {}
  ~ScriptedWorker() { Stop(); }

  void Start() {
    stop_ = false;
    thread_ = std::thread([this] { Loop(); });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    CloseStream();
  }

 private:
  struct Attempt {
    uint32_t attempt = 0;
    int stage = 0;
    uint64_t next_index = 0;
    bool restart = false;
  };

  static std::unique_ptr<grpc::ClientContext> Short() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(800));
    return context;
  }

  void Loop() {
    auto last_beat = std::chrono::steady_clock::now();
    while (!stop_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (lease_ == 0) {
        // What the old stream delivered is handled first, so that the attempts listed are all
        // those this worker was given.
        CloseStream();
        for (const v1::WorkerCommand& command : TakeCommands()) Handle(command);
        if (!Register()) continue;
      }
      if (stream_done_) OpenStream();
      for (const v1::WorkerCommand& command : TakeCommands()) Handle(command);
      if (std::chrono::steady_clock::now() - last_beat > std::chrono::milliseconds(300)) {
        last_beat = std::chrono::steady_clock::now();
        if (Heartbeat().error_code() == grpc::StatusCode::FAILED_PRECONDITION) lease_ = 0;
      }
      std::vector<std::string> ids;
      for (const auto& [id, attempt] : attempts_) ids.push_back(id);
      for (const std::string& id : ids) Advance(id);
    }
  }

  bool Register() {
    v1::RegisterRequest request;
    request.set_name(name_);
    request.set_slots(4);
    request.set_device(v1::DEVICE_CPU);
    request.set_address("127.0.0.1");
    request.set_version("test");
    for (const auto& [id, attempt] : attempts_) {
      v1::RunningAttempt* running = request.add_running();
      running->set_job_id(id);
      running->set_attempt(attempt.attempt);
    }
    v1::RegisterResponse response;
    grpc::Status status = Stub()->Register(Short().get(), request, &response);
    link_.Note(status);
    if (!status.ok()) return false;
    lease_ = response.lease_id();
    stream_done_ = true;
    return true;
  }

  grpc::Status Heartbeat() {
    v1::HeartbeatRequest request;
    request.set_name(name_);
    request.set_lease_id(lease_);
    for (const auto& [id, attempt] : attempts_) {
      v1::RunningAttempt* running = request.add_running();
      running->set_job_id(id);
      running->set_attempt(attempt.attempt);
    }
    v1::HeartbeatResponse response;
    grpc::Status status = Stub()->Heartbeat(Short().get(), request, &response);
    link_.Note(status);
    return status;
  }

  void OpenStream() {
    CloseStream();
    stream_done_ = false;
    auto context = std::make_shared<grpc::ClientContext>();
    {
      std::lock_guard<std::mutex> lock(mu_);
      stream_context_ = context;
    }
    const uint64_t lease = lease_;
    reader_ = std::thread([this, context, lease] {
      v1::StreamCommandsRequest request;
      request.set_name(name_);
      request.set_lease_id(lease);
      auto stub = Stub();
      auto reader = stub->StreamCommands(context.get(), request);
      v1::WorkerCommand command;
      while (reader->Read(&command)) {
        std::lock_guard<std::mutex> lock(mu_);
        commands_.push_back(command);
      }
      grpc::Status status = reader->Finish();
      link_.Note(status);
      // Ended by the coordinator (gone, or the lease is): check the lease before reopening.
      if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) lease_ = 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      stream_done_ = true;
    });
  }

  void CloseStream() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stream_context_) stream_context_->TryCancel();
    }
    if (reader_.joinable()) reader_.join();
    std::lock_guard<std::mutex> lock(mu_);
    stream_context_.reset();
  }

  std::vector<v1::WorkerCommand> TakeCommands() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<v1::WorkerCommand> taken(commands_.begin(), commands_.end());
    commands_.clear();
    return taken;
  }

  void Handle(const v1::WorkerCommand& command) {
    if (command.has_assign()) {
      const v1::Assignment& assign = command.assign();
      auto it = attempts_.find(assign.job_id());
      if (it != attempts_.end() && it->second.attempt == assign.attempt()) return;  // re-sent
      {
        std::lock_guard<std::mutex> lock(ledger_.mu);
        auto& holders = ledger_.holders[assign.job_id()];
        for (const auto& [worker, attempt] : holders) {
          if (worker != name_ || attempt > assign.attempt()) {
            ledger_.violations.push_back("job " + assign.job_id() + " attempt " +
                                         std::to_string(assign.attempt()) + " assigned to " +
                                         name_ + " while " + worker + " runs attempt " +
                                         std::to_string(attempt));
          }
        }
        holders[name_] = assign.attempt();  // a newer attempt here supersedes the older one
        ++ledger_.assignments;
      }
      Attempt attempt;
      attempt.attempt = assign.attempt();
      attempt.restart = assign.attempt() == 1 && random_() % 3 == 0;
      attempts_[assign.job_id()] = attempt;
      return;
    }
    if (!command.has_cancel()) return;
    const v1::Cancellation& cancel = command.cancel();
    auto it = attempts_.find(cancel.job_id());
    if (it == attempts_.end() || (cancel.attempt() != 0 && cancel.attempt() != it->second.attempt)) {
      return;
    }
    Drop(cancel.job_id());
  }

  // Leaves the ledger first: what follows is the report that the attempt ended.
  void Drop(const std::string& id) {
    {
      std::lock_guard<std::mutex> lock(ledger_.mu);
      auto& holders = ledger_.holders[id];
      auto held = holders.find(name_);
      if (held != holders.end() && held->second == attempts_[id].attempt) holders.erase(held);
    }
    attempts_.erase(id);
  }

  grpc::Status Report(const std::string& id, Attempt& attempt, const v1::JobEvent& event) {
    v1::ReportEventsRequest request;
    request.set_worker(name_);
    request.set_lease_id(lease_);
    request.set_job_id(id);
    request.set_attempt(attempt.attempt);
    request.set_first_report_index(attempt.next_index);
    *request.add_events() = event;
    v1::ReportEventsResponse response;
    grpc::Status status = Stub()->ReportEvents(Short().get(), request, &response);
    link_.Note(status);
    if (status.ok()) attempt.next_index = response.next_report_index();
    return status;
  }

  // A refusal: a lapsed lease (register again, then retry) or a stale attempt (drop it).
  void Refused(const std::string& id) {
    grpc::Status beat = Heartbeat();
    if (beat.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      lease_ = 0;
    } else if (beat.ok()) {
      Drop(id);
    }
  }

  void Advance(const std::string& id) {
    Attempt& attempt = attempts_[id];
    grpc::Status status;
    v1::JobEvent event;
    switch (attempt.stage) {
      case 0:
        event.mutable_state_change()->set_to(v1::JOB_STATE_RUNNING);
        status = Report(id, attempt, event);
        break;
      case 1:
        event.mutable_train()->set_step(1);
        event.mutable_train()->set_loss(1.0);
        status = Report(id, attempt, event);
        break;
      case 2: {
        if (attempt.restart) {
          const Attempt copy = attempt;
          Drop(id);  // the ranks are gone; the report says so
          Attempt ended = copy;
          event.mutable_state_change()->set_to(v1::JOB_STATE_RESTARTING);
          event.mutable_state_change()->set_reason("a scripted failure");
          // Unanswered or refused: the coordinator restarts it anyway.
          if (Report(id, ended, event).ok()) CountEnd();
          return;
        }
        status = UploadFinal(id, attempt);
        if (status.error_code() == grpc::StatusCode::ALREADY_EXISTS) status = grpc::Status::OK;
        break;
      }
      default: {
        const Attempt copy = attempt;
        Drop(id);
        Attempt ended = copy;
        event.mutable_state_change()->set_to(v1::JOB_STATE_SUCCEEDED);
        if (Report(id, ended, event).ok()) CountEnd();
        return;
      }
    }
    if (status.ok()) {
      ++attempt.stage;
    } else if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
               status.error_code() == grpc::StatusCode::NOT_FOUND) {
      Refused(id);
    }
  }

  void CountEnd() {
    std::lock_guard<std::mutex> lock(ledger_.mu);
    ++ledger_.ended;
  }

  grpc::Status UploadFinal(const std::string& id, const Attempt& attempt) {
    const std::string bytes = "final adapter of " + id + " attempt " +
                              std::to_string(attempt.attempt);
    v1::UploadCheckpointResponse uploaded;
    auto context = Short();
    auto stub = Stub();
    auto writer = stub->UploadCheckpoint(context.get(), &uploaded);
    v1::UploadCheckpointRequest message;
    auto* header = message.mutable_header();
    header->set_worker(name_);
    header->set_lease_id(lease_);
    header->set_job_id(id);
    header->set_attempt(attempt.attempt);
    header->set_step(1);
    header->set_final(true);
    auto* file = header->add_files();
    file->set_path("adapter/adapter_model.safetensors");
    file->set_size_bytes(bytes.size());
    file->set_sha256(Sha256Hex(bytes));
    if (writer->Write(message)) {
      message.Clear();
      message.mutable_chunk()->set_path("adapter/adapter_model.safetensors");
      message.mutable_chunk()->set_offset(0);
      message.mutable_chunk()->set_data(bytes);
      if (writer->Write(message)) writer->WritesDone();
    }
    grpc::Status status = writer->Finish();
    link_.Note(status);
    return status;
  }

  std::unique_ptr<v1::WorkerService::Stub> Stub() { return v1::WorkerService::NewStub(link_.channel()); }

  const std::string name_;
  Link& link_;
  Ledger& ledger_;
  std::mt19937_64 random_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  // Loop thread only, except lease_ and stream_done_ (the reader thread sets them).
  std::atomic<uint64_t> lease_{0};
  std::atomic<bool> stream_done_{true};
  std::map<std::string, Attempt> attempts_;
  std::thread reader_;
  std::mutex mu_;  // guards commands_ and stream_context_
  std::deque<v1::WorkerCommand> commands_;
  std::shared_ptr<grpc::ClientContext> stream_context_;
};

// Submits jobs one after another, each with an idempotency key; records the ids of those the
// coordinator acknowledged. A submit without an answer is retried with the same key (after a
// restart it returns the job if the first one was persisted).
class Submitter {
 public:
  Submitter(Link& link, Ledger& ledger, uint64_t seed) : link_(link), ledger_(ledger), seed_(seed) {}
  ~Submitter() { Stop(); }
  void Start() {
    stop_ = false;
    thread_ = std::thread([this] {
      while (!stop_) {
        v1::SubmitJobRequest request;
        const std::string key = "k-" + std::to_string(seed_) + "-" + std::to_string(next_);
        *request.mutable_spec() = FakeSpec("crash-" + std::to_string(next_));
        request.set_idempotency_key(key);
        v1::SubmitJobResponse response;
        auto context = std::make_unique<grpc::ClientContext>();
        context->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(800));
        grpc::Status status =
            v1::JobService::NewStub(link_.channel())->SubmitJob(context.get(), request, &response);
        link_.Note(status);
        if (status.ok()) {
          std::lock_guard<std::mutex> lock(ledger_.mu);
          ledger_.acked.insert(response.job().id());
          ++next_;
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      }
    });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int submitted() const { return next_; }

 private:
  Link& link_;
  Ledger& ledger_;
  const uint64_t seed_;
  std::atomic<bool> stop_{false};
  std::atomic<int> next_{0};
  std::thread thread_;
};

void RunCrashSeed(uint64_t seed) {
  SCOPED_TRACE("seed " + std::to_string(seed) + " (LORATRF_COORDINATOR_CRASH_SEED=" +
               std::to_string(seed) + " re-runs it)");
  std::mt19937_64 random(seed);
  TempDir dir;
  const std::string data = dir / "data";
  const std::string log = dir / "coordinator.log";
  const int port = FreePort();
  ASSERT_NE(port, 0);
  Coordinator::Options options;
  options.listen = "127.0.0.1:" + std::to_string(port);
  options.lease_ttl_seconds = 5;
  Link link(options.listen);
  Ledger ledger;
  auto w1 = std::make_unique<ScriptedWorker>("w1", link, ledger, random());
  auto w2 = std::make_unique<ScriptedWorker>("w2", link, ledger, random());
  auto submitter = std::make_unique<Submitter>(link, ledger, seed);
  const auto kill_after = std::chrono::milliseconds(100 + random() % 600);
  {
    Coordinator coordinator(data, log, options);
    ASSERT_TRUE(coordinator.ok()) << Slurp(log);
    w1->Start();
    w2->Start();
    submitter->Start();
    std::this_thread::sleep_for(kill_after);
    coordinator.Kill();
    coordinator.Reap();
  }
  // The file as the kill left it.
  EXPECT_EQ(IntegrityCheck(data), "ok");
  {
    Coordinator restarted(data, log, options);
    ASSERT_TRUE(restarted.ok()) << Slurp(log);
    // The workers re-register and go on, the client submits more.
    const int before = submitter->submitted();
    EXPECT_TRUE(WaitFor([&] { return submitter->submitted() >= before + 5; }, 10)) << Slurp(log);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    // Gone with their channel: a coordinator's drain waits for open connections.
    submitter.reset();
    w1.reset();
    w2.reset();
    link.Close();
    std::set<std::string> acked;
    {
      std::lock_guard<std::mutex> lock(ledger.mu);
      acked = ledger.acked;
      EXPECT_THAT(ledger.violations, IsEmpty());
      EXPECT_GT(ledger.ended, 0) << "the workers finished no attempt";
    }
    EXPECT_GT(acked.size(), 0u);
    for (const std::string& id : acked) {
      v1::GetJobRequest get;
      get.set_id(id);
      v1::Job job;
      grpc::Status status = restarted.jobs->GetJob(Context().get(), get, &job);
      EXPECT_TRUE(status.ok()) << "acknowledged job " << id << " is gone: "
                               << status.error_message();
    }
    // One job per idempotency key: a retried submit found the first.
    std::map<std::string, int> per_name;
    v1::ListJobsRequest list;
    do {
      v1::ListJobsResponse listed;
      grpc::Status status = restarted.jobs->ListJobs(Context().get(), list, &listed);
      ASSERT_TRUE(status.ok()) << status.error_message();
      for (const v1::Job& job : listed.jobs()) ++per_name[job.spec().name()];
      list.set_page_token(listed.next_page_token());
    } while (!list.page_token().empty());
    for (const auto& [name, count] : per_name) EXPECT_EQ(count, 1) << name;
    std::printf("[ coordinator crash ] seed %llu: killed after %lld ms; %zu submits acked, "
                "%d assignments, %d attempts ended\n",
                static_cast<unsigned long long>(seed), static_cast<long long>(kill_after.count()),
                acked.size(), ledger.assignments, ledger.ended);
    EXPECT_EQ(restarted.Stop(), 0) << Slurp(log);
  }
  EXPECT_EQ(IntegrityCheck(data), "ok");
  ProcessResult fsck = Fsck(data);
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
}

TEST(CoordinatorCrashTest, SigkillDuringSubmitsAndReportsLosesNoAckAndNeverRunsAJobTwice) {
  if (const char* one = std::getenv("LORATRF_COORDINATOR_CRASH_SEED");
      one != nullptr && *one != '\0') {
    RunCrashSeed(std::strtoull(one, nullptr, 10));
    return;
  }
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    RunCrashSeed(seed);
    if (::testing::Test::HasFailure()) break;
  }
}

}  // namespace
}  // namespace loratrf::testing
