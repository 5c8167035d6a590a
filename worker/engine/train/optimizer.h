// AdamW with decoupled weight decay, written out here instead of taken from torch::optim so that
// the update is exactly the one we document (and test against torch.optim.AdamW), and so that
// its state is a flat list of named float32 tensors: a checkpoint stores it with WriteTensors
// and resumes bit-exactly on any libtorch version.
//
// Threading: single-threaded; an AdamW is used by the training loop of one rank, which must not
// touch the parameters or their gradients while Step() runs.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include <ATen/core/Tensor.h>

namespace loratrf::engine {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  // Decoupled (Loshchilov & Hutter): p *= 1 - lr * weight_decay before the Adam update, only
  // for the parameters DecaysWeight() accepts. 0 like the job spec's and HF Trainer's default.
  double weight_decay = 0.0;
};

// False for tensors that weight decay would only harm: biases, normalization weights and the
// LoRATRF filters (trf_G, trf_u), whose identity initialization decay would pull towards zero.
// Matches HF Trainer's exclusion of biases and LayerNorm weights, widened to every norm name
// our models use (`norm`, `input_layernorm`, `LayerNorm`).
bool DecaysWeight(const std::string& name);

// The optimizer:
//   for every trainable parameter p with a defined gradient g, at step t (1-based):
//     p *= 1 - lr * weight_decay                       (decaying parameters only)
//     m  = beta1 * m + (1 - beta1) * g
//     v  = beta2 * v + (1 - beta2) * g * g
//     p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// with the same tensor operations, in the same order, as torch 1.13's _single_tensor_adamw, so
// that a float32 parameter follows torch.optim.AdamW's trajectory (torch >= 2.0 forms m with
// lerp_, which can differ in the last bit). m and v are float32 on the parameter's device; a
// parameter of another dtype is updated in float32 and rounded back.
//
// t is one global count of Step() calls: a parameter that has no gradient at a step is left
// alone (no decay either), but unlike torch's per-parameter counts its bias correction still
// advances. Every trainable tensor of our models gets a gradient every step, so the two agree.
class AdamW {
 public:
  // Keeps the parameters that require grad (the others are never touched) and gives each
  // zeroed moments. Errors: invalid options, an undefined or non-floating-point trainable
  // tensor, a repeated name.
  static absl::StatusOr<AdamW> Create(const NamedTensors& parameters,
                                      const AdamWOptions& options = {});

  AdamW(AdamW&&) = default;
  AdamW& operator=(AdamW&&) = default;
  AdamW(const AdamW&) = delete;
  AdamW& operator=(const AdamW&) = delete;

  // One update with learning rate `lr` (the base rate times the schedule's multiplier for this
  // step). Errors, before anything changes: lr negative or not finite, a sparse gradient or one
  // whose shape differs from its parameter's.
  absl::Status Step(double lr);

  // Drops every gradient (set to undefined, like torch's zero_grad(set_to_none=True)).
  void ZeroGrad();

  // Number of completed Step() calls.
  int64_t step() const { return step_; }

  // The trainable parameters, in the order given to Create().
  NamedTensors parameters() const;

  // "exp_avg/<name>" and "exp_avg_sq/<name>" for every trainable parameter, in order. The
  // tensors alias the live state: write them out before the next Step().
  NamedTensors StateTensors() const;

  // Restores what StateTensors() returned, plus the step count, bit-exactly. The set of names
  // must match exactly, each tensor must be float32 with its parameter's shape; an error names
  // the offending tensor and changes nothing.
  absl::Status LoadState(const NamedTensors& state, int64_t step);

 private:
  struct Slot {
    std::string name;
    at::Tensor param;
    at::Tensor exp_avg;     // m, float32
    at::Tensor exp_avg_sq;  // v, float32
    bool decay = true;
  };
  AdamW(std::vector<Slot> slots, const AdamWOptions& options)
      : slots_(std::move(slots)), options_(options) {}

  std::vector<Slot> slots_;
  AdamWOptions options_;
  int64_t step_ = 0;
};

}  // namespace loratrf::engine
