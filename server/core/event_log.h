// The event log and its watchers: each active job's ring of recent events (CoreState::logs),
// publication of persisted events to the WatchJob streams, and the streams themselves.
//
// Owns: CoreState::logs (JobEventLog: the ring and the weak list of watchers) and the watch
// streams (WatchStream, in event_log.cc). Events reach it only after the store has numbered and
// persisted them (job_lifecycle's Commit, checkpoint_recording); a watcher behind the ring, or
// watching a final job, reads the store.
//
// Threading: Publish and WakeAllWatchers are called with CoreState::mu held and queue wake-ups
// in `wakeups` (run after mu is released). OpenWatch is called without mu (it reads the store).
// A stream's Next and SetNotify take mu themselves; its notify callback is run by whoever
// released mu, or by the thread whose fsync made the stream's next event durable
// (StoreSync::OnDurable, which may run it at once, under mu): it must not block.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/loratrf/v1/job.pb.h"
#include "proto/loratrf/v1/job_service.pb.h"
#include "server/core/core_state.h"
#include "server/core/event_stream.h"

namespace loratrf::server::core_internal {

// Appends `events` (persisted, with their seqs) to the job's ring and queues its watchers'
// wake-ups. A final job gets no more events: its log is dropped and watchers read what is left
// from the store. Needs mu.
void Publish(CoreState& core, const std::string& job_id, const std::vector<v1::JobEvent>& events,
             bool final, Wakeups& wakeups);

// Queues the wake-up of every watcher of every job (Drain: their streams end). Needs mu.
void WakeAllWatchers(CoreState& core, Wakeups& wakeups);

// WatchJob after the draining check: NotFound for an unknown job, else a stream that replays
// from request.from_seq and follows unless no_follow. Called without mu.
absl::StatusOr<std::unique_ptr<EventStream>> OpenWatch(const std::shared_ptr<CoreState>& core,
                                                       const v1::WatchJobRequest& request);

}  // namespace loratrf::server::core_internal
