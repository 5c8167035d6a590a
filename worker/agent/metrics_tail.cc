#include "worker/agent/metrics_tail.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "nlohmann/json.hpp"

namespace loratrf::worker::agent {
namespace {

// At most this much is read per poll; the rest comes on the next one.
constexpr size_t kMaxReadPerPoll = 4 << 20;
constexpr size_t kMaxLine = 64 << 10;

double Number(const nlohmann::json& row, const char* key) {
  auto it = row.find(key);
  return it != row.end() && it->is_number() ? it->get<double>() : 0.0;
}

// A count: a non-negative integer as is; a number that is not one (a float, negative, NaN or
// infinite, which casting would make undefined) is clamped to [0, 2^64 - 1], NaN to 0.
uint64_t Count(const nlohmann::json& row, const char* key) {
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

}  // namespace

MetricsTail::MetricsTail(std::string path, uint64_t after_step)
    : path_(std::move(path)), last_train_step_(after_step), last_eval_step_(after_step) {}

std::optional<v1::JobEvent> MetricsTail::RowToEvent(const std::string& line) {
  nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!row.is_object()) return std::nullopt;
  auto step = row.find("step");
  auto type = row.find("type");
  if (step == row.end() || !step->is_number_unsigned() || type == row.end() ||
      !type->is_string()) {
    return std::nullopt;
  }
  v1::JobEvent event;
  if (*type == "train") {
    v1::TrainMetrics* train = event.mutable_train();
    train->set_step(step->get<uint64_t>());
    train->set_epoch(Number(row, "epoch"));
    train->set_loss(Number(row, "loss"));
    train->set_learning_rate(Number(row, "lr"));
    train->set_grad_norm(Number(row, "grad_norm"));
    train->set_tokens_per_second(Number(row, "tokens_per_second"));
    train->set_samples_per_second(Number(row, "samples_per_second"));
    train->set_step_seconds(Number(row, "step_seconds"));
    return event;
  }
  if (*type == "eval") {
    v1::EvalMetrics* eval = event.mutable_eval();
    eval->set_step(step->get<uint64_t>());
    eval->set_loss(Number(row, "eval_loss"));
    eval->set_accuracy(Number(row, "eval_accuracy"));
    eval->set_examples(Count(row, "eval_examples"));
    return event;
  }
  return std::nullopt;
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
      if (data.size() - start > kMaxLine) start = data.size();
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
