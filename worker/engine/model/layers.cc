#include "worker/engine/model/layers.h"

#include <torch/torch.h>

namespace loratrf::engine {

EmbeddingImpl::EmbeddingImpl(int64_t num, int64_t dim, const torch::TensorOptions& options) {
  weight = register_parameter("weight", torch::empty({num, dim}, options), false);
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) {
  return torch::embedding(weight, ids);
}

RmsNormImpl::RmsNormImpl(int64_t dim, double eps_, const torch::TensorOptions& options)
    : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}, options), false);
}

torch::Tensor RmsNormImpl::forward(const torch::Tensor& x) {
  // As LlamaRMSNorm: normalise in float32, scale, then return to the input's dtype.
  torch::Tensor h = x.to(torch::kFloat32);
  h = h * torch::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps);
  // weight * h in their common dtype, as LlamaRMSNorm: float32 for a float32 model, bf16 for a
  // bf16 one (not a float32 copy of the residual stream).
  return weight * h.to(x.scalar_type());
}

LayerNormImpl::LayerNormImpl(int64_t dim, double eps_, const torch::TensorOptions& options)
    : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}, options), false);
  bias = register_parameter("bias", torch::zeros({dim}, options), false);
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  return torch::layer_norm(x, {weight.size(0)}, weight, bias, eps);
}

}  // namespace loratrf::engine
