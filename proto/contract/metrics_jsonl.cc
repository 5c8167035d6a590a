#include "proto/contract/metrics_jsonl.h"

#include <cmath>
#include <limits>

#include "common/json_depth.h"
#include "nlohmann/json.hpp"
#include "proto/contract/limits.h"

namespace loratrf::contract {
namespace {

namespace keys = metrics_keys;
using nlohmann::json;

double Number(const json& row, const char* key) {
  auto it = row.find(key);
  return it != row.end() && it->is_number() ? it->get<double>() : 0.0;
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
  if (JsonNestedDeeperThan(line, 2)) return std::nullopt;
  json row = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
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

std::optional<uint64_t> MetricsLineStep(absl::string_view line) {
  std::optional<json> row = ParseRow(line);
  if (!row) return std::nullopt;
  return (*row)[keys::kStep].get<uint64_t>();
}

}  // namespace loratrf::contract
