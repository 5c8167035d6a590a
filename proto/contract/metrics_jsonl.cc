#include "proto/contract/metrics_jsonl.h"

#include <cmath>
#include <limits>

#include "common/json_parse.h"
#include "nlohmann/json.hpp"
#include "proto/contract/limits.h"

namespace loratrf::contract {
namespace {

namespace keys = metrics_keys;
using nlohmann::json;

double Number(const json& row, const char* key) {
  auto it = row.find(key);
  if (it == row.end()) return 0.0;
  if (it->is_number()) return it->get<double>();
  // Rank telemetry writes what JSON has no number for as a string.
  if (it->is_string()) {
    const std::string& text = it->get_ref<const std::string&>();
    if (text == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (text == "inf") return std::numeric_limits<double>::infinity();
    if (text == "-inf") return -std::numeric_limits<double>::infinity();
  }
  return 0.0;
}

// A number for JSON: finite as it is, the rest as the strings Number() reads back.
json Finite(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  return value;
}

uint64_t Count(const json& row, const char* key) {
  auto it = row.find(key);
  if (it == row.end() || !it->is_number()) return 0;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer()) return 0;  // negative
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  const double value = it->get<double>();
  if (!std::isfinite(value)) return value > 0 ? kMax : 0;  // +inf; -inf and NaN
  if (value <= 0) return 0;
  if (value >= 18446744073709551616.0) return kMax;  // 2^64, exact as a double
  return static_cast<uint64_t>(value);
}

// The row's step, when the line is an object with an unsigned step. Rows are flat objects: a
// line nested deeper is not one (and nlohmann's recursion stays shallow).
std::optional<json> ParseRow(absl::string_view line) {
  if (line.size() > limits::kMaxMetricsLineBytes) return std::nullopt;
  absl::StatusOr<json> parsed = ParseJson(line, JsonLimits{/*max_depth=*/2, false});
  if (!parsed.ok()) return std::nullopt;
  json row = *std::move(parsed);
  auto step = row.is_object() ? row.find(keys::kStep) : row.end();
  if (!row.is_object() || step == row.end() || !step->is_number_unsigned()) return std::nullopt;
  return row;
}

}  // namespace

std::string ToJsonLine(const TrainRow& row) {
  json j = {{keys::kType, keys::kTrainType},
            {keys::kStep, row.step},
            {keys::kEpoch, row.epoch},
            {keys::kLoss, row.loss},
            {keys::kLearningRate, row.learning_rate},
            {keys::kGradNorm, row.grad_norm},
            {keys::kTokensPerSecond, row.tokens_per_second},
            {keys::kSamplesPerSecond, row.samples_per_second},
            {keys::kStepSeconds, row.step_seconds}};
  return j.dump();
}

std::string ToJsonLine(const EvalRow& row) {
  json j = {{keys::kType, keys::kEvalType},
            {keys::kStep, row.step},
            {keys::kEvalLoss, row.loss},
            {keys::kEvalAccuracy, row.accuracy},
            {keys::kEvalExamples, row.examples}};
  return j.dump();
}

std::optional<MetricsRow> ParseMetricsLine(absl::string_view line) {
  std::optional<json> row = ParseRow(line);
  if (!row) return std::nullopt;
  auto type = row->find(keys::kType);
  if (type == row->end() || !type->is_string()) return std::nullopt;
  const uint64_t step = (*row)[keys::kStep].get<uint64_t>();
  if (*type == keys::kTrainType) {
    TrainRow train;
    train.step = step;
    train.epoch = Number(*row, keys::kEpoch);
    train.loss = Number(*row, keys::kLoss);
    train.learning_rate = Number(*row, keys::kLearningRate);
    train.grad_norm = Number(*row, keys::kGradNorm);
    train.tokens_per_second = Number(*row, keys::kTokensPerSecond);
    train.samples_per_second = Number(*row, keys::kSamplesPerSecond);
    train.step_seconds = Number(*row, keys::kStepSeconds);
    return train;
  }
  if (*type == keys::kEvalType) {
    EvalRow eval;
    eval.step = step;
    eval.loss = Number(*row, keys::kEvalLoss);
    eval.accuracy = Number(*row, keys::kEvalAccuracy);
    eval.examples = Count(*row, keys::kEvalExamples);
    return eval;
  }
  return std::nullopt;
}

std::string ToJsonLine(const RankStepRow& row) {
  namespace rk = rank_keys;
  json j = {{keys::kType, rk::kStepType},
            {keys::kStep, row.step},
            {rk::kTotalSteps, row.total_steps},
            {rk::kTime, Finite(row.time)},
            {rk::kTokens, row.tokens},
            {rk::kSamples, row.samples},
            {keys::kStepSeconds, Finite(row.step_seconds)},
            {rk::kDataWaitSeconds, Finite(row.data_wait_seconds)},
            {rk::kAllReduceSeconds, Finite(row.allreduce_seconds)},
            {keys::kLoss, Finite(row.loss)},
            {keys::kLearningRate, Finite(row.learning_rate)},
            {keys::kGradNorm, Finite(row.grad_norm)},
            {rk::kMemoryDevice, row.memory_device == "cuda" ? "cuda" : "cpu"},
            {rk::kMemoryBytes, row.memory_bytes},
            {rk::kMemoryPeakBytes, row.memory_peak_bytes},
            {rk::kModelFlopsPerSecond, Finite(row.model_flops_per_second)}};
  if (row.mfu) j[rk::kMfu] = Finite(*row.mfu);
  return j.dump();
}

std::string ToJsonLine(const RankEvalRow& row) {
  json j = {{keys::kType, keys::kEvalType},
            {keys::kStep, row.step},
            {keys::kEvalLoss, Finite(row.loss)},
            {keys::kEvalAccuracy, Finite(row.accuracy)}};
  return j.dump();
}

std::string ToJsonLine(const RankCheckpointRow& row) {
  json j = {{keys::kType, rank_keys::kCheckpointType},
            {keys::kStep, row.step},
            {rank_keys::kSaveSeconds, Finite(row.save_seconds)}};
  return j.dump();
}

std::optional<RankRow> ParseRankLine(absl::string_view line) {
  namespace rk = rank_keys;
  std::optional<json> row = ParseRow(line);
  if (!row) return std::nullopt;
  auto type = row->find(keys::kType);
  if (type == row->end() || !type->is_string()) return std::nullopt;
  const uint64_t step = (*row)[keys::kStep].get<uint64_t>();
  if (*type == rk::kStepType) {
    RankStepRow r;
    r.step = step;
    r.total_steps = Count(*row, rk::kTotalSteps);
    r.time = Number(*row, rk::kTime);
    r.tokens = Count(*row, rk::kTokens);
    r.samples = Count(*row, rk::kSamples);
    r.step_seconds = Number(*row, keys::kStepSeconds);
    r.data_wait_seconds = Number(*row, rk::kDataWaitSeconds);
    r.allreduce_seconds = Number(*row, rk::kAllReduceSeconds);
    r.loss = Number(*row, keys::kLoss);
    r.learning_rate = Number(*row, keys::kLearningRate);
    r.grad_norm = Number(*row, keys::kGradNorm);
    auto device = row->find(rk::kMemoryDevice);
    r.memory_device = device != row->end() && *device == "cuda" ? "cuda" : "cpu";
    r.memory_bytes = Count(*row, rk::kMemoryBytes);
    r.memory_peak_bytes = Count(*row, rk::kMemoryPeakBytes);
    r.model_flops_per_second = Number(*row, rk::kModelFlopsPerSecond);
    if (row->contains(rk::kMfu)) r.mfu = Number(*row, rk::kMfu);
    return r;
  }
  if (*type == keys::kEvalType) {
    RankEvalRow r;
    r.step = step;
    r.loss = Number(*row, keys::kEvalLoss);
    r.accuracy = Number(*row, keys::kEvalAccuracy);
    return r;
  }
  if (*type == rk::kCheckpointType) {
    RankCheckpointRow r;
    r.step = step;
    r.save_seconds = Number(*row, rk::kSaveSeconds);
    return r;
  }
  return std::nullopt;
}

std::optional<uint64_t> MetricsLineStep(absl::string_view line) {
  std::optional<json> row = ParseRow(line);
  if (!row) return std::nullopt;
  return (*row)[keys::kStep].get<uint64_t>();
}

}  // namespace loratrf::contract
