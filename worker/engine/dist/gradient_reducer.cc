#include "worker/engine/dist/gradient_reducer.h"

#include <functional>
#include <mutex>
#include <utility>

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"

namespace loratrf::engine {

struct GradientReducer::State {
  struct Slot {
    at::Tensor parameter;
    at::Tensor view;  // the parameter's gradient inside its bucket's buffer
    size_t bucket = 0;
    bool got_gradient = false;
    std::shared_ptr<torch::autograd::Node> accumulator;  // holds the hook (autograd keeps it weakly)
    uintptr_t hook = 0;
  };
  struct Bucket {
    at::Tensor buffer;  // flat float32
    size_t slots = 0;
    size_t waiting = 0;  // gradients not yet final in the last micro-batch
    bool started = false;
    bool started_in_backward = false;
    std::unique_ptr<PendingCollective> pending;
  };

  Communicator* communicator = nullptr;
  std::vector<Slot> slots;
  std::vector<Bucket> buckets;
  std::mutex mutex;  // hooks may run on autograd's device threads
  bool last_micro_batch = false;
  bool in_backward_hooks = false;
  size_t next_to_start = 0;
  absl::Status error;  // the first failure of a start made inside backward

  // Starts every bucket from next_to_start on that is ready, in index order.
  void StartReady(bool all) {
    while (next_to_start < buckets.size()) {
      Bucket& bucket = buckets[next_to_start];
      if (!all && bucket.waiting > 0) return;
      bucket.started = true;
      bucket.started_in_backward = !all;
      ++next_to_start;
      if (!error.ok()) continue;  // a collective already failed: the step fails anyway
      absl::StatusOr<std::unique_ptr<PendingCollective>> pending =
          communicator->StartAllReduceSum(bucket.buffer);
      if (pending.ok()) {
        bucket.pending = std::move(*pending);
      } else {
        error = pending.status();
      }
    }
  }

  void GradientFinal(size_t index) {
    std::lock_guard<std::mutex> lock(mutex);
    Slot& slot = slots[index];
    slot.got_gradient = true;
    // Autograd adds a micro-batch's gradient into .grad in place, which is the bucket's view;
    // should it ever have replaced the tensor instead, the value is moved into the bucket.
    at::Tensor grad = slot.parameter.grad();
    if (!grad.defined() || !grad.is_same(slot.view)) {
      torch::NoGradGuard no_grad;
      if (grad.defined()) slot.view.copy_(grad);
      slot.parameter.mutable_grad() = slot.view;
    }
    if (!last_micro_batch) return;
    Bucket& bucket = buckets[slot.bucket];
    if (bucket.waiting > 0 && --bucket.waiting == 0) StartReady(/*all=*/false);
  }
};

namespace {

// Runs after a leaf's AccumulateGrad: its .grad then holds this backward's contribution.
class AccumulatedHook : public torch::autograd::FunctionPostHook {
 public:
  explicit AccumulatedHook(std::function<void()> on_accumulated)
      : on_accumulated_(std::move(on_accumulated)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    on_accumulated_();
    return outputs;
  }

 private:
  std::function<void()> on_accumulated_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GradientReducer>> GradientReducer::Create(
    Communicator& communicator, const std::vector<at::Tensor>& parameters, size_t bucket_bytes) {
  auto state = std::make_unique<State>();
  state->communicator = &communicator;
  if (parameters.empty()) return absl::InvalidArgumentError("gradient reducer: no trainable tensors");
  const at::Device device = parameters.front().device();
  // Reverse registration order: the last layers' gradients come first out of backward.
  std::vector<int64_t> bucket_sizes;
  size_t bytes = 0;  // in the bucket being filled
  for (auto it = parameters.rbegin(); it != parameters.rend(); ++it) {
    const at::Tensor& p = *it;
    if (!p.requires_grad() || p.scalar_type() != at::kFloat || p.device() != device) {
      return absl::InvalidArgumentError(
          "gradient reducer: every tensor must be a trainable float32 tensor on one device");
    }
    const size_t size = static_cast<size_t>(p.numel()) * sizeof(float);
    // A new bucket when this tensor would overflow the current one (a tensor larger than a
    // bucket gets one of its own).
    if (bucket_sizes.empty() || (bytes > 0 && bytes + size > bucket_bytes)) {
      bucket_sizes.push_back(0);
      bytes = 0;
    }
    State::Slot slot;
    slot.parameter = p;
    slot.bucket = bucket_sizes.size() - 1;
    bucket_sizes.back() += p.numel();
    bytes += size;
    state->slots.push_back(std::move(slot));
  }
  state->buckets.resize(bucket_sizes.size());
  std::vector<int64_t> offsets(bucket_sizes.size(), 0);
  for (size_t b = 0; b < bucket_sizes.size(); ++b) {
    state->buckets[b].buffer = torch::zeros({bucket_sizes[b]}, torch::dtype(torch::kFloat32).device(device));
  }
  for (size_t i = 0; i < state->slots.size(); ++i) {
    State::Slot& slot = state->slots[i];
    State::Bucket& bucket = state->buckets[slot.bucket];
    slot.view = bucket.buffer.narrow(0, offsets[slot.bucket], slot.parameter.numel())
                    .view(slot.parameter.sizes());
    offsets[slot.bucket] += slot.parameter.numel();
    ++bucket.slots;
    slot.accumulator = torch::autograd::impl::grad_accumulator(slot.parameter);
    if (!slot.accumulator) {
      return absl::InvalidArgumentError("gradient reducer: a tensor is not a leaf of autograd");
    }
    State* raw = state.get();
    slot.hook = slot.accumulator->add_post_hook(
        std::make_unique<AccumulatedHook>([raw, i] { raw->GradientFinal(i); }));
  }
  return std::unique_ptr<GradientReducer>(new GradientReducer(std::move(state)));
}

GradientReducer::GradientReducer(std::unique_ptr<State> state) : state_(std::move(state)) {}

GradientReducer::~GradientReducer() {
  for (State::Slot& slot : state_->slots) slot.accumulator->del_post_hook(slot.hook);
}

void GradientReducer::BeginStep() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  torch::NoGradGuard no_grad;
  for (State::Bucket& bucket : state_->buckets) {
    bucket.buffer.zero_();
    bucket.waiting = bucket.slots;
    bucket.started = bucket.started_in_backward = false;
    bucket.pending.reset();
  }
  for (State::Slot& slot : state_->slots) {
    slot.got_gradient = false;
    slot.parameter.mutable_grad() = slot.view;
  }
  state_->next_to_start = 0;
  state_->last_micro_batch = false;
  state_->error = absl::OkStatus();
}

void GradientReducer::SetLastMicroBatch(bool last) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->last_micro_batch = last;
}

absl::Status GradientReducer::FinishStep() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->StartReady(/*all=*/true);
  absl::Status status = state_->error;
  for (State::Bucket& bucket : state_->buckets) {
    if (bucket.pending) {
      absl::Status waited = bucket.pending->Wait();
      if (status.ok()) status = waited;
      bucket.pending.reset();
    }
  }
  if (!status.ok()) return status;
  torch::NoGradGuard no_grad;
  const double world = static_cast<double>(state_->communicator->world_size());
  for (State::Bucket& bucket : state_->buckets) bucket.buffer.div_(world);
  for (State::Slot& slot : state_->slots) {
    if (!slot.got_gradient) slot.parameter.mutable_grad() = at::Tensor();
  }
  return absl::OkStatus();
}

size_t GradientReducer::bucket_count() const { return state_->buckets.size(); }

size_t GradientReducer::buckets_started_in_backward() const {
  size_t count = 0;
  for (const State::Bucket& bucket : state_->buckets) count += bucket.started_in_backward;
  return count;
}

}  // namespace loratrf::engine
