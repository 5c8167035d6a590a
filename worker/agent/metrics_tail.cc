#include "worker/agent/metrics_tail.h"

#include <cstdint>
#include <variant>

#include "proto/contract/limits.h"
#include "proto/contract/metrics_jsonl.h"

namespace loratrf::worker::agent {

MetricsTail::MetricsTail(std::string path, uint64_t after_step)
    : lines_(std::move(path), limits::kMaxMetricsLineBytes), last_train_step_(after_step),
      last_eval_step_(after_step) {}

std::optional<v1::JobEvent> MetricsTail::RowToEvent(const std::string& line) {
  std::optional<contract::MetricsRow> row = contract::ParseMetricsLine(line);
  if (!row) return std::nullopt;
  v1::JobEvent event;
  if (const auto* train = std::get_if<contract::TrainRow>(&*row)) {
    v1::TrainMetrics* metrics = event.mutable_train();
    metrics->set_step(train->step);
    metrics->set_epoch(train->epoch);
    metrics->set_loss(train->loss);
    metrics->set_learning_rate(train->learning_rate);
    metrics->set_grad_norm(train->grad_norm);
    metrics->set_tokens_per_second(train->tokens_per_second);
    metrics->set_samples_per_second(train->samples_per_second);
    metrics->set_step_seconds(train->step_seconds);
    return event;
  }
  const auto& eval = std::get<contract::EvalRow>(*row);
  v1::EvalMetrics* metrics = event.mutable_eval();
  metrics->set_step(eval.step);
  metrics->set_loss(eval.loss);
  metrics->set_accuracy(eval.accuracy);
  metrics->set_examples(eval.examples);
  return event;
}

std::vector<v1::JobEvent> MetricsTail::Poll() {
  std::vector<v1::JobEvent> events;
  for (const std::string& line : lines_.Poll()) {
    std::optional<v1::JobEvent> event = RowToEvent(line);
    if (!event) continue;
    if (event->has_train()) {
      if (event->train().step() <= last_train_step_) continue;
      last_train_step_ = event->train().step();
    } else {
      if (event->eval().step() <= last_eval_step_) continue;
      last_eval_step_ = event->eval().step();
    }
    events.push_back(*std::move(event));
  }
  return events;
}

}  // namespace loratrf::worker::agent
