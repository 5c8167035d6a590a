#include "worker/commands/model_loading.h"

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "worker/engine/adapters/adapter_io.h"
#include "common/status_macros.h"
#include "worker/engine/checkpoint/safetensors.h"
#include "worker/engine/model/hf_checkpoint.h"

namespace loratrf::worker {
namespace {

// The number of classes of a classification adapter's head: the rows of its last head layer.
absl::StatusOr<int64_t> AdapterNumLabels(const std::string& adapter_dir) {
  const std::string path = adapter_dir + "/" + engine::kAdapterWeightsFile;
  ASSIGN_OR_RETURN(auto file, engine::SafetensorsFile::Open(path));
  for (const char* name : {"score.weight", "classifier.out_proj.weight", "classifier.weight"}) {
    const engine::TensorEntry* entry = file->Find(absl::StrCat(engine::kPeftPrefix, name));
    if (entry != nullptr && entry->shape.size() == 2) return entry->shape[0];
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path, ": a SEQ_CLS adapter must carry its head (score or classifier) in modules_to_save"));
}

}  // namespace

absl::StatusOr<LoadedModel> LoadModel(const std::string& model_dir,
                                      const std::string& adapter_dir) {
  ASSIGN_OR_RETURN(engine::ModelConfig config, engine::LoadModelConfig(model_dir));
  LoadedModel loaded;
  engine::HeadKind head = config.head;
  int64_t num_labels = config.num_labels;
  if (!adapter_dir.empty()) {
    ASSIGN_OR_RETURN(engine::AdapterSettings settings, engine::LoadAdapterConfig(adapter_dir));
    if (settings.task) head = *settings.task;
    if (head == engine::HeadKind::kSequenceClassification &&
        config.head != engine::HeadKind::kSequenceClassification) {
      ASSIGN_OR_RETURN(num_labels, AdapterNumLabels(adapter_dir));
    }
    loaded.adapter = settings;
  }
  if (head == engine::HeadKind::kCausalLm && config.family != engine::ModelFamily::kDecoder) {
    return absl::InvalidArgumentError("a causal LM adapter needs a decoder base model");
  }
  if (head == engine::HeadKind::kSequenceClassification && num_labels < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        model_dir, "/config.json: the classification head's num_labels is unknown (no id2label)"));
  }
  loaded.model = engine::BuildModel(config, head, num_labels, torch::dtype(torch::kFloat32));
  ASSIGN_OR_RETURN(engine::HfCheckpoint checkpoint, engine::HfCheckpoint::Open(model_dir));
  ASSIGN_OR_RETURN(engine::LoadReport report, engine::LoadWeights(*loaded.model, checkpoint));
  if (!adapter_dir.empty()) {
    RETURN_IF_ERROR(engine::ApplySavedAdapter(*loaded.model, adapter_dir, *loaded.adapter));
  } else if (!report.initialized.empty()) {
    // Without an adapter there is nothing to fill a missing head with: the output would be noise.
    return absl::InvalidArgumentError(absl::StrCat(
        model_dir, ": tensor ", report.initialized.front(), " is missing from the checkpoint"));
  }
  loaded.model->eval();
  return loaded;
}

}  // namespace loratrf::worker
