// The worker agent (`loratrf-worker agent`, docs/control-plane.md "Workers"): registers this
// node's slots with the coordinator, keeps the lease alive, follows the command stream and runs
// one AttemptRunner per assigned attempt.
//
//   start ─▶ Register ─▶ heartbeat thread (every heartbeat_interval)
//                 ▲      command stream: Assignment → AttemptRunner, Cancellation → Cancel
//                 │              │ stream ends / fails: back off, reopen (with the new lease)
//                 └── FAILED_PRECONDITION or NOT_FOUND on a heartbeat, the stream or a report
//                     whose lease is gone: register again, listing the attempts still running
//   SIGTERM/SIGINT ─▶ Drain(): heartbeats say draining (no new placements), assignments that
//                     still come are handed back at once; every attempt's ranks stop after a
//                     checkpoint (AttemptRunner::Drain, up to drain_timeout), node 0 uploads
//                     it, RESTARTING preempted is reported; then Shutdown(), exit 0
//   again ─▶ Shutdown(): ranks stopped at once, RESTARTING reported, exit 0
//   Cancellation with checkpoint_first ─▶ AttemptRunner::Drain for that attempt alone
//
// Work dir: WORK_DIR/jobs/JOB_ID belongs to the job's attempts here. Once no attempt of the job
// runs, it is deleted if the last one ended SUCCEEDED (the final checkpoint uploaded and the
// report accepted) or cancelled; else it is kept for keep_failed_for (from the moment that
// attempt ended, recorded in its .ended file) for debugging. A sweep does this at start and
// every heartbeat interval, renaming a doomed dir away under runners_mu_ (so that no new
// attempt can start in it) and deleting it outside the lock.
//
// Attempts: a new attempt of a job supersedes the running one, which is cancelled and moved to
// retiring_ (never joined on the command loop); the new attempt's own thread first waits, in
// Acquire(), until the superseded ranks are gone (they share the job's output directory) and
// until enough GPUs (CUDA) or slots (CPU) are free: up to kSlotWait for ranks of other
// attempts that are still being stopped, then a CUDA attempt fails RESTARTING and a CPU one
// starts anyway. Ended attempts are destroyed (an immediate join) by PruneLocked(), called by
// every heartbeat, assignment and waiting attempt.
//
// Threading: Run() runs the command stream on the calling thread and owns a heartbeat thread;
// each attempt has its own thread. register_mu_ serializes registering and checking the lease
// (held across those RPCs); lease_mu_ guards the lease fields (held briefly); runners_mu_
// guards the attempts, the GPU and slot reservations, finished_ and disposable_jobs_;
// stream_mu_ the open stream's context; stop_mu_ the stop flag; drain_thread_mu_ the drain
// thread. Lock order: register_mu_ → runners_mu_ / lease_mu_ / stream_mu_; the last four are
// never held together. draining_ is atomic. A drain thread (Drain) waits for the attempts and
// then calls Shutdown(); a sweeper thread cleans the work dir.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>


#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/agent/agent_metrics.h"
#include "worker/agent/attempt_runner.h"
#include "worker/agent/coordinator_link.h"
#include "worker/agent/path_policy.h"
#include "proto/rpc/channel.h"

// RunAgent (run_agent.h): `loratrf-worker agent --coordinator HOST:PORT --slots N
// --work-dir DIR [--name NAME] [--metrics-listen HOST:PORT] [--token-file F] [--tls-ca F]
// [--address HOST] [--device auto|cpu|cuda] [--drain-timeout DURATION]
// [--keep-failed-for DURATION]`. Exit 2 on bad flags or files.
namespace loratrf::worker::agent {

// The latest attempt of each job that ended here and was reported, so that a re-sent
// assignment of it (or of an older attempt) is not run again. Bounded: at most `max_jobs`
// jobs; past that, the job least recently added or asked about is forgotten.
// Threading: none (the agent guards it with runners_mu_).
class FinishedAttempts {
 public:
  explicit FinishedAttempts(size_t max_jobs = 4096) : max_jobs_(max_jobs < 1 ? 1 : max_jobs) {}
  void Add(const std::string& job, uint32_t attempt);
  // True when `attempt` of `job`, or a later attempt, has ended: the assignment is a repeat or
  // an old one. Counts as a use of the job's entry.
  bool Covers(const std::string& job, uint32_t attempt);
  size_t size() const { return jobs_.size(); }

 private:
  struct Entry {
    uint32_t attempt = 0;
    uint64_t used = 0;  // clock_ at the last Add or Covers
  };
  const size_t max_jobs_;
  uint64_t clock_ = 0;
  std::map<std::string, Entry> jobs_;
};

struct AgentOptions {
  std::string coordinator;      // HOST:PORT (or any gRPC target)
  std::string name;             // [a-z0-9-.]{1,63}
  std::string work_dir;
  std::string address;          // what peers dial for a rendezvous on this node
  std::string executable;       // the binary the ranks run (/proc/self/exe)
  std::string version;
  uint32_t slots = 1;
  v1::Device device = v1::DEVICE_CPU;
  std::vector<std::string> gpus;  // CUDA: the device ids a rank's CUDA_VISIBLE_DEVICES names
  absl::Duration kill_grace = absl::Seconds(3);
  // How long each rank's rendezvous and collectives wait for a dead or stopped peer (the ranks'
  // --collective-timeout); zero: the ranks' own default.
  absl::Duration collective_timeout = absl::ZeroDuration();
  // On SIGTERM (Drain) or a checkpoint_first Cancellation: how long ranks get to finish their
  // step, commit a checkpoint and exit. With the upload after it, this must fit Kubernetes'
  // terminationGracePeriodSeconds (docs/operations.md).
  absl::Duration drain_timeout = absl::Seconds(25);
  // After it: how long node 0 retries uploading what the ranks committed.
  absl::Duration drain_upload_timeout = absl::Seconds(30);
  // How long the work dir of a job whose last attempt here did not succeed is kept.
  absl::Duration keep_failed_for = absl::Hours(24);
  // --allow-path: what jobs' model and data paths may name (path_policy.h).
  PathPolicy paths = PathPolicy::Unrestricted();
};

class Agent : public CoordinatorLink {
 public:
  // `channel` leads to options.coordinator (with the token and TLS of the command line).
  Agent(AgentOptions options, rpc::ClientChannel channel, std::unique_ptr<AgentMetrics> metrics);
  ~Agent() override;

  // Registers (retrying while the coordinator is unreachable), then serves commands until
  // Shutdown(). Returns the exit status: 0 after Shutdown, 2 when the coordinator refuses the
  // registration itself (bad name, token or role).
  int Run();
  // Safe from any thread (the signal thread); Run() returns soon after.
  void Shutdown();
  // Stop gracefully (see above); returns at once, Run() returns once the attempts have ended
  // (at most drain_timeout + drain_upload_timeout and a few seconds later). Safe from any
  // thread; later calls do nothing.
  void Drain();

  // CoordinatorLink
  std::unique_ptr<grpc::ClientContext> NewContext(absl::Duration timeout) override;
  v1::WorkerService::StubInterface& workers() override { return *workers_; }
  v1::JobService::StubInterface& jobs() override { return *jobs_; }
  const std::string& worker_name() const override { return options_.name; }
  uint64_t lease_id() override;
  absl::StatusOr<bool> RecoverLease(uint64_t used_lease) override;

 private:
  absl::Status RegisterLocked();                           // register_mu_ held
  absl::Status HeartbeatOnce(uint64_t lease, absl::Duration lease_ttl);  // takes no lock
  void HeartbeatLoop();
  void CommandLoop();
  void Handle(const v1::WorkerCommand& command);
  void Assign(const v1::Assignment& assignment);
  // AttemptEnvironment::acquire for `runner` (on its thread; takes runners_mu_).
  absl::StatusOr<std::vector<std::string>> Acquire(const AttemptRunner& runner, bool cuda);
  // The attempts still running; finished ones are removed (their GPUs freed) on the way.
  std::vector<v1::RunningAttempt> Running();
  void PruneLocked();                                      // runners_mu_ held
  // Takes every attempt out (on shutdown); no reservation is made after it.
  std::vector<std::unique_ptr<AttemptRunner>> TakeAllRunners();
  bool WaitUnlessStopping(absl::Duration duration);        // false once stopping
  bool stopping();
  // The drain thread: one heartbeat saying so, then waits for the attempts, then Shutdown().
  void DrainThenStop();
  // Deletes the job dirs no attempt uses whose time has come (see above).
  void SweepWorkDir();
  void SweepLoop();
  std::string JobsDir() const { return options_.work_dir + "/jobs"; }

  const AgentOptions options_;
  const std::unique_ptr<AgentMetrics> metrics_;
  const rpc::ClientChannel channel_;
  std::unique_ptr<v1::WorkerService::StubInterface> workers_;
  std::unique_ptr<v1::JobService::StubInterface> jobs_;

  std::mutex register_mu_;  // serializes Register and RecoverLease; guards no field
  std::mutex lease_mu_;
  uint64_t lease_id_ = 0;                                  // guarded by lease_mu_
  absl::Duration heartbeat_interval_ = absl::Seconds(3);   // guarded by lease_mu_
  absl::Duration lease_ttl_ = absl::Seconds(10);           // guarded by lease_mu_

  // What an attempt holds from Acquire() until its ranks are gone.
  struct Reservation {
    uint32_t slots = 0;
    std::vector<std::string> gpus;
  };
  std::mutex runners_mu_;
  std::condition_variable runners_cv_;                     // with runners_mu_: closed_ set
  // The current attempt of each job (by job id); guarded by runners_mu_.
  std::map<std::string, std::unique_ptr<agent::AttemptRunner>> runners_;
  // Superseded attempts, cancelled, until their threads end; guarded by runners_mu_.
  std::vector<std::unique_ptr<agent::AttemptRunner>> retiring_;
  // By attempt (in runners_ or retiring_; erased before it is destroyed); guarded.
  std::map<const agent::AttemptRunner*, Reservation> reserved_;
  FinishedAttempts finished_;                              // guarded by runners_mu_
  bool closed_ = false;                                    // shutting down; guarded
  // Jobs whose last attempt here ended SUCCEEDED or cancelled: their dir goes at the next
  // sweep unless a new attempt of the job arrives first; guarded by runners_mu_.
  std::set<std::string> disposable_jobs_;
  uint64_t trash_counter_ = 0;                             // guarded by runners_mu_

  std::atomic<bool> draining_{false};
  std::mutex drain_thread_mu_;
  std::thread drain_thread_;                               // guarded by drain_thread_mu_

  std::mutex stream_mu_;
  grpc::ClientContext* stream_context_ = nullptr;          // guarded by stream_mu_

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;                                  // guarded by stop_mu_
};

}  // namespace loratrf::worker::agent
