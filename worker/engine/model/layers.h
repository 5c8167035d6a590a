// Small modules with Hugging Face parameter names (weight, bias), so that weights load by name.
//
// Threading: torch modules; used by one thread at a time.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace loratrf::engine {

// nn.Embedding: `weight` [num, dim].
class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t num, int64_t dim, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& ids);
  torch::Tensor weight;
};
TORCH_MODULE(Embedding);

// LlamaRMSNorm: x / sqrt(mean(x^2) + eps) * weight, computed in float32.
class RmsNormImpl : public torch::nn::Module {
 public:
  RmsNormImpl(int64_t dim, double eps, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RmsNorm);

// nn.LayerNorm with `weight` and `bias`, named as BERT's `LayerNorm`.
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, double eps, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
  double eps;
};
TORCH_MODULE(LayerNorm);

}  // namespace loratrf::engine
