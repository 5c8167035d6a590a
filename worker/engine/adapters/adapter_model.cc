#include "worker/engine/adapters/adapter_model.h"

#include <set>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/engine/adapters/adaptable_linear.h"

namespace loratrf::engine {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string LastComponent(const std::string& path) {
  size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

}  // namespace

bool IsAdapterParameter(const std::string& name) {
  return name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos ||
         name.find(".trf_G.") != std::string::npos || EndsWith(name, ".trf_u") ||
         name.rfind("lora_A.", 0) == 0 || name.rfind("lora_B.", 0) == 0 ||
         name.rfind("trf_G.", 0) == 0 || name == "trf_u";
}

absl::StatusOr<std::vector<std::string>> ApplyAdapter(TransformerModel& model,
                                                      const AdapterSettings& settings) {
  for (auto& parameter : model.parameters()) parameter.set_requires_grad(false);
  std::vector<std::string> adapted;
  std::set<std::string> linear_names;
  for (auto& item : model.named_modules("", /*include_self=*/false)) {
    auto* linear = item.value()->as<AdaptableLinearImpl>();
    if (linear == nullptr) continue;
    linear_names.insert(LastComponent(item.key()));
    if (IsModuleToSave(settings, item.key())) continue;  // trained in full instead
    if (!IsTargetModule(settings, item.key())) continue;
    linear->AddAdapter(settings);
    adapted.push_back(item.key());
  }
  if (adapted.empty()) {
    std::string wanted = settings.target_regex.empty()
                             ? absl::StrCat("[", absl::StrJoin(settings.target_modules, ", "), "]")
                             : absl::StrCat("regex ", settings.target_regex);
    return absl::InvalidArgumentError(absl::StrCat(
        "target_modules ", wanted, " match no linear layer of this ", model.config().model_type,
        " model; its linear layers are named: ", absl::StrJoin(linear_names, ", ")));
  }
  for (auto& item : model.named_parameters()) {
    // Module paths of a parameter: everything before its last component.
    std::string module = item.key().substr(0, item.key().rfind('.'));
    if (IsModuleToSave(settings, module)) {
      torch::NoGradGuard no_grad;
      if (item.value().scalar_type() != torch::kFloat32) item.value().set_data(item.value().to(torch::kFloat32));
      item.value().set_requires_grad(true);
    }
  }
  return adapted;
}

void EnableFullFineTuning(TransformerModel& model) {
  torch::NoGradGuard no_grad;
  for (auto& parameter : model.parameters()) {
    // Trained weights and their optimizer state are float32, whatever the checkpoint's dtype.
    if (parameter.scalar_type() != torch::kFloat32) parameter.set_data(parameter.to(torch::kFloat32));
    parameter.set_requires_grad(true);
  }
}

ParameterCounts CountParameters(TransformerModel& model) {
  ParameterCounts counts;
  for (const auto& parameter : model.parameters()) {
    counts.total += parameter.numel();
    if (parameter.requires_grad()) counts.trainable += parameter.numel();
  }
  for (auto& item : model.named_modules("", false)) {
    auto* linear = item.value()->as<AdaptableLinearImpl>();
    if (linear != nullptr && linear->adapted()) ++counts.adapted_layers;
  }
  return counts;
}

absl::Status MergeAdapters(TransformerModel& model) {
  // Refuse before touching anything: a half-merged model would be worse than none.
  for (auto& item : model.named_modules("", false)) {
    auto* linear = item.value()->as<AdaptableLinearImpl>();
    if (linear != nullptr && linear->adapter_settings() != nullptr &&
        linear->adapter_settings()->method == AdapterMethod::kLoratrf &&
        HasBottleneckFilter(linear->adapter_settings()->filter)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot merge: ", item.key(), " has a LoRATRF bottleneck filter, which depends on each "
          "input (g = 2 sigmoid(G A x + c)), so no fixed weight reproduces it; serve the base "
          "model with the adapter instead (only filter: output merges exactly)"));
    }
  }
  for (auto& item : model.named_modules("", false)) {
    auto* linear = item.value()->as<AdaptableLinearImpl>();
    if (linear == nullptr) continue;
    absl::Status status = linear->Merge();
    if (!status.ok()) return absl::Status(status.code(), absl::StrCat(item.key(), ": ", status.message()));
  }
  return absl::OkStatus();
}

}  // namespace loratrf::engine
