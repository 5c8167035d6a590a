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

// ---------------------------------------------------------------------------------------------
// Rank telemetry: DIR/ranks/<rank>.jsonl (run_output.h), one per rank process, which each rank writes (started
// empty by the process) and the agent tails to export Prometheus series per running rank. Rows
// carry what one step, evaluation or checkpoint cost this rank, not totals, so a reader sums
// what it reads. Non-finite numbers (a diverged loss) are written as the strings "nan", "inf",
// "-inf", which JSON cannot carry as numbers.
//
//   {"type":"step","step":N,"total_steps":M,"time":UNIX,"tokens":K,"samples":S,
//    "step_seconds":D,"data_wait_seconds":W,"allreduce_seconds":A,"loss":L,"lr":R,
//    "grad_norm":G,"memory_device":"cpu"|"cuda","memory_bytes":B,"memory_peak_bytes":P,
//    "model_flops_per_second":F[,"mfu":U]}
//   {"type":"eval","step":N,"eval_loss":L,"eval_accuracy":A}
//   {"type":"checkpoint","step":N,"save_seconds":D}

namespace rank_keys {
inline constexpr char kStepType[] = "step";
inline constexpr char kCheckpointType[] = "checkpoint";
inline constexpr char kTotalSteps[] = "total_steps";
inline constexpr char kTime[] = "time";
inline constexpr char kTokens[] = "tokens";
inline constexpr char kSamples[] = "samples";
inline constexpr char kDataWaitSeconds[] = "data_wait_seconds";
inline constexpr char kAllReduceSeconds[] = "allreduce_seconds";
inline constexpr char kMemoryDevice[] = "memory_device";
inline constexpr char kMemoryBytes[] = "memory_bytes";
inline constexpr char kMemoryPeakBytes[] = "memory_peak_bytes";
inline constexpr char kModelFlopsPerSecond[] = "model_flops_per_second";
inline constexpr char kMfu[] = "mfu";
inline constexpr char kSaveSeconds[] = "save_seconds";
}  // namespace rank_keys

struct RankStepRow {
  uint64_t step = 0;
  uint64_t total_steps = 0;
  double time = 0;  // unix seconds at the end of the step
  uint64_t tokens = 0;
  uint64_t samples = 0;
  double step_seconds = 0;
  double data_wait_seconds = 0;
  double allreduce_seconds = 0;
  double loss = 0;
  double learning_rate = 0;
  double grad_norm = 0;
  std::string memory_device = "cpu";  // "cuda": the device's memory; "cpu": the process's RSS
  uint64_t memory_bytes = 0;
  uint64_t memory_peak_bytes = 0;
  double model_flops_per_second = 0;
  std::optional<double> mfu;  // where the device's peak is known
};

struct RankEvalRow {
  uint64_t step = 0;
  double loss = 0;
  double accuracy = 0;
};

struct RankCheckpointRow {
  uint64_t step = 0;
  double save_seconds = 0;
};

using RankRow = std::variant<RankStepRow, RankEvalRow, RankCheckpointRow>;

std::string ToJsonLine(const RankStepRow& row);
std::string ToJsonLine(const RankEvalRow& row);
std::string ToJsonLine(const RankCheckpointRow& row);

// A line of a rank's telemetry file as a row; nullopt for anything else (the same bounds as
// ParseMetricsLine; an unknown memory_device reads as "cpu").
std::optional<RankRow> ParseRankLine(absl::string_view line);

}  // namespace loratrf::contract
