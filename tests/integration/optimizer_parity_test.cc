// Our AdamW and gradient clipping against torch.optim.AdamW and torch.nn.utils.clip_grad_norm_
// run by Debian's Python (python3-torch) on the same float32 values: a decaying and a
// non-decaying parameter group, a cosine schedule with warmup, clipping before every step.
// Numbers cross the process boundary as hex floats, so nothing is lost on the way.
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include <torch/torch.h>

#include "gtest/gtest.h"
#include "tests/integration/subprocess.h"
#include "worker/engine/train/grad_clip.h"
#include "worker/engine/train/lr_schedule.h"
#include "worker/engine/train/optimizer.h"

namespace loratrf::engine {
namespace {

using ::loratrf::testing::kPython;
using ::loratrf::testing::ProcessResult;
using ::loratrf::testing::RunProcess;

std::string Hex(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", x);
  return buf;
}

// A Python expression for exactly `x`.
std::string PyFloat(double x) { return "float.fromhex('" + Hex(x) + "')"; }

// A Python list literal of float.fromhex(...) values.
std::string PyList(const torch::Tensor& t) {
  std::string out = "[";
  torch::Tensor flat = t.to(torch::kFloat64).contiguous().view(-1);
  for (int64_t i = 0; i < flat.numel(); ++i) {
    out += "float.fromhex('" + Hex(flat[i].item<double>()) + "'),";
  }
  return out + "]";
}

TEST(OptimizerParity, AdamWAndClippingMatchTorchWithinOneMillionth) {
  constexpr int kSteps = 8;
  constexpr double kMaxNorm = 0.5, kWeightDecay = 0.1;
  torch::manual_seed(5);
  NamedTensors params = {{"layer.lora_A.weight", torch::randn({3, 4}).set_requires_grad(true)},
                         {"layer.trf_G.bias", torch::randn({4}).set_requires_grad(true)}};
  std::vector<std::vector<torch::Tensor>> grads;
  for (int s = 0; s < kSteps; ++s) grads.push_back({torch::randn({3, 4}), torch::randn({4}) * 3});
  auto schedule = LrSchedule::Create(LrScheduleKind::kCosine, 1e-2, kSteps, 0.25);
  ASSERT_TRUE(schedule.ok());

  std::ostringstream py;
  py << "import torch\n"
     << "torch.set_num_threads(1)\n"
     << "w = torch.tensor(" << PyList(params[0].second) << ", dtype=torch.float32).reshape(3, 4)"
     << ".requires_grad_()\n"
     << "b = torch.tensor(" << PyList(params[1].second)
     << ", dtype=torch.float32).requires_grad_()\n"
     << "opt = torch.optim.AdamW([{'params': [w], 'weight_decay': " << PyFloat(kWeightDecay) << "},"
     << " {'params': [b], 'weight_decay': 0.0}], lr=1.0, betas=(0.9, 0.999), eps=1e-8)\n"
     << "steps = [\n";
  for (int s = 0; s < kSteps; ++s) {
    py << "  (float.fromhex('" << Hex(schedule->LearningRate(s)) << "'), " << PyList(grads[s][0])
       << ", " << PyList(grads[s][1]) << "),\n";
  }
  py << "]\n"
     << "norms = []\n"
     << "for lr, gw, gb in steps:\n"
     << "  for g in opt.param_groups: g['lr'] = lr\n"
     << "  w.grad = torch.tensor(gw, dtype=torch.float32).reshape(3, 4)\n"
     << "  b.grad = torch.tensor(gb, dtype=torch.float32)\n"
     << "  norms.append(float(torch.nn.utils.clip_grad_norm_([w, b], " << PyFloat(kMaxNorm)
     << ")))\n"
     << "  opt.step()\n"
     << "print(' '.join(x.hex() for x in norms))\n"
     << "print(' '.join(x.hex() for x in w.detach().reshape(-1).tolist() + b.detach().tolist()))\n"
     << "print('.'.join(torch.__version__.split('.')[:2]))\n";

  ProcessResult r = RunProcess({kPython, "-c", py.str()}, "", 120);
  ASSERT_EQ(r.exit_code, 0) << r.err;

  AdamWOptions options;
  options.weight_decay = kWeightDecay;
  auto opt = AdamW::Create(params, options);
  ASSERT_TRUE(opt.ok()) << opt.status();
  std::vector<double> norms;
  for (int s = 0; s < kSteps; ++s) {
    params[0].second.mutable_grad() = grads[s][0].clone();
    params[1].second.mutable_grad() = grads[s][1].clone();
    auto norm = ClipGradNorm(params, kMaxNorm);
    ASSERT_TRUE(norm.ok());
    norms.push_back(*norm);
    ASSERT_TRUE(opt->Step(schedule->LearningRate(s)).ok());
  }

  std::istringstream out(r.out);
  std::string line;
  ASSERT_TRUE(std::getline(out, line)) << r.out;
  std::istringstream norm_line(line);
  int bit_exact = 0, total = 0;
  for (int s = 0; s < kSteps; ++s) {
    std::string hex;
    ASSERT_TRUE(norm_line >> hex);
    const double expected = std::strtod(hex.c_str(), nullptr);
    EXPECT_NEAR(norms[s], expected, 1e-6 * std::max(1.0, std::abs(expected))) << "norm, step " << s;
    bit_exact += norms[s] == expected;
    ++total;
  }
  ASSERT_TRUE(std::getline(out, line)) << r.out;
  std::istringstream value_line(line);
  torch::Tensor ours =
      torch::cat({params[0].second.detach().reshape(-1), params[1].second.detach()})
          .to(torch::kFloat64);
  for (int64_t i = 0; i < ours.numel(); ++i) {
    std::string hex;
    ASSERT_TRUE(value_line >> hex);
    const double expected = std::strtod(hex.c_str(), nullptr);
    EXPECT_NEAR(ours[i].item<double>(), expected, 1e-6) << "parameter element " << i;
    bit_exact += ours[i].item<double>() == expected;
    ++total;
  }
  // Same ops in the same order: with the same libtorch release on both sides (multi-tensor ops
  // or not) these agree to the bit.
  std::printf("bit-identical to torch: %d of %d values\n", bit_exact, total);
  ASSERT_TRUE(std::getline(out, line)) << r.out;
  const std::string ours_version =
      std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR);
  if (line == ours_version) {
    EXPECT_EQ(bit_exact, total) << "torch " << line << " on both sides";
  } else {
    std::printf("python has torch %s, this build %s: no bit-for-bit comparison\n", line.c_str(),
                ours_version.c_str());
  }
}

}  // namespace
}  // namespace loratrf::engine
