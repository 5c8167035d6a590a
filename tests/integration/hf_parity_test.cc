// Forward parity of `loratrf-worker logits` against tests/reference/hf_reference.py, an
// independent float64 implementation of the Hugging Face models written from transformers'
// formulas, on tiny checkpoints that tests/reference/make_tiny_model.py writes in Hugging Face
// format (so the loader reads files it did not write). Every architecture and adapter kind.
#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/model_fixtures.h"
#include "tests/integration/subprocess.h"

namespace loratrf {
namespace {

using ::loratrf::testing::BinaryPath;
using ::loratrf::testing::ProcessResult;
using ::loratrf::testing::RunProcess;
using ::testing::HasSubstr;

using ::loratrf::testing::Concat;
using ::loratrf::testing::ExpectSameTensors;
using ::loratrf::testing::kPython;
using ::loratrf::testing::kReferenceDir;
using ::loratrf::testing::MustRun;
using ::loratrf::testing::TempDir;

struct ParityCase {
  const char* name;
  std::vector<std::string> model_args;    // make_tiny_model.py
  std::vector<std::string> adapter_args;  // make_tiny_adapter.py; empty: no adapter
  std::string input_ids = "5,17,3,42,9,11,30";
};

void PrintTo(const ParityCase& c, std::ostream* out) { *out << c.name; }

class HfParity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(HfParity, LogitsMatchTheReference) {
  const ParityCase& c = GetParam();
  TempDir dir;
  MustRun(Concat({kPython, kReferenceDir + "make_tiny_model.py", "--output", dir / "model"},
                 c.model_args));
  std::vector<std::string> adapter;
  if (!c.adapter_args.empty()) {
    MustRun(Concat({kPython, kReferenceDir + "make_tiny_adapter.py", "--model", dir / "model",
                    "--output", dir / "adapter"},
                   c.adapter_args));
    adapter = {"--adapter", dir / "adapter"};
  }
  std::vector<std::string> io = {"--model", dir / "model", "--input-ids", c.input_ids};
  MustRun(Concat(Concat({BinaryPath("loratrf-worker"), "logits"}, io),
                 Concat(adapter, {"--output", dir / "ours.safetensors"})));
  MustRun(Concat(Concat({kPython, kReferenceDir + "hf_reference.py"}, io),
                 Concat(adapter, {"--output", dir / "reference.safetensors"})));
  ExpectSameTensors(dir / "ours.safetensors", dir / "reference.safetensors", 2e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Models, HfParity,
    ::testing::Values(
        ParityCase{"LlamaCausalLm", {"--arch", "llama", "--head", "causal_lm"}, {}},
        ParityCase{"LlamaTiedEmbeddings", {"--arch", "llama", "--head", "causal_lm", "--tie-embeddings"}, {}},
        ParityCase{"LlamaRope3ScalingV4Config", {"--arch", "llama", "--head", "causal_lm", "--rope-scaling", "llama3"}, {}},
        ParityCase{"LlamaRope3ScalingV5Config", {"--arch", "llama", "--head", "causal_lm", "--rope-scaling", "llama3", "--config-style", "v5"}, {}},
        ParityCase{"LlamaExplicitHeadDim", {"--arch", "llama", "--head", "causal_lm", "--head-dim", "16"}, {}},
        ParityCase{"LlamaBareModelWithoutPrefix", {"--arch", "llama", "--head", "none", "--no-prefix"}, {}},
        ParityCase{"LlamaClassification", {"--arch", "llama", "--head", "classification"}, {}},
        ParityCase{"LlamaFloat16Sharded", {"--arch", "llama", "--head", "causal_lm", "--dtype", "float16", "--shards", "3"}, {}},
        ParityCase{"MistralCausalLm", {"--arch", "mistral", "--head", "causal_lm"}, {}},
        ParityCase{"Qwen2CausalLm", {"--arch", "qwen2", "--head", "causal_lm"}, {}},
        ParityCase{"Qwen2TiedBfloat16", {"--arch", "qwen2", "--head", "causal_lm", "--tie-embeddings", "--dtype", "bfloat16"}, {}},
        ParityCase{"BertClassification", {"--arch", "bert", "--head", "classification"}, {}},
        ParityCase{"BertBareModelWithoutPrefix", {"--arch", "bert", "--head", "none", "--no-prefix"}, {}},
        ParityCase{"RobertaClassification", {"--arch", "roberta", "--head", "classification"}, {}},
        ParityCase{"RobertaBareModel", {"--arch", "roberta", "--head", "none"}, {}}),
    [](const auto& info) { return std::string(info.param.name); });

INSTANTIATE_TEST_SUITE_P(
    Adapters, HfParity,
    ::testing::Values(
        ParityCase{"LlamaLora", {"--arch", "llama", "--head", "causal_lm"},
                   {"--method", "lora", "--rank", "4", "--alpha", "8", "--targets", "q_proj,v_proj"}},
        ParityCase{"LlamaLoratrfBottleneck", {"--arch", "llama", "--head", "causal_lm"},
                   {"--method", "loratrf", "--filter", "bottleneck", "--rank", "4", "--alpha", "8",
                    "--targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"}},
        ParityCase{"LlamaLoratrfOutput", {"--arch", "llama", "--head", "causal_lm"},
                   {"--method", "loratrf", "--filter", "output", "--rank", "4", "--alpha", "16",
                    "--targets", "q_proj,v_proj,down_proj"}},
        ParityCase{"Qwen2LoratrfBoth", {"--arch", "qwen2", "--head", "causal_lm"},
                   {"--method", "loratrf", "--filter", "both", "--rank", "2", "--alpha", "4",
                    "--targets", "q_proj,v_proj"}},
        ParityCase{"LlamaBaseWithClassificationAdapter", {"--arch", "llama", "--head", "causal_lm"},
                   {"--method", "loratrf", "--filter", "bottleneck", "--rank", "4", "--alpha", "8",
                    "--targets", "q_proj,v_proj", "--modules-to-save", "score", "--task-type", "SEQ_CLS"}},
        ParityCase{"BertBaseWithClassificationAdapter", {"--arch", "bert", "--head", "none"},
                   {"--method", "lora", "--rank", "4", "--alpha", "8", "--targets", "query,value",
                    "--modules-to-save", "classifier", "--task-type", "SEQ_CLS", "--num-labels", "5"}},
        ParityCase{"RobertaBaseWithClassificationAdapter", {"--arch", "roberta", "--head", "none"},
                   {"--method", "loratrf", "--filter", "output", "--rank", "4", "--alpha", "8",
                    "--targets", "query,value", "--modules-to-save", "classifier", "--task-type", "SEQ_CLS"}},
        ParityCase{"BertLoraWithClassifier", {"--arch", "bert", "--head", "classification"},
                   {"--method", "lora", "--rank", "4", "--alpha", "8", "--targets", "query,value",
                    "--modules-to-save", "classifier"}},
        ParityCase{"BertAsPeftSavesClassifiers", {"--arch", "bert", "--head", "classification"},
                   {"--method", "lora", "--rank", "4", "--alpha", "8", "--targets", "query,value",
                    "--peft-classifier", "modern"}},
        ParityCase{"RobertaLoratrfBoth", {"--arch", "roberta", "--head", "classification"},
                   {"--method", "loratrf", "--filter", "both", "--rank", "4", "--alpha", "8",
                    "--targets", "query,key,value,dense", "--modules-to-save", "classifier"}},
        ParityCase{"LlamaBfloat16Adapter", {"--arch", "llama", "--head", "causal_lm"},
                   {"--method", "lora", "--rank", "4", "--alpha", "8", "--targets", "q_proj",
                    "--dtype", "bfloat16"}}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace loratrf
