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
    // transformers' initializer_range default, drawn on the CPU in float32 whatever the
    // parameter's device and dtype, so that every device starts from the same head.
    parameter.copy_(torch::empty(parameter.sizes(), torch::kFloat32).normal_(0.0, 0.02));
  }
}

namespace {

// Grouped-query attention by copying each key/value head for the query heads that read it.
torch::Tensor RepeatHeads(const torch::Tensor& t, int64_t heads) {
  return t.size(1) == heads ? t : t.repeat_interleave(heads / t.size(1), 1);
}

}  // namespace

torch::Tensor Attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const AttentionMask& mask, double dropout, bool training) {
  const double p = training ? dropout : 0.0;
  const int64_t heads = q.size(1);
#if TORCH_VERSION_MAJOR >= 2
  if (!mask.allowed.defined()) {
#if TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 5
    // Causal (or no) masking: the flash kernel, which reads shared key/value heads as they are.
    if (k.size(1) != heads) {
      return at::scaled_dot_product_attention(q, k, v, {}, p, mask.causal, c10::nullopt,
                                              /*enable_gqa=*/true);
    }
#endif
    return at::scaled_dot_product_attention(q, RepeatHeads(k, heads), RepeatHeads(v, heads), {},
                                            p, mask.causal);
  }
  // A boolean mask rules out the flash kernel; the memory-efficient one takes it, but not
  // grouped heads, so those are repeated.
  return at::scaled_dot_product_attention(q, RepeatHeads(k, heads), RepeatHeads(v, heads),
                                          mask.allowed, p, false);
#else
  // libtorch 1.13 has no fused kernel: the explicit math, softmax in float32.
  torch::Tensor scores =
      torch::matmul(q, RepeatHeads(k, heads).transpose(-1, -2)).to(torch::kFloat32) /
      std::sqrt(static_cast<double>(q.size(-1)));
  torch::Tensor allowed = mask.allowed;
  if (!allowed.defined() && mask.causal) {
    allowed = torch::ones({q.size(2), k.size(2)}, torch::dtype(torch::kBool).device(q.device()))
                  .tril();
  }
  if (allowed.defined()) scores = scores.masked_fill(allowed.logical_not(), kMaskedScore);
  torch::Tensor probs = torch::softmax(scores, -1).to(q.scalar_type());
  if (p > 0) probs = torch::dropout(probs, p, true);
  return torch::matmul(probs, RepeatHeads(v, heads));
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
