#include "worker/engine/adapters/adapter_io.h"

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <sys/stat.h>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/atomic_file.h"
#include "common/json_parse.h"
#include "common/read_file.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "worker/engine/adapters/adapter_model.h"
#include "worker/engine/checkpoint/tensor_io.h"
#include "nlohmann/json.hpp"

namespace loratrf::engine {
namespace {

using json = nlohmann::json;

// A value from adapter_config.json, as an error quotes it (never more than an Excerpt).
std::string ShowJson(const json& value) {
  return Excerpt(value.dump(-1, ' ', false, json::error_handler_t::replace));
}

constexpr uint64_t kMaxAdapterConfigBytes = 1 << 20;

const char* FilterName(TrfFilter filter) {
  switch (filter) {
    case TrfFilter::kBottleneck: return "bottleneck";
    case TrfFilter::kOutput: return "output";
    case TrfFilter::kBoth: return "both";
    case TrfFilter::kNone: return "none";
  }
  return "none";
}

const char* TaskType(HeadKind head) {
  switch (head) {
    case HeadKind::kCausalLm: return "CAUSAL_LM";
    case HeadKind::kSequenceClassification: return "SEQ_CLS";
    case HeadKind::kNone: return "FEATURE_EXTRACTION";
  }
  return "FEATURE_EXTRACTION";
}

absl::StatusOr<AdapterSettings> ParseAdapterConfig(const json& config) {
  auto error = [](absl::string_view key, absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": ", message));
  };
  if (!config.is_object()) return absl::InvalidArgumentError("must be a JSON object");
  AdapterSettings s;
  auto peft_type = config.find("peft_type");
  if (peft_type == config.end() || !peft_type->is_string()) return error("peft_type", "required");
  if (*peft_type == "LORA") {
    s.method = AdapterMethod::kLora;
    s.filter = TrfFilter::kNone;
  } else if (*peft_type == "LORATRF") {
    s.method = AdapterMethod::kLoratrf;
    auto filter = config.find("trf_filter");
    if (filter == config.end() || !filter->is_string()) {
      return error("trf_filter", "required for LORATRF (bottleneck | output | both)");
    }
    if (*filter == "bottleneck") s.filter = TrfFilter::kBottleneck;
    else if (*filter == "output") s.filter = TrfFilter::kOutput;
    else if (*filter == "both") s.filter = TrfFilter::kBoth;
    else return error("trf_filter", absl::StrCat("unknown value ", ShowJson(*filter)));
  } else {
    return error("peft_type", absl::StrCat("unsupported ", ShowJson(*peft_type), " (LORA or LORATRF)"));
  }

  auto r = config.find("r");
  if (r == config.end() || !r->is_number_integer() || r->get<int64_t>() < 1 ||
      r->get<int64_t>() > 4096) {
    return error("r", "must be an integer in [1, 4096]");
  }
  s.rank = r->get<int64_t>();
  auto alpha = config.find("lora_alpha");
  if (alpha == config.end() || !alpha->is_number() || !(alpha->get<double>() > 0) ||
      alpha->get<double>() > 1e6) {
    return error("lora_alpha", "must be a number in (0, 1e6]");
  }
  s.alpha = alpha->get<double>();
  if (auto dropout = config.find("lora_dropout"); dropout != config.end()) {
    if (!dropout->is_number() || dropout->get<double>() < 0 || dropout->get<double>() >= 1) {
      return error("lora_dropout", "must be a number in [0, 1)");
    }
    s.dropout = dropout->get<double>();
  }

  auto targets = config.find("target_modules");
  if (targets != config.end() && targets->is_string()) {
    s.target_regex = targets->get<std::string>();
    try {
      std::regex check(s.target_regex);
    } catch (const std::regex_error&) {
      return error("target_modules", "not a valid regular expression");
    }
  } else if (targets != config.end() && targets->is_array() && !targets->empty()) {
    for (const json& t : *targets) {
      if (!t.is_string() || t.get<std::string>().empty()) {
        return error("target_modules", "must be a list of module names");
      }
      s.target_modules.push_back(t.get<std::string>());
    }
  } else {
    return error("target_modules", "required: a list of module names or a regex string");
  }
  if (auto save = config.find("modules_to_save"); save != config.end() && !save->is_null()) {
    if (!save->is_array()) return error("modules_to_save", "must be a list or null");
    for (const json& m : *save) {
      if (!m.is_string() || m.get<std::string>().empty()) {
        return error("modules_to_save", "must be a list of module names");
      }
      s.modules_to_save.push_back(m.get<std::string>());
    }
  }

  // PEFT options this engine does not implement: refused by name, never ignored silently.
  auto must_be = [&](const char* key, const json& expected) -> absl::Status {
    auto it = config.find(key);
    if (it == config.end() || it->is_null() || *it == expected) return absl::OkStatus();
    return error(key, absl::StrCat("must be ", expected.dump(), " (not supported), got ", ShowJson(*it)));
  };
  RETURN_IF_ERROR(must_be("bias", "none"));
  RETURN_IF_ERROR(must_be("fan_in_fan_out", false));
  RETURN_IF_ERROR(must_be("use_dora", false));
  RETURN_IF_ERROR(must_be("lora_bias", false));
  RETURN_IF_ERROR(must_be("rank_pattern", json::object()));
  RETURN_IF_ERROR(must_be("alpha_pattern", json::object()));
  for (const char* key : {"layers_to_transform", "layers_pattern", "megatron_config"}) {
    auto it = config.find(key);
    if (it != config.end() && !it->is_null()) return error(key, "not supported");
  }
  if (auto task = config.find("task_type"); task != config.end() && !task->is_null()) {
    if (*task == "CAUSAL_LM") s.task = HeadKind::kCausalLm;
    else if (*task == "SEQ_CLS") s.task = HeadKind::kSequenceClassification;
    else if (*task == "FEATURE_EXTRACTION") s.task = HeadKind::kNone;
    else return error("task_type", absl::StrCat("unsupported ", ShowJson(*task),
                                                " (CAUSAL_LM, SEQ_CLS or FEATURE_EXTRACTION)"));
  }
  if (auto rslora = config.find("use_rslora"); rslora != config.end() && !rslora->is_null()) {
    if (!rslora->is_boolean()) return error("use_rslora", "must be true or false");
    s.use_rslora = rslora->get<bool>();
  }
  return s;
}

// "base_model.model.<module path>" for modules_to_save members of the model.
bool IsSavedParameter(const std::string& name, const torch::Tensor& parameter) {
  return IsAdapterParameter(name) || parameter.requires_grad();
}

}  // namespace

absl::StatusOr<AdapterSettings> LoadAdapterConfig(const std::string& dir) {
  std::string path = dir + "/" + kAdapterConfigFile;
  auto fail = [&](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", message));
  };
  struct stat info {};
  if (::stat(dir.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": not an adapter directory"));
  }
  absl::StatusOr<std::string> text = ReadFileWithLimit(path, kMaxAdapterConfigBytes);
  if (!text.ok()) return absl::InvalidArgumentError(text.status().message());
  // PEFT writes it with Python's json: a repeated key is read as Python reads it (the last wins).
  absl::StatusOr<json> parsed = ParseJson(*text, JsonLimits{/*max_depth=*/64, true});
  if (!parsed.ok()) return fail(absl::StrCat("not valid JSON: ", parsed.status().message()));
  json config = *std::move(parsed);
  absl::StatusOr<AdapterSettings> settings = ParseAdapterConfig(config);
  if (!settings.ok()) return fail(settings.status().message());
  return settings;
}

absl::Status SaveAdapter(TransformerModel& model, const AdapterSettings& settings,
                         const std::string& base_model_path, const std::string& dir) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (auto& item : model.named_parameters()) {
    if (!IsSavedParameter(item.key(), item.value())) continue;
    tensors.emplace_back(kPeftPrefix + item.key(), item.value().detach().to(torch::kFloat32));
  }
  RETURN_IF_ERROR(WriteTensors(dir + "/" + kAdapterWeightsFile, tensors, {{"format", "pt"}}));

  json config = {
      {"peft_type", settings.method == AdapterMethod::kLora ? "LORA" : "LORATRF"},
      {"r", settings.rank},
      {"lora_alpha", settings.alpha},
      {"lora_dropout", settings.dropout},
      {"bias", "none"},
      {"task_type", TaskType(model.head())},
      {"base_model_name_or_path", base_model_path},
      {"fan_in_fan_out", false},
      {"use_rslora", settings.use_rslora},
      {"use_dora", false},
      {"inference_mode", true},
      {"init_lora_weights", true},
      {"modules_to_save", nullptr},
  };
  if (!settings.target_regex.empty()) {
    config["target_modules"] = settings.target_regex;
  } else {
    config["target_modules"] = settings.target_modules;
  }
  if (!settings.modules_to_save.empty()) config["modules_to_save"] = settings.modules_to_save;
  if (settings.method == AdapterMethod::kLoratrf) config["trf_filter"] = FilterName(settings.filter);
  return WriteFileAtomically(dir + "/" + kAdapterConfigFile, config.dump(2) + "\n");
}

absl::StatusOr<AdapterSettings> LoadAdapter(TransformerModel& model, const std::string& dir) {
  ASSIGN_OR_RETURN(AdapterSettings settings, LoadAdapterConfig(dir));
  RETURN_IF_ERROR(ApplySavedAdapter(model, dir, settings));
  return settings;
}

absl::Status ApplySavedAdapter(TransformerModel& model, const std::string& dir,
                               const AdapterSettings& settings) {
  {
    absl::StatusOr<std::vector<std::string>> adapted = ApplyAdapter(model, settings);
    if (!adapted.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, "/", kAdapterConfigFile, ": ", adapted.status().message()));
    }
  }
  const std::string path = dir + "/" + kAdapterWeightsFile;
  ASSIGN_OR_RETURN(std::shared_ptr<const SafetensorsFile> file, SafetensorsFile::Open(path));
  auto parameters = model.named_parameters();
  std::set<std::string> loaded;
  torch::NoGradGuard no_grad;
  for (const TensorEntry& entry : file->tensors()) {
    const std::string prefix = kPeftPrefix;
    std::string name = entry.name.rfind(prefix, 0) == 0 ? entry.name.substr(prefix.size()) : "";
    torch::Tensor* parameter = name.empty() ? nullptr : parameters.find(name);
    // PEFT on a bare *Model names paths without the base prefix ("layers.0...").
    for (const char* base : {"model.", "bert.", "roberta."}) {
      if (parameter != nullptr || name.empty()) break;
      if ((parameter = parameters.find(base + name))) name = base + name;
    }
    if (parameter == nullptr || !IsSavedParameter(name, *parameter)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor ", entry.name, " is not an adapter tensor of this model "
          "(adapter made for a different base model or target_modules?)"));
    }
    if (c10::IntArrayRef(entry.shape) != parameter->sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor ", entry.name, " has shape [", absl::StrJoin(entry.shape, ", "),
          "], this model needs [", absl::StrJoin(parameter->sizes(), ", "), "]"));
    }
    if (entry.dtype != DType::kF32 && entry.dtype != DType::kF16 && entry.dtype != DType::kBF16 &&
        entry.dtype != DType::kF64) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", entry.name, " is ",
                                                     DTypeName(entry.dtype),
                                                     ", not floating point"));
    }
    ASSIGN_OR_RETURN(torch::Tensor value, ReadTensor(*file, entry, parameter->scalar_type()));
    parameter->copy_(value);
    loaded.insert(name);
  }
  for (auto& item : parameters) {
    if (IsSavedParameter(item.key(), item.value()) && !loaded.count(item.key())) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", kPeftPrefix, item.key(), " is missing"));
    }
  }
  return absl::OkStatus();
}

}  // namespace loratrf::engine
