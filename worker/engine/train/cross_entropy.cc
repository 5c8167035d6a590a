#include "worker/engine/train/cross_entropy.h"

#include <algorithm>

#include <torch/torch.h>

namespace loratrf::engine {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class ChunkedCrossEntropy : public torch::autograd::Function<ChunkedCrossEntropy> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits,
                            const at::Tensor& targets, int64_t chunk_elements, bool with_grad) {
    const int64_t rows = logits.size(0), classes = logits.size(1);
    const int64_t chunk_rows = std::max<int64_t>(1, chunk_elements / std::max<int64_t>(1, classes));
    at::Tensor grad = with_grad ? torch::empty_like(logits) : at::Tensor();
    at::Tensor total = torch::zeros({}, logits.options().dtype(torch::kFloat32));
    for (int64_t start = 0; start < rows; start += chunk_rows) {
      const int64_t length = std::min(chunk_rows, rows - start);
      at::Tensor wide = logits.narrow(0, start, length).to(torch::kFloat32);
      at::Tensor target = targets.narrow(0, start, length);
      at::Tensor valid = target.ne(kIgnoreIndex);
      at::Tensor index = target.masked_fill(valid.logical_not(), 0).unsqueeze(1);
      at::Tensor log_normalizer = torch::logsumexp(wide, 1, /*keepdim=*/true);
      at::Tensor picked = wide.gather(1, index);
      total.add_((log_normalizer - picked).squeeze(1).masked_fill(valid.logical_not(), 0).sum());
      if (with_grad) {
        // d/dlogits of the row's loss: softmax - one-hot; zero for ignored rows.
        at::Tensor g = (wide - log_normalizer).exp_();  // wide may be logits' own storage
        g.scatter_add_(1, index, torch::full_like(picked, -1.0));
        g.mul_(valid.unsqueeze(1));
        grad.narrow(0, start, length).copy_(g);
      }
    }
    if (with_grad) ctx->save_for_backward({grad});
    return total;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    at::Tensor grad = ctx->get_saved_variables()[0];
    at::Tensor scale = grad_outputs[0].to(grad.scalar_type());
    return {grad * scale, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor CrossEntropySum(const at::Tensor& logits, const at::Tensor& targets,
                           int64_t chunk_elements) {
  TORCH_CHECK(logits.dim() == 2 && targets.dim() == 1 && targets.size(0) == logits.size(0),
              "CrossEntropySum: logits [rows, classes] and targets [rows]");
  const bool with_grad = torch::GradMode::is_enabled() && logits.requires_grad();
  return ChunkedCrossEntropy::apply(logits, targets, chunk_elements, with_grad);
}

}  // namespace loratrf::engine
