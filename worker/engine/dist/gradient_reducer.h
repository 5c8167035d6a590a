// Averages the gradients of a job's trainable tensors across its ranks while the backward pass
// is still running: the tensors are grouped into buckets (in reverse order of registration,
// roughly the order backward produces them), each bucket is one flat float32 buffer that the
// gradients live in (a tensor's .grad is a view into it, so autograd accumulates micro-batches
// straight into the buffer), and during the last micro-batch's backward a bucket's all-reduce
// starts as soon as all its gradients are final. Buckets start in index order on every rank, as
// collectives must; FinishStep() waits for them. Frozen tensors are never communicated.
//
// Threading: hooks run on autograd's threads while the training thread is inside backward();
// BeginStep(), SetLastMicroBatch() and FinishStep() are called by the training thread between
// backward passes. One reducer per model; it must outlive every backward pass over it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/dist/communicator.h"

namespace loratrf::engine {

class GradientReducer {
 public:
  // `parameters`: the trainable tensors (float32, requires_grad, all on one device), in the
  // order the model registers them.
  static absl::StatusOr<std::unique_ptr<GradientReducer>> Create(
      Communicator& communicator, const std::vector<at::Tensor>& parameters,
      size_t bucket_bytes = 25u << 20);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Before the first backward of a step: zeroes the buckets and points every .grad at its view.
  void BeginStep();
  // Before each backward of the step: whether it is the step's last (only then do buckets start).
  void SetLastMicroBatch(bool last);
  // After the last backward: starts the buckets not started yet (in order), waits for all, and
  // divides by the world size. A tensor that got no gradient from this rank's backward passes
  // is left with none (as torch leaves .grad None), so the optimizer skips it as it would.
  absl::Status FinishStep();

  size_t bucket_count() const;
  // Buckets of the last step whose all-reduce started inside backward (overlapped), not after.
  size_t buckets_started_in_backward() const;

 private:
  struct State;
  explicit GradientReducer(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace loratrf::engine
