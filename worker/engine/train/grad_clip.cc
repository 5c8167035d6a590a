#include "worker/engine/train/grad_clip.h"

#include <cmath>
#include <vector>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"

namespace loratrf::engine {

absl::StatusOr<double> ClipGradNorm(const NamedTensors& parameters, double max_norm) {
  if (!(max_norm >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gradient clipping: max_grad_norm must be >= 0, got ", max_norm));
  }
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (const auto& [name, param] : parameters) {
    if (param.requires_grad() && param.grad().defined()) grads.push_back(param.grad());
  }
  if (grads.empty()) return 0.0;

  // Per-tensor norms gathered on the first gradient's device, then the norm of the norms: the
  // same reduction (and so the same float32 result) as clip_grad_norm_. Narrower gradients are
  // widened first, so that bf16 gradients do not lose the norm to rounding.
  const at::Device device = grads.front().device();
  std::vector<at::Tensor> wide;
  wide.reserve(grads.size());
  for (const at::Tensor& g : grads) {
    wide.push_back(g.scalar_type() == at::kFloat || g.scalar_type() == at::kDouble
                       ? g
                       : g.to(at::kFloat));
  }
  std::vector<at::Tensor> norms;
  if (device.is_cuda()) {
    // One multi-tensor kernel for all the norms instead of one reduction per tensor.
    norms = at::_foreach_norm(wide, 2);
  } else {
    // The CPU keeps clip_grad_norm_'s own per-tensor reduction, bit for bit.
    norms.reserve(wide.size());
    for (const at::Tensor& g : wide) norms.push_back(torch::norm(g, 2).to(device));
  }
  const at::Tensor total_norm = torch::norm(torch::stack(norms), 2);
  // One host sync per step: the trainer logs the norm anyway.
  const double norm = total_norm.item<double>();
  if (max_norm == 0 || !std::isfinite(norm)) return norm;

  // Python evaluates `max_norm / tensor` as tensor.reciprocal() * max_norm; so do we.
  const at::Tensor clip_coef = (total_norm + 1e-6).reciprocal() * max_norm;
  const at::Tensor clip_coef_clamped = torch::clamp_max(clip_coef, 1.0);
  // The same coefficient tensor for every gradient (the device's tensor, no host round trip).
  at::_foreach_mul_(grads, std::vector<at::Tensor>(grads.size(), clip_coef_clamped));
  return norm;
}

}  // namespace loratrf::engine
