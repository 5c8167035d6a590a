// The whole service on 127.0.0.1 for integration tests: a real loratrf-coordinator (SQLite under
// a temp data dir), real `loratrf-worker agent`s starting real rank processes (Gloo over
// loopback), a tiny Llama and data, driven by the real `loratrf` CLI. Used by
// control_plane_test.cc and fault_test.cc.
#pragma once

#include <signal.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/cli_queries.h"
#include "tests/integration/model_fixtures.h"
#include "tests/integration/run_fixture.h"
#include "tests/integration/subprocess.h"

namespace loratrf::testing {

// A TCP port nothing listens on right now (the kernel's pick).
inline int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  int port = ntohs(address.sin_port);
  close(fd);
  return port;
}

// Processes whose command line mentions `needle` (rank processes carry their output dir).
inline std::vector<int> ProcessesMentioning(const std::string& needle) {
  std::vector<int> pids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = Slurp(entry.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    std::string state = Slurp(entry.path() / "stat");
    bool zombie = state.find(") Z") != std::string::npos;
    if (!zombie && cmdline.find(needle) != std::string::npos &&
        cmdline.find(" run ") != std::string::npos) {
      pids.push_back(std::stoi(name));
    }
  }
  return pids;
}
class ServiceFixture : public ::testing::Test {
 protected:
  using json = nlohmann::json;

  void SetUp() override {
    MustRun({kPython, kReferenceDir + "make_tiny_model.py", "--arch", "llama", "--head",
             "causal_lm", "--output", dir_ / "model", "--hidden", "64", "--intermediate", "128",
             "--layers", "2"});
    WriteData(dir_ / "train.jsonl", 256, 1, /*tokens=*/24);
    WriteData(dir_ / "eval.jsonl", 64, 2, /*tokens=*/24);
    // Each test gets its own rendezvous ports, away from other tests running at the same time.
    int low = 30000 + static_cast<int>(std::random_device()() % 20000);
    ports_ = std::to_string(low) + "-" + std::to_string(low + 99);
  }


  std::string Spec(const std::string& name, const std::string& training,
                   const std::string& resources, int max_restarts = 2) {
    std::string path = dir_ / (name + ".yaml");
    std::ofstream(path) << "name: " << name << "\nmodel: {path: model}\ntask: classification\n"
                        << "data: {train: train.jsonl, eval: eval.jsonl}\n"
                        << "adapter: {method: loratrf, rank: 4, alpha: 8, dropout: 0.0, "
                           "target_modules: [q_proj, v_proj]}\n"
                        << "training: {" << training << "}\n"
                        << "resources: {" << resources << ", device: cpu}\n"
                        << "max_restarts: " << max_restarts << "\n";
    return path;
  }

  void StartCoordinator(int port = 0, const std::vector<std::string>& extra = {}) {
    std::filesystem::create_directories(dir_ / "data");
    std::filesystem::remove(dir_ / "data/coordinator.address");
    metrics_port_ = FreePort();
    std::vector<std::string> argv = {BinaryPath("loratrf-coordinator"),
                                     "--listen", "127.0.0.1:" + std::to_string(port),
                                     "--data-dir", dir_ / "data",
                                     "--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port_),
                                     "--lease-ttl", "2",
                                     "--rendezvous-ports", ports_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    coordinator_ = std::make_unique<BackgroundProcess>(argv, dir_ / "coordinator.log");
    ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(dir_ / "data/coordinator.address"); }, 30))
        << Slurp(dir_ / "coordinator.log");
    address_ = Slurp(dir_ / "data/coordinator.address");
    while (!address_.empty() && std::isspace(static_cast<unsigned char>(address_.back()))) {
      address_.pop_back();
    }
  }

  // `env`: NAME=VALUE added to the agent's environment (and so to its ranks').
  void StartAgent(const std::string& name, int slots, const std::vector<std::string>& extra = {},
                  const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv;
    if (!env.empty()) {
      argv.push_back("/usr/bin/env");
      argv.insert(argv.end(), env.begin(), env.end());
    }
    for (std::string arg : {BinaryPath("loratrf-worker"), std::string("agent"),
                            std::string("--coordinator"), address_, std::string("--slots"),
                            std::to_string(slots), std::string("--work-dir"),
                            dir_ / ("work-" + name), std::string("--name"), name}) {
      argv.push_back(std::move(arg));
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    agents_[name] = std::make_unique<BackgroundProcess>(argv, dir_ / (name + ".log"));
  }

  // Waits until `count` workers hold a lease (agents load libtorch first: a second or two).
  void WaitForWorkers(size_t count, const std::vector<std::string>& globals = {}) {
    ASSERT_TRUE(WaitFor([&] {
      return CliReadyWorkers(Runner(), globals) >= static_cast<int>(count);
    }, 60)) << Logs();
  }

  ProcessResult Cli(std::vector<std::string> args, int timeout = 60) {
    args.insert(args.begin(), {BinaryPath("loratrf"), "--coordinator", address_});
    return RunProcess(args, "", timeout);
  }

  // `globals` go before the command (e.g. --token-file), `flags` after it.
  std::string Submit(const std::string& spec, std::vector<std::string> flags = {},
                     std::vector<std::string> globals = {}) {
    std::vector<std::string> args = globals;
    args.push_back("submit");
    args.push_back(spec);
    args.insert(args.end(), flags.begin(), flags.end());
    ProcessResult submitted = Cli(args);
    EXPECT_EQ(submitted.exit_code, 0) << submitted.err;
    return SubmittedJobId(submitted.out);
  }

  CliRunner Runner() {
    return [this](std::vector<std::string> args, int timeout) { return Cli(std::move(args), timeout); };
  }
  json Get(const std::string& id) { return CliGetJob(Runner(), id); }
  std::string State(const std::string& id) { return Get(id).value("state", ""); }
  json Checkpoints(const std::string& id) { return CliCheckpoints(Runner(), id); }
  // Every event of a final job, through `watch -o json`.
  std::vector<json> Events(const std::string& id) { return CliEvents(Runner(), id); }

  std::string Logs() {
    std::string logs = "--- coordinator\n" + Slurp(dir_ / "coordinator.log");
    for (const auto& [name, agent] : agents_) logs += "--- " + name + "\n" + Slurp(dir_ / (name + ".log"));
    return logs.size() > 20000 ? logs.substr(logs.size() - 20000) : logs;
  }

  void TearDown() override {
    for (auto& [name, agent] : agents_) agent->Signal(SIGTERM);
    for (auto& [name, agent] : agents_) agent->Wait(10);
    if (coordinator_) {
      coordinator_->Signal(SIGTERM);
      coordinator_->Wait(10);
    }
    if (HasFailure()) std::cerr << Logs();
  }
  TempDir dir_;
  int metrics_port_ = 0;
  std::string ports_;
  std::string address_;
  std::unique_ptr<BackgroundProcess> coordinator_;
  std::map<std::string, std::unique_ptr<BackgroundProcess>> agents_;
};

}  // namespace loratrf::testing
