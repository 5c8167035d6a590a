#include "worker/engine/model/config.h"

#include <cmath>
#include <sys/stat.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/json_parse.h"
#include "common/read_file.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "nlohmann/json.hpp"

namespace loratrf::engine {
namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxConfigBytes = 4 << 20;
// Bounds that no real model exceeds; they keep a hostile config from asking for absurd memory.
constexpr int64_t kMaxVocab = 10'000'000;
constexpr int64_t kMaxHidden = 1 << 16;
constexpr int64_t kMaxIntermediate = 1 << 18;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxPositions = 1 << 24;
constexpr int64_t kMaxLabels = 1 << 20;

absl::Status KeyError(absl::string_view key, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(key, ": ", message));
}

// A value from config.json, as an error quotes it.
std::string Show(const json& value) {
  return Excerpt(value.dump(-1, ' ', false, json::error_handler_t::replace));
}

// Reads an integer key in [lo, hi]; `fallback` when absent or null (nullopt: required).
absl::StatusOr<int64_t> GetInt(const json& config, const char* key, std::optional<int64_t> fallback,
                               int64_t lo, int64_t hi) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) {
    if (fallback) return *fallback;
    return KeyError(key, "required");
  }
  bool integral = it->is_number_integer() ||
                  (it->is_number_float() && std::isfinite(it->get<double>()) &&
                   it->get<double>() == std::floor(it->get<double>()) &&
                   std::fabs(it->get<double>()) < 9e15);
  if (!integral) return KeyError(key, absl::StrCat("must be an integer, got ", Show(*it)));
  int64_t value = it->is_number_unsigned() && it->get<uint64_t>() > uint64_t{INT64_MAX}
                      ? INT64_MAX
                      : it->is_number_float() ? static_cast<int64_t>(it->get<double>())
                                              : it->get<int64_t>();
  if (value < lo || value > hi) {
    return KeyError(key, absl::StrCat("must be in [", lo, ", ", hi, "], got ", Show(*it)));
  }
  return value;
}

absl::StatusOr<double> GetReal(const json& config, const char* key, std::optional<double> fallback,
                               double lo, double hi) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) {
    if (fallback) return *fallback;
    return KeyError(key, "required");
  }
  if (!it->is_number()) return KeyError(key, absl::StrCat("must be a number, got ", Show(*it)));
  double value = it->get<double>();
  if (!std::isfinite(value) || value < lo || value > hi) {
    return KeyError(key, absl::StrCat("must be in [", lo, ", ", hi, "], got ", Show(*it)));
  }
  return value;
}

absl::StatusOr<bool> GetBool(const json& config, const char* key, bool fallback) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return KeyError(key, absl::StrCat("must be true or false, got ", Show(*it)));
  return it->get<bool>();
}

absl::StatusOr<std::string> GetString(const json& config, const char* key,
                                      std::optional<std::string> fallback) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) {
    if (fallback) return *fallback;
    return KeyError(key, "required");
  }
  if (!it->is_string()) return KeyError(key, absl::StrCat("must be a string, got ", Show(*it)));
  return it->get<std::string>();
}

absl::StatusOr<Activation> ParseActivation(const std::string& name, const char* key) {
  if (name == "silu" || name == "swish") return Activation::kSilu;
  if (name == "gelu") return Activation::kGeluExact;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return Activation::kGeluTanh;
  return KeyError(key, absl::StrCat("unsupported activation \"", Excerpt(name),
                                    "\" (supported: silu, gelu, gelu_new, gelu_pytorch_tanh)"));
}

// transformers 4.x: top-level rope_theta and rope_scaling. 5.x: rope_parameters holding both.
absl::Status ParseRope(const json& config, ModelConfig* out) {
  const json* scaling = nullptr;
  std::string where = "rope_scaling";
  if (auto it = config.find("rope_parameters"); it != config.end() && !it->is_null()) {
    if (!it->is_object()) return KeyError("rope_parameters", "must be an object");
    scaling = &*it;
    where = "rope_parameters";
  } else if (auto it2 = config.find("rope_scaling"); it2 != config.end() && !it2->is_null()) {
    if (!it2->is_object()) return KeyError("rope_scaling", "must be an object");
    scaling = &*it2;
  }
  const json& theta_source = scaling && scaling->contains("rope_theta") ? *scaling : config;
  ASSIGN_OR_RETURN(out->rope.theta, GetReal(theta_source, "rope_theta", 10000.0, 1.0, 1e12));
  if (auto it = config.find("partial_rotary_factor");
      it != config.end() && !(it->is_number() && it->get<double>() == 1.0)) {
    return KeyError("partial_rotary_factor", "only 1.0 is supported");
  }
  if (scaling == nullptr) return absl::OkStatus();

  // "type" is the pre-4.45 spelling of "rope_type".
  std::string type;
  if (scaling->contains("rope_type")) {
    ASSIGN_OR_RETURN(type, GetString(*scaling, "rope_type", std::nullopt));
  } else {
    ASSIGN_OR_RETURN(type, GetString(*scaling, "type", "default"));
  }
  auto scoped = [&](const absl::Status& status) {
    return status.ok() ? status : KeyError(where, status.message());
  };
  if (type == "default") return absl::OkStatus();
  if (type == "linear") {
    out->rope.type = RopeConfig::Type::kLinear;
    auto factor = GetReal(*scaling, "factor", std::nullopt, 1e-3, 1e6);
    if (!factor.ok()) return scoped(factor.status());
    out->rope.factor = *factor;
    return absl::OkStatus();
  }
  if (type == "llama3") {
    out->rope.type = RopeConfig::Type::kLlama3;
    auto factor = GetReal(*scaling, "factor", std::nullopt, 1e-3, 1e6);
    auto low = GetReal(*scaling, "low_freq_factor", std::nullopt, 1e-6, 1e6);
    auto high = GetReal(*scaling, "high_freq_factor", std::nullopt, 1e-6, 1e6);
    auto original = GetInt(*scaling, "original_max_position_embeddings", std::nullopt, 1,
                           kMaxPositions);
    for (const absl::Status& s : {factor.status(), low.status(), high.status(), original.status()}) {
      if (!s.ok()) return scoped(s);
    }
    if (*high <= *low) {
      return KeyError(where, "high_freq_factor must be greater than low_freq_factor");
    }
    out->rope.factor = *factor;
    out->rope.low_freq_factor = *low;
    out->rope.high_freq_factor = *high;
    out->rope.original_max_position_embeddings = *original;
    return absl::OkStatus();
  }
  return KeyError(where, absl::StrCat("unsupported rope_type \"", Excerpt(type),
                                      "\" (supported: default, linear, llama3)"));
}

absl::Status ParseLabels(const json& config, ModelConfig* out) {
  if (auto it = config.find("id2label"); it != config.end() && !it->is_null()) {
    if (!it->is_object()) return KeyError("id2label", "must be an object");
    if (it->size() > static_cast<size_t>(kMaxLabels)) return KeyError("id2label", "too many labels");
    out->id2label.assign(it->size(), "");
    for (const auto& [key, value] : it->items()) {
      // Keys are "0", "1", ...: exactly the indices 0..n-1, each once.
      int64_t index = -1;
      if (!key.empty() && key.size() < 9 &&
          key.find_first_not_of("0123456789") == std::string::npos) {
        index = std::stoll(key);
      }
      if (index < 0 || index >= static_cast<int64_t>(it->size()) || !value.is_string()) {
        return KeyError("id2label", "must map \"0\"..\"n-1\" to label names");
      }
      out->id2label[static_cast<size_t>(index)] = value.get<std::string>();
    }
    out->num_labels = static_cast<int64_t>(out->id2label.size());
  }
  if (config.contains("num_labels")) {
    ASSIGN_OR_RETURN(int64_t n, GetInt(config, "num_labels", std::nullopt, 1, kMaxLabels));
    if (out->num_labels != 0 && n != out->num_labels) {
      return KeyError("num_labels", absl::StrCat("says ", n, " but id2label has ",
                                                 out->num_labels));
    }
    out->num_labels = n;
  }
  return absl::OkStatus();
}

absl::Status ParseDecoder(const json& config, ModelConfig* out) {
  ASSIGN_OR_RETURN(out->num_kv_heads,
                   GetInt(config, "num_key_value_heads", out->num_heads, 1, kMaxHeads));
  if (out->num_heads % out->num_kv_heads != 0) {
    return KeyError("num_key_value_heads",
                    absl::StrCat("must divide num_attention_heads (", out->num_heads, "), got ",
                                 out->num_kv_heads));
  }
  std::optional<int64_t> default_head_dim;
  if (out->hidden_size % out->num_heads == 0) default_head_dim = out->hidden_size / out->num_heads;
  ASSIGN_OR_RETURN(out->head_dim, GetInt(config, "head_dim", default_head_dim, 1, kMaxHidden));
  if (out->head_dim % 2 != 0) return KeyError("head_dim", "must be even for RoPE");
  ASSIGN_OR_RETURN(out->norm_eps, GetReal(config, "rms_norm_eps", 1e-6, 0.0, 1.0));
  ASSIGN_OR_RETURN(std::string act, GetString(config, "hidden_act", "silu"));
  ASSIGN_OR_RETURN(out->activation, ParseActivation(act, "hidden_act"));
  ASSIGN_OR_RETURN(out->tie_word_embeddings, GetBool(config, "tie_word_embeddings", false));
  RETURN_IF_ERROR(ParseRope(config, out));
  ASSIGN_OR_RETURN(int64_t tp, GetInt(config, "pretraining_tp", 1, 1, 1024));
  if (tp != 1) return KeyError("pretraining_tp", "only 1 is supported");

  if (out->model_type == "llama") {
    ASSIGN_OR_RETURN(bool attention_bias, GetBool(config, "attention_bias", false));
    out->qkv_bias = out->o_bias = attention_bias;
    ASSIGN_OR_RETURN(out->mlp_bias, GetBool(config, "mlp_bias", false));
  } else if (out->model_type == "qwen2") {
    out->qkv_bias = true;  // Qwen2 always has q/k/v biases, never an o_proj bias
    ASSIGN_OR_RETURN(bool sliding, GetBool(config, "use_sliding_window", false));
    if (sliding) return KeyError("use_sliding_window", "Qwen2's sliding window is not supported");
  } else if (out->model_type == "mistral") {
    ASSIGN_OR_RETURN(int64_t window, GetInt(config, "sliding_window", int64_t{0}, 0, kMaxPositions));
    if (window > 0) out->sliding_window = window;
  }
  return absl::OkStatus();
}

absl::Status ParseEncoder(const json& config, ModelConfig* out) {
  out->num_kv_heads = out->num_heads;
  if (out->hidden_size % out->num_heads != 0) {
    return KeyError("num_attention_heads",
                    absl::StrCat("must divide hidden_size (", out->hidden_size, "), got ",
                                 out->num_heads));
  }
  out->head_dim = out->hidden_size / out->num_heads;
  ASSIGN_OR_RETURN(out->norm_eps, GetReal(config, "layer_norm_eps", 1e-12, 0.0, 1.0));
  ASSIGN_OR_RETURN(std::string act, GetString(config, "hidden_act", "gelu"));
  ASSIGN_OR_RETURN(out->activation, ParseActivation(act, "hidden_act"));
  ASSIGN_OR_RETURN(out->type_vocab_size, GetInt(config, "type_vocab_size", 2, 1, 1024));
  ASSIGN_OR_RETURN(out->hidden_dropout, GetReal(config, "hidden_dropout_prob", 0.1, 0.0, 0.99));
  ASSIGN_OR_RETURN(out->attention_dropout,
                   GetReal(config, "attention_probs_dropout_prob", 0.1, 0.0, 0.99));
  if (config.contains("classifier_dropout") && !config["classifier_dropout"].is_null()) {
    ASSIGN_OR_RETURN(out->classifier_dropout,
                     GetReal(config, "classifier_dropout", std::nullopt, 0.0, 0.99));
  }
  ASSIGN_OR_RETURN(std::string position_type,
                   GetString(config, "position_embedding_type", "absolute"));
  if (position_type != "absolute") {
    return KeyError("position_embedding_type",
                    absl::StrCat("only \"absolute\" is supported, got \"", Excerpt(position_type), "\""));
  }
  if (out->family == ModelFamily::kRoberta) {
    if (!out->pad_token_id) return KeyError("pad_token_id", "required for RoBERTa positions");
    // Positions run from pad_token_id + 1, so the table must hold them.
    if (*out->pad_token_id + 2 > out->max_position_embeddings) {
      return KeyError("max_position_embeddings", "too small for RoBERTa's padding offset");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view text) {
  // Written by Hugging Face's tools: a repeated key is read as Python reads it (the last wins).
  absl::StatusOr<json> parsed = ParseJson(text, JsonLimits{/*max_depth=*/64, true});
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("not valid JSON: ", parsed.status().message()));
  }
  json config = *std::move(parsed);
  if (!config.is_object()) return absl::InvalidArgumentError("must be a JSON object");
  if (config.contains("quantization_config")) {
    return KeyError("quantization_config", "quantized checkpoints are not supported");
  }

  ModelConfig out;
  ASSIGN_OR_RETURN(out.model_type, GetString(config, "model_type", std::nullopt));
  std::string prefix;  // what the architecture names start with
  if (out.model_type == "llama" || out.model_type == "mistral" || out.model_type == "qwen2") {
    out.family = ModelFamily::kDecoder;
    prefix = out.model_type == "llama" ? "Llama" : out.model_type == "mistral" ? "Mistral" : "Qwen2";
  } else if (out.model_type == "bert") {
    out.family = ModelFamily::kBert;
    prefix = "Bert";
  } else if (out.model_type == "roberta") {
    out.family = ModelFamily::kRoberta;
    prefix = "Roberta";
  } else {
    return KeyError("model_type", absl::StrCat("unsupported architecture \"", Excerpt(out.model_type),
                                               "\" (supported: llama, mistral, qwen2, bert, "
                                               "roberta)"));
  }

  auto architectures = config.find("architectures");
  if (architectures == config.end() || architectures->is_null()) {
    out.architecture = prefix + "Model";
  } else if (!architectures->is_array() || architectures->size() != 1 ||
             !(*architectures)[0].is_string()) {
    return KeyError("architectures", "must be a list of one class name");
  } else {
    out.architecture = (*architectures)[0].get<std::string>();
  }
  if (out.architecture == prefix + "ForCausalLM") {
    out.head = HeadKind::kCausalLm;
  } else if (out.architecture == prefix + "ForSequenceClassification") {
    out.head = HeadKind::kSequenceClassification;
  } else if (out.architecture == prefix + "Model" ||
             // Encoder checkpoints are often published from their pre-training class; the
             // encoder is what we use of them.
             (out.family != ModelFamily::kDecoder && out.architecture == prefix + "ForMaskedLM")) {
    out.head = HeadKind::kNone;
  } else {
    return KeyError("architectures",
                    absl::StrCat("unsupported class \"", Excerpt(out.architecture), "\" for model_type \"",
                                 out.model_type, "\" (supported: ", prefix, "Model, ", prefix,
                                 "ForCausalLM, ", prefix, "ForSequenceClassification)"));
  }
  if (out.head == HeadKind::kCausalLm && out.family != ModelFamily::kDecoder) {
    return KeyError("architectures", "a causal LM head needs a decoder model");
  }

  ASSIGN_OR_RETURN(out.vocab_size, GetInt(config, "vocab_size", std::nullopt, 1, kMaxVocab));
  ASSIGN_OR_RETURN(out.hidden_size, GetInt(config, "hidden_size", std::nullopt, 1, kMaxHidden));
  ASSIGN_OR_RETURN(out.intermediate_size,
                   GetInt(config, "intermediate_size", std::nullopt, 1, kMaxIntermediate));
  ASSIGN_OR_RETURN(out.num_layers, GetInt(config, "num_hidden_layers", std::nullopt, 1, kMaxLayers));
  ASSIGN_OR_RETURN(out.num_heads,
                   GetInt(config, "num_attention_heads", std::nullopt, 1, kMaxHeads));
  ASSIGN_OR_RETURN(out.max_position_embeddings,
                   GetInt(config, "max_position_embeddings", std::nullopt, 1, kMaxPositions));
  if (config.contains("pad_token_id") && !config["pad_token_id"].is_null()) {
    ASSIGN_OR_RETURN(out.pad_token_id,
                     GetInt(config, "pad_token_id", std::nullopt, 0, out.vocab_size - 1));
  }
  if (config.contains("torch_dtype") || config.contains("dtype")) {
    ASSIGN_OR_RETURN(out.torch_dtype, GetString(config, config.contains("dtype") ? "dtype"
                                                                                : "torch_dtype",
                                                std::nullopt));
  }
  RETURN_IF_ERROR(ParseLabels(config, &out));
  // transformers leaves the default two labels (LABEL_0, LABEL_1) out of config.json.
  if (out.head == HeadKind::kSequenceClassification && out.num_labels == 0) out.num_labels = 2;
  if (out.family == ModelFamily::kDecoder) {
    RETURN_IF_ERROR(ParseDecoder(config, &out));
  } else {
    RETURN_IF_ERROR(ParseEncoder(config, &out));
  }
  return out;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  struct stat info {};
  if (::stat(model_dir.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(model_dir, ": not a model directory"));
  }
  std::string path = model_dir + "/config.json";
  absl::StatusOr<std::string> text = ReadFileWithLimit(path, kMaxConfigBytes);
  if (!text.ok()) return absl::InvalidArgumentError(text.status().message());
  absl::StatusOr<ModelConfig> config = ParseModelConfig(*text);
  if (!config.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", config.status().message()));
  return config;
}

}  // namespace loratrf::engine
