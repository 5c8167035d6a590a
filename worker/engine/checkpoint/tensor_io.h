// The bridge between safetensors files and torch tensors.
//
// Threading: free functions; safe from any thread.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/checkpoint/safetensors.h"
#include <ATen/core/Tensor.h>

namespace loratrf::engine {

// Copies a tensor out of the mapping as `dtype` (the file's own dtype when undefined).
absl::StatusOr<at::Tensor> ReadTensor(const SafetensorsFile& file, const TensorEntry& entry,
                                      std::optional<at::ScalarType> dtype = std::nullopt);

// Writes named tensors (any device; F32/F16/BF16/I64/I32/U8/BOOL...) atomically.
absl::Status WriteTensors(const std::string& path,
                          const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                          const std::map<std::string, std::string>& metadata = {});

}  // namespace loratrf::engine
