#include "worker/agent/events_reporter.h"

#include <algorithm>

#include "common/logging.h"

namespace loratrf::worker::agent {

EventsReporter::EventsReporter(SendFn send, StaleFn on_stale, AgentMetrics* metrics,
                               absl::Duration max_backoff)
    : send_(std::move(send)), on_stale_(std::move(on_stale)), metrics_(metrics),
      max_backoff_(max_backoff), thread_([this] { Loop(); }) {}

EventsReporter::~EventsReporter() { Stop(); }

void EventsReporter::Add(v1::JobEvent event) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_ || stale_) return;
  pending_.push_back(std::move(event));
  cv_.notify_all();
}

absl::Status EventsReporter::Flush(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t target = resolved_ + pending_.size();
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  cv_.wait_until(lock, deadline, [&] { return resolved_ >= target || stale_ || stopping_; });
  if (resolved_ >= target) return absl::OkStatus();
  if (stale_) return absl::FailedPreconditionError("the coordinator refused the attempt's reports");
  if (stopping_) return absl::CancelledError("the reporter stopped");
  return absl::DeadlineExceededError("the coordinator did not accept the reports in time");
}

void EventsReporter::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

bool EventsReporter::stale() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stale_;
}

uint64_t EventsReporter::accepted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return accepted_;
}

void EventsReporter::Loop() {
  absl::Duration backoff = absl::Milliseconds(100);
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
    if (stopping_) return;
    const uint64_t first = base_;
    const size_t count = std::min(pending_.size(), kMaxBatch);
    std::vector<v1::JobEvent> batch(pending_.begin(), pending_.begin() + static_cast<long>(count));
    lock.unlock();
    absl::StatusOr<uint64_t> next = send_(first, batch);
    lock.lock();
    if (next.ok()) {
      // The coordinator has everything before *next; what it accepted leaves the queue.
      const uint64_t accepted = std::min<uint64_t>(*next, base_ + pending_.size());
      if (accepted > base_) {
        const uint64_t drop = accepted - base_;
        pending_.erase(pending_.begin(), pending_.begin() + static_cast<long>(drop));
        base_ = accepted;
        resolved_ += drop;
        accepted_ += drop;
        metrics_->EventsReported(drop);
        backoff = absl::Milliseconds(100);
        cv_.notify_all();
        continue;
      }
      if (*next < base_) {
        // The coordinator lost events it had accepted (they cannot be sent again): number the
        // rest from where it stands, so that they are not refused as a gap.
        LOG_WARN("the coordinator expects report index {} but had accepted up to {}; renumbering",
                 *next, base_);
        base_ = *next;
        continue;
      }
      // It accepted nothing it was sent: back off rather than spin on the same batch.
    } else {
      metrics_->ReportFailed();
      const absl::StatusCode code = next.status().code();
      if (code == absl::StatusCode::kFailedPrecondition || code == absl::StatusCode::kNotFound) {
        // on_stale runs before Flush() can return, so a waiter sees its effect.
        lock.unlock();
        on_stale_(next.status());
        lock.lock();
        stale_ = true;
        pending_.clear();
        cv_.notify_all();
        return;
      }
      if (code == absl::StatusCode::kInvalidArgument) {
        LOG_WARN("the coordinator refused {} event(s): {}; dropping them", count,
                 next.status().message());
        // Dropped, not accepted: the next events take these indices.
        pending_.erase(pending_.begin(), pending_.begin() + static_cast<long>(count));
        resolved_ += count;
        cv_.notify_all();
        continue;
      }
    }
    cv_.wait_for(lock, absl::ToChronoNanoseconds(backoff), [&] { return stopping_; });
    backoff = std::min(backoff * 2, max_backoff_);
  }
}

}  // namespace loratrf::worker::agent
