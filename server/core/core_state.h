// CoreState: what JobServiceCore knows between calls — the single mutex, the entity tables and
// the coordinator-wide flags — and the few helpers every part of the core shares (wake-ups,
// time, store-write accounting: every JobStore write goes through StoreWrite). Private to
// server/core: the parts (job_lifecycle, worker_registry, event_log, report_ingestion,
// checkpoint_recording, job_stops) and job_service.cc include it; nothing outside server/core does.
//
// Who writes what (each part's header says the same from its side):
//   active   (ActiveJob records)   job_lifecycle; report_ingestion and checkpoint_recording set
//                                  the per-attempt report and checkpoint fields; worker_registry
//                                  the re-attach fields; job_stops sets `stop` (RestartJob
//                                  clears it and sets `held_for`) and Job.paused
//   workers  (WorkerEntry records) worker_registry (leases, command queues, slot counts);
//                                  job_stops sets Worker.cordoned
//   logs     (JobEventLog records) event_log
//
// Threading: one mutex, `mu`, guards every field marked so. The only other lock in the core is
// StoreSync's (`sync`): it may be taken under mu (OnDurable), never mu under it, and nobody
// waits for durability with mu held. Every part's function is called with mu held unless its
// header says otherwise. Store writes happen under mu so that events are persisted in the order
// they are published, always in the order persist → update the tables / publish → reply; the
// fsync that makes a write durable runs after mu is released (StoreSync, group commit), before
// the reply and the wake-ups. Wake-ups (a stream's notify callback, the schedule hook) may call
// back into the core, so they are collected in a Wakeups list under mu and run after it is
// released (RunOnExit).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "proto/loratrf/v1/job.pb.h"
#include "proto/loratrf/v1/worker.pb.h"
#include "proto/loratrf/v1/worker_service.pb.h"
#include "server/artifacts/artifact_store.h"
#include "server/core/clock.h"
#include "server/core/job_service.h"
#include "server/core/store_sync.h"
#include "server/store/job_store.h"

namespace loratrf::server {
namespace core_internal {

// Wake-ups collected under CoreState::mu and run after it is released.
using Wakeups = std::vector<std::function<void()>>;

// Waits until the store writes this thread made (and everything written before them) are
// durable (StoreSync), then runs the wake-ups. Replies go out after it too: RunOnExit runs it
// before the entry point returns. So nothing that depends on a write leaves the core before
// the write is durable, while the fsync itself runs outside mu, shared by every caller that
// waits at the same time (group commit).
void RunWakeups(Wakeups& wakeups);

// Declared before the lock in every entry point, so that the wake-ups run after the lock is
// released on every return path, errors included.
struct RunOnExit {
  Wakeups& wakeups;
  ~RunOnExit() { RunWakeups(wakeups); }
};

google::protobuf::Timestamp ToProto(absl::Time time);
absl::Time FromProto(const google::protobuf::Timestamp& timestamp);
bool IsFinal(v1::JobState state);
// Holds slots on its workers.
bool HoldsSlots(v1::JobState state);

// A stop with checkpoint asked of a job's current attempt (job_stops): its workers got a
// Cancellation with checkpoint_first; the attempt's preempted report (or the deadline) ends it.
struct StopRequest {
  StopKind kind = StopKind::kPriority;
  std::string requested_by;  // a user, or "scheduler" for priority preemption
  std::string reason;        // in words, also the event on the job
  absl::Time deadline;       // then restarted anyway (CoreOptions::stop_timeout)
  std::string for_job;       // kPriority: the queued job the slots are freed for
  bool sent = true;          // false: recovered; the cancellation goes out once the workers are back
};

// A job that is not final, as the coordinator tracks it between store writes.
struct ActiveJob {
  v1::Job job;
  uint64_t order = 0;                 // submission order (FIFO within a priority)
  absl::Time queued_at;               // when it last entered QUEUED
  std::optional<absl::Time> attach_deadline;  // recovered attempts: workers must re-attach
  std::set<std::string> attached;     // workers that listed this attempt since recovery
  std::map<std::string, uint64_t> next_report_index;  // per worker, this attempt
  bool final_checkpoint = false;      // this attempt's final checkpoint is committed
  // Placement of the current attempt, so that a re-sent assignment says the same thing.
  uint32_t rendezvous_port = 0;       // 0: not placed in this process (recovered)
  std::string resume_checkpoint;
  absl::Time assigned_at;
  std::set<std::string> finished_nodes;       // workers that reported their part succeeded
  std::map<std::string, int> missing_beats;   // heartbeats in a row not listing the attempt
  std::optional<StopRequest> stop;            // a stop with checkpoint is pending (job_stops)
  // Requeued after priority preemption for this job: held while that job is queued and still
  // has victims stopping, so that its own freed slots are not handed straight back to it.
  std::string held_for;  // listed in CoreState::held while set
  // Its entry in CoreState::queue while QUEUED (the fields it was added with, to remove it).
  std::optional<SchedulerJob> queued;
  // The workers it is listed under in CoreState::holding_on (the ones it was added with).
  std::vector<std::string> holding_on;
};

struct WorkerEntry {
  v1::Worker worker;
  uint64_t lease_id = 0;
  absl::Time lease_expires;
  bool schedulable = false;  // registered in this process (recovered records are not)
  std::deque<v1::WorkerCommand> commands;
  uint64_t commands_written = 0;   // StoreSync::written() when a command was last queued: the
                                   // stream hands them out once that is durable
  uint64_t stream_generation = 0;  // a new stream ends the older ones
  std::function<void()> notify;    // the current stream's wake-up
  std::set<std::pair<std::string, uint32_t>> reported_running;
};

class WatchStream;  // event_log.cc: one WatchJob stream

// Recent events of a job and who watches them.
struct JobEventLog {
  std::deque<v1::JobEvent> recent;  // the last ring-size events, ascending seq
  std::deque<uint64_t> recent_written;  // per event of `recent`: StoreSync::written() when it
                                        // was published; watchers get it once that is durable
  std::vector<std::weak_ptr<WatchStream>> watchers;
};

}  // namespace core_internal

// Shared by JobServiceCore and the streams and uploads it hands out, which may outlive a call
// but never use it after Drain.
struct CoreState {
  // Set once by JobServiceCore::Create, then read-only.
  JobStore* store = nullptr;
  ArtifactStore* artifacts = nullptr;
  Clock* clock = nullptr;
  CoreMetrics* metrics = nullptr;  // may be null
  CoreOptions options;
  std::shared_ptr<StoreSync> sync;  // group commit of `store`'s writes (thread-safe itself)

  mutable std::mutex mu;
  bool draining = false;                       // guarded by mu
  bool schedule_dirty = true;                  // guarded by mu: something changed since Tick
  absl::Time fleet_changed;                    // guarded by mu: a worker last joined or left
  bool last_pass_settled = false;              // guarded by mu: the last scheduling pass judged
                                               // unschedulable jobs
  // Queue order (ActiveJob::order): submissions count up from kFirstSubmissionOrder,
  // preempted jobs count down below it, so they go ahead of their priority's queue.
  static constexpr uint64_t kFirstSubmissionOrder = uint64_t{1} << 62;
  uint64_t next_order = kFirstSubmissionOrder;  // guarded by mu
  uint64_t next_front_order = kFirstSubmissionOrder - 1;  // guarded by mu
  uint64_t next_lease_id = 0;                  // guarded by mu
  std::map<std::string, core_internal::ActiveJob> active;     // guarded by mu
  // Indexes of `active`, kept in step with each job's state by job_lifecycle (Reindex): the
  // QUEUED jobs in scheduling order, and the ids of the jobs holding slots (SCHEDULED,
  // RUNNING), so that a scheduling pass never walks the whole table.
  JobQueue queue;                              // guarded by mu
  std::set<std::string> holding;               // guarded by mu
  // The same jobs by worker (a job under each worker of its attempt), for the per-worker calls.
  std::map<std::string, std::set<std::string>> holding_on;  // guarded by mu
  std::set<std::string> held;                  // guarded by mu: queued jobs with a held_for
  // Queue statuses (Job.queue) are rewritten by a full walk of the queue; with a long queue at
  // most every kQueueStatusRefresh (job_lifecycle.cc), so they may lag by that much.
  absl::Time last_full_walk = absl::InfinitePast();  // guarded by mu
  bool queue_status_stale = false;             // guarded by mu: a pass skipped the full walk
  // The earliest queued_at in the queue as of oldest_queued_checked (LongestQueuedWait).
  absl::Time oldest_queued_at = absl::InfiniteFuture();       // guarded by mu
  absl::Time oldest_queued_checked = absl::InfinitePast();    // guarded by mu
  std::map<std::string, core_internal::WorkerEntry> workers;  // guarded by mu
  std::map<std::string, core_internal::JobEventLog> logs;     // guarded by mu
  absl::BitGen random;                         // guarded by mu
  std::set<uint32_t> ports_in_use;             // guarded by mu: rendezvous ports of attempts
  // guarded by mu: (job id, checkpoint id) whose records gc deleted and whose files it is
  // removing without mu; an upload of one waits until they are gone (gc.h).
  std::set<std::pair<std::string, std::string>> checkpoints_being_removed;
  std::function<void()> schedule_hook;         // set once before use (SetScheduleHook)

  absl::Time Now() { return clock->Now(); }

  // UNAVAILABLE once Drain was called. Needs mu.
  absl::Status CheckServing() const;

  // Agents register one by one after a (coordinator) start: "can never fit" is judged only once
  // the fleet has been stable for two lease TTLs. Needs mu.
  bool FleetSettled() { return Now() - fleet_changed >= 2 * options.lease_ttl; }

  // Something changed that a scheduling pass should see. Needs mu.
  void MarkScheduleDirty(core_internal::Wakeups& wakeups);
};

namespace core_internal {

// Every JobStore write runs through StoreWrite, given as a callable that makes the write:
// its time is observed (CoreMetrics::StoreWriteDuration, loratrf_store_write_duration_seconds)
// and a failure is counted (CoreMetrics::StoreWriteFailed, loratrf_store_write_failures_total);
// the result comes back as it came, for the caller to return or log. AlreadyExists is the
// store's answer to a duplicate (a job id, a checkpoint id), not a failed write, and is not
// counted. The time is taken from a monotonic clock, not the core's Clock: a test's fake clock
// does not move while a write runs. Needs mu.
void CountStoreWrite(CoreState& core, absl::Duration took, const absl::Status& status);
inline const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}
// Each write is also counted by core.sync and noted for this thread: RunWakeups waits until it
// is durable before anything that depends on it leaves the core.
void NoteStoreWrite(CoreState& core);
template <typename Write>
auto StoreWrite(CoreState& core, Write&& write) {
  const auto start = std::chrono::steady_clock::now();
  auto result = std::forward<Write>(write)();
  NoteStoreWrite(core);
  CountStoreWrite(core, absl::FromChrono(std::chrono::steady_clock::now() - start),
                  StatusOf(result));
  return result;
}
// Waits (without mu) until every write counted so far is durable: for entry points that read
// state other callers may have just written, so that they never show what is not durable yet.
void AwaitDurable(CoreState& core);

}  // namespace core_internal

}  // namespace loratrf::server
