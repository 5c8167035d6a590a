// Adapter directories, as PEFT writes them: adapter_config.json + adapter_model.safetensors
// with tensors named "base_model.model.<module path>.lora_A.weight" etc. (SPEC-loratrf.md).
// A LoRA adapter written here loads in PEFT; a PEFT LoRA adapter loads here.
//
// Threading: functions of one model, called by the thread that owns it.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/adapters/adapter_settings.h"
#include "worker/engine/model/transformer.h"

namespace loratrf::engine {

inline constexpr char kAdapterConfigFile[] = "adapter_config.json";
inline constexpr char kAdapterWeightsFile[] = "adapter_model.safetensors";
inline constexpr char kPeftPrefix[] = "base_model.model.";

// Reads and checks DIR/adapter_config.json (LORA or LORATRF; PEFT options this engine does
// not implement, such as DoRA or fan_in_fan_out, are refused by name).
absl::StatusOr<AdapterSettings> LoadAdapterConfig(const std::string& dir);

// Writes the adapter's trainable tensors (adapter tensors + modules_to_save) and
// adapter_config.json into DIR (which must exist), each file atomically.
absl::Status SaveAdapter(TransformerModel& model, const AdapterSettings& settings,
                         const std::string& base_model_path, const std::string& dir);

// Applies DIR's adapter to a freshly loaded base model: ApplyAdapter() with its config, then
// its tensors. Every tensor must belong to the model, and every adapter tensor must be there.
absl::StatusOr<AdapterSettings> LoadAdapter(TransformerModel& model, const std::string& dir);

// LoadAdapter for a caller that has read DIR's config already (LoadAdapterConfig).
absl::Status ApplySavedAdapter(TransformerModel& model, const std::string& dir,
                               const AdapterSettings& settings);

}  // namespace loratrf::engine
