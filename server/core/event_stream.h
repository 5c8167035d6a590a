// A watcher's view of one job's events (WatchJob): the persisted events from a sequence number
// on, then live ones, until the job is final. Pull-based so that a slow reader never blocks the
// coordinator: the core calls the notify callback when there may be more, and the reader pulls
// with Next() when it is ready to send.
//
// Threading: Next is called by one thread at a time (the stream's owner); the notify callback
// may be called from any thread and must not block.
#pragma once

#include <functional>

#include "absl/status/status.h"
#include "proto/loratrf/v1/job.pb.h"

namespace loratrf::server {

class EventStream {
 public:
  virtual ~EventStream() = default;
  enum class Poll {
    kEvent,  // `event` holds the next event
    kWait,   // nothing yet: the notify callback will be called when there may be
    kEnd,    // the job is final and every event was delivered (or no_follow and the replay is
             // done, or the coordinator is draining)
  };
  virtual Poll Next(v1::JobEvent& event) = 0;
  // After kEnd: OK when the stream ended for one of the reasons above; otherwise why it was
  // cut short (a store read failed during the replay). The watcher must get this error, not a
  // normal end: it has not seen every event. Called by the thread that called Next.
  virtual absl::Status status() const { return absl::OkStatus(); }
  // Set once, before the first Next.
  virtual void SetNotify(std::function<void()> notify) = 0;
};

}  // namespace loratrf::server
