// Path confinement with the real service: a coordinator, an agent started with --allow-path,
// and the CLI. Jobs whose model or data paths lead outside the allowed roots (directly, through
// `..`, or through a symbolic link inside a root) fail at once with an error naming the spec
// field, are not retried, and nothing of the file they named reaches the job's events.
#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/cli_queries.h"
#include "tests/integration/subprocess.h"

namespace loratrf::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;

// In the secret file and in the agent's environment (what /proc/self/environ would show).
constexpr char kCanary[] = "CANARY-5b1e9f";

class PathConfinement : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "allowed/model");
    fs::create_directories(dir_ / "allowed/linked-model");
    fs::create_directories(dir_ / "outside");
    std::ofstream(dir_ / "outside/secret.jsonl")
        << "{\"text\": \"" << kCanary << "\", \"label\": 0}\n" << kCanary << " not json\n";
    fs::create_symlink(dir_ / "outside/secret.jsonl", dir_ / "allowed/link.jsonl");
    fs::create_symlink(dir_ / "outside/secret.jsonl", dir_ / "allowed/linked-model/config.json");
    std::ofstream(dir_ / "allowed/train.jsonl") << "{\"text\": \"a\", \"label\": 0}\n";

    fs::create_directories(dir_ / "data");
    std::vector<std::string> argv = {BinaryPath("loratrf-coordinator"), "--listen", "127.0.0.1:0",
                                     "--data-dir", dir_ / "data", "--lease-ttl", "5"};
    coordinator_ = std::make_unique<BackgroundProcess>(argv, dir_ / "coordinator.log");
    ASSERT_TRUE(WaitFor([&] { return fs::exists(dir_ / "data/coordinator.address"); }, 30))
        << Slurp(dir_ / "coordinator.log");
    address_ = Slurp(dir_ / "data/coordinator.address");
    while (!address_.empty() && std::isspace(static_cast<unsigned char>(address_.back()))) {
      address_.pop_back();
    }
    // The agent (and so its ranks) carries the canary in its environment.
    ::setenv("LORATRF_TEST_CANARY", kCanary, 1);
    agent_ = std::make_unique<BackgroundProcess>(
        std::vector<std::string>{BinaryPath("loratrf-worker"), "agent", "--coordinator", address_,
                                 "--slots", "1", "--device", "cpu", "--work-dir", dir_ / "work",
                                 "--name", "node-a", "--allow-path", dir_ / "allowed/"},
        dir_ / "agent.log");
    ::unsetenv("LORATRF_TEST_CANARY");
    ASSERT_TRUE(WaitFor([&] {
      ProcessResult listed = Cli({"workers", "-o", "json"});
      return listed.exit_code == 0 && listed.out.find("WORKER_STATE_READY") != std::string::npos;
    }, 60)) << Logs();
  }

  void TearDown() override {
    if (agent_) {
      agent_->Signal(SIGTERM);
      agent_->Wait(10);
    }
    if (coordinator_) {
      coordinator_->Signal(SIGTERM);
      coordinator_->Wait(10);
    }
    if (HasFailure()) std::cerr << Logs();
  }

  std::string Logs() {
    return "--- coordinator\n" + Slurp(dir_ / "coordinator.log") + "--- agent\n" +
           Slurp(dir_ / "agent.log");
  }

  ProcessResult Cli(std::vector<std::string> args, int timeout = 60) {
    args.insert(args.begin(), {BinaryPath("loratrf"), "--coordinator", address_});
    return RunProcess(args, "", timeout);
  }

  std::string Submit(const std::string& name, const std::string& model, const std::string& train) {
    const std::string path = dir_ / (name + ".yaml");
    std::ofstream(path) << "name: " << name << "\nmodel: {path: \"" << model
                        << "\"}\ntask: classification\ndata: {train: \"" << train << "\"}\n"
                        << "adapter: {method: lora, rank: 4, alpha: 8, target_modules: [q_proj]}\n"
                        << "training: {epochs: 1, batch_size: 1, micro_batch_size: 1, "
                           "learning_rate: 0.001, max_seq_len: 16}\n"
                        << "resources: {workers: 1, slots_per_worker: 1, device: cpu}\n"
                        << "max_restarts: 2\n";
    ProcessResult submitted = Cli({"submit", path});
    EXPECT_EQ(submitted.exit_code, 0) << submitted.err;
    return SubmittedJobId(submitted.out);
  }

  json Get(const std::string& id) {
    return CliGetJob([this](std::vector<std::string> args, int timeout) {
      return Cli(std::move(args), timeout);
    }, id);
  }

  TempDir dir_;
  std::string address_;
  std::unique_ptr<BackgroundProcess> coordinator_;
  std::unique_ptr<BackgroundProcess> agent_;
};

TEST_F(PathConfinement, PathsOutsideTheAllowedRootsFailTheJobWithoutEchoingTheFile) {
  const std::string allowed = dir_ / "allowed";
  struct Case {
    std::string name, model, train, reason;
  };
  const std::vector<Case> cases = {
      {"environ", "/proc/self/environ", allowed + "/train.jsonl",
       "model.path: /proc/self/environ is outside the allowed paths (--allow-path)"},
      {"train-link", allowed + "/model", allowed + "/link.jsonl",
       "data.train: " + allowed + "/link.jsonl is outside the allowed paths (--allow-path)"},
      {"dot-dot", allowed + "/model", allowed + "/../outside/secret.jsonl",
       "data.train: " + allowed + "/../outside/secret.jsonl is outside the allowed paths "
       "(--allow-path)"},
      {"model-link", allowed + "/linked-model", allowed + "/train.jsonl",
       "model.path: " + allowed + "/linked-model/config.json (a symbolic link) is outside the "
       "allowed paths (--allow-path)"},
      {"work-dir", dir_ / "work", allowed + "/train.jsonl",
       "model.path: " + (dir_ / "work") + " is inside the agent's work dir"},
  };
  std::map<std::string, std::string> ids;
  for (const Case& c : cases) ids[c.name] = Submit(c.name, c.model, c.train);

  for (const Case& c : cases) {
    const std::string& id = ids[c.name];
    ASSERT_TRUE(WaitFor([&] { return Get(id).value("state", "") == "JOB_STATE_FAILED"; }, 60))
        << c.name << ": " << Get(id).dump();
    json job = Get(id);
    EXPECT_THAT(job.value("state_reason", ""), HasSubstr(c.reason)) << c.name;
    EXPECT_EQ(job.value("attempt", 0), 1) << c.name << ": a user error is not retried";
    // Everything the job has to show: its record and every event.
    ProcessResult watched = Cli({"watch", id, "-o", "json"});
    const std::string shown = job.dump() + watched.out;
    EXPECT_EQ(shown.find(kCanary), std::string::npos) << c.name << ":\n" << shown;
    EXPECT_EQ(shown.find("LORATRF_TEST_CANARY"), std::string::npos) << c.name;
    EXPECT_EQ(shown.find("HOME="), std::string::npos) << c.name;
  }
  // No rank was started for any of them: nothing opened the files.
  for (const auto& entry : fs::recursive_directory_iterator(dir_ / "work")) {
    EXPECT_EQ(entry.path().filename().string().rfind("rank-", 0), std::string::npos)
        << entry.path();
  }
}

}  // namespace
}  // namespace loratrf::testing
