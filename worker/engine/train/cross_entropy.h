// The training loss: summed cross-entropy over rows of logits, computed a chunk of rows at a
// time so that no float32 copy of the whole [rows, vocab] logits (nor of their log-softmax) is
// ever held: with bf16 logits of a 32k vocabulary that copy is the largest tensor of a step.
//
// Threading: pure function of its arguments.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "worker/engine/data/examples.h"

namespace loratrf::engine {

// sum over rows r with targets[r] != kIgnoreIndex (data/examples.h) of
// -log softmax(logits[r])[targets[r]], as a float32 scalar. logits: [rows, classes] of any floating dtype; targets: [rows] int64.
// Differentiable with respect to `logits`: the gradient (softmax - one-hot, per chunk, in
// logits' dtype) is computed in the forward pass when autograd will need it, so the backward
// pass only scales it. `chunk_elements` bounds the float32 working set of one chunk.
at::Tensor CrossEntropySum(const at::Tensor& logits, const at::Tensor& targets,
                           int64_t chunk_elements = int64_t{1} << 24);

}  // namespace loratrf::engine
