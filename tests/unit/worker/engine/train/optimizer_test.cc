// The trainer's numerics: AdamW against the update written out by hand in double, its parameter
// groups and checkpoint round trip; the learning-rate schedules and gradient clipping against
// hand-computed values.
#include <cmath>
#include <filesystem>
#include <limits>

#include <torch/torch.h>

#include "worker/engine/checkpoint/safetensors.h"
#include "worker/engine/checkpoint/tensor_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/engine/train/grad_clip.h"
#include "worker/engine/train/lr_schedule.h"
#include "worker/engine/train/optimizer.h"

namespace loratrf::engine {
namespace {

using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------------
// AdamW

// A 2-element parameter's trajectory, the update spelled out in double (see optimizer.h).
struct HandAdamW {
  double p[2];
  double m[2] = {0, 0};
  double v[2] = {0, 0};
  int t = 0;
  void Step(const double g[2], double lr, double weight_decay) {
    const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    ++t;
    for (int i = 0; i < 2; ++i) {
      p[i] *= 1 - lr * weight_decay;
      m[i] = beta1 * m[i] + (1 - beta1) * g[i];
      v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
      const double m_hat = m[i] / (1 - std::pow(beta1, t));
      const double v_hat_sqrt = std::sqrt(v[i]) / std::sqrt(1 - std::pow(beta2, t));
      p[i] -= lr * m_hat / (v_hat_sqrt + eps);
    }
  }
};

// Three steps with changing gradients (one changes sign) and learning rates.
constexpr double kGrads[3][2] = {{0.5, -1.0}, {0.25, 2.0}, {-0.5, 0.125}};
constexpr double kLrs[3] = {0.1, 0.05, 0.01};

torch::Tensor Trainable(std::vector<float> values) {
  return torch::tensor(values).set_requires_grad(true);
}

void SetGrad(torch::Tensor& p, torch::Tensor g) { p.mutable_grad() = std::move(g); }

torch::Tensor GradAt(int step) {
  return torch::tensor({static_cast<float>(kGrads[step][0]), static_cast<float>(kGrads[step][1])});
}

// Runs the 3 steps on a parameter called `name` and compares with the hand computation.
void ExpectMatchesHand(const std::string& name, double weight_decay, double hand_decay) {
  torch::Tensor p = Trainable({1.0f, -2.0f});
  AdamWOptions options;
  options.weight_decay = weight_decay;
  auto opt = AdamW::Create({{name, p}}, options);
  ASSERT_TRUE(opt.ok()) << opt.status();
  HandAdamW hand{{1.0, -2.0}};
  for (int s = 0; s < 3; ++s) {
    SetGrad(p, GradAt(s));
    ASSERT_TRUE(opt->Step(kLrs[s]).ok());
    hand.Step(kGrads[s], kLrs[s], hand_decay);
    for (int i = 0; i < 2; ++i) {
      // float32 arithmetic against double: a few ulps of values near 1.
      EXPECT_NEAR(p[i].item<double>(), hand.p[i], 1e-6) << name << " step " << s << " elem " << i;
    }
  }
  EXPECT_EQ(opt->step(), 3);
  NamedTensors state = opt->StateTensors();
  ASSERT_EQ(state.size(), 2u);
  EXPECT_EQ(state[0].first, "exp_avg/" + name);
  EXPECT_EQ(state[1].first, "exp_avg_sq/" + name);
  for (int i = 0; i < 2; ++i) {
    EXPECT_NEAR(state[0].second[i].item<double>(), hand.m[i], 1e-7);
    EXPECT_NEAR(state[1].second[i].item<double>(), hand.v[i], 1e-7);
  }
}

TEST(AdamW, ThreeStepsMatchTheUpdateWrittenOutByHand) {
  ExpectMatchesHand("model.layers.0.self_attn.q_proj.lora_A.weight", 0.0, 0.0);
}

TEST(AdamW, DecoupledWeightDecayMatchesHand) {
  ExpectMatchesHand("model.layers.0.self_attn.q_proj.lora_B.weight", 0.1, 0.1);
  // Large enough to matter: without decay the result differs by far more than the tolerance.
  HandAdamW with{{1.0, -2.0}}, without{{1.0, -2.0}};
  for (int s = 0; s < 3; ++s) {
    with.Step(kGrads[s], kLrs[s], 0.1);
    without.Step(kGrads[s], kLrs[s], 0.0);
  }
  EXPECT_GT(std::abs(with.p[1] - without.p[1]), 1e-3);
}

TEST(AdamW, NoWeightDecayOnBiasesNormsAndFilters) {
  for (const char* name :
       {"classifier.bias", "model.norm.weight", "model.layers.3.post_attention_layernorm.weight",
        "bert.encoder.layer.0.attention.output.LayerNorm.weight",
        "model.layers.0.mlp.down_proj.trf_G.weight", "model.layers.0.mlp.down_proj.trf_G.bias",
        "model.layers.0.self_attn.v_proj.trf_u"}) {
    SCOPED_TRACE(name);
    EXPECT_FALSE(DecaysWeight(name));
    ExpectMatchesHand(name, 0.1, 0.0);
  }
  for (const char* name :
       {"model.layers.0.self_attn.q_proj.lora_A.weight",
        "model.layers.0.self_attn.q_proj.lora_B.weight", "model.embed_tokens.weight",
        "lm_head.weight", "score.weight", "bert.encoder.layer.0.attention.self.query.weight"}) {
    EXPECT_TRUE(DecaysWeight(name)) << name;
  }
}

TEST(AdamW, FrozenAndGradlessParametersAreUntouched) {
  torch::manual_seed(3);
  torch::Tensor frozen = torch::randn({3});  // requires_grad false
  torch::Tensor idle = torch::randn({2}).set_requires_grad(true);
  torch::Tensor active = torch::randn({2}).set_requires_grad(true);
  const torch::Tensor frozen_before = frozen.clone(), idle_before = idle.clone();
  AdamWOptions options;
  options.weight_decay = 0.5;  // would move `idle` if decay were applied without a gradient
  auto opt = AdamW::Create(
      {{"frozen.weight", frozen}, {"idle.weight", idle}, {"active.weight", active}}, options);
  ASSERT_TRUE(opt.ok()) << opt.status();
  // A frozen gradient is ignored too (only trainable tensors get state).
  frozen.mutable_grad() = torch::ones({3});
  SetGrad(active, torch::ones({2}));
  const torch::Tensor active_before = active.clone();
  ASSERT_TRUE(opt->Step(0.1).ok());
  EXPECT_TRUE(torch::equal(frozen, frozen_before));
  EXPECT_TRUE(torch::equal(idle, idle_before));
  EXPECT_FALSE(torch::equal(active, active_before));
  NamedTensors state = opt->StateTensors();
  ASSERT_EQ(state.size(), 4u);  // idle and active, two moments each; nothing for frozen
  EXPECT_EQ(state[0].first, "exp_avg/idle.weight");
  EXPECT_EQ(state[2].first, "exp_avg/active.weight");
  EXPECT_EQ(state[0].second.abs().sum().item<double>(), 0.0);
  EXPECT_EQ(state[1].second.abs().sum().item<double>(), 0.0);
  ASSERT_EQ(opt->parameters().size(), 2u);

  opt->ZeroGrad();
  EXPECT_FALSE(active.grad().defined());
  const torch::Tensor after_first = active.clone();
  ASSERT_TRUE(opt->Step(0.1).ok());  // no gradients at all: nothing moves
  EXPECT_TRUE(torch::equal(active, after_first));
  EXPECT_EQ(opt->step(), 2);
}

TEST(AdamW, StateTensorsAreFloat32OnTheParameterDevice) {
  torch::Tensor p = torch::zeros({2, 3}, torch::kFloat64).set_requires_grad(true);
  auto opt = AdamW::Create({{"w", p}});
  ASSERT_TRUE(opt.ok()) << opt.status();
  for (const auto& [name, t] : opt->StateTensors()) {
    EXPECT_EQ(t.scalar_type(), torch::kFloat32) << name;
    EXPECT_EQ(t.device(), p.device()) << name;
    EXPECT_EQ(t.sizes(), p.sizes()) << name;
  }
}

TEST(AdamW, Bf16ParameterIsUpdatedInFloat32AndRoundedBack) {
  torch::Tensor p32 = Trainable({1.0f, -2.0f});
  torch::Tensor p16 = torch::tensor({1.0f, -2.0f}, torch::kBFloat16).set_requires_grad(true);
  auto opt32 = AdamW::Create({{"w", p32}});
  auto opt16 = AdamW::Create({{"w", p16}});
  ASSERT_TRUE(opt32.ok() && opt16.ok());
  SetGrad(p32, GradAt(0));
  SetGrad(p16, GradAt(0).to(torch::kBFloat16));
  ASSERT_TRUE(opt32->Step(0.1).ok());
  ASSERT_TRUE(opt16->Step(0.1).ok());
  EXPECT_EQ(p16.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(p16, p32.to(torch::kBFloat16)));
}

// Seeded gradients for a run of `steps` on the two tensors of MakeParams().
std::vector<std::vector<torch::Tensor>> MakeGrads(int steps) {
  torch::manual_seed(11);
  std::vector<std::vector<torch::Tensor>> grads;
  for (int s = 0; s < steps; ++s) grads.push_back({torch::randn({4, 3}), torch::randn({3})});
  return grads;
}

NamedTensors MakeParams() {
  torch::manual_seed(7);
  return {{"layer.lora_A.weight", torch::randn({4, 3}).set_requires_grad(true)},
          {"layer.bias", torch::randn({3}).set_requires_grad(true)}};
}

void RunSteps(AdamW& opt, NamedTensors& params,
              const std::vector<std::vector<torch::Tensor>>& grads, int from, int to) {
  for (int s = from; s < to; ++s) {
    for (size_t i = 0; i < params.size(); ++i) SetGrad(params[i].second, grads[s][i].clone());
    ASSERT_TRUE(opt.Step(1e-2 * (1 + s)).ok());
  }
}

TEST(AdamW, SaveLoadContinueEqualsUninterruptedBitExact) {
  constexpr int kSteps = 6, kSplit = 2;
  const auto grads = MakeGrads(kSteps);
  AdamWOptions options;
  options.weight_decay = 0.05;

  NamedTensors straight = MakeParams();
  auto opt = AdamW::Create(straight, options);
  ASSERT_TRUE(opt.ok()) << opt.status();
  RunSteps(*opt, straight, grads, 0, kSteps);

  // Interrupted: run to kSplit, write params and optimizer state through safetensors (the
  // checkpoint format), then rebuild everything from the files alone.
  const std::string dir = ::testing::TempDir() + "/optimizer_test_resume";
  std::filesystem::create_directories(dir);
  int64_t saved_step = 0;
  {
    NamedTensors first = MakeParams();
    auto opt1 = AdamW::Create(first, options);
    ASSERT_TRUE(opt1.ok());
    RunSteps(*opt1, first, grads, 0, kSplit);
    ASSERT_TRUE(WriteTensors(dir + "/params.safetensors", first).ok());
    ASSERT_TRUE(WriteTensors(dir + "/optimizer.safetensors", opt1->StateTensors()).ok());
    saved_step = opt1->step();
  }
  auto read_all = [](const std::string& path) {
    NamedTensors out;
    auto file = SafetensorsFile::Open(path);
    EXPECT_TRUE(file.ok()) << file.status();
    if (!file.ok()) return out;
    for (const TensorEntry& e : (*file)->tensors())
      out.emplace_back(e.name, *ReadTensor(**file, e));
    return out;
  };
  NamedTensors resumed;
  for (auto& [name, t] : read_all(dir + "/params.safetensors")) {
    resumed.emplace_back(name, t.set_requires_grad(true));
  }
  // The file's order is not the model's: put the parameters back in the model's order.
  std::sort(resumed.begin(), resumed.end(), [](const auto& a, const auto& b) {
    return a.first > b.first;  // "layer.lora_A.weight" before "layer.bias"
  });
  ASSERT_EQ(resumed[0].first, "layer.lora_A.weight");
  auto opt2 = AdamW::Create(resumed, options);
  ASSERT_TRUE(opt2.ok());
  ASSERT_TRUE(opt2->LoadState(read_all(dir + "/optimizer.safetensors"), saved_step).ok());
  EXPECT_EQ(opt2->step(), kSplit);
  RunSteps(*opt2, resumed, grads, kSplit, kSteps);

  for (size_t i = 0; i < straight.size(); ++i) {
    EXPECT_TRUE(torch::equal(straight[i].second, resumed[i].second)) << straight[i].first;
  }
  NamedTensors a = opt->StateTensors(), b = opt2->StateTensors();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  }
  std::filesystem::remove_all(dir);
}

TEST(AdamW, LoadStateRejectsMismatchesNamingTheTensorAndChangesNothing) {
  NamedTensors params = MakeParams();
  auto opt = AdamW::Create(params);
  ASSERT_TRUE(opt.ok());
  RunSteps(*opt, params, MakeGrads(1), 0, 1);
  const NamedTensors good = opt->StateTensors();
  NamedTensors before;
  for (const auto& [n, t] : good) before.emplace_back(n, t.clone());

  auto expect_error = [&](NamedTensors state, const std::string& fragment) {
    absl::Status s = opt->LoadState(state, 5);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << fragment;
    EXPECT_THAT(std::string(s.message()), HasSubstr(fragment));
    EXPECT_EQ(opt->step(), 1);
    NamedTensors now = opt->StateTensors();
    for (size_t i = 0; i < now.size(); ++i)
      EXPECT_TRUE(torch::equal(now[i].second, before[i].second));
  };
  auto with_zeros = [&] {
    NamedTensors z;
    for (const auto& [n, t] : good) z.emplace_back(n, torch::zeros_like(t));
    return z;
  };

  NamedTensors missing = with_zeros();
  missing.pop_back();
  expect_error(missing, "'exp_avg_sq/layer.bias' for parameter 'layer.bias' is missing");

  NamedTensors shape = with_zeros();
  shape[0].second = torch::zeros({3, 4});
  expect_error(shape, "parameter 'layer.lora_A.weight' has shape [4, 3]");

  NamedTensors dtype = with_zeros();
  dtype[1].second = dtype[1].second.to(torch::kBFloat16);
  expect_error(dtype, "'exp_avg_sq/layer.lora_A.weight' must be float32");

  NamedTensors unknown = with_zeros();
  unknown.emplace_back("exp_avg/layer.lora_B.weight", torch::zeros({3}));
  expect_error(unknown, "'exp_avg/layer.lora_B.weight' matches no trainable parameter");

  NamedTensors repeated = with_zeros();
  repeated.push_back(repeated[0]);
  expect_error(repeated, "is repeated");

  EXPECT_FALSE(opt->LoadState(with_zeros(), -1).ok());
  EXPECT_TRUE(opt->LoadState(with_zeros(), 0).ok());
  EXPECT_EQ(opt->step(), 0);
}

TEST(AdamW, RejectsBadOptionsNamesAndSteps) {
  torch::Tensor p = Trainable({1.0f});
  AdamWOptions bad;
  bad.beta1 = 1.0;
  EXPECT_FALSE(AdamW::Create({{"w", p}}, bad).ok());
  bad = {};
  bad.eps = -1;
  EXPECT_FALSE(AdamW::Create({{"w", p}}, bad).ok());
  bad = {};
  bad.weight_decay = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(AdamW::Create({{"w", p}}, bad).ok());
  auto repeated = AdamW::Create({{"w", p}, {"w", Trainable({2.0f})}});
  EXPECT_THAT(std::string(repeated.status().message()), HasSubstr("'w' is repeated"));
  EXPECT_FALSE(AdamW::Create({{"w", torch::Tensor()}}).ok());

  auto opt = AdamW::Create({{"w", p}});
  ASSERT_TRUE(opt.ok());
  SetGrad(p, torch::ones({1}));
  EXPECT_FALSE(opt->Step(-1e-3).ok());
  EXPECT_FALSE(opt->Step(std::numeric_limits<double>::infinity()).ok());
  SetGrad(p, torch::ones({2}));
  absl::Status s = opt->Step(1e-3);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("gradient of 'w' has shape [2], parameter has [1]"));
  EXPECT_EQ(opt->step(), 0);
  EXPECT_EQ(p.item<float>(), 1.0f);
}

// ---------------------------------------------------------------------------------------------
// Learning-rate schedules (transformers' lr_lambda formulas, evaluated by hand)

LrSchedule Schedule(LrScheduleKind kind, int64_t total, double ratio, double base_lr = 1.0) {
  auto s = LrSchedule::Create(kind, base_lr, total, ratio);
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

TEST(LrSchedule, WarmupStepsAreTheCeilingOfRatioTimesTotal) {
  EXPECT_EQ(LrSchedule::WarmupSteps(0.2, 10), 2);
  EXPECT_EQ(LrSchedule::WarmupSteps(0.06, 100), 6);
  EXPECT_EQ(LrSchedule::WarmupSteps(0.06, 50), 3);
  EXPECT_EQ(LrSchedule::WarmupSteps(0.05, 10), 1);  // 0.5 rounds up
  EXPECT_EQ(LrSchedule::WarmupSteps(0.1, 3), 1);    // 0.30000000000000004
  // 100 * 0.07 is 7.000000000000001 in double, so Python's math.ceil gives 8; so do we.
  EXPECT_EQ(LrSchedule::WarmupSteps(0.07, 100), 8);
  EXPECT_EQ(LrSchedule::WarmupSteps(0.0, 10), 0);
  EXPECT_EQ(LrSchedule::WarmupSteps(1.0, 10), 10);
  EXPECT_EQ(Schedule(LrScheduleKind::kCosine, 100, 0.06).warmup_steps(), 6);
}

TEST(LrSchedule, Constant) {
  LrSchedule s = Schedule(LrScheduleKind::kConstant, 10, 0.2);  // warmup 2
  EXPECT_EQ(s.Multiplier(0), 0.0);
  EXPECT_EQ(s.Multiplier(1), 0.5);
  EXPECT_EQ(s.Multiplier(2), 1.0);
  EXPECT_EQ(s.Multiplier(9), 1.0);
  EXPECT_EQ(s.Multiplier(10), 1.0);
  EXPECT_EQ(Schedule(LrScheduleKind::kConstant, 10, 0.0).Multiplier(0), 1.0);
}

TEST(LrSchedule, Linear) {
  LrSchedule s = Schedule(LrScheduleKind::kLinear, 10, 0.2, 3e-4);  // warmup 2, decay over 8
  EXPECT_EQ(s.Multiplier(0), 0.0);
  EXPECT_EQ(s.Multiplier(1), 0.5);
  EXPECT_EQ(s.Multiplier(2), 1.0);        // (10 - 2) / 8
  EXPECT_EQ(s.Multiplier(6), 0.5);        // midpoint of the decay
  EXPECT_EQ(s.Multiplier(9), 1.0 / 8.0);  // last update
  EXPECT_EQ(s.Multiplier(10), 0.0);
  EXPECT_EQ(s.Multiplier(12), 0.0);  // clamped at 0
  EXPECT_EQ(s.LearningRate(6), 3e-4 * 0.5);
  EXPECT_EQ(s.LearningRate(1), 3e-4 * 0.5);
  // No warmup: the first update already uses the full rate.
  EXPECT_EQ(Schedule(LrScheduleKind::kLinear, 10, 0.0).Multiplier(0), 1.0);
  EXPECT_EQ(Schedule(LrScheduleKind::kLinear, 10, 0.0).Multiplier(5), 0.5);
  // All warmup: rises to (T-1)/T, then 0 at T (max(1, T - W) keeps the division defined).
  LrSchedule all = Schedule(LrScheduleKind::kLinear, 4, 1.0);
  EXPECT_EQ(all.Multiplier(3), 0.75);
  EXPECT_EQ(all.Multiplier(4), 0.0);
}

TEST(LrSchedule, Cosine) {
  LrSchedule s = Schedule(LrScheduleKind::kCosine, 10, 0.2);  // warmup 2, decay over 8
  const double pi = std::acos(-1.0);
  EXPECT_EQ(s.Multiplier(0), 0.0);
  EXPECT_EQ(s.Multiplier(1), 0.5);
  EXPECT_EQ(s.Multiplier(2), 1.0);
  EXPECT_NEAR(s.Multiplier(4), 0.5 * (1 + std::cos(pi * 0.25)), 1e-15);  // 0.5 + sqrt(2)/4
  EXPECT_NEAR(s.Multiplier(4), 0.5 + std::sqrt(2.0) / 4, 1e-15);
  EXPECT_NEAR(s.Multiplier(6), 0.5, 1e-15);  // midpoint: cos(pi/2) = 0
  EXPECT_NEAR(s.Multiplier(9), 0.5 * (1 + std::cos(pi * 7.0 / 8.0)), 1e-15);
  EXPECT_NEAR(s.Multiplier(10), 0.0, 1e-15);  // end: cos(pi) = -1
  EXPECT_GE(s.Multiplier(10), 0.0);
  // Monotone after the warmup.
  for (int64_t step = 2; step < 10; ++step) EXPECT_GT(s.Multiplier(step), s.Multiplier(step + 1));
  // Warmup of 1 step: the first update gets 0, the second the full rate.
  LrSchedule one = Schedule(LrScheduleKind::kCosine, 10, 0.05);
  EXPECT_EQ(one.Multiplier(0), 0.0);
  EXPECT_EQ(one.Multiplier(1), 1.0);
}

TEST(LrSchedule, RejectsBadArguments) {
  EXPECT_FALSE(LrSchedule::Create(LrScheduleKind::kLinear, 1e-3, 10, 1.5).ok());
  EXPECT_FALSE(LrSchedule::Create(LrScheduleKind::kLinear, 1e-3, 10, -0.1).ok());
  EXPECT_FALSE(LrSchedule::Create(LrScheduleKind::kLinear, 1e-3, 10, std::nan("")).ok());
  EXPECT_FALSE(LrSchedule::Create(LrScheduleKind::kLinear, 1e-3, -1, 0.1).ok());
  EXPECT_FALSE(LrSchedule::Create(LrScheduleKind::kLinear, -1e-3, 10, 0.1).ok());
  EXPECT_TRUE(LrSchedule::Create(LrScheduleKind::kLinear, 0.0, 0, 0.0).ok());
}

// ---------------------------------------------------------------------------------------------
// Gradient clipping

// Gradients [3, 4] and [12]: norms 5 and 12, global norm 13.
NamedTensors ClipParams() {
  NamedTensors p = {{"a", torch::zeros({2}).set_requires_grad(true)},
                    {"b", torch::zeros({1}).set_requires_grad(true)},
                    {"no_grad_yet", torch::zeros({2}).set_requires_grad(true)}};
  p[0].second.mutable_grad() = torch::tensor({3.0f, 4.0f});
  p[1].second.mutable_grad() = torch::tensor({12.0f});
  return p;
}

TEST(ClipGradNorm, ScalesByMaxNormOverTheGlobalNorm) {
  NamedTensors p = ClipParams();
  auto norm = ClipGradNorm(p, 1.0);
  ASSERT_TRUE(norm.ok()) << norm.status();
  EXPECT_EQ(*norm, 13.0);  // the norm before clipping
  const double coef = 1.0 / (13.0 + 1e-6);
  EXPECT_NEAR(p[0].second.grad()[0].item<double>(), 3 * coef, 1e-7);
  EXPECT_NEAR(p[0].second.grad()[1].item<double>(), 4 * coef, 1e-7);
  EXPECT_NEAR(p[1].second.grad()[0].item<double>(), 12 * coef, 1e-7);
  EXPECT_FALSE(p[2].second.grad().defined());
  // The clipped global norm is max_norm (up to the 1e-6 guard).
  auto again = ClipGradNorm(p, 0.0);
  ASSERT_TRUE(again.ok());
  EXPECT_NEAR(*again, 1.0, 1e-6);
}

TEST(ClipGradNorm, BelowMaxNormOrDisabledLeavesGradientsAlone) {
  for (double max_norm : {0.0, 13.5, 100.0}) {
    NamedTensors p = ClipParams();
    auto norm = ClipGradNorm(p, max_norm);
    ASSERT_TRUE(norm.ok());
    EXPECT_EQ(*norm, 13.0) << max_norm;
    EXPECT_TRUE(torch::equal(p[0].second.grad(), torch::tensor({3.0f, 4.0f}))) << max_norm;
    EXPECT_TRUE(torch::equal(p[1].second.grad(), torch::tensor({12.0f}))) << max_norm;
  }
}

TEST(ClipGradNorm, FrozenNoGradientsNonFiniteAndBadArguments) {
  NamedTensors p = ClipParams();
  // A frozen tensor's gradient counts for nothing.
  torch::Tensor frozen = torch::zeros({1});
  frozen.mutable_grad() = torch::tensor({1000.0f});
  p.emplace_back("frozen", frozen);
  auto norm = ClipGradNorm(p, 0.0);
  ASSERT_TRUE(norm.ok());
  EXPECT_EQ(*norm, 13.0);

  auto none = ClipGradNorm({{"x", torch::zeros({2}).set_requires_grad(true)}}, 1.0);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0.0);

  NamedTensors inf = ClipParams();
  inf[1].second.mutable_grad() = torch::tensor({std::numeric_limits<float>::infinity()});
  auto inf_norm = ClipGradNorm(inf, 1.0);
  ASSERT_TRUE(inf_norm.ok());
  EXPECT_TRUE(std::isinf(*inf_norm));
  EXPECT_TRUE(torch::equal(inf[0].second.grad(), torch::tensor({3.0f, 4.0f})));

  EXPECT_FALSE(ClipGradNorm(p, -1.0).ok());
  EXPECT_FALSE(ClipGradNorm(p, std::nan("")).ok());
}

}  // namespace
}  // namespace loratrf::engine
