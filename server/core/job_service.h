// JobServiceCore: the coordinator's logic, with no gRPC in sight (docs/architecture.md,
// convention 1). The gRPC handlers (server/grpc/) authenticate the caller, convert nothing but
// framing, and call one method here; errors come back as absl::Status and one function
// (proto/rpc/status.h) maps them to gRPC codes. docs/control-plane.md is the protocol this
// implements.
//
// Job states (explicit state machine; every transition persists a JobEvent first, then updates
// the in-memory view and wakes watchers, then returns):
//
//   QUEUED ──schedule──▶ SCHEDULED ──first report──▶ RUNNING ──node 0 success──▶ SUCCEEDED
//     ▲                      │                          │
//     └── RESTARTING ◀───────┴── worker lost, rank died ┘   (attempt + 1 while max_restarts
//                                (retryable)                  allows, else FAILED)
//   QUEUED | SCHEDULED | RUNNING | RESTARTING ──cancel──▶ CANCELLED
//   any active state ──user error (rank exit 2)──▶ FAILED;  QUEUED ──unschedulable──▶ FAILED
//
// Threading: thread-safe. One mutex (CoreState::mu) guards all in-memory state; store writes
// happen under it so that events are persisted in the order they are published. Streams (watch,
// commands) never block the core: they are woken through a callback and pull what is ready.
// Time comes from a Clock so that tests can drive leases; Tick() does the periodic work (lease
// expiry, scheduling) and is called by the coordinator's background thread or by tests.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/artifacts/artifact_store.h"
#include "server/core/clock.h"
#include "server/core/event_stream.h"
#include "server/core/scheduler.h"
#include "proto/loratrf/v1/job_service.pb.h"
#include "proto/loratrf/v1/worker_service.pb.h"
#include "server/store/job_store.h"

namespace loratrf::server {

// The core's state and lock (server/core/core_state.h, private to server/core).
struct CoreState;

// Who is calling, as the gRPC layer established it (docs/control-plane.md, "Identity and
// auth"). Which jobs a caller may see and act on: CheckJobAccess (server/core/job_access.h).
struct Caller {
  std::string principal;  // a user's name (a job's owner) or a worker's name
  bool may_submit = true;     // the `user` role
  bool may_work = true;       // the `worker` role
  bool admin = false;         // the `admin` role: every owner's jobs, and the operator RPCs
};

struct CoreOptions {
  absl::Duration lease_ttl = absl::Seconds(10);
  int max_running_per_owner = 0;  // 0: no limit
  uint64_t max_running_slots_per_owner = 0;  // slots held by an owner's jobs; 0: no limit
  int max_queued_per_owner = 0;   // QUEUED jobs per owner, beyond which SubmitJob refuses; 0: none
  std::map<std::string, double> owner_weights;  // fair share within a priority; default 1
  uint32_t rendezvous_port_low = 29500;
  uint32_t rendezvous_port_high = 29999;
  int event_ring_size = 1024;     // recent events kept in memory per active job
  // Garbage collection (CollectGarbage; zero: never). Final jobs older than this are purged
  // (record, events, checkpoints).
  absl::Duration finished_job_ttl = absl::ZeroDuration();
  // LOST workers are forgotten (table and store) this long after their lease lapsed.
  absl::Duration lost_worker_ttl = absl::Hours(24);
  // An idempotency key names its job for this long after the job's creation; then the same key
  // makes a new job.
  absl::Duration idempotency_window = absl::Hours(24);
  // A stop with checkpoint (pause, priority preemption, worker drain) that has not ended in a
  // preempted report after this long is restarted anyway from the latest committed checkpoint.
  absl::Duration stop_timeout = absl::Seconds(90);
  // An attempt that has run (since it was placed) for less than this is never chosen as a
  // victim of priority preemption, so that a job is not preempted again before it progresses.
  absl::Duration min_run_before_preempt = absl::Minutes(5);
};

// Why a running attempt is asked to checkpoint and stop (CoreMetrics::JobPreempted, the label
// of loratrf_preemptions_total).
enum class StopKind {
  kPriority,  // a higher-priority queued job needs its slots
  kPause,     // PauseJob
  kDrain,     // CordonWorker with ACTION_DRAIN
};

// What the core counts for /metrics (server/metrics implements it with prometheus-cpp; tests
// pass nullptr or a fake).
class CoreMetrics {
 public:
  virtual ~CoreMetrics() = default;
  virtual void JobSubmitted() = 0;
  virtual void JobFinished(v1::JobState final_state) = 0;
  virtual void JobRestarted() = 0;
  virtual void WorkerLost() = 0;
  virtual void SchedulingLatency(absl::Duration queued_for) = 0;
  virtual void Gauges(int64_t queued, int64_t running, int64_t workers_ready, int64_t slots_total,
                      int64_t slots_free) = 0;
  virtual void CheckpointBytes(uint64_t bytes) = 0;
  // A JobStore write (a job and its events, a new job, a checkpoint record, a worker record)
  // failed. The core keeps serving from memory and retries what it can, but what it could not
  // persist is lost on a restart: an operator alerts on any of these.
  virtual void StoreWriteFailed() = 0;
  // How long one JobStore write took, failed or not (a slow disk shows here before it fails).
  virtual void StoreWriteDuration(absl::Duration took) = 0;
  // A job reached `final_state` after it had run: `ran_for` is from its first RUNNING (the
  // persisted started_at, so it spans restarts of the job and of the coordinator) to the end.
  // Jobs that never ran (cancelled or failed while queued) are not observed.
  virtual void JobRunDuration(v1::JobState final_state, absl::Duration ran_for) = 0;
  // One scheduling pass over the queue (wall time, whatever the core's Clock says).
  virtual void SchedulerPass(absl::Duration took) = 0;
  // A worker's lease lapsed without a heartbeat.
  virtual void LeaseExpired() = 0;
  // SubmitJob answered with the job an idempotency key already named (same key, same spec).
  virtual void IdempotentReplay() = 0;
  // The queue now: queued jobs per spec.priority value (only values with jobs are present;
  // the implementation bounds the label set) and how long the longest-waiting one has waited
  // since it last entered QUEUED (zero when the queue is empty). Recomputed from the core's
  // tables on every tick and after recovery, so it is right after a restart.
  virtual void QueueGauges(const std::map<int32_t, int64_t>& queued_by_priority,
                           absl::Duration oldest_queued) = 0;
  // Committed checkpoints held in the artifact store and the bytes of their files (the
  // ArtifactStore's own count, rebuilt from the data dir when it opens).
  virtual void StoredCheckpoints(int64_t checkpoints, uint64_t bytes) = 0;
  // Garbage collection deleted `checkpoints` checkpoints (retention, DeleteJob, the finished
  // job TTL) whose files held `bytes`. Not pure, so that fakes need not care.
  virtual void GcDeleted(int64_t checkpoints, uint64_t bytes) {
    (void)checkpoints;
    (void)bytes;
  }
  // A running attempt was asked to checkpoint and stop (counted when asked, once per stop).
  virtual void JobPreempted(StopKind why) = 0;
};

// A worker's command stream: assignments and cancellations, pulled by the gRPC layer.
class CommandStream {
 public:
  virtual ~CommandStream() = default;
  enum class Poll { kCommand, kWait, kEnd };
  // kEnd: the lease ended (lost, replaced by a new registration) or the core is draining.
  virtual Poll Next(v1::WorkerCommand& command) = 0;
  // Called from any thread when Next may have something new; must not block. Set before the
  // first Next.
  virtual void SetNotify(std::function<void()> notify) = 0;
};

class JobServiceCore {
 public:
  // Rebuilds the in-memory state from `store` (Recover): queued jobs keep their order; active
  // jobs wait for their workers to re-register within one lease TTL, then are requeued.
  static absl::StatusOr<std::unique_ptr<JobServiceCore>> Create(JobStore* store,
                                                                ArtifactStore* artifacts,
                                                                Clock* clock,
                                                                CoreMetrics* metrics,
                                                                CoreOptions options);
  ~JobServiceCore();

  // ---- JobService -------------------------------------------------------------------------
  // Validates the spec (spec::ValidateJobSpec: InvalidArgument naming the field), queues it.
  // `idempotency_key`: at most 128 printable ASCII characters; a repeat returns the first job
  // with `existing` true.
  absl::StatusOr<v1::SubmitJobResponse> SubmitJob(const Caller& caller,
                                                  const v1::SubmitJobRequest& request);
  // The RPCs' reads take the Caller and answer only what CheckJobAccess allows it (a user's
  // own jobs; an admin's, every job); PermissionDenied otherwise. The overloads without a
  // Caller read unscoped, for the coordinator's own use and tests.
  absl::StatusOr<v1::Job> GetJob(const Caller& caller, const std::string& id);
  absl::StatusOr<v1::Job> GetJob(const std::string& id);
  // A user's listing is their own jobs (request.owner empty or their name; another owner is
  // PermissionDenied); an admin lists anyone's.
  absl::StatusOr<v1::ListJobsResponse> ListJobs(const Caller& caller,
                                                const v1::ListJobsRequest& request);
  absl::StatusOr<v1::ListJobsResponse> ListJobs(const v1::ListJobsRequest& request);
  // Idempotent; a final job comes back unchanged. Its workers get a Cancellation. Owner or
  // admin only, final jobs included.
  absl::StatusOr<v1::Job> CancelJob(const Caller& caller, const v1::CancelJobRequest& request);
  // The stream ends with an error (EventStream::status) when a store read fails mid-replay.
  absl::StatusOr<std::unique_ptr<EventStream>> WatchJob(const Caller& caller,
                                                        const v1::WatchJobRequest& request);
  absl::StatusOr<std::unique_ptr<EventStream>> WatchJob(const v1::WatchJobRequest& request);
  absl::StatusOr<v1::ListCheckpointsResponse> ListCheckpoints(const Caller& caller,
                                                              const std::string& job_id);
  absl::StatusOr<v1::ListCheckpointsResponse> ListCheckpoints(const std::string& job_id);
  // The checkpoint to send (`checkpoint_id` empty: the final one, else the latest) and a reader
  // of its files.
  // Only the job's owner, an admin, or a worker (to resume) may read its checkpoints.
  absl::StatusOr<std::pair<v1::Checkpoint, std::unique_ptr<ArtifactStore::Reader>>>
  OpenCheckpoint(const Caller& caller, const v1::DownloadCheckpointRequest& request);
  v1::ListWorkersResponse ListWorkers();
  // A final job's checkpoints (records, then files) go; with request.purge its record, events
  // and idempotency key too. FailedPrecondition for a job that is not final; only its owner.
  absl::StatusOr<v1::DeleteJobResponse> DeleteJob(const Caller& caller,
                                                  const v1::DeleteJobRequest& request);
  // Owner only. A QUEUED job is held (paused, QUEUE_REASON_PAUSED); a SCHEDULED or RUNNING one
  // is marked paused and stopped with a checkpoint, then held; a paused job is returned as is;
  // a final one is FAILED_PRECONDITION.
  absl::StatusOr<v1::Job> PauseJob(const Caller& caller, const v1::PauseJobRequest& request);
  // Owner only. Lets a paused job be scheduled again (from its latest checkpoint); a job that
  // is not paused is returned as is; a final one is FAILED_PRECONDITION.
  absl::StatusOr<v1::Job> ResumeJob(const Caller& caller, const v1::ResumeJobRequest& request);
  // Cordon (no new jobs), drain (cordon, and every job on it stops with a checkpoint and is
  // requeued elsewhere) or uncordon a worker. NOT_FOUND for an unknown worker, INVALID_ARGUMENT
  // for ACTION_UNSPECIFIED. The cordon is persisted: it survives the agent's re-registration
  // and a coordinator restart.
  absl::StatusOr<v1::Worker> CordonWorker(const Caller& caller,
                                          const v1::CordonWorkerRequest& request);

  // ---- WorkerService ----------------------------------------------------------------------
  // `caller.principal` must equal request.name when auth is on (the gRPC layer checks).
  absl::StatusOr<v1::RegisterResponse> Register(const v1::RegisterRequest& request);
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request);
  absl::StatusOr<std::unique_ptr<CommandStream>> StreamCommands(
      const v1::StreamCommandsRequest& request);
  absl::StatusOr<v1::ReportEventsResponse> ReportEvents(const v1::ReportEventsRequest& request);
  // An upload: BeginUpload with the header, Write each chunk, FinishUpload.
  class CheckpointUpload {
   public:
    virtual ~CheckpointUpload() = default;
    virtual absl::Status Write(const v1::FileChunk& chunk) = 0;
    // Verifies, commits the files, records the checkpoint and its event.
    virtual absl::StatusOr<v1::Checkpoint> Finish() = 0;
  };
  absl::StatusOr<std::unique_ptr<CheckpointUpload>> BeginUpload(
      const v1::UploadCheckpointRequest::Header& header);

  // ---- lifecycle --------------------------------------------------------------------------
  // Expires leases and overdue stops, schedules queued jobs, then lets queued jobs that still
  // do not fit preempt lower-priority ones. Walks every slot holder: call it periodically.
  void Tick();
  // Only the scheduling pass of Tick, and only if something changed since the last one: what
  // the schedule hook's caller runs between ticks, so that a freed slot or a new job is served
  // at once without the sweeps (which cost in proportion to the running jobs).
  void ScheduleIfChanged();
  // One garbage-collection pass (the TTLs of CoreOptions), bounded; called by the coordinator's
  // background thread every few seconds, or by tests. Holds the core's lock only for store
  // writes, never while files are removed.
  void CollectGarbage();
  // Called (outside the core's lock, from whatever thread made the change) when there is new
  // scheduling work — a job queued, slots freed, a worker joined — so that the caller can Tick
  // now instead of at its next period. Set once, before the core is shared.
  void SetScheduleHook(std::function<void()> hook);
  // After this every call returns UNAVAILABLE and open streams end (kEnd).
  void Drain();
  bool draining() const;

 private:
  explicit JobServiceCore(std::shared_ptr<CoreState> state);
  // Shared with the streams and uploads it hands out, which may outlive a call but never use it
  // after Drain.
  std::shared_ptr<CoreState> state_;
};

}  // namespace loratrf::server
