// EventsReporter (worker/agent/events_reporter.h): ordered, deduplicated reports.
#include "worker/agent/events_reporter.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "worker/agent/agent_metrics.h"

namespace loratrf {
namespace {

TEST(EventsReporter, NumbersEventsAndRetriesUntilAccepted) {
  std::mutex mu;
  std::vector<std::pair<uint64_t, size_t>> calls;
  uint64_t accepted = 0;
  int failures = 2;
  auto metrics = worker::agent::MakeNullAgentMetrics();
  worker::agent::EventsReporter reporter(
      [&](uint64_t first, const std::vector<v1::JobEvent>& events) -> absl::StatusOr<uint64_t> {
        std::lock_guard<std::mutex> lock(mu);
        calls.emplace_back(first, events.size());
        if (failures-- > 0) return absl::UnavailableError("down");
        // Accept at most 2 at a time.
        if (first <= accepted) accepted = std::max(accepted, first + std::min<size_t>(events.size(), 2));
        return accepted;
      },
      [](const absl::Status&) { FAIL() << "not stale"; }, metrics.get(), absl::Milliseconds(20));
  for (int i = 1; i <= 5; ++i) {
    v1::JobEvent event;
    event.mutable_train()->set_step(i);
    reporter.Add(event);
  }
  ASSERT_TRUE(reporter.Flush(absl::Seconds(10)).ok());
  EXPECT_EQ(reporter.accepted(), 5u);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(accepted, 5u);
  EXPECT_EQ(calls.front().first, 0u);
  EXPECT_EQ(calls.back().first, 4u);
}

TEST(EventsReporter, StaleAttemptStopsIt) {
  auto metrics = worker::agent::MakeNullAgentMetrics();
  std::atomic<int> stale{0};
  worker::agent::EventsReporter reporter(
      [&](uint64_t, const std::vector<v1::JobEvent>&) -> absl::StatusOr<uint64_t> {
        return absl::FailedPreconditionError("attempt 1 is not current");
      },
      [&](const absl::Status&) { ++stale; }, metrics.get());
  reporter.Add(v1::JobEvent());
  EXPECT_EQ(reporter.Flush(absl::Seconds(10)).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(stale.load(), 1);
  EXPECT_TRUE(reporter.stale());
}

}  // namespace
}  // namespace loratrf
