// The model families BuildModel() dispatches to (transformer.cc). Internal to model/.
#pragma once

#include <memory>

#include "worker/engine/model/transformer.h"

namespace loratrf::engine {

// Llama, Mistral, Qwen2: decoder.cc.
std::shared_ptr<TransformerModel> MakeDecoderModel(ModelConfig config, int64_t num_labels,
                                                   const torch::TensorOptions& options);
// BERT, RoBERTa: encoder.cc.
std::shared_ptr<TransformerModel> MakeEncoderModel(ModelConfig config, int64_t num_labels,
                                                   const torch::TensorOptions& options);

// Which keys each query may attend to, in the form the fused attention kernels can use: a
// causal flag alone (no mask tensor at all, so flash attention is eligible) when nothing else
// constrains attention, a boolean mask otherwise (never a dense float mask).
struct AttentionMask {
  // Bool, broadcastable to [B, H, T, T]: true where the query (row) may attend the key
  // (column). When defined it is the whole rule; `causal` is then ignored.
  torch::Tensor allowed;
  // With `allowed` undefined: each query attends to itself and the positions before it.
  bool causal = false;
};

// The options of a classification head: float32 whatever the frozen weights' dtype, because
// the head always trains (it is saved with the adapter), and a new head drawn in float32 is
// the same head on every device and in every precision.
inline torch::TensorOptions TrainedHeadOptions(const torch::TensorOptions& options) {
  return options.dtype(torch::kFloat32);
}

// Shared by both: softmax(q kᵀ / sqrt(d), over the allowed keys) v. q: [B, H, T, d]; k, v:
// [B, H_kv, T, d], where H is a multiple of H_kv (grouped-query attention: query head h reads
// key/value head h / (H / H_kv)).
torch::Tensor Attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const AttentionMask& mask, double dropout, bool training);

// A large negative that masks a score without turning a fully masked row into NaN.
inline constexpr double kMaskedScore = -1e30;

}  // namespace loratrf::engine
