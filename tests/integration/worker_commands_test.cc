// `loratrf-worker logits | params | merge` through the real binary: bad input of every kind is
// one line on stderr with exit status 2 and no output file; merging reproduces the adapter.
#include <filesystem>
#include <fstream>

#include "worker/engine/checkpoint/safetensors.h"
#include "worker/engine/checkpoint/tensor_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/model_fixtures.h"
#include "nlohmann/json.hpp"
#include "tests/integration/subprocess.h"

namespace loratrf {
namespace {

using ::loratrf::testing::BinaryPath;
using ::loratrf::testing::Concat;
using ::loratrf::testing::ExpectSameTensors;
using ::loratrf::testing::kPython;
using ::loratrf::testing::kReferenceDir;
using ::loratrf::testing::MustRun;
using ::loratrf::testing::ProcessResult;
using ::loratrf::testing::RunProcess;
using ::loratrf::testing::TempDir;
using ::testing::HasSubstr;

ProcessResult Worker(const std::vector<std::string>& args) {
  return RunProcess(Concat({BinaryPath("loratrf-worker")}, args), "", 120);
}

void ExpectUsageError(const ProcessResult& r, const std::string& fragment) {
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr(fragment));
}

class WorkerCommands : public ::testing::Test {
 protected:
  void SetUp() override {
    MustRun({kPython, kReferenceDir + "make_tiny_model.py", "--arch", "llama", "--head",
             "causal_lm", "--output", dir_ / "llama"});
  }
  void MakeAdapter(const std::string& name, const std::vector<std::string>& args) {
    MustRun(Concat({kPython, kReferenceDir + "make_tiny_adapter.py", "--model", dir_ / "llama",
                    "--output", dir_ / name, "--rank", "4", "--alpha", "8", "--targets",
                    "q_proj,v_proj,down_proj"},
                   args));
  }
  // Rewrites the tiny model's weights through `edit` (drop or reshape a tensor).
  void EditWeights(const std::function<void(std::vector<std::pair<std::string, at::Tensor>>&)>& edit) {
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    {
      auto file = engine::SafetensorsFile::Open(dir_ / "llama/model.safetensors");
      ASSERT_TRUE(file.ok()) << file.status();
      for (const engine::TensorEntry& e : (*file)->tensors()) {
        tensors.emplace_back(e.name, *engine::ReadTensor(**file, e));
      }
    }
    edit(tensors);
    ASSERT_TRUE(engine::WriteTensors(dir_ / "llama/model.safetensors", tensors).ok());
  }
  ProcessResult Logits(const std::vector<std::string>& extra) {
    return Worker(Concat({"logits", "--model", dir_ / "llama", "--input-ids", "3,4,5",
                          "--output", dir_ / "out.safetensors"},
                         extra));
  }
  bool OutputExists() const { return std::filesystem::exists(dir_ / "out.safetensors"); }

  TempDir dir_;
};

TEST_F(WorkerCommands, LogitsFlagMistakesExitTwo) {
  ExpectUsageError(Worker({"logits", "--input-ids", "1", "--output", dir_ / "o"}), "--model: required");
  ExpectUsageError(Worker({"logits", "--model", dir_ / "llama", "--input-ids", "1,x,3", "--output",
                           dir_ / "out.safetensors"}),
                   "--input-ids: 'x' is not an integer");
  ExpectUsageError(Worker({"logits", "--model", dir_ / "llama", "--input-ids", "1,64", "--output",
                           dir_ / "out.safetensors"}),
                   "--input-ids: token id 64 is outside the vocabulary [0, 64)");
  ExpectUsageError(Worker({"logits", "--model", dir_ / "llama", "--input-ids", "", "--output",
                           dir_ / "out.safetensors"}),
                   "--input-ids: must not be empty");
  ExpectUsageError(Worker({"logits", "--model", dir_ / "llama", "--input-ids", "1", "--output",
                           dir_ / "no/such/dir/out.safetensors"}),
                   "does not exist");
  ExpectUsageError(Worker({"logits", "--model", dir_ / "nope", "--input-ids", "1", "--output",
                           dir_ / "out.safetensors"}),
                   "nope: not a model directory");
  EXPECT_FALSE(OutputExists());
}

TEST_F(WorkerCommands, MalformedModelsExitTwoNamingTheProblem) {
  std::ofstream(dir_ / "llama/config.json") << "{\"model_type\": \"llama\", \"vocab_size\": ";
  ExpectUsageError(Logits({}), "config.json: not valid JSON");
  MustRun({kPython, kReferenceDir + "make_tiny_model.py", "--arch", "llama", "--head", "causal_lm",
           "--output", dir_ / "llama2"});
  std::filesystem::remove_all(dir_ / "llama");
  std::filesystem::rename(dir_ / "llama2", dir_ / "llama");

  EditWeights([](auto& t) {
    t.erase(std::remove_if(t.begin(), t.end(),
                           [](auto& e) { return e.first == "model.layers.1.mlp.up_proj.weight"; }),
            t.end());
  });
  ExpectUsageError(Logits({}), "tensor model.layers.1.mlp.up_proj.weight is missing from the checkpoint");
  EditWeights([](auto& t) { t.emplace_back("model.layers.1.mlp.up_proj.weight", torch::zeros({64, 31})); });
  ExpectUsageError(Logits({}), "tensor model.layers.1.mlp.up_proj.weight has shape [64, 31], the model "
                               "(config.json) needs [64, 32]");
  {
    std::ofstream truncated(dir_ / "llama/model.safetensors", std::ios::binary | std::ios::trunc);
    truncated << "abc";
  }
  ExpectUsageError(Logits({}), "model.safetensors: file is 3 bytes");
  std::filesystem::remove(dir_ / "llama/model.safetensors");
  std::ofstream(dir_ / "llama/pytorch_model.bin") << "pickle";
  ExpectUsageError(Logits({}), "only safetensors weights are supported");
  EXPECT_FALSE(OutputExists());
}

TEST_F(WorkerCommands, MalformedAdaptersExitTwo) {
  MakeAdapter("adapter", {"--method", "lora"});
  std::ofstream(dir_ / "adapter/adapter_config.json") << "{\"peft_type\": \"LORA\", \"r\": 4, "
      "\"lora_alpha\": 8, \"target_modules\": [\"q_proj\"], \"use_dora\": true}";
  ExpectUsageError(Logits({"--adapter", dir_ / "adapter"}), "use_dora: must be false");
  std::ofstream(dir_ / "adapter/adapter_config.json") << "{\"peft_type\": \"LORA\", \"r\": 4, "
      "\"lora_alpha\": 8, \"target_modules\": [\"q_proj\"]}";
  ExpectUsageError(Logits({"--adapter", dir_ / "adapter"}), "is not an adapter tensor of this model");
  ExpectUsageError(Logits({"--adapter", dir_ / "missing"}), "missing: not an adapter directory");
  EXPECT_FALSE(OutputExists());
}

TEST_F(WorkerCommands, MergedLoraAndOutputFilterReproduceTheAdapter) {
  for (const std::vector<std::string>& kind :
       {std::vector<std::string>{"--method", "lora"},
        std::vector<std::string>{"--method", "loratrf", "--filter", "output"}}) {
    SCOPED_TRACE(kind.back());
    std::filesystem::remove_all(dir_ / "adapter");
    std::filesystem::remove_all(dir_ / "merged");
    MakeAdapter("adapter", kind);
    ProcessResult merged = Worker({"merge", "--model", dir_ / "llama", "--adapter", dir_ / "adapter",
                                   "--output", dir_ / "merged"});
    ASSERT_EQ(merged.exit_code, 0) << merged.err;
    ASSERT_EQ(Worker({"logits", "--model", dir_ / "llama", "--adapter", dir_ / "adapter",
                      "--input-ids", "3,4,5,6", "--output", dir_ / "adapted.safetensors"}).exit_code, 0);
    ASSERT_EQ(Worker({"logits", "--model", dir_ / "merged", "--input-ids", "3,4,5,6", "--output",
                      dir_ / "merged.safetensors"}).exit_code, 0);
    ExpectSameTensors(dir_ / "merged.safetensors", dir_ / "adapted.safetensors", 1e-5);
    // The merged directory is a plain Hugging Face model: no adapter tensors.
    auto file = engine::SafetensorsFile::Open(dir_ / "merged/model.safetensors");
    ASSERT_TRUE(file.ok());
    for (const auto& e : (*file)->tensors()) EXPECT_EQ(e.name.find("lora"), std::string::npos) << e.name;
  }
}

TEST_F(WorkerCommands, BottleneckMergeIsRefusedAndWritesNothing) {
  MakeAdapter("adapter", {"--method", "loratrf", "--filter", "bottleneck"});
  ProcessResult r = Worker({"merge", "--model", dir_ / "llama", "--adapter", dir_ / "adapter",
                            "--output", dir_ / "merged"});
  ExpectUsageError(r, "LoRATRF bottleneck filter");
  EXPECT_FALSE(std::filesystem::exists(dir_ / "merged"));
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  }
  std::filesystem::create_directories(dir_ / "taken");
  MakeAdapter("lora", {"--method", "lora"});
  ExpectUsageError(Worker({"merge", "--model", dir_ / "llama", "--adapter", dir_ / "lora",
                           "--output", dir_ / "taken"}),
                   "already exists");
}

std::string WriteSpec(const TempDir& dir, const std::string& adapter, const std::string& task = "causal_lm",
                      const std::string& train = "train.jsonl") {
  std::string path = dir / "job.yaml";
  std::ofstream(path) << "name: tiny\nmodel: {path: llama}\ntask: " << task << "\n"
                      << "data: {train: " << train << "}\nadapter: " << adapter << "\n";
  return path;
}

nlohmann::json Params(const std::string& spec) {
  ProcessResult r = Worker({"params", "--spec", spec});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
}

TEST_F(WorkerCommands, ParamsCountsWhatTheSpecTrains) {
  // The tiny Llama: hidden 32, q_proj 32→32 and v_proj 32→16 (2 KV heads of 8), 2 layers.
  const int64_t base = 2048 + 2 * (1024 + 512 + 512 + 1024 + 3 * 2048 + 64) + 32 + 2048;
  // Relative paths in the spec are relative to the spec file.
  nlohmann::json lora = Params(WriteSpec(dir_, "{method: lora, rank: 8, target_modules: [q_proj, v_proj]}"));
  EXPECT_EQ(lora["trainable"], 2 * (8 * 64 + 8 * 48));
  EXPECT_EQ(lora["total"], base + 2 * (8 * 64 + 8 * 48));
  nlohmann::json trf = Params(WriteSpec(dir_, "{method: loratrf, rank: 8, target_modules: [q_proj, v_proj]}"));
  EXPECT_EQ(trf["trainable"], 2 * (8 * 64 + 8 * 48) + 4 * (64 + 8));
  EXPECT_EQ(trf["filter"], "bottleneck");
  nlohmann::json both = Params(WriteSpec(
      dir_, "{method: loratrf, rank: 8, filter: both, target_modules: [q_proj, v_proj]}"));
  EXPECT_EQ(both["trainable"], 2 * (8 * 64 + 8 * 48) + 4 * (64 + 8) + 2 * (32 + 16));
  nlohmann::json full = Params(WriteSpec(dir_, "{method: full}"));
  EXPECT_EQ(full["trainable"], base);
  EXPECT_EQ(full["total"], base);
}

TEST_F(WorkerCommands, ParamsForClassificationCountsTheLabelsInTheData) {
  std::ofstream(dir_ / "train.jsonl") << "{\"text\": \"a\", \"label\": \"pos\"}\n"
                                         "{\"text\": \"b\", \"label\": \"neg\"}\n\n"
                                         "{\"text\": \"c\", \"label\": \"meh\"}\n";
  nlohmann::json out = Params(WriteSpec(dir_, "{method: lora, rank: 8, target_modules: [q_proj]}",
                                        "classification"));
  EXPECT_EQ(out["num_labels"], 3);
  // LoRA on q_proj (2 x 8 x 64) plus the new score head (3 x 32), trained in full.
  EXPECT_EQ(out["trainable"], 2 * 8 * 64 + 3 * 32);
  std::ofstream(dir_ / "train.jsonl") << "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\"}\n";
  ExpectUsageError(Worker({"params", "--spec", WriteSpec(dir_, "{target_modules: [q_proj]}", "classification")}),
                   "train.jsonl:2: label: missing");
}

TEST_F(WorkerCommands, ParamsRefusesBadSpecsAndModels) {
  ExpectUsageError(Worker({"params", "--spec", WriteSpec(dir_, "{method: lora, rank: 0, target_modules: [q_proj]}")}),
                   "adapter.rank: must be in [1, 1024], got 0");
  ExpectUsageError(Worker({"params", "--spec", WriteSpec(dir_, "{method: lora, target_modules: [query]}")}),
                   "target_modules [query] match no linear layer of this llama model");
  ExpectUsageError(Worker({"params", "--spec", dir_ / "none.yaml"}), "none.yaml: cannot read the spec file");
  ExpectUsageError(Worker({"params"}), "--spec: required");
}

}  // namespace
}  // namespace loratrf
