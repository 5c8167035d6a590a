// AdaptableLinear: the linear layer every model in the engine is built from. It holds the
// frozen base (`weight`, `bias`, named as in Hugging Face) and, once AddAdapter() is called, a
// LoRA or LoRATRF adapter whose tensors are registered under PEFT's names (`lora_A.weight`,
// `lora_B.weight`, `trf_G.weight`, `trf_G.bias`, `trf_u`), so named_parameters() yields the
// adapter file's tensor names directly.
//
//   y  = W0 x + b0 + s * B (g * z),   z = A drop(x),   g = 2 sigmoid(G z + c)   (bottleneck)
//   y *= 2 sigmoid(u)                                                         (output filter)
//
// Threading: a torch module; used by one thread at a time.
#pragma once

#include <optional>

#include "absl/status/status.h"
#include "worker/engine/adapters/adapter_settings.h"
#include <torch/nn/module.h>

namespace loratrf::engine {

class AdaptableLinearImpl : public torch::nn::Module {
 public:
  AdaptableLinearImpl(int64_t in_features, int64_t out_features, bool has_bias,
                      const torch::TensorOptions& options);

  torch::Tensor forward(const torch::Tensor& x);

  // Adds a fresh adapter (A: kaiming_uniform(a=sqrt(5)); B, G, c, u: zeros) on the base's
  // device in float32, trainable. A fresh adapter leaves the output unchanged.
  void AddAdapter(const AdapterSettings& settings);
  bool adapted() const { return adapter_.has_value(); }
  const AdapterSettings* adapter_settings() const {
    return adapter_ ? &adapter_->settings : nullptr;
  }

  // Folds the adapter into weight/bias and removes it. LoRA and LoRATRF with an output filter
  // merge exactly; a bottleneck filter is nonlinear in x and is refused (FAILED_PRECONDITION).
  absl::Status Merge();

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

  torch::Tensor weight;  // [out, in], frozen
  torch::Tensor bias;    // [out] or undefined, frozen

 private:
  struct Adapter {
    AdapterSettings settings;
    torch::Tensor A, B, G, c, u;  // G, c, u undefined when the filter does not use them
  };
  int64_t in_features_;
  int64_t out_features_;
  std::optional<Adapter> adapter_;
};
TORCH_MODULE(AdaptableLinear);

}  // namespace loratrf::engine
