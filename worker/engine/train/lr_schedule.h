// Learning-rate schedules with linear warmup, computing exactly what transformers'
// get_{constant,linear,cosine}_schedule_with_warmup compute (cosine with num_cycles = 0.5), so
// that a job's learning-rate curve matches the HF Trainer run it replaces.
//
// Torch-free. Threading: an immutable value; safe to share between threads.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"

namespace loratrf::engine {

enum class LrScheduleKind {
  kConstant,  // 0 -> 1 over the warmup, then 1
  kLinear,    // 0 -> 1 over the warmup, then 1 -> 0 linearly at total_steps
  kCosine,    // 0 -> 1 over the warmup, then half a cosine from 1 to 0 at total_steps
};

class LrSchedule {
 public:
  // warmup_steps = ceil(warmup_ratio * total_steps), in double as TrainingArguments
  // .get_warmup_steps computes it (so 0.06 * 100 gives 6, but a product that lands a hair above
  // an integer rounds up, just as it does there). Errors: total_steps < 0, warmup_ratio outside
  // [0, 1] or NaN, base_lr negative or not finite.
  static absl::StatusOr<LrSchedule> Create(LrScheduleKind kind, double base_lr, int64_t total_steps,
                                           double warmup_ratio);

  // ceil(warmup_ratio * total_steps); the caller checks the ranges (Create does).
  static int64_t WarmupSteps(double warmup_ratio, int64_t total_steps);

  // The factor for the update of optimizer step `step` (0-based: step 0 is the first update,
  // which in warmup gets factor 0, as LambdaLR gives it). Past total_steps it continues the
  // formulas unclamped except at 0 (linear stays 0, cosine rises again), as transformers does.
  double Multiplier(int64_t step) const;

  // base_lr * Multiplier(step): the learning rate to pass to AdamW::Step for that step.
  double LearningRate(int64_t step) const { return base_lr_ * Multiplier(step); }

  LrScheduleKind kind() const { return kind_; }
  double base_lr() const { return base_lr_; }
  int64_t total_steps() const { return total_steps_; }
  int64_t warmup_steps() const { return warmup_steps_; }

 private:
  LrSchedule(LrScheduleKind kind, double base_lr, int64_t total_steps, int64_t warmup_steps)
      : kind_(kind), base_lr_(base_lr), total_steps_(total_steps), warmup_steps_(warmup_steps) {}

  LrScheduleKind kind_;
  double base_lr_;
  int64_t total_steps_;
  int64_t warmup_steps_;
};

}  // namespace loratrf::engine
