// Putting adapters on a model: wrapping the targeted linear layers, choosing what trains,
// counting parameters, merging.
//
// Threading: functions of one model, called by the thread that owns it.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/adapters/adapter_settings.h"
#include "worker/engine/model/transformer.h"

namespace loratrf::engine {

// Freezes the whole model, adds a fresh adapter to every linear layer that `settings` targets,
// and makes the modules_to_save trainable (float32). Returns the adapted module paths; an
// error when no linear layer matches (naming the layers there are).
absl::StatusOr<std::vector<std::string>> ApplyAdapter(TransformerModel& model,
                                                      const AdapterSettings& settings);

// Full fine-tuning: every parameter trains, in float32.
void EnableFullFineTuning(TransformerModel& model);

struct ParameterCounts {
  int64_t trainable = 0;
  int64_t total = 0;           // base + adapters
  int64_t adapted_layers = 0;
};
ParameterCounts CountParameters(TransformerModel& model);

// True for the names of adapter tensors (lora_A/B, trf_G, trf_u).
bool IsAdapterParameter(const std::string& name);

// Folds every adapter into its base weights (see AdaptableLinearImpl::Merge).
absl::Status MergeAdapters(TransformerModel& model);

}  // namespace loratrf::engine
