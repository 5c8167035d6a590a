#include "worker/engine/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace loratrf::engine {
namespace {

constexpr double kPi = 3.141592653589793;  // math.pi

}  // namespace

absl::StatusOr<LrSchedule> LrSchedule::Create(LrScheduleKind kind, double base_lr,
                                              int64_t total_steps, double warmup_ratio) {
  switch (kind) {
    case LrScheduleKind::kConstant:
    case LrScheduleKind::kLinear:
    case LrScheduleKind::kCosine:
      break;
    default:
      return absl::InvalidArgumentError("lr schedule: unknown kind");
  }
  if (!(base_lr >= 0 && std::isfinite(base_lr))) {
    return absl::InvalidArgumentError(
        absl::StrCat("lr schedule: learning_rate must be finite and >= 0, got ", base_lr));
  }
  if (total_steps < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lr schedule: total steps must be >= 0, got ", total_steps));
  }
  if (!(warmup_ratio >= 0 && warmup_ratio <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("lr schedule: warmup_ratio must be in [0, 1], got ", warmup_ratio));
  }
  return LrSchedule(kind, base_lr, total_steps, WarmupSteps(warmup_ratio, total_steps));
}

int64_t LrSchedule::WarmupSteps(double warmup_ratio, int64_t total_steps) {
  // Python: math.ceil(num_training_steps * self.warmup_ratio), int * float in double.
  return static_cast<int64_t>(std::ceil(static_cast<double>(total_steps) * warmup_ratio));
}

double LrSchedule::Multiplier(int64_t step) const {
  // Each branch is transformers' lr_lambda, term for term, so that the doubles agree exactly.
  const double s = static_cast<double>(step);
  const double w = static_cast<double>(warmup_steps_);
  const double t = static_cast<double>(total_steps_);
  if (kind_ == LrScheduleKind::kConstant) {
    if (step < warmup_steps_) return s / std::max(1.0, w);
    return 1.0;
  }
  if (step < warmup_steps_) return s / static_cast<double>(std::max<int64_t>(1, warmup_steps_));
  const double decay_steps =
      static_cast<double>(std::max<int64_t>(1, total_steps_ - warmup_steps_));
  if (kind_ == LrScheduleKind::kLinear) {
    return std::max(0.0, (t - s) / decay_steps);
  }
  const double progress = (s - w) / decay_steps;
  constexpr double kNumCycles = 0.5;
  return std::max(0.0, 0.5 * (1.0 + std::cos(kPi * kNumCycles * 2.0 * progress)));
}

}  // namespace loratrf::engine
