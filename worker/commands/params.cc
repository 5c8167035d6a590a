// loratrf-worker params --spec JOB.yaml: the parameter counts the job will train, from the
// model's config.json alone (the model is built on the meta device: nothing is allocated).
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "worker/engine/adapters/adapter_model.h"
#include "common/command_line.h"
#include "common/status_macros.h"
#include "worker/commands/commands.h"
#include "worker/commands/spec_conversion.h"
#include "worker/engine/data/examples.h"
#include "worker/engine/model/config.h"
#include "nlohmann/json.hpp"
#include "proto/spec/job_spec.h"

namespace loratrf::worker {
namespace {

absl::Status Params(const CommandLine& flags) {
  ASSIGN_OR_RETURN(std::string spec_path, flags.Require("--spec"));
  ASSIGN_OR_RETURN(v1::JobSpec spec, spec::LoadJobSpecFile(spec_path));
  std::string model_dir = ResolveSpecPath(spec_path, spec.model().path());
  ASSIGN_OR_RETURN(engine::ModelConfig config, engine::LoadModelConfig(model_dir));

  engine::HeadKind head = spec.task() == v1::TASK_CAUSAL_LM ? engine::HeadKind::kCausalLm
                                                            : engine::HeadKind::kSequenceClassification;
  if (head == engine::HeadKind::kCausalLm && config.family != engine::ModelFamily::kDecoder) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task: causal_lm needs a decoder model; ", model_dir, " is ", config.model_type));
  }
  int64_t num_labels = 0;
  if (head == engine::HeadKind::kSequenceClassification) {
    ASSIGN_OR_RETURN(num_labels,
                     engine::CountClasses(ResolveSpecPath(spec_path, spec.data().train())));
  }
  auto model = engine::BuildModel(config, head, num_labels, torch::TensorOptions().device(torch::kMeta));

  nlohmann::json out;
  if (spec.adapter().method() == v1::ADAPTER_METHOD_FULL) {
    engine::EnableFullFineTuning(*model);
  } else {
    engine::AdapterSettings settings = ToAdapterSettings(spec.adapter());
    settings.modules_to_save = model->HeadModules();
    ASSIGN_OR_RETURN(auto adapted, engine::ApplyAdapter(*model, settings));
    out["rank"] = settings.rank;
  }
  engine::ParameterCounts counts = engine::CountParameters(*model);
  out["trainable"] = counts.trainable;
  out["total"] = counts.total;
  out["trainable_percent"] = 100.0 * static_cast<double>(counts.trainable) /
                             static_cast<double>(std::max<int64_t>(counts.total, 1));
  out["adapted_layers"] = counts.adapted_layers;
  out["method"] = spec::EnumValueName(*v1::AdapterMethod_descriptor()->FindValueByNumber(spec.adapter().method()));
  if (spec.adapter().method() == v1::ADAPTER_METHOD_LORATRF) {
    out["filter"] = spec::EnumValueName(*v1::TrfFilter_descriptor()->FindValueByNumber(spec.adapter().filter()));
  }
  out["model_type"] = config.model_type;
  out["task"] = spec::EnumValueName(*v1::Task_descriptor()->FindValueByNumber(spec.task()));
  if (num_labels > 0) out["num_labels"] = num_labels;
  std::cout << out.dump(2) << "\n";
  return absl::OkStatus();
}

}  // namespace

int RunParams(const std::vector<std::string>& args) {
  return RunCommand("params", args, {{"--spec", true}}, Params);
}

}  // namespace loratrf::worker
