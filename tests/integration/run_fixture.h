// What the `loratrf-worker run` tests share: a tiny Llama made by the reference scripts, a
// synthetic classification task that needs attention to learn, job specs over them, and runs.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/model_fixtures.h"
#include "tests/integration/subprocess.h"

namespace loratrf::testing {

// Class 1 when the first token is in [32, 64): the last token, where the classifier reads,
// has to attend back to the first, so the adapter on attention has to learn it. Sequences of
// `tokens` tokens, or of 2 to 4 (drawn) when `tokens` is 0.
inline void WriteData(const std::string& path, int examples, uint32_t seed, int tokens = 0) {
  std::mt19937 rng(seed);
  std::ofstream out(path);
  for (int i = 0; i < examples; ++i) {
    int first = 1 + static_cast<int>(rng() % 63);
    nlohmann::json ids = {first};
    int extra = tokens > 0 ? tokens - 1 : 1 + static_cast<int>(rng() % 3);
    for (int j = 0; j < extra; ++j) ids.push_back(1 + static_cast<int>(rng() % 63));
    out << nlohmann::json({{"input_ids", ids}, {"label", first >= 32 ? 1 : 0}}).dump() << "\n";
  }
}

// Starts loratrf-worker with `args` in the background, output discarded; returns its pid.
inline pid_t StartWorker(const std::vector<std::string>& args) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  int null = ::open("/dev/null", O_WRONLY);
  dup2(null, 1);
  dup2(null, 2);
  std::vector<std::string> all = {BinaryPath("loratrf-worker")};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  execv(argv[0], argv.data());
  _exit(127);
}

// Starts `loratrf-worker run --spec SPEC --output OUTPUT` and SIGKILLs it as soon as
// OUTPUT/checkpoints/STEP is committed (or after 120 s). True when the kill landed before the
// run finished.
inline bool KillOnceCheckpointed(const std::string& spec, const std::string& output, int step) {
  pid_t child = StartWorker({"run", "--spec", spec, "--output", output});
  if (child < 0) return false;
  const std::string checkpoint = output + "/checkpoints/" + std::to_string(step);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!std::filesystem::exists(checkpoint) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ::kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  return WIFSIGNALED(status);
}

// What a run's metrics.jsonl says about its learning: the first and last training loss and the
// last eval accuracy (-1 where there is none).
struct LearningCurve {
  double first_loss = -1, last_loss = -1, accuracy = -1;
};
inline LearningCurve ReadLearningCurve(const std::string& metrics_path) {
  LearningCurve curve;
  std::ifstream metrics(metrics_path);
  std::string line;
  while (std::getline(metrics, line)) {
    auto row = nlohmann::json::parse(line);
    if (row["type"] == "eval") curve.accuracy = row["eval_accuracy"];
    if (row["type"] == "train") (curve.first_loss < 0 ? curve.first_loss : curve.last_loss) = row["loss"];
  }
  return curve;
}

class RunFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    MustRun({kPython, kReferenceDir + "make_tiny_model.py", "--arch", "llama", "--head",
             "causal_lm", "--output", dir_ / "model"});
    WriteData(dir_ / "train.jsonl", 512, 1);
    WriteData(dir_ / "eval.jsonl", 128, 2);
  }
  std::string Spec(const std::string& training, const std::string& adapter_extra = "") {
    std::string path = dir_ / ("job" + std::to_string(specs_++) + ".yaml");
    std::ofstream(path) << "name: tiny\nmodel: {path: model}\ntask: classification\n"
                           "data: {train: train.jsonl, eval: eval.jsonl}\n"
                           "adapter: {method: loratrf, rank: 4, alpha: 8, "
                        << adapter_extra << "target_modules: [q_proj, k_proj, v_proj, o_proj]}\n"
                        << "training: {" << training << "}\n";
    return path;
  }
  ProcessResult Train(const std::string& spec, const std::string& output, const std::string& nproc = "1") {
    return RunProcess({BinaryPath("loratrf-worker"), "run", "--spec", spec, "--nproc", nproc,
                       "--output", dir_ / output}, "", 300);
  }
  TempDir dir_;
  int specs_ = 0;
};

}  // namespace loratrf::testing
