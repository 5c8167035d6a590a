#include "worker/agent/metrics_tail.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <variant>

#include "proto/contract/limits.h"
#include "proto/contract/metrics_jsonl.h"

namespace loratrf::worker::agent {
namespace {

// At most this much is read per poll; the rest comes on the next one.
constexpr size_t kMaxReadPerPoll = 4 << 20;

}  // namespace

MetricsTail::MetricsTail(std::string path, uint64_t after_step)
    : path_(std::move(path)), last_train_step_(after_step), last_eval_step_(after_step) {}

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
  int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return events;
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    return events;
  }
  if (info.st_ino != inode_ || static_cast<uint64_t>(info.st_size) < offset_) {
    inode_ = info.st_ino;  // replaced or truncated: read it again from the start
    offset_ = 0;
  }
  std::string data;
  while (data.size() < kMaxReadPerPoll) {
    char buffer[64 << 10];
    ssize_t n = ::pread(fd, buffer, sizeof buffer, static_cast<off_t>(offset_ + data.size()));
    if (n <= 0) break;
    data.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  size_t start = 0;
  while (true) {
    size_t newline = data.find('\n', start);
    if (newline == std::string::npos) {
      // A line longer than any row the trainer writes is skipped rather than waited for.
      if (data.size() - start > limits::kMaxMetricsLineBytes) start = data.size();
      break;
    }
    std::optional<v1::JobEvent> event = RowToEvent(data.substr(start, newline - start));
    start = newline + 1;
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
  offset_ += start;
  return events;
}

}  // namespace loratrf::worker::agent
