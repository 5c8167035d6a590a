// Loading a base model (and optionally an adapter) the way every local command needs it.
//
// Threading: functions; the returned model belongs to the caller.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/adapters/adapter_settings.h"
#include "worker/engine/model/transformer.h"

namespace loratrf::worker {

struct LoadedModel {
  std::shared_ptr<engine::TransformerModel> model;
  std::optional<engine::AdapterSettings> adapter;
};

// Loads the model in `model_dir` in float32 on the CPU. With `adapter_dir`, the head follows
// the adapter's task (a classification adapter on a *ForCausalLM base gets its `score` head,
// with as many labels as the adapter's head has), and the adapter is applied.
absl::StatusOr<LoadedModel> LoadModel(const std::string& model_dir,
                                      const std::string& adapter_dir);

}  // namespace loratrf::worker
