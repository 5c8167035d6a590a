#include "worker/engine/train/optimizer.h"

#include <cmath>
#include <map>
#include <set>

#include <torch/torch.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace loratrf::engine {
namespace {

constexpr char kExpAvgPrefix[] = "exp_avg/";
constexpr char kExpAvgSqPrefix[] = "exp_avg_sq/";

std::string ShapeString(at::IntArrayRef sizes) {
  return absl::StrCat("[", absl::StrJoin(sizes, ", "), "]");
}

absl::Status CheckOptions(const AdamWOptions& o) {
  // The same ranges torch.optim.AdamW accepts (it also rejects negative values).
  if (!(o.beta1 >= 0 && o.beta1 < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("AdamW beta1 must be in [0, 1), got ", o.beta1));
  }
  if (!(o.beta2 >= 0 && o.beta2 < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("AdamW beta2 must be in [0, 1), got ", o.beta2));
  }
  if (!(o.eps >= 0 && std::isfinite(o.eps))) {
    return absl::InvalidArgumentError(
        absl::StrCat("AdamW eps must be finite and >= 0, got ", o.eps));
  }
  if (!(o.weight_decay >= 0 && std::isfinite(o.weight_decay))) {
    return absl::InvalidArgumentError(
        absl::StrCat("AdamW weight_decay must be finite and >= 0, got ", o.weight_decay));
  }
  return absl::OkStatus();
}

}  // namespace

bool DecaysWeight(const std::string& name) {
  // Substring matches, because these markers sit in the middle of HF/PEFT paths
  // ("model.layers.0.input_layernorm.weight", "...q_proj.trf_G.weight"); "Norm" covers
  // BERT's "LayerNorm" without a case-insensitive match that could catch unrelated names.
  if (absl::EndsWith(name, "bias")) return false;
  if (absl::StrContains(name, "norm") || absl::StrContains(name, "Norm")) return false;
  if (absl::StrContains(name, "trf_G") || absl::StrContains(name, "trf_u")) return false;
  return true;
}

absl::StatusOr<AdamW> AdamW::Create(const NamedTensors& parameters, const AdamWOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  std::set<std::string> seen;
  std::vector<Slot> slots;
  for (const auto& [name, param] : parameters) {
    if (!param.defined()) {
      return absl::InvalidArgumentError(absl::StrCat("AdamW: parameter '", name, "' is undefined"));
    }
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("AdamW: parameter name '", name, "' is repeated"));
    }
    // Frozen tensors get no state at all: for LoRA that is nearly the whole model.
    if (!param.requires_grad()) continue;
    if (!at::isFloatingType(param.scalar_type())) {
      return absl::InvalidArgumentError(
          absl::StrCat("AdamW: trainable parameter '", name, "' is not floating point"));
    }
    Slot slot;
    slot.name = name;
    slot.param = param;
    const auto state_options = param.options().dtype(at::kFloat).requires_grad(false);
    slot.exp_avg = torch::zeros(param.sizes(), state_options);
    slot.exp_avg_sq = torch::zeros(param.sizes(), state_options);
    slot.decay = DecaysWeight(name);
    slots.push_back(std::move(slot));
  }
  return AdamW(std::move(slots), options);
}

absl::Status AdamW::Step(double lr) {
  if (!(lr >= 0 && std::isfinite(lr))) {
    return absl::InvalidArgumentError(
        absl::StrCat("AdamW: learning rate must be finite and >= 0, got ", lr));
  }
  // Check everything first, so that an error leaves parameters and state as they were.
  for (const Slot& s : slots_) {
    const at::Tensor& grad = s.param.grad();
    if (!grad.defined()) continue;
    if (grad.is_sparse()) {
      return absl::InvalidArgumentError(
          absl::StrCat("AdamW: gradient of '", s.name, "' is sparse"));
    }
    if (grad.sizes() != s.param.sizes()) {
      return absl::InvalidArgumentError(absl::StrCat("AdamW: gradient of '", s.name, "' has shape ",
                                                     ShapeString(grad.sizes()), ", parameter has ",
                                                     ShapeString(s.param.sizes())));
    }
  }

  torch::NoGradGuard no_grad;
  ++step_;
  // Scalars in double, computed as Python computes them in torch.optim.AdamW (step.item() is a
  // float there, `**` is C pow, math.sqrt).
  const double t = static_cast<double>(step_);
  const double beta1 = options_.beta1;
  const double beta2 = options_.beta2;
  const double bias_correction1 = 1 - std::pow(beta1, t);
  const double bias_correction2 = 1 - std::pow(beta2, t);
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  const double decay_factor = 1 - lr * options_.weight_decay;

  // Each update below is one multi-tensor (foreach) op over every parameter: on a GPU a few
  // kernel launches per step instead of a few per tensor; on the CPU libtorch runs the same
  // per-tensor ops torch.optim.AdamW runs, so the numbers stay bit-identical to it.
  std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs, decayed;
  std::vector<std::pair<at::Tensor, at::Tensor>> write_back;  // (parameter, float32 working copy)
  for (Slot& s : slots_) {
    at::Tensor grad = s.param.grad();
    if (!grad.defined()) continue;  // torch skips parameters whose .grad is None, too
    at::Tensor param = s.param;
    if (param.scalar_type() != at::kFloat) {
      param = s.param.to(at::kFloat);
      write_back.emplace_back(s.param, param);
    }
    params.push_back(param);
    grads.push_back(grad.scalar_type() == at::kFloat ? grad : grad.to(at::kFloat));
    exp_avgs.push_back(s.exp_avg);
    exp_avg_sqs.push_back(s.exp_avg_sq);
    if (s.decay) decayed.push_back(param);
  }
  if (params.empty()) return absl::OkStatus();
  // Multiplying by exactly 1 changes nothing, so skipping it keeps torch's numbers.
  if (!decayed.empty() && decay_factor != 1.0) at::_foreach_mul_(decayed, decay_factor);
  at::_foreach_mul_(exp_avgs, beta1);
  at::_foreach_add_(exp_avgs, grads, 1 - beta1);
  at::_foreach_mul_(exp_avg_sqs, beta2);
  at::_foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2);
  // eps after the bias-corrected square root, as torch does (not sqrt(v_hat + eps)).
  std::vector<at::Tensor> denoms = at::_foreach_sqrt(exp_avg_sqs);
  at::_foreach_div_(denoms, bias_correction2_sqrt);
  at::_foreach_add_(denoms, options_.eps);
  at::_foreach_addcdiv_(params, exp_avgs, denoms, -step_size);
  for (auto& [param, working] : write_back) param.copy_(working);
  return absl::OkStatus();
}

void AdamW::ZeroGrad() {
  for (Slot& s : slots_) s.param.mutable_grad() = at::Tensor();
}

NamedTensors AdamW::parameters() const {
  NamedTensors out;
  out.reserve(slots_.size());
  for (const Slot& s : slots_) out.emplace_back(s.name, s.param);
  return out;
}

NamedTensors AdamW::StateTensors() const {
  NamedTensors out;
  out.reserve(2 * slots_.size());
  for (const Slot& s : slots_) {
    out.emplace_back(kExpAvgPrefix + s.name, s.exp_avg);
    out.emplace_back(kExpAvgSqPrefix + s.name, s.exp_avg_sq);
  }
  return out;
}

absl::Status AdamW::LoadState(const NamedTensors& state, int64_t step) {
  if (step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer state: step must be >= 0, got ", step));
  }
  // name -> (slot, which moment); then every expected tensor must be found exactly once.
  std::map<std::string, std::pair<Slot*, bool>> expected;
  for (Slot& s : slots_) {
    expected[kExpAvgPrefix + s.name] = {&s, false};
    expected[kExpAvgSqPrefix + s.name] = {&s, true};
  }
  std::vector<std::pair<at::Tensor*, const at::Tensor*>> copies;
  std::set<std::string> found;
  for (const auto& [name, tensor] : state) {
    auto it = expected.find(name);
    if (it == expected.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "optimizer state: tensor '", name, "' matches no trainable parameter of this model"));
    }
    if (!found.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer state: tensor '", name, "' is repeated"));
    }
    Slot& slot = *it->second.first;
    if (!tensor.defined()) {
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer state: tensor '", name, "' is undefined"));
    }
    // float32 only: a narrower dtype would lose the bits a resume must reproduce.
    if (tensor.scalar_type() != at::kFloat) {
      return absl::InvalidArgumentError(absl::StrCat("optimizer state: tensor '", name,
                                                     "' must be float32, got ",
                                                     c10::toString(tensor.scalar_type())));
    }
    if (tensor.sizes() != slot.param.sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "optimizer state: tensor '", name, "' has shape ", ShapeString(tensor.sizes()),
          ", but parameter '", slot.name, "' has shape ", ShapeString(slot.param.sizes())));
    }
    copies.emplace_back(it->second.second ? &slot.exp_avg_sq : &slot.exp_avg, &tensor);
  }
  for (const auto& [name, entry] : expected) {
    if (!found.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat("optimizer state: tensor '", name,
                                                     "' for parameter '", entry.first->name,
                                                     "' is missing"));
    }
  }
  torch::NoGradGuard no_grad;
  // copy_ into the existing tensors keeps them on the parameter's device whatever the source's.
  for (auto& [dst, src] : copies) dst->copy_(*src);
  step_ = step;
  return absl::OkStatus();
}

}  // namespace loratrf::engine
