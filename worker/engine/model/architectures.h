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

// Shared by both: softmax(q k^T / sqrt(d) + mask) v, with `mask` additive (0 or a large
// negative) and broadcastable to [B, H, T, T]. q, k, v: [B, H, T, d].
torch::Tensor Attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, double dropout, bool training);

// A large negative that masks a score without turning a fully masked row into NaN.
inline constexpr double kMaskedScore = -1e30;

}  // namespace loratrf::engine
