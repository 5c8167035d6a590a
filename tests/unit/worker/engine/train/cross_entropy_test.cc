// The chunked cross-entropy against libtorch's own cross_entropy: value and gradient, whatever
// the chunking, with ignored rows, without autograd, and for bf16 logits.
#include "worker/engine/train/cross_entropy.h"

#include <torch/torch.h>

#include "gtest/gtest.h"

namespace loratrf::engine {
namespace {

namespace F = torch::nn::functional;

struct Reference {
  double loss;
  torch::Tensor grad;
};

Reference TorchCrossEntropy(const torch::Tensor& logits, const torch::Tensor& targets) {
  torch::Tensor x = logits.detach().to(torch::kFloat32).requires_grad_(true);
  torch::Tensor loss = F::cross_entropy(
      x, targets, F::CrossEntropyFuncOptions().reduction(torch::kSum).ignore_index(kIgnoreIndex));
  loss.backward();
  return {loss.item<double>(), x.grad()};
}

torch::Tensor Targets(int64_t rows, int64_t classes) {
  torch::Tensor targets = torch::randint(classes, {rows}, torch::kLong);
  targets.index_put_({torch::arange(0, rows, 3)}, kIgnoreIndex);  // every third row ignored
  return targets;
}

TEST(CrossEntropySum, MatchesTorchInValueAndGradientForEveryChunking) {
  torch::manual_seed(3);
  const int64_t rows = 37, classes = 11;
  torch::Tensor logits = torch::randn({rows, classes}) * 4;
  torch::Tensor targets = Targets(rows, classes);
  Reference expected = TorchCrossEntropy(logits, targets);
  // One row per chunk, an uneven split, and everything in one chunk.
  for (int64_t chunk_elements : {int64_t{1}, int64_t{5} * classes, int64_t{1} << 24}) {
    torch::Tensor x = logits.clone().requires_grad_(true);
    torch::Tensor loss = CrossEntropySum(x, targets, chunk_elements);
    EXPECT_EQ(loss.scalar_type(), torch::kFloat32);
    EXPECT_NEAR(loss.item<double>(), expected.loss, 1e-5 * expected.loss) << chunk_elements;
    (loss * 0.5).backward();
    EXPECT_TRUE(torch::allclose(x.grad(), expected.grad * 0.5, 1e-5, 1e-6)) << chunk_elements;
    // The input is left as it was (the float32 chunk may share its storage).
    EXPECT_TRUE(torch::equal(x.detach(), logits));
  }
}

TEST(CrossEntropySum, IgnoredRowsGetNoLossAndNoGradient) {
  torch::Tensor logits = torch::randn({4, 6}).requires_grad_(true);
  torch::Tensor targets = torch::full({4}, kIgnoreIndex, torch::kLong);
  torch::Tensor loss = CrossEntropySum(logits, targets);
  EXPECT_EQ(loss.item<double>(), 0.0);
  loss.backward();
  EXPECT_EQ(logits.grad().abs().sum().item<double>(), 0.0);
}

TEST(CrossEntropySum, WithoutAutogradGivesTheSameValue) {
  torch::manual_seed(4);
  torch::Tensor logits = torch::randn({9, 7}).requires_grad_(true);
  torch::Tensor targets = Targets(9, 7);
  const double with_grad = CrossEntropySum(logits, targets).item<double>();
  torch::NoGradGuard no_grad;
  torch::Tensor loss = CrossEntropySum(logits, targets, 7);
  EXPECT_FALSE(loss.requires_grad());
  EXPECT_NEAR(loss.item<double>(), with_grad, 1e-6 * with_grad);
}

TEST(CrossEntropySum, Bf16LogitsGetABf16GradientCloseToTheFloat32One) {
  torch::manual_seed(5);
  torch::Tensor logits = (torch::randn({16, 50}) * 3).to(torch::kBFloat16).requires_grad_(true);
  torch::Tensor targets = Targets(16, 50);
  Reference expected = TorchCrossEntropy(logits, targets);  // on the same (rounded) values
  torch::Tensor loss = CrossEntropySum(logits, targets, 100);
  EXPECT_NEAR(loss.item<double>(), expected.loss, 1e-5 * expected.loss);
  loss.backward();
  EXPECT_EQ(logits.grad().scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::allclose(logits.grad().to(torch::kFloat32), expected.grad, 1e-2, 1e-3));
}

TEST(CrossEntropySum, RejectsMismatchedShapes) {
  EXPECT_THROW(CrossEntropySum(torch::randn({3, 4}), torch::zeros({2}, torch::kLong)), c10::Error);
  EXPECT_THROW(CrossEntropySum(torch::randn({3}), torch::zeros({3}, torch::kLong)), c10::Error);
}

}  // namespace
}  // namespace loratrf::engine
