#include "worker/engine/model/transformer.h"

#include <cmath>

#include <torch/torch.h>

#include "worker/engine/model/architectures.h"

namespace loratrf::engine {

void TransformerModel::InitHead(const std::string& name, torch::Tensor& parameter) const {
  torch::NoGradGuard no_grad;
  const bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
  if (is_bias) {
    parameter.zero_();
  } else {
    parameter.normal_(0.0, 0.02);  // transformers' initializer_range default
  }
}

torch::Tensor Attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, double dropout, bool training) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, mask.to(q.scalar_type()),
                                          training ? dropout : 0.0);
#else
  // libtorch 1.13 has no fused kernel: the explicit math, softmax in float32.
  torch::Tensor scores = torch::matmul(q, k.transpose(-1, -2)).to(torch::kFloat32) /
                         std::sqrt(static_cast<double>(q.size(-1)));
  torch::Tensor probs = torch::softmax(scores + mask, -1).to(q.scalar_type());
  if (training && dropout > 0) probs = torch::dropout(probs, dropout, true);
  return torch::matmul(probs, v);
#endif
}

std::shared_ptr<TransformerModel> BuildModel(ModelConfig config, HeadKind head,
                                             int64_t num_labels,
                                             const torch::TensorOptions& options) {
  config.head = head;
  if (head == HeadKind::kSequenceClassification) config.num_labels = num_labels;
  if (config.family == ModelFamily::kDecoder) {
    return MakeDecoderModel(std::move(config), num_labels, options);
  }
  return MakeEncoderModel(std::move(config), num_labels, options);
}

}  // namespace loratrf::engine
