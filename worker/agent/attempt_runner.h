// One attempt of one job on this worker (docs/control-plane.md, "Workers" step 4 and
// "Reports"): writes WORK_DIR/jobs/JOB_ID/attempt-N/job.json, downloads the checkpoint it
// resumes from into WORK_DIR/jobs/JOB_ID/output/checkpoints/STEP/, starts the node's
// `loratrf-worker run --rank R` processes, relays node 0's metrics.jsonl rows and uploads its
// committed checkpoints, and reports how its part ended:
//
//   assignment ─▶ prepare (spec, resume checkpoint) ─▶ ranks running ─▶ all exit 0 ─▶ upload
//       │               │ failure: RESTARTING             │  any exit 2: FAILED       final/
//       │               ▼                                 │  other exit: RESTARTING     │
//       └──── Cancel / stale (FAILED_PRECONDITION) / Shutdown: ranks stopped ◀──────┘ SUCCEEDED
//
// A drain (the agent's SIGTERM, or a Cancellation with checkpoint_first) asks the ranks to stop
// after a checkpoint: SIGTERM to each, up to drain_timeout for them to finish their step,
// commit a checkpoint and exit with contract::kRunExitStopped (SIGKILL at the deadline); node 0
// then uploads the committed checkpoints not sent yet, and the end is reported RESTARTING with
// StateChange.preempted set, so that the coordinator requeues the job without using a restart
// (plain RESTARTING when the ranks did not stop that way; SUCCEEDED as usual if they finished).
// Ranks that stop that way unasked (a peer on another node was asked) end the same. A node
// other than 0 holds its report back for drain_upload_timeout (the attempt still listed as
// running), so that node 0's upload and report come first: they end the attempt and this
// part is cancelled.
// A Cancellation stops the ranks (SIGTERM to each process group, SIGKILL after kill_grace) and
// reports nothing more; a stale attempt (the coordinator refuses its reports) likewise; the
// agent stopping reports RESTARTING. Local state that the coordinator does not know of
// (checkpoints after the resume step, final/, later metrics rows) is removed before the ranks
// start, so every node resumes from the same step. Before that, env.acquire (the agent) may
// hold the attempt until the node can run it: a superseded attempt's ranks gone, enough GPUs
// or slots free. A checkpoint upload answered ALREADY_EXISTS (a retry whose first reply was
// lost) counts as uploaded.
//
// Threading: Start() runs the attempt on its own thread, which starts, watches and stops the
// ranks (they die with it). Cancel/Shutdown/Drain/done/ranks_gone/stop_requested/Join are safe
// from any thread; drain_mu_ guards the drain's reason and timeout.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/agent/agent_metrics.h"
#include "worker/agent/checkpoint_transfer.h"
#include "worker/agent/coordinator_link.h"
#include "worker/agent/events_reporter.h"
#include "worker/agent/path_policy.h"
#include "proto/loratrf/v1/worker_service.pb.h"

namespace loratrf::worker::agent {

class AttemptRunner;

struct AttemptEnvironment {
  std::string work_dir;
  std::string executable;                // the loratrf-worker binary the ranks run
  CoordinatorLink* link = nullptr;
  AgentMetrics* metrics = nullptr;
  std::vector<std::string> rank_env;     // NAME=VALUE added to the ranks' environment
  // What the spec's model and data paths may name; job.json gets their resolved forms.
  PathPolicy paths = PathPolicy::Unrestricted();
  std::string setup_error;               // non-empty: the agent cannot run it (RESTARTING)
  // Called on the attempt's thread before anything else: waits (bounded, returning early once
  // the attempt is stopped) until the node can run the attempt (a superseded attempt's ranks
  // are gone, enough GPUs or slots are free) and reserves them until ranks_gone(). Returns
  // NAME=VALUE entries to add to rank_env (CUDA_VISIBLE_DEVICES), or an error: the attempt
  // ends RESTARTING with its message (Cancelled: stopped while waiting). Unset: no wait.
  std::function<absl::StatusOr<std::vector<std::string>>(const AttemptRunner&)> acquire;
  absl::Duration kill_grace = absl::Seconds(3);
  absl::Duration collective_timeout = absl::ZeroDuration();  // zero: the ranks' default
  absl::Duration poll_interval = absl::Milliseconds(200);
  absl::Duration final_report_timeout = absl::Minutes(10);
  // After a drain: how long node 0 keeps retrying the upload of the checkpoints the ranks
  // committed (the agent's own deadline may cut it shorter).
  absl::Duration drain_upload_timeout = absl::Seconds(30);
};

class AttemptRunner {
 public:
  AttemptRunner(AttemptEnvironment env, v1::Assignment assignment);
  ~AttemptRunner();  // Shutdown() and Join()
  AttemptRunner(const AttemptRunner&) = delete;
  AttemptRunner& operator=(const AttemptRunner&) = delete;

  void Start();
  // The coordinator cancelled the attempt: stop the ranks, report nothing more.
  void Cancel(const std::string& reason);
  // The agent is stopping: stop the ranks, report RESTARTING (briefly).
  void Shutdown();
  // Stop after a checkpoint (see above): the ranks get `timeout` to commit it and exit. The
  // first call counts; Cancel/Shutdown still stop at once.
  void Drain(const std::string& reason, absl::Duration timeout);
  bool drain_requested() const { return drain_.load(); }
  // Its end leaves nothing to debug: SUCCEEDED and accepted (the final checkpoint is uploaded),
  // or cancelled. Valid once done().
  bool work_dir_disposable() const { return disposable_.load(); }
  // The attempt's thread has finished (its ranks are gone).
  bool done() const { return done_.load(); }
  // Its ranks are gone (or never started): its GPUs and slots are free, though the thread may
  // still be delivering its last reports.
  bool ranks_gone() const { return ranks_gone_.load(); }
  // Cancel, Shutdown or a stale-attempt refusal has stopped it.
  bool stop_requested() const { return stopping(); }
  // Its final state report was accepted by the coordinator.
  bool reported_end() const { return reported_end_.load(); }
  void Join();

  const std::string& job_id() const { return assignment_.job_id(); }
  uint32_t attempt() const { return assignment_.attempt(); }
  uint32_t local_world_size() const { return assignment_.local_world_size(); }

 private:
  enum Stop : int { kNone = 0, kCancelled, kStale, kShutdown };
  struct Outcome {
    v1::JobState state = v1::JOB_STATE_UNSPECIFIED;  // UNSPECIFIED: stopped (see stop_)
    std::string reason;
    bool preempted = false;  // RESTARTING after the ranks committed a checkpoint as asked
  };

  void Run();
  Outcome Execute();
  // Checks the spec's paths (a refusal is a user error: FAILED), writes job.json with them
  // resolved, fetches the resume checkpoint, clears local state the coordinator does
  // not know of. Returns the step the ranks resume from (0: a fresh start).
  absl::StatusOr<uint64_t> Prepare();
  absl::Status ClearLocalState(uint64_t resume_step);
  // Uploads committed checkpoints not sent yet (node 0); errors other than a stale attempt are
  // retried on a later call.
  void UploadNewCheckpoints();
  // Committed checkpoints after the resume step that are not uploaded yet, by step.
  std::vector<uint64_t> PendingCheckpoints();
  // UploadNewCheckpoints until none is pending, the attempt is stopped, or `budget` is spent.
  void UploadPendingCheckpoints(absl::Duration budget);
  absl::Duration DrainTimeout() const;
  std::string DrainReason() const;
  absl::Status UploadFinal();
  // One upload, its time observed in the attempt's series, a failure counted.
  absl::Status TimedUpload(const LocalCheckpoint& checkpoint);
  void RequestStop(Stop why);
  void SleepUnlessStopped(absl::Duration duration);
  bool stopping() const { return stop_.load() != kNone; }
  absl::StatusOr<uint64_t> SendReport(uint64_t first, const std::vector<v1::JobEvent>& events);

  const AttemptEnvironment env_;
  const v1::Assignment assignment_;
  const std::string job_dir_, attempt_dir_, output_dir_;
  std::string CheckpointsDir() const;  // output_dir_'s committed checkpoints
  std::string FinalDir() const;        // output_dir_'s final checkpoint
  std::atomic<int> stop_{kNone};
  std::atomic<bool> done_{false};
  std::atomic<bool> ranks_gone_{false};
  std::atomic<bool> reported_end_{false};
  std::atomic<bool> disposable_{false};
  std::atomic<bool> drain_{false};  // set once drain_reason_ and drain_timeout_ are
  mutable std::mutex drain_mu_;
  std::string drain_reason_;                           // guarded by drain_mu_
  absl::Duration drain_timeout_ = absl::ZeroDuration();  // guarded by drain_mu_
  CallCanceller transfers_;        // the upload or download in flight
  std::unique_ptr<EventsReporter> reporter_;  // made by the constructor, used by all threads
  // Owned by the attempt's thread:
  std::vector<std::string> rank_env_;  // env_.rank_env and what env_.acquire added
  uint64_t resume_step_ = 0;
  std::set<uint64_t> uploaded_;    // checkpoint steps sent (or not to be sent)
  std::unique_ptr<AttemptSeries> series_;  // while Execute() runs, on the attempt's thread
  absl::Time next_upload_try_ = absl::InfinitePast();
  std::thread thread_;
};

}  // namespace loratrf::worker::agent
