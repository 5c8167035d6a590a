// What an adapter is: method, rank, scale, filter and which modules it wraps. Torch-free, so
// the CLI glue and the parameter arithmetic need no torch headers.
//
// Threading: plain values.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "worker/engine/model/config.h"

namespace loratrf::engine {

enum class AdapterMethod { kLora, kLoratrf };

// Where LoRATRF's task-aware filters sit (SPEC-loratrf.md). kNone for plain LoRA.
enum class TrfFilter { kNone, kBottleneck, kOutput, kBoth };

inline bool HasBottleneckFilter(TrfFilter f) {
  return f == TrfFilter::kBottleneck || f == TrfFilter::kBoth;
}
inline bool HasOutputFilter(TrfFilter f) {
  return f == TrfFilter::kOutput || f == TrfFilter::kBoth;
}

struct AdapterSettings {
  AdapterMethod method = AdapterMethod::kLoratrf;
  int64_t rank = 8;
  double alpha = 16;
  double dropout = 0.0;
  TrfFilter filter = TrfFilter::kBottleneck;
  bool use_rslora = false;  // PEFT option: scale alpha / sqrt(r) instead of alpha / r
  // Module-name suffixes (PEFT's list form) ...
  std::vector<std::string> target_modules;
  // ... or a regular expression matched against the whole module path (PEFT's string form).
  std::string target_regex;
  // Modules trained in full and saved with the adapter, e.g. a classification head.
  std::vector<std::string> modules_to_save;
  // The head the adapter was trained with (PEFT's task_type), when the config says.
  std::optional<HeadKind> task;

  double scale() const {
    return use_rslora ? alpha / std::sqrt(static_cast<double>(rank))
                      : alpha / static_cast<double>(rank);
  }
};

// Trainable parameters the adapter adds to one d_in → d_out linear layer (the spec's formulas).
inline int64_t AdapterParameterCount(const AdapterSettings& s, int64_t d_in, int64_t d_out) {
  int64_t count = s.rank * (d_in + d_out);
  if (s.method == AdapterMethod::kLoratrf) {
    if (HasBottleneckFilter(s.filter)) count += s.rank * s.rank + s.rank;
    if (HasOutputFilter(s.filter)) count += d_out;
  }
  return count;
}

// PEFT's rule: a module is targeted when its path equals a target or ends with "." + target
// (list form), or when the regex matches the whole path (string form).
bool IsTargetModule(const AdapterSettings& settings, const std::string& module_path);

// True when `module_path` is one of modules_to_save or lies inside one.
bool IsModuleToSave(const AdapterSettings& settings, const std::string& module_path);

}  // namespace loratrf::engine
