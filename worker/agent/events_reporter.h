// Delivers one attempt's events to the coordinator in order, exactly once as far as the
// coordinator is concerned (docs/control-plane.md, "Reports"). Every event gets an
// attempt-local index when it is added; a ReportEvents call carries the index of its first event
// as first_report_index, and the coordinator's next_report_index says how far it has accepted,
// so a retried call after a lost reply is deduplicated there and nothing is sent twice here.
//
// Failures: UNAVAILABLE and friends are retried with capped exponential backoff;
// FAILED_PRECONDITION or NOT_FOUND (the attempt is stale or the job is gone) stops the reporter
// and calls `on_stale` once; INVALID_ARGUMENT drops that batch (a poison batch must not stall
// the rest) with a log line, and its indices go to the events after it.
//
// Threading: Add/Flush/Stop from any thread. One sender thread, started by the constructor.
// mu_ guards the queue and flags; `send` and `on_stale` run on the sender thread without mu_.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/agent/agent_metrics.h"
#include "proto/loratrf/v1/job.pb.h"

namespace loratrf::worker::agent {

class EventsReporter {
 public:
  // Sends `events` (indices first_report_index, +1, ...); returns next_report_index.
  using SendFn = std::function<absl::StatusOr<uint64_t>(uint64_t first_report_index,
                                                        const std::vector<v1::JobEvent>& events)>;
  using StaleFn = std::function<void(const absl::Status& why)>;

  static constexpr size_t kMaxBatch = 64;

  EventsReporter(SendFn send, StaleFn on_stale, AgentMetrics* metrics,
                 absl::Duration max_backoff = absl::Seconds(5));
  ~EventsReporter();  // Stop()
  EventsReporter(const EventsReporter&) = delete;
  EventsReporter& operator=(const EventsReporter&) = delete;

  void Add(v1::JobEvent event);
  // Waits until every event added so far is accepted (OK), the attempt turned out stale
  // (FAILED_PRECONDITION), the reporter stopped (CANCELLED) or `timeout` passed
  // (DEADLINE_EXCEEDED).
  absl::Status Flush(absl::Duration timeout);
  // Ends the sender thread; events not yet accepted are dropped.
  void Stop();
  bool stale() const;
  uint64_t accepted() const;  // events the coordinator has accepted

 private:
  void Loop();

  const SendFn send_;
  const StaleFn on_stale_;
  AgentMetrics* const metrics_;
  const absl::Duration max_backoff_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::JobEvent> pending_;  // guarded by mu_: events from index base_ on, unaccepted
  uint64_t base_ = 0;                 // guarded by mu_: report index of pending_.front()
  uint64_t resolved_ = 0;             // guarded by mu_: events accepted or dropped
  uint64_t accepted_ = 0;             // guarded by mu_: events accepted
  bool stopping_ = false;             // guarded by mu_
  bool stale_ = false;                // guarded by mu_
  std::thread thread_;                // last: starts after the fields above exist
};

}  // namespace loratrf::worker::agent
