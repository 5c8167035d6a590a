// Gradient clipping by the global L2 norm of all trainable gradients, as
// torch.nn.utils.clip_grad_norm_ does it.
//
// Threading: a free function; the caller owns the gradients and must not touch them meanwhile.
#pragma once

#include "absl/status/statusor.h"
#include "worker/engine/train/optimizer.h"

namespace loratrf::engine {

// Computes the L2 norm over the gradients of the parameters that require grad and have one
// (float32 norms per tensor, then the norm of those, like torch), and when max_norm > 0 scales
// every such gradient in place by min(1, max_norm / (norm + 1e-6)), in float32 like torch.
// max_norm == 0 disables the scaling but still returns the norm (for metrics). Returns the norm
// before clipping; 0 when there are no gradients. When the norm is not finite nothing is scaled
// (torch would multiply by NaN and ruin every gradient) and the norm is returned so the caller
// can fail or skip the step. Error: max_norm negative or NaN.
absl::StatusOr<double> ClipGradNorm(const NamedTensors& parameters, double max_norm);

}  // namespace loratrf::engine
