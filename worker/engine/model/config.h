// ModelConfig: what the engine needs from a Hugging Face config.json, checked.
//
// Supported: model_type llama, mistral, qwen2 (the decoder family) and bert, roberta (the
// encoder family), as transformers 4.x and 5.x write them (`rope_scaling` + `rope_theta`, or
// `rope_parameters`; an explicit `head_dim`). Anything else, or a value the engine would have to
// guess at, is an error naming the key.
//
// Torch-free. Threading: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace loratrf::engine {

enum class ModelFamily {
  kDecoder,  // llama, mistral, qwen2: pre-RMSNorm, RoPE, SwiGLU, GQA
  kBert,     // post-LayerNorm encoder, learned absolute positions, token types
  kRoberta,  // BERT with RoBERTa's position ids (offset by the padding index)
};

enum class HeadKind {
  kNone,                    // *Model: hidden states only
  kCausalLm,                // *ForCausalLM: lm_head (or tied embeddings)
  kSequenceClassification,  // *ForSequenceClassification: score / classifier
};

enum class Activation { kSilu, kGeluExact, kGeluTanh };

struct RopeConfig {
  enum class Type { kDefault, kLinear, kLlama3 };
  Type type = Type::kDefault;
  double theta = 10000.0;
  double factor = 1.0;  // linear and llama3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 0;
};

struct ModelConfig {
  std::string model_type;    // "llama"
  std::string architecture;  // "LlamaForCausalLM"
  ModelFamily family = ModelFamily::kDecoder;
  HeadKind head = HeadKind::kNone;

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  Activation activation = Activation::kSilu;
  double norm_eps = 1e-6;  // rms_norm_eps (decoders) or layer_norm_eps (encoders)
  bool tie_word_embeddings = false;

  // Decoders.
  bool qkv_bias = false;  // qwen2; llama's attention_bias
  bool o_bias = false;    // llama's attention_bias
  bool mlp_bias = false;  // llama's mlp_bias
  RopeConfig rope;
  std::optional<int64_t> sliding_window;  // mistral

  // Encoders.
  int64_t type_vocab_size = 0;
  double hidden_dropout = 0.0;
  double attention_dropout = 0.0;
  std::optional<double> classifier_dropout;

  // Classification.
  int64_t num_labels = 0;              // 0 when the config does not say
  std::vector<std::string> id2label;   // empty when the config does not say
  std::optional<int64_t> pad_token_id;

  std::string torch_dtype;  // as written, "" when absent
};

// Parses and checks config.json text. Errors start with the key, e.g.
// "num_key_value_heads: must divide num_attention_heads (12), got 5".
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text);

// Reads DIR/config.json; errors start with the file's path.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

}  // namespace loratrf::engine
