// The schema of metrics.jsonl, the one file through which a training run reports its metrics:
// the engine's trainer writes it (rank 0), the agent tails it and turns rows into JobEvents.
// One JSON object per line:
//
//   {"type":"train","step":N,"epoch":E,"loss":L,"lr":R,"grad_norm":G,"tokens_per_second":T,
//    "samples_per_second":S,"step_seconds":D}
//   {"type":"eval","step":N,"eval_loss":L,"eval_accuracy":A,"eval_examples":K}
//
// Readers skip lines they do not understand (another type, a torn last line), so a newer writer
// may add keys and types. The eval keys are also the metric names in a checkpoint's manifest.
//
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>

#include "absl/strings/string_view.h"

namespace loratrf::contract {

namespace metrics_keys {
inline constexpr char kType[] = "type";
inline constexpr char kStep[] = "step";
inline constexpr char kTrainType[] = "train";
inline constexpr char kEvalType[] = "eval";
inline constexpr char kEpoch[] = "epoch";
inline constexpr char kLoss[] = "loss";
inline constexpr char kLearningRate[] = "lr";
inline constexpr char kGradNorm[] = "grad_norm";
inline constexpr char kTokensPerSecond[] = "tokens_per_second";
inline constexpr char kSamplesPerSecond[] = "samples_per_second";
inline constexpr char kStepSeconds[] = "step_seconds";
inline constexpr char kEvalLoss[] = "eval_loss";
inline constexpr char kEvalAccuracy[] = "eval_accuracy";
inline constexpr char kEvalExamples[] = "eval_examples";
}  // namespace metrics_keys

struct TrainRow {
  uint64_t step = 0;
  double epoch = 0;
  double loss = 0;
  double learning_rate = 0;
  double grad_norm = 0;
  double tokens_per_second = 0;
  double samples_per_second = 0;
  double step_seconds = 0;
};

struct EvalRow {
  uint64_t step = 0;
  double loss = 0;
  double accuracy = 0;
  uint64_t examples = 0;
};

using MetricsRow = std::variant<TrainRow, EvalRow>;

// One line of metrics.jsonl, without the newline.
std::string ToJsonLine(const TrainRow& row);
std::string ToJsonLine(const EvalRow& row);

// A line as a row; nullopt for anything that is not a train or eval row with an unsigned step
// (or longer than limits::kMaxMetricsLineBytes). A missing number reads as 0; a count that is
// not a non-negative integer (a float, negative, NaN or infinite) is clamped to
// [0, 2^64 - 1], NaN to 0, never cast blindly.
std::optional<MetricsRow> ParseMetricsLine(absl::string_view line);

// A line's step when it is a row (of any type), else nullopt. A resumed run replays from its
// checkpoint and keeps only the lines whose step is at or before the checkpoint's: the
// writer and the agent apply the same rule through this function.
std::optional<uint64_t> MetricsLineStep(absl::string_view line);

}  // namespace loratrf::contract
