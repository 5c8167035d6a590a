// config.json parsing: the supported forms, and a corpus of malformed configs, each refused
// with an error that names its key.
#include "worker/engine/model/config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace loratrf::engine {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

json Llama() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64,
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu",
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "pad_token_id": 0})");
}

json Roberta() {
  return json::parse(R"({
    "architectures": ["RobertaForSequenceClassification"], "model_type": "roberta",
    "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "max_position_embeddings": 66, "type_vocab_size": 1,
    "pad_token_id": 1, "layer_norm_eps": 1e-5, "hidden_act": "gelu",
    "id2label": {"0": "neg", "1": "pos", "2": "neutral"},
    "label2id": {"neg": 0, "pos": 1, "neutral": 2}})");
}

TEST(ModelConfig, ReadsALlamaConfig) {
  auto c = ParseModelConfig(Llama().dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->family, ModelFamily::kDecoder);
  EXPECT_EQ(c->head, HeadKind::kCausalLm);
  EXPECT_EQ(c->head_dim, 8);  // hidden / heads when head_dim is absent
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_EQ(c->rope.theta, 500000.0);
  EXPECT_EQ(c->rope.type, RopeConfig::Type::kDefault);
  EXPECT_EQ(c->norm_eps, 1e-5);
  EXPECT_FALSE(c->qkv_bias);
  EXPECT_EQ(c->torch_dtype, "bfloat16");
}

TEST(ModelConfig, ReadsLlama3ScalingInBothTransformersForms) {
  json v4 = Llama();
  v4["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                        {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  json v5 = Llama();
  v5.erase("rope_theta");
  v5["rope_parameters"] = v4["rope_scaling"];
  v5["rope_parameters"]["rope_theta"] = 500000.0;
  for (const json& config : {v4, v5}) {
    auto c = ParseModelConfig(config.dump());
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->rope.type, RopeConfig::Type::kLlama3);
    EXPECT_EQ(c->rope.theta, 500000.0);
    EXPECT_EQ(c->rope.factor, 8.0);
    EXPECT_EQ(c->rope.original_max_position_embeddings, 8192);
  }
}

TEST(ModelConfig, Qwen2HasQkvBiasAndExplicitHeadDim) {
  json q = Llama();
  q["model_type"] = "qwen2";
  q["architectures"] = {"Qwen2ForCausalLM"};
  q["head_dim"] = 16;
  auto c = ParseModelConfig(q.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_FALSE(c->o_bias);
  EXPECT_EQ(c->head_dim, 16);
}

// Wide and deep config.json files are answered after one pass: unknown keys are ignored, deep
// nesting is refused, a repeated key keeps the last value (as Python's json).
TEST(ModelConfig, WideAndDeepConfigsAreAnswered) {
  json wide = Llama();
  for (int i = 0; i < 1'000'000; ++i) wide["k" + std::to_string(i)] = i;
  EXPECT_TRUE(ParseModelConfig(wide.dump()).ok());
  std::string text = Llama().dump();
  text.pop_back();
  std::string deep = text + R"(, "x": )" + std::string(1'000'000, '[') +
                     std::string(1'000'000, ']') + "}";
  absl::StatusOr<ModelConfig> refused = ParseModelConfig(deep);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("nested deeper than 64 levels"));
  auto repeated = ParseModelConfig(text + R"(, "num_hidden_layers": 3})");
  ASSERT_TRUE(repeated.ok()) << repeated.status();
  EXPECT_EQ(repeated->num_layers, 3);
}

TEST(ModelConfig, ReadsRobertaLabels) {
  auto c = ParseModelConfig(Roberta().dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->family, ModelFamily::kRoberta);
  EXPECT_EQ(c->head, HeadKind::kSequenceClassification);
  EXPECT_EQ(c->num_labels, 3);
  EXPECT_THAT(c->id2label, ::testing::ElementsAre("neg", "pos", "neutral"));
  EXPECT_EQ(c->hidden_dropout, 0.1);  // BERT's default when absent
}

TEST(ModelConfig, ClassifierWithoutLabelsHasTransformersDefaultOfTwo) {
  json c = Llama();
  c["architectures"] = {"LlamaForSequenceClassification"};
  auto parsed = ParseModelConfig(c.dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->num_labels, 2);
}

struct BadConfig {
  const char* name;
  std::string text;
  const char* expected;
};
void PrintTo(const BadConfig& c, std::ostream* out) { *out << c.name; }

std::string With(json base, const std::string& key, const json& value) {
  base[key] = value;
  return base.dump();
}
std::string Without(json base, const std::string& key) {
  base.erase(key);
  return base.dump();
}

class MalformedConfig : public ::testing::TestWithParam<BadConfig> {};

TEST_P(MalformedConfig, IsRefusedNamingTheKey) {
  auto c = ParseModelConfig(GetParam().text);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(GetParam().expected));
}

json Llama3Scaling(double low, double high) {
  return {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", low},
          {"high_freq_factor", high}, {"original_max_position_embeddings", 8192}};
}

INSTANTIATE_TEST_SUITE_P(
    Corpus, MalformedConfig,
    ::testing::Values(
        BadConfig{"NotJson", "{\"model_type\": ", "not valid JSON"},
        BadConfig{"NotAnObject", "[1, 2]", "must be a JSON object"},
        BadConfig{"NoModelType", Without(Llama(), "model_type"), "model_type: required"},
        BadConfig{"UnknownArchitecture", With(Llama(), "model_type", "gpt2"),
                  "model_type: unsupported architecture \"gpt2\""},
        BadConfig{"UnknownHeadClass", With(Llama(), "architectures", {"LlamaForTokenClassification"}),
                  "architectures: unsupported class \"LlamaForTokenClassification\""},
        BadConfig{"TwoArchitectures", With(Llama(), "architectures", {"LlamaModel", "LlamaForCausalLM"}),
                  "architectures: must be a list of one class name"},
        BadConfig{"NegativeHidden", With(Llama(), "hidden_size", -32), "hidden_size: must be in [1, 65536], got -32"},
        BadConfig{"StringHidden", With(Llama(), "hidden_size", "32"), "hidden_size: must be an integer, got \"32\""},
        BadConfig{"FractionalLayers", With(Llama(), "num_hidden_layers", 2.5), "num_hidden_layers: must be an integer, got 2.5"},
        BadConfig{"AbsurdLayers", With(Llama(), "num_hidden_layers", 1000000000), "num_hidden_layers: must be in [1, 1024]"},
        BadConfig{"ZeroVocab", With(Llama(), "vocab_size", 0), "vocab_size: must be in [1, 10000000], got 0"},
        BadConfig{"KvHeadsNotDividing", With(Llama(), "num_key_value_heads", 3),
                  "num_key_value_heads: must divide num_attention_heads (4), got 3"},
        BadConfig{"OddHeadDim", With(Llama(), "head_dim", 7), "head_dim: must be even for RoPE"},
        BadConfig{"YarnRope", With(Llama(), "rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}),
                  "rope_scaling: unsupported rope_type \"yarn\" (supported: default, linear, llama3)"},
        BadConfig{"Llama3WithoutFactor", With(Llama(), "rope_scaling", {{"rope_type", "llama3"}}),
                  "rope_scaling: factor: required"},
        BadConfig{"Llama3BandsInverted", With(Llama(), "rope_scaling", Llama3Scaling(4.0, 1.0)),
                  "rope_scaling: high_freq_factor must be greater than low_freq_factor"},
        BadConfig{"PartialRotary", With(Llama(), "partial_rotary_factor", 0.5),
                  "partial_rotary_factor: only 1.0 is supported"},
        BadConfig{"Quantized", With(Llama(), "quantization_config", {{"quant_method", "gptq"}}),
                  "quantization_config: quantized checkpoints are not supported"},
        BadConfig{"UnknownActivation", With(Llama(), "hidden_act", "relu"),
                  "hidden_act: unsupported activation \"relu\""},
        BadConfig{"TensorParallelLlama", With(Llama(), "pretraining_tp", 2), "pretraining_tp: only 1 is supported"},
        BadConfig{"NegativeEps", With(Llama(), "rms_norm_eps", -1e-6), "rms_norm_eps: must be in [0, 1]"},
        BadConfig{"PadOutsideVocab", With(Llama(), "pad_token_id", 64), "pad_token_id: must be in [0, 63], got 64"},
        BadConfig{"RelativePositions", With(Roberta(), "position_embedding_type", "relative_key"),
                  "position_embedding_type: only \"absolute\" is supported"},
        BadConfig{"RobertaWithoutPad", Without(Roberta(), "pad_token_id"), "pad_token_id: required for RoBERTa positions"},
        BadConfig{"RobertaPositionsTooFew", With(Roberta(), "max_position_embeddings", 2),
                  "max_position_embeddings: too small for RoBERTa's padding offset"},
        BadConfig{"EncoderHeadsNotDividing", With(Roberta(), "num_attention_heads", 5),
                  "num_attention_heads: must divide hidden_size (32), got 5"},
        BadConfig{"LabelsWithGaps", With(Roberta(), "id2label", {{"0", "a"}, {"5", "b"}}),
                  "id2label: must map \"0\"..\"n-1\" to label names"},
        BadConfig{"LabelCountsDisagree", With(Roberta(), "num_labels", 7),
                  "num_labels: says 7 but id2label has 3"},
        BadConfig{"CausalLmOnEncoder", With(Roberta(), "architectures", {"RobertaForCausalLM"}),
                  "architectures: a causal LM head needs a decoder model"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ModelConfig, Qwen2SlidingWindowIsRefused) {
  json q = Llama();
  q["model_type"] = "qwen2";
  q["architectures"] = {"Qwen2ForCausalLM"};
  q["use_sliding_window"] = true;
  auto c = ParseModelConfig(q.dump());
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("use_sliding_window"));
}

TEST(ModelConfig, MissingDirectoryAndFileAreNamed) {
  auto missing = LoadModelConfig("/nonexistent/model");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/nonexistent/model: not a model directory"));
  auto no_config = LoadModelConfig("/tmp");
  ASSERT_FALSE(no_config.ok());
  EXPECT_THAT(std::string(no_config.status().message()), HasSubstr("/tmp/config.json: missing"));
}

// A config.json is any file the job names: what an error quotes of it is short and one line.
TEST(ModelConfig, ErrorsQuoteABoundedSanitisedExcerptOfTheFile) {
  const std::string secret = "AWS_SECRET=" + std::string(5000, 'k') + "\n\x1b[2J\x01";
  for (const std::string& text :
       {With(Llama(), "model_type", secret), With(Llama(), "hidden_act", secret),
        With(Llama(), "hidden_size", secret), With(Llama(), "architectures", {secret}),
        // Not JSON: nlohmann's message quotes what it last read.
        "{\"model_type\": \"" + std::string(5000, 'k') + "\x01",
        "{\"model_type\": \"" + std::string(5000, 'k') + "\xff\"}"}) {
    auto c = ParseModelConfig(text);
    ASSERT_FALSE(c.ok());
    const std::string message(c.status().message());
    EXPECT_LT(message.size(), 400u) << message;
    EXPECT_EQ(message.find(std::string(100, 'k')), std::string::npos) << message;
    for (char bad : {'\n', '\x1b', '\x01', '\xff'}) {
      EXPECT_EQ(message.find(bad), std::string::npos) << message;
    }
  }
}

}  // namespace
}  // namespace loratrf::engine
