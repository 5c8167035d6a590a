// A job spread over two hosts that are really separate on the network: two Linux network
// namespaces stand for two machines, each with its own address on a bridge in the test's own
// namespace (10.77.N.2 and 10.77.N.3; the bridge is 10.77.N.1). The coordinator runs outside,
// listening on the bridge's address (with tokens, as it must off loopback); one
// `loratrf-worker agent` runs in each namespace, advertising its own address. A
// `workers: 2, slots_per_worker: 1` job has one rank in each namespace, so the Gloo ranks can
// bind and reach nothing but their own host's address and the other's over the bridge, which
// 127.0.0.1 tests cannot show. Its adapter must match the same job trained on one host
// (`loratrf-worker run --nproc 2`).
//
// Needs root and iproute2 (`ip netns`); skips, saying why, where namespaces cannot be made.
// The namespaces, links and every process in them are removed on every path (RAII); leftovers
// of a run that was killed (named after its pid, which no longer exists) are removed first.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/model_fixtures.h"
#include "tests/integration/run_fixture.h"
#include "tests/integration/subprocess.h"

namespace loratrf::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Two network namespaces ("hosts") joined by a bridge in this namespace. Names carry this
// process's id: "lrtf-mh-PID-a" and "-b" for the namespaces, "lrtfbPID" for the bridge,
// "lrtfPIDa" and "lrtfPIDb" for the host ends of the veth pairs (at most 15 characters).
class TwoHosts {
 public:
  static constexpr char kPrefix[] = "lrtf-mh-";

  // Empty, with `why` set, when namespaces cannot be made here (the test skips), or with
  // `error` set when they could be but setting them up failed (the test fails).
  static std::unique_ptr<TwoHosts> Create(std::string* why, std::string* error) {
    if (::geteuid() != 0) {
      *why = "network namespaces need root (this test runs as uid " +
             std::to_string(::geteuid()) + ")";
      return nullptr;
    }
    std::string ip = IpBinary();
    if (ip.empty()) {
      *why = "iproute2's `ip` is not installed";
      return nullptr;
    }
    RemoveLeftovers(ip);
    auto hosts = std::unique_ptr<TwoHosts>(new TwoHosts(ip, ::getpid()));
    // The first namespace is the probe: if it cannot be made, nothing here can.
    ProcessResult probe = hosts->Ip({"netns", "add", hosts->ns_[0]});
    if (probe.exit_code != 0) {
      *why = "`ip netns add` failed: " + Trimmed(probe.err);
      return nullptr;
    }
    *error = hosts->Build();
    if (!error->empty()) return nullptr;
    return hosts;
  }

  ~TwoHosts() { Remove(ip_, pid_); }

  TwoHosts(const TwoHosts&) = delete;
  TwoHosts& operator=(const TwoHosts&) = delete;

  std::string address(int host) const { return subnet_ + std::to_string(host + 2); }
  std::string bridge_address() const { return subnet_ + "1"; }

  // argv run inside host `host`'s namespace.
  std::vector<std::string> In(int host, const std::vector<std::string>& argv) const {
    std::vector<std::string> wrapped = {ip_, "netns", "exec", ns_[host]};
    wrapped.insert(wrapped.end(), argv.begin(), argv.end());
    return wrapped;
  }

 private:
  TwoHosts(std::string ip, int pid) : ip_(std::move(ip)), pid_(pid) {
    const std::string id = std::to_string(pid);
    ns_[0] = kPrefix + id + "-a";
    ns_[1] = kPrefix + id + "-b";
    bridge_ = "lrtfb" + id;
    host_end_[0] = "lrtf" + id + "a";
    host_end_[1] = "lrtf" + id + "b";
  }

  ProcessResult Ip(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {ip_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, "", 30);
  }

  // A /24 under 10.77/16 that no interface here uses yet (another test run may hold one).
  std::string FreeSubnet() const {
    std::string used = Ip({"-o", "-4", "addr", "show"}).out;
    for (int i = 0; i < 250; ++i) {
      std::string subnet = "10.77." + std::to_string((pid_ + i) % 250 + 1) + ".";
      if (used.find(" " + subnet) == std::string::npos) return subnet;
    }
    return "";
  }

  // The error of the first step that failed, else "".
  std::string Build() {
    subnet_ = FreeSubnet();
    if (subnet_.empty()) return "no free 10.77.N.0/24 subnet";
    std::vector<std::vector<std::string>> steps = {
        {"netns", "add", ns_[1]},
        {"link", "add", bridge_, "type", "bridge"},
        {"addr", "add", bridge_address() + "/24", "dev", bridge_},
        {"link", "set", bridge_, "up"}};
    for (int host = 0; host < 2; ++host) {
      const std::string inside = "eth" + std::to_string(host);
      steps.push_back({"link", "add", host_end_[host], "type", "veth", "peer", "name", inside,
                       "netns", ns_[host]});
      steps.push_back({"link", "set", host_end_[host], "master", bridge_});
      steps.push_back({"link", "set", host_end_[host], "up"});
      steps.push_back({"-n", ns_[host], "link", "set", "lo", "up"});
      steps.push_back({"-n", ns_[host], "addr", "add", address(host) + "/24", "dev", inside});
      steps.push_back({"-n", ns_[host], "link", "set", inside, "up"});
    }
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

  // Kills what runs in the namespaces (the agents and their ranks, all started by the test
  // that made them), then removes the links and the namespaces. Each step is best-effort: it
  // runs whether or not the earlier ones did, and a missing link or namespace is no error.
  static void Remove(const std::string& ip, int pid) {
    const std::string id = std::to_string(pid);
    auto run = [&](std::vector<std::string> args) {
      args.insert(args.begin(), ip);
      return RunProcess(args, "", 30);
    };
    for (const std::string& ns : {kPrefix + id + "-a", kPrefix + id + "-b"}) {
      if (!fs::exists("/run/netns/" + ns)) continue;
      for (int round = 0; round < 50; ++round) {
        std::istringstream pids(run({"netns", "pids", ns}).out);
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
    for (const std::string& link : {"lrtf" + id + "a", "lrtf" + id + "b", "lrtfb" + id}) {
      if (fs::exists("/sys/class/net/" + link)) run({"link", "del", link});
    }
    for (const std::string& ns : {kPrefix + id + "-a", kPrefix + id + "-b"}) {
      if (fs::exists("/run/netns/" + ns)) run({"netns", "del", ns});
    }
  }

  // Namespaces of earlier runs of this test whose process is gone (killed by a timeout).
  static void RemoveLeftovers(const std::string& ip) {
    std::istringstream listed(RunProcess({ip, "netns", "list"}, "", 30).out);
    for (std::string line; std::getline(listed, line);) {
      if (line.rfind(kPrefix, 0) != 0) continue;
      std::string rest = line.substr(sizeof kPrefix - 1);
      size_t dash = rest.find('-');
      if (dash == std::string::npos || dash == 0 ||
          rest.substr(0, dash).find_first_not_of("0123456789") != std::string::npos) {
        continue;
      }
      int pid = std::stoi(rest.substr(0, dash));
      if (pid != ::getpid() && !fs::exists("/proc/" + std::to_string(pid))) Remove(ip, pid);
    }
  }

  std::string ip_;
  int pid_;
  std::string subnet_;  // "10.77.N."
  std::string ns_[2];
  std::string bridge_;
  std::string host_end_[2];
};

class MultiHost : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why, error;
    hosts_ = TwoHosts::Create(&why, &error);
    if (!error.empty()) FAIL() << "setting up the namespaces: " << error;
    if (!hosts_) GTEST_SKIP() << why;
    MustRun({kPython, kReferenceDir + "make_tiny_model.py", "--arch", "llama", "--head",
             "causal_lm", "--output", dir_ / "model", "--hidden", "64", "--intermediate", "128",
             "--layers", "2"});
    WriteData(dir_ / "train.jsonl", 256, 1, /*tokens=*/24);
    WriteData(dir_ / "eval.jsonl", 64, 2, /*tokens=*/24);
    std::ofstream(dir_ / "tokens") << "user alice multi-host-user-token-0123\n"
                                   << "worker node-a multi-host-worker-a-token-0123\n"
                                   << "worker node-b multi-host-worker-b-token-0123\n";
    std::ofstream(dir_ / "alice.token") << "multi-host-user-token-0123\n";
    std::ofstream(dir_ / "node-a.token") << "multi-host-worker-a-token-0123\n";
    std::ofstream(dir_ / "node-b.token") << "multi-host-worker-b-token-0123\n";
  }

  void TearDown() override {
    for (auto& agent : agents_) {
      if (agent) agent->Signal(SIGTERM);
    }
    for (auto& agent : agents_) {
      if (agent) agent->Wait(10);
    }
    if (coordinator_) {
      coordinator_->Signal(SIGTERM);
      coordinator_->Wait(10);
    }
    if (HasFailure() && hosts_) std::cerr << Logs();
  }

  std::string Spec(const std::string& name) {
    std::string path = dir_ / (name + ".yaml");
    std::ofstream(path)
        << "name: " << name << "\nmodel: {path: model}\ntask: classification\n"
        << "data: {train: train.jsonl, eval: eval.jsonl}\n"
        << "adapter: {method: loratrf, rank: 4, alpha: 8, dropout: 0.0, "
           "target_modules: [q_proj, v_proj]}\n"
        << "training: {max_steps: 12, batch_size: 8, micro_batch_size: 4, learning_rate: 0.01, "
           "eval_every_steps: 6, checkpoint_every_steps: 6, max_seq_len: 32}\n"
        << "resources: {workers: 2, slots_per_worker: 1, device: cpu}\n"
        // A rank that cannot join fails the job at once rather than being retried.
        << "max_restarts: 0\n";
    return path;
  }

  void StartCoordinator() {
    fs::create_directories(dir_ / "data");
    int low = 30000 + static_cast<int>(std::random_device()() % 20000);
    coordinator_ = std::make_unique<BackgroundProcess>(
        std::vector<std::string>{BinaryPath("loratrf-coordinator"),
                                 "--listen", hosts_->bridge_address() + ":0",
                                 "--data-dir", dir_ / "data",
                                 "--auth-token-file", dir_ / "tokens",
                                 "--lease-ttl", "2",
                                 "--rendezvous-ports",
                                 std::to_string(low) + "-" + std::to_string(low + 99)},
        dir_ / "coordinator.log");
    ASSERT_TRUE(WaitFor([&] { return fs::exists(dir_ / "data/coordinator.address"); }, 30))
        << Slurp(dir_ / "coordinator.log");
    address_ = Trimmed(Slurp(dir_ / "data/coordinator.address"));
  }

  void StartAgent(int host) {
    const std::string name = host == 0 ? "node-a" : "node-b";
    agents_[host] = std::make_unique<BackgroundProcess>(
        hosts_->In(host, {BinaryPath("loratrf-worker"), "agent", "--coordinator", address_,
                          "--slots", "1", "--work-dir", dir_ / ("work-" + name), "--name", name,
                          "--address", hosts_->address(host), "--token-file",
                          dir_ / (name + ".token")}),
        dir_ / (name + ".log"));
  }

  ProcessResult Cli(std::vector<std::string> args, int timeout = 60) {
    args.insert(args.begin(),
                {BinaryPath("loratrf"), "--coordinator", address_, "--token-file", dir_ / "alice.token"});
    return RunProcess(args, "", timeout);
  }

  json Get(const std::string& id) {
    ProcessResult got = Cli({"get", id, "-o", "json"});
    return got.exit_code == 0 ? json::parse(got.out) : json::object();
  }

  // The coordinator's and agents' logs and every rank's stderr (where a rank says why it could
  // not join), the end of each.
  std::string Logs() {
    std::string logs;
    auto add = [&](const std::string& title, const std::string& path) {
      std::string text = Slurp(path);
      if (text.size() > 6000) text = "..." + text.substr(text.size() - 6000);
      logs += "--- " + title + "\n" + text;
    };
    add("coordinator", dir_ / "coordinator.log");
    for (const std::string name : {"node-a", "node-b"}) {
      add(name, dir_ / (name + ".log"));
      std::error_code ec;
      for (auto it = fs::recursive_directory_iterator(dir_ / ("work-" + name), ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        const std::string path = it->path().string();
        const std::string suffix = ".stderr.log";
        if (path.size() > suffix.size() &&
            path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0) {
          add(path, path);
        }
      }
    }
    return logs;
  }

  TempDir dir_;
  // Declared after dir_ and before the processes: destroyed after every process object has
  // killed its process, and before the directory goes.
  std::unique_ptr<TwoHosts> hosts_;
  std::string address_;
  std::unique_ptr<BackgroundProcess> coordinator_;
  std::unique_ptr<BackgroundProcess> agents_[2];
};

TEST_F(MultiHost, AJobOnTwoHostsMatchesTheSameJobOnOne) {
  StartCoordinator();
  if (HasFatalFailure()) return;
  StartAgent(0);
  StartAgent(1);
  // Both agents hold a lease (they load libtorch first: a second or two).
  ASSERT_TRUE(WaitFor([&] {
    ProcessResult listed = Cli({"workers", "-o", "json"});
    if (listed.exit_code != 0) return false;
    size_t ready = 0;
    for (const json& worker : json::parse(listed.out).value("workers", json::array())) {
      ready += worker.value("state", "") == "WORKER_STATE_READY";
    }
    return ready == 2;
  }, 60)) << Logs();

  std::string spec = Spec("two-hosts");
  ProcessResult submitted = Cli({"submit", spec});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  std::string id = Trimmed(submitted.out);
  id = id.substr(id.rfind('\n') == std::string::npos ? 0 : id.rfind('\n') + 1);
  ASSERT_FALSE(id.empty());
  ProcessResult watched = Cli({"watch", id}, 300);
  json job = Get(id);
  ASSERT_EQ(job.value("state", ""), "JOB_STATE_SUCCEEDED")
      << "reason: " << job.value("state_reason", "") << "\n" << watched.err;
  EXPECT_EQ(watched.exit_code, 0);
  EXPECT_EQ(job["attempt"], 1);
  ASSERT_EQ(job["workers"].size(), 2u);
  ProcessResult downloaded = Cli({"download", id, "--output", dir_ / "two-hosts"});
  ASSERT_EQ(downloaded.exit_code, 0) << downloaded.err;

  // The same job on one host: two ranks over 127.0.0.1.
  ProcessResult local = RunProcess({BinaryPath("loratrf-worker"), "run", "--spec", spec,
                                    "--nproc", "2", "--output", dir_ / "one-host"},
                                   "", 300);
  ASSERT_EQ(local.exit_code, 0) << local.err;
  ExpectSameTensors(dir_ / "two-hosts/adapter_model.safetensors",
                    dir_ / "one-host/final/adapter_model.safetensors", 1e-5);
}

}  // namespace
}  // namespace loratrf::testing
