// `loratrf-worker run` end to end on a tiny Llama: it learns, a SIGKILLed run resumes to the
// same adapter bit for bit, a SIGTERMed two-rank run stops at a committed checkpoint of the
// step it reached and resumes to the uninterrupted adapter, two Gloo ranks and gradient
// accumulation give the same adapter as one process, and bad data is refused.
#include <signal.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/cpu_threads.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/model_fixtures.h"
#include "tests/integration/run_fixture.h"
#include "nlohmann/json.hpp"
#include "tests/integration/subprocess.h"
#include "proto/contract/run_output.h"

namespace loratrf {
namespace {

namespace fs = std::filesystem;
using ::loratrf::testing::BinaryPath;
using ::loratrf::testing::ExpectSameTensors;
using ::loratrf::testing::KillOnceCheckpointed;
using ::loratrf::testing::LearningCurve;
using ::loratrf::testing::ReadLearningCurve;
using ::loratrf::testing::ProcessResult;
using ::loratrf::testing::RunProcess;
using ::loratrf::testing::TempDir;
using ::testing::HasSubstr;

using ::loratrf::testing::Slurp;
using ::loratrf::testing::StartWorker;
class Run : public ::loratrf::testing::RunFixture {};

TEST_F(Run, LoratrfLearnsASyntheticTask) {
  ProcessResult r = Train(Spec("epochs: 8, batch_size: 16, micro_batch_size: 8, learning_rate: 1.0e-2, "
                               "warmup_ratio: 0.1, max_seq_len: 32"),
                          "out");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  LearningCurve curve = ReadLearningCurve(dir_ / "out/metrics.jsonl");
  EXPECT_GT(curve.accuracy, 0.9) << "chance is 0.5";
  EXPECT_LT(curve.last_loss, curve.first_loss / 2);
  EXPECT_THAT(r.out, HasSubstr("final adapter: "));
  EXPECT_TRUE(fs::exists(dir_ / "out/final/adapter_model.safetensors"));
  EXPECT_TRUE(fs::exists(dir_ / "out/final/MANIFEST.json"));
  // The adapter carries its classification head and loads for inference.
  ProcessResult logits = RunProcess({BinaryPath("loratrf-worker"), "logits", "--model", dir_ / "model",
                                     "--adapter", dir_ / "out/final", "--input-ids", "40,3",
                                     "--output", dir_ / "logits.safetensors"});
  EXPECT_EQ(logits.exit_code, 0) << logits.err;
}

TEST_F(Run, SigkilledRunResumesToTheSameAdapterBitForBit) {
  const std::string training = "epochs: 10, max_steps: 120, batch_size: 16, micro_batch_size: 8, "
                               "learning_rate: 1.0e-2, checkpoint_every_steps: 20, max_seq_len: 32";
  std::string spec = Spec(training, "dropout: 0.1, ");
  ASSERT_EQ(Train(spec, "straight").exit_code, 0);

  ASSERT_TRUE(KillOnceCheckpointed(spec, dir_ / "killed", 40))
      << "the run finished before it could be killed";
  ASSERT_FALSE(fs::exists(dir_ / "killed/final"));

  ProcessResult resumed = Train(spec, "killed");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_THAT(resumed.out, HasSubstr("resumed at step"));
  EXPECT_EQ(Slurp(dir_ / "killed/final/adapter_model.safetensors"),
            Slurp(dir_ / "straight/final/adapter_model.safetensors"));
  // Every step logged exactly once.
  std::multiset<int64_t> steps;
  std::ifstream metrics(dir_ / "killed/metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    auto row = nlohmann::json::parse(line);
    if (row["type"] == "train") steps.insert(row["step"].get<int64_t>());
  }
  ASSERT_EQ(steps.size(), 120u);
  for (int64_t s = 1; s <= 120; ++s) EXPECT_EQ(steps.count(s), 1u) << s;
  // Rerunning a finished job changes nothing.
  ProcessResult again = Train(spec, "killed");
  EXPECT_EQ(again.exit_code, 0) << again.err;
}

// The train rows of a metrics.jsonl, by step.
std::multiset<int64_t> TrainStepsLogged(const std::string& path) {
  std::multiset<int64_t> steps;
  std::ifstream metrics(path);
  for (std::string line; std::getline(metrics, line);) {
    auto row = nlohmann::json::parse(line);
    if (row["type"] == "train") steps.insert(row["step"].get<int64_t>());
  }
  return steps;
}

// SIGTERM is what Kubernetes sends on a drain or a spot eviction: both ranks finish the same
// step, the checkpoint of that step is committed, and the launcher exits with the status that
// says so; the rerun resumes there and ends where an uninterrupted run ends.
TEST_F(Run, SigtermedTwoRankRunStopsAtACheckpointAndResumesToTheSameAdapter) {
  // No dropout: each rank draws its own masks, and a checkpoint keeps rank 0's generator only.
  // No periodic checkpoint: the one there is, is the stop's.
  const std::string spec = Spec("epochs: 20, max_steps: 600, batch_size: 16, micro_batch_size: 8, "
                                "learning_rate: 1.0e-2, max_seq_len: 32, eval_every_steps: 0, "
                                "checkpoint_every_steps: 0", "dropout: 0.0, ");
  ProcessResult straight = Train(spec, "straight", "2");
  ASSERT_EQ(straight.exit_code, 0) << straight.err;

  const std::string out = dir_ / "stopped";
  pid_t launcher = StartWorker({"run", "--spec", spec, "--nproc", "2", "--output", out});
  ASSERT_GE(launcher, 0);
  ASSERT_TRUE(::loratrf::testing::WaitFor(
      [&] { return TrainStepsLogged(out + "/metrics.jsonl").size() >= 3; }, 120))
      << "the run did not start training";
  ::kill(launcher, SIGTERM);
  int status = 0;
  // Bounded: a step and a checkpoint of a tiny model, far below the wait.
  ASSERT_TRUE(::loratrf::testing::WaitFor(
      [&] { return ::waitpid(launcher, &status, WNOHANG) == launcher; }, 60))
      << "the launcher did not exit after SIGTERM";
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), contract::kRunExitStopped)
      << "the run was not stopped by the signal (it finished first?)";
  EXPECT_FALSE(fs::exists(out + "/final"));
  // The committed checkpoint is that of the last step logged: nothing done is lost.
  const std::multiset<int64_t> logged = TrainStepsLogged(out + "/metrics.jsonl");
  ASSERT_FALSE(logged.empty());
  std::vector<int64_t> checkpoints;
  for (const auto& entry : fs::directory_iterator(out + "/checkpoints")) {
    if (fs::exists(entry.path() / "MANIFEST.json")) {
      checkpoints.push_back(std::stoll(entry.path().filename().string()));
    }
  }
  ASSERT_EQ(checkpoints.size(), 1u);
  EXPECT_EQ(checkpoints[0], *logged.rbegin());
  EXPECT_LT(checkpoints[0], 600);

  ProcessResult resumed = Train(spec, "stopped", "2");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_THAT(resumed.out, HasSubstr("resumed at step " + std::to_string(checkpoints[0])));
  ExpectSameTensors(out + "/final/adapter_model.safetensors",
                    dir_ / "straight/final/adapter_model.safetensors", 1e-5);
  const std::multiset<int64_t> steps = TrainStepsLogged(out + "/metrics.jsonl");
  ASSERT_EQ(steps.size(), 600u);
  for (int64_t s = 1; s <= 600; ++s) EXPECT_EQ(steps.count(s), 1u) << s;
}

TEST_F(Run, TwoGlooRanksAndAccumulationMatchOneProcess) {
  // No dropout: its masks depend on how a batch is split, which is the point of difference here.
  const std::string common = "max_steps: 12, batch_size: 16, learning_rate: 1.0e-2, max_seq_len: 32, ";
  ASSERT_EQ(Train(Spec(common + "micro_batch_size: 8", "dropout: 0.0, "), "one").exit_code, 0);
  ProcessResult two = Train(Spec(common + "micro_batch_size: 8", "dropout: 0.0, "), "two", "2");
  ASSERT_EQ(two.exit_code, 0) << two.err;
  // Two ranks share the machine's cores rather than each starting a thread per core.
  const char* chosen = std::getenv("OMP_NUM_THREADS");
  const int share = chosen != nullptr && *chosen != '\0' ? std::atoi(chosen)
                                                          : CpuThreadsPerProcess(UsableCpus(), 2);
  EXPECT_THAT(two.err, HasSubstr(absl::StrCat("2 rank(s) x ", share, " CPU thread(s)")));
  ProcessResult accumulated = Train(Spec(common + "micro_batch_size: 2", "dropout: 0.0, "), "accumulated");
  ASSERT_EQ(accumulated.exit_code, 0) << accumulated.err;
  ExpectSameTensors(dir_ / "two/final/adapter_model.safetensors",
                    dir_ / "one/final/adapter_model.safetensors", 1e-5);
  ExpectSameTensors(dir_ / "accumulated/final/adapter_model.safetensors",
                    dir_ / "one/final/adapter_model.safetensors", 1e-5);
}

TEST_F(Run, ADeadRankStopsTheWholeRunQuickly) {
  std::string spec = Spec("epochs: 1000, batch_size: 16, micro_batch_size: 8, max_seq_len: 32");
  pid_t launcher = StartWorker({"run", "--spec", spec, "--nproc", "2", "--output", dir_ / "dead"});
  ASSERT_GE(launcher, 0);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(dir_ / "dead/metrics.jsonl") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::ifstream children_file("/proc/" + std::to_string(launcher) + "/task/" +
                              std::to_string(launcher) + "/children");
  std::vector<pid_t> ranks;
  for (pid_t pid; children_file >> pid;) ranks.push_back(pid);
  ASSERT_EQ(ranks.size(), 2u);
  const auto killed_at = std::chrono::steady_clock::now();
  ::kill(ranks[1], SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(launcher, &status, 0), launcher);
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, std::chrono::seconds(30));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGKILL);
  EXPECT_NE(::kill(ranks[0], 0), 0) << "the surviving rank was left running";
}

// Text data goes through the model directory's tokenizer.json: a run on text must train
// exactly like a run on the ids that tokenizer gives (here [BOS] w_a w_b ... from a WordLevel
// file with a TemplateProcessing post-processor), down to the last bit of the adapter.
TEST_F(Run, TextDataTrainsExactlyLikeItsTokenIds) {
  nlohmann::json vocab = {{"[BOS]", 0}};  // the data uses ids 1..63
  for (int id = 1; id < 64; ++id) vocab["w" + std::to_string(id)] = id;
  nlohmann::json tokenizer = {
      {"version", "1.0"},
      {"added_tokens", {{{"id", 0}, {"content", "[BOS]"}, {"single_word", false},
                         {"lstrip", false}, {"rstrip", false}, {"normalized", false},
                         {"special", true}}}},
      {"normalizer", {{"type", "Lowercase"}}},
      {"pre_tokenizer", {{"type", "WhitespaceSplit"}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "[BOS]"}, {"type_id", 0}}}},
                    {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", {{{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                  {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens", {{"[BOS]", {{"id", "[BOS]"}, {"ids", {0}}, {"tokens", {"[BOS]"}}}}}}}},
      {"decoder", nullptr},
      {"model", {{"type", "WordLevel"}, {"vocab", vocab}}}};
  std::ofstream(dir_ / "model/tokenizer.json") << tokenizer.dump();
  // The same examples twice: as text ("W5 w17 ...", upper case on purpose) and as the ids the
  // tokenizer must produce for them.
  for (std::string split : {"train.jsonl", "eval.jsonl"}) {
    std::ifstream in(dir_ / split);
    std::ofstream text_out(dir_ / ("text_" + split)), ids_out(dir_ / ("ids_" + split));
    for (std::string line; std::getline(in, line);) {
      nlohmann::json example = nlohmann::json::parse(line);
      std::string text;
      nlohmann::json ids = {0};
      for (int id : example["input_ids"]) {
        text += (text.empty() ? "W" : " w") + std::to_string(id);
        ids.push_back(id);
      }
      text_out << nlohmann::json({{"text", text}, {"label", example["label"]}}).dump() << "\n";
      ids_out << nlohmann::json({{"input_ids", ids}, {"label", example["label"]}}).dump() << "\n";
    }
  }
  auto spec_for = [&](const std::string& prefix) {
    std::string path = dir_ / (prefix + ".yaml");
    std::ofstream(path) << "name: tiny\nmodel: {path: model}\ntask: classification\n"
                           "data: {train: " << prefix << "_train.jsonl, eval: " << prefix
                        << "_eval.jsonl}\nadapter: {method: loratrf, rank: 4, alpha: 8, "
                           "target_modules: [q_proj, v_proj]}\n"
                           "training: {max_steps: 6, batch_size: 8, micro_batch_size: 8, "
                           "learning_rate: 0.01, eval_every_steps: 0}\n";
    return path;
  };
  ProcessResult text = Train(spec_for("text"), "text_run");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  ProcessResult ids = Train(spec_for("ids"), "ids_run");
  ASSERT_EQ(ids.exit_code, 0) << ids.err;
  ExpectSameTensors(dir_ / "text_run/final/adapter_model.safetensors",
                    dir_ / "ids_run/final/adapter_model.safetensors", 0.0);

  // A line that is not valid UTF-8 is the user's error, named by file and line.
  std::ofstream(dir_ / "text_train.jsonl", std::ios::app) << "{\"text\": \"w1 \xff\", \"label\": 0}\n";
  ProcessResult bad = Train(spec_for("text"), "bad_text");
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_THAT(bad.err, HasSubstr("text_train.jsonl:513"));
}

TEST_F(Run, BadDataAndMisfitSpecsExitTwo) {
  std::ofstream(dir_ / "train.jsonl", std::ios::app) << "{\"input_ids\": [1, 99], \"label\": 1}\n";
  ProcessResult mixed = Train(Spec("max_steps: 2, batch_size: 8, micro_batch_size: 8"), "bad");
  EXPECT_EQ(mixed.exit_code, 2) << mixed.err;
  EXPECT_THAT(mixed.err, HasSubstr("train.jsonl:513: input_ids[1]: 99 is out of the vocabulary"));
  EXPECT_FALSE(fs::exists(dir_ / "bad/final"));
  ProcessResult nproc = Train(Spec("max_steps: 2, batch_size: 8, micro_batch_size: 8"), "bad", "3");
  EXPECT_EQ(nproc.exit_code, 2);
  EXPECT_THAT(nproc.err, HasSubstr("must be a multiple of micro_batch_size x nproc"));
}

// A file the spec names that is not there is reported with the spec field as well as the path.
TEST_F(Run, MissingFilesNameTheSpecField) {
  struct Case {
    std::string model, train, eval, expected;
  };
  for (const Case& c : std::vector<Case>{
           {"model", "missing-train.jsonl", "eval.jsonl",
            "data.train: " + (dir_ / "missing-train.jsonl") + ": cannot open"},
           {"model", "train.jsonl", "missing-eval.jsonl",
            "data.eval: " + (dir_ / "missing-eval.jsonl") + ": cannot open"},
           {"missing-model", "train.jsonl", "eval.jsonl",
            "model.path: " + (dir_ / "missing-model") + ": cannot open"},
           {"train.jsonl", "train.jsonl", "eval.jsonl",
            "model.path: " + (dir_ / "train.jsonl") + ": not a model directory"},
           {"model", "model", "eval.jsonl",
            "data.train: " + (dir_ / "model") + ": not a regular file"},
       }) {
    const std::string spec = dir_ / "missing.yaml";
    std::ofstream(spec, std::ios::trunc)
        << "name: tiny\nmodel: {path: " << c.model << "}\ntask: classification\n"
        << "data: {train: " << c.train << ", eval: " << c.eval << "}\n"
        << "adapter: {method: lora, rank: 4, alpha: 8, target_modules: [q_proj]}\n"
        << "training: {max_steps: 1, batch_size: 8, micro_batch_size: 8}\n";
    ProcessResult result = Train(spec, "missing-out");
    EXPECT_EQ(result.exit_code, 2) << result.err;
    EXPECT_THAT(result.err, HasSubstr(c.expected));
  }
  EXPECT_FALSE(fs::exists(dir_ / "missing-out/final"));
}

}  // namespace
}  // namespace loratrf
