#include "worker/engine/adapters/adaptable_linear.h"

#include <cmath>
#include <regex>

#include <torch/torch.h>

namespace loratrf::engine {

bool IsTargetModule(const AdapterSettings& settings, const std::string& module_path) {
  if (!settings.target_regex.empty()) {
    return std::regex_match(module_path, std::regex(settings.target_regex));
  }
  for (const std::string& target : settings.target_modules) {
    if (module_path == target) return true;
    if (module_path.size() > target.size() &&
        module_path.compare(module_path.size() - target.size(), target.size(), target) == 0 &&
        module_path[module_path.size() - target.size() - 1] == '.') {
      return true;
    }
  }
  return false;
}

bool IsModuleToSave(const AdapterSettings& settings, const std::string& module_path) {
  for (const std::string& name : settings.modules_to_save) {
    if (module_path == name || module_path.rfind(name + ".", 0) == 0) return true;
    // PEFT also matches by suffix ("classifier" matches "model.classifier").
    if (module_path.size() > name.size() + 1 &&
        module_path.compare(module_path.size() - name.size(), name.size(), name) == 0 &&
        module_path[module_path.size() - name.size() - 1] == '.') {
      return true;
    }
  }
  return false;
}

AdaptableLinearImpl::AdaptableLinearImpl(int64_t in_features, int64_t out_features,
                                         bool has_bias, const torch::TensorOptions& options)
    : in_features_(in_features), out_features_(out_features) {
  weight = register_parameter("weight", torch::empty({out_features, in_features}, options),
                              /*requires_grad=*/false);
  if (has_bias) {
    bias = register_parameter("bias", torch::zeros({out_features}, options),
                              /*requires_grad=*/false);
  }
}

void AdaptableLinearImpl::AddAdapter(const AdapterSettings& settings) {
  TORCH_CHECK(!adapter_, "AddAdapter called twice");
  // Adapters are float32 whatever the base weights' dtype, on the base weights' device.
  auto options = torch::TensorOptions().dtype(torch::kFloat32).device(weight.device());
  const int64_t r = settings.rank;
  Adapter a;
  a.settings = settings;
  // lora_A is drawn on the CPU, from the CPU generator, and then moved: the same seed gives the
  // same adapter on every device (a CUDA generator would draw other numbers).
  torch::Tensor initial_A;
  if (weight.device().is_meta()) {
    initial_A = torch::empty({r, in_features_}, options);
  } else {
    torch::NoGradGuard no_grad;
    initial_A = torch::empty({r, in_features_}, torch::kFloat32);
    torch::nn::init::kaiming_uniform_(initial_A, std::sqrt(5.0));
    initial_A = initial_A.to(weight.device());
  }
  // Holder modules give PEFT's names: <path>.lora_A.weight, not <path>.lora_A.
  auto lora_A = register_module("lora_A", std::make_shared<torch::nn::Module>("lora_A"));
  auto lora_B = register_module("lora_B", std::make_shared<torch::nn::Module>("lora_B"));
  a.A = lora_A->register_parameter("weight", initial_A);
  a.B = lora_B->register_parameter("weight", torch::zeros({out_features_, r}, options));
  if (settings.method == AdapterMethod::kLoratrf) {
    if (HasBottleneckFilter(settings.filter)) {
      auto trf_G = register_module("trf_G", std::make_shared<torch::nn::Module>("trf_G"));
      a.G = trf_G->register_parameter("weight", torch::zeros({r, r}, options));
      a.c = trf_G->register_parameter("bias", torch::zeros({r}, options));
    }
    if (HasOutputFilter(settings.filter)) {
      a.u = register_parameter("trf_u", torch::zeros({out_features_}, options));
    }
  }
  adapter_ = std::move(a);
}

torch::Tensor AdaptableLinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = torch::nn::functional::linear(x, weight, bias);
  if (!adapter_) return y;
  const Adapter& a = *adapter_;
  torch::Tensor input = x;
  if (a.settings.dropout > 0 && is_training()) {
    input = torch::dropout(input, a.settings.dropout, /*train=*/true);
  }
  torch::Tensor z = torch::nn::functional::linear(input.to(a.A.scalar_type()), a.A);
  double scale = a.settings.scale();
  if (a.G.defined()) {
    // The filter's factor 2 of g = 2 sigmoid(G z + c) moves into the scale: multiplying by a
    // power of two is exact, so this is the same number with one pass over z fewer.
    z = z * torch::sigmoid(torch::nn::functional::linear(z, a.G, a.c));
    scale *= 2.0;
  }
  if (z.scalar_type() == y.scalar_type()) {
    // y + scale (z Bᵀ) as one GEMM that accumulates into y: no [tokens, out] temporaries for
    // the product, the scaling and the sum.
    y = torch::addmm(y.reshape({-1, out_features_}), z.reshape({-1, z.size(-1)}), a.B.t(),
                     /*beta=*/1, /*alpha=*/scale)
            .view(y.sizes());
  } else {
    // A base weight of another dtype outside autocast: the update in the adapter's dtype, cast.
    y = y + (torch::nn::functional::linear(z, a.B) * scale).to(y.scalar_type());
  }
  if (a.u.defined()) y = y * (2.0 * torch::sigmoid(a.u)).to(y.scalar_type());
  return y;
}

absl::Status AdaptableLinearImpl::Merge() {
  if (!adapter_) return absl::OkStatus();
  const Adapter& a = *adapter_;
  if (a.G.defined()) {
    return absl::FailedPreconditionError(
        "a LoRATRF adapter with a bottleneck filter cannot be merged: the filter depends on each "
        "input (g = 2 sigmoid(G A x + c)), so no fixed weight reproduces it; serve the base "
        "model with the adapter instead");
  }
  torch::NoGradGuard no_grad;
  torch::Tensor delta = torch::matmul(a.B, a.A) * a.settings.scale();
  torch::Tensor merged = weight.to(torch::kFloat32) + delta;
  torch::Tensor new_bias = bias;
  if (a.u.defined()) {
    torch::Tensor gate = 2.0 * torch::sigmoid(a.u);  // [out]
    merged = merged * gate.unsqueeze(1);             // diag(gate) (W0 + s B A)
    if (bias.defined()) new_bias = bias.to(torch::kFloat32) * gate;
  }
  weight.copy_(merged.to(weight.scalar_type()));
  if (new_bias.defined() && bias.defined()) bias.copy_(new_bias.to(bias.scalar_type()));
  unregister_module("lora_A");
  unregister_module("lora_B");
  if (a.u.defined()) {
    // torch::nn::Module has no unregister_parameter; its dict is ours to edit.
    parameters_.erase("trf_u");
  }
  adapter_.reset();
  return absl::OkStatus();
}

}  // namespace loratrf::engine
