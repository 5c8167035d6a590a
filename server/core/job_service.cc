#include "server/core/job_service.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "proto/spec/job_spec.h"

namespace loratrf::server {
namespace {

using google::protobuf::util::TimeUtil;

constexpr size_t kMaxIdempotencyKey = 128;
constexpr size_t kMaxReason = 1024;
constexpr int kStoreBatch = 256;  // events read from the store at a time by a lagging watcher

google::protobuf::Timestamp ToProto(absl::Time time) {
  return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(time));
}

bool IsFinal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

// Holds slots on its workers.
bool HoldsSlots(v1::JobState state) {
  return state == v1::JOB_STATE_SCHEDULED || state == v1::JOB_STATE_RUNNING;
}

std::string Truncated(std::string text, size_t max) {
  if (text.size() > max) text.resize(max);
  return text;
}

absl::Status CheckWorkerName(const std::string& name) {
  if (name.empty() || name.size() > 63) {
    return absl::InvalidArgumentError("name: must be 1 to 63 characters");
  }
  for (char c : name) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '.')) {
      return absl::InvalidArgumentError(
          absl::StrCat("name: '", name, "' may only hold a-z, 0-9, '-' and '.'"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// State

struct JobServiceCore::Impl : std::enable_shared_from_this<JobServiceCore::Impl> {
  class EventStreamImpl;
  class CommandStreamImpl;

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
  };

  struct WorkerEntry {
    v1::Worker worker;
    uint64_t lease_id = 0;
    absl::Time lease_expires;
    bool schedulable = false;  // registered in this process (recovered records are not)
    std::deque<v1::WorkerCommand> commands;
    uint64_t stream_generation = 0;  // a new stream ends the older ones
    std::function<void()> notify;    // the current stream's wake-up
    std::set<std::pair<std::string, uint32_t>> reported_running;
  };

  // Recent events of a job and who watches them.
  struct JobEventLog {
    std::deque<v1::JobEvent> recent;  // the last ring-size events, ascending seq
    std::vector<std::weak_ptr<EventStreamImpl>> watchers;
  };

  JobStore* store;
  ArtifactStore* artifacts;
  Clock* clock;
  CoreMetrics* metrics;
  CoreOptions options;

  mutable std::mutex mu;
  bool draining = false;                       // guarded by mu
  bool schedule_dirty = true;                  // guarded by mu: something changed since Tick
  absl::Time fleet_changed;                    // guarded by mu: a worker last joined or left
  bool last_pass_settled = false;              // guarded by mu: the last scheduling pass judged
                                               // unschedulable jobs
  uint64_t next_order = 1;                     // guarded by mu
  uint64_t next_lease_id = 0;                  // guarded by mu
  std::map<std::string, ActiveJob> active;     // guarded by mu
  std::map<std::string, WorkerEntry> workers;  // guarded by mu
  std::map<std::string, JobEventLog> logs;     // guarded by mu
  absl::BitGen random;                         // guarded by mu
  std::set<uint32_t> ports_in_use;             // guarded by mu: rendezvous ports of attempts
  std::function<void()> schedule_hook;         // set once before use (SetScheduleHook)

  // Wake-ups collected under mu and run after it is released (they may call back into us).
  using Wakeups = std::vector<std::function<void()>>;
  // Declared before the lock in every entry point, so that the wake-ups run after the lock is
  // released on every return path, errors included.
  struct RunOnExit {
    Wakeups& wakeups;
    ~RunOnExit() { Run(wakeups); }
  };

  absl::Time Now() { return clock->Now(); }

  // ---- persistence + publication ----------------------------------------------------------

  // Persists `job` with `events`, then updates the cache and queues the watchers' wake-ups.
  absl::Status Commit(v1::Job job, std::vector<v1::JobEvent> events, Wakeups& wakeups) {
    absl::Time now = Now();
    *job.mutable_updated_at() = ToProto(now);
    for (v1::JobEvent& event : events) {
      event.set_job_id(job.id());
      if (!event.has_time()) *event.mutable_time() = ToProto(now);
      if (event.attempt() == 0) event.set_attempt(job.attempt());
    }
    ASSIGN_OR_RETURN(AppendResult result, store->UpdateJobAndAppendEvents(job, events));
    if (auto it = active.find(job.id()); it != active.end()) {
      it->second.job = result.job;
      if (IsFinal(result.job.state())) active.erase(it);
    }
    Publish(result.job.id(), result.events, IsFinal(result.job.state()), wakeups);
    MarkScheduleDirty(wakeups);
    return absl::OkStatus();
  }

  void Publish(const std::string& job_id, const std::vector<v1::JobEvent>& events, bool final,
               Wakeups& wakeups) {
    JobEventLog& log = logs[job_id];
    for (const v1::JobEvent& event : events) {
      log.recent.push_back(event);
      while (log.recent.size() > static_cast<size_t>(options.event_ring_size)) log.recent.pop_front();
    }
    CollectWatchers(log, wakeups);
    // A final job gets no more events: watchers read what is left from the store.
    if (final) logs.erase(job_id);
  }

  static void CollectWatchers(JobEventLog& log, Wakeups& wakeups);

  // Agents register one by one after a (coordinator) start: "can never fit" is judged only once
  // the fleet has been stable for two lease TTLs.
  bool FleetSettled() { return Now() - fleet_changed >= 2 * options.lease_ttl; }

  void MarkScheduleDirty(Wakeups& wakeups) {
    if (!schedule_dirty && schedule_hook) wakeups.push_back(schedule_hook);
    schedule_dirty = true;
  }

  static void Run(Wakeups& wakeups) {
    for (auto& wake : wakeups) wake();
    wakeups.clear();
  }

  // ---- commands ---------------------------------------------------------------------------

  void Send(const std::string& worker_name, v1::WorkerCommand command, Wakeups& wakeups) {
    auto it = workers.find(worker_name);
    // A lost worker's ranks are gone or fenced; it gets a fresh queue when it registers again.
    if (it == workers.end() || it->second.worker.state() == v1::WORKER_STATE_LOST) return;
    it->second.commands.push_back(std::move(command));
    if (it->second.notify) wakeups.push_back(it->second.notify);
  }

  void SendCancellation(const v1::Job& job, const std::string& reason, Wakeups& wakeups) {
    for (const std::string& name : job.workers()) {
      v1::WorkerCommand command;
      command.mutable_cancel()->set_job_id(job.id());
      command.mutable_cancel()->set_attempt(job.attempt());
      command.mutable_cancel()->set_reason(reason);
      Send(name, std::move(command), wakeups);
    }
  }

  // Gives the job's slots back (it left SCHEDULED/RUNNING).
  // Only a worker that still counts the job among its running jobs gives slots back (one that
  // re-registered without the attempt has already recounted its slots).
  void ReleaseSlots(const v1::Job& job) {
    for (const std::string& name : job.workers()) {
      auto it = workers.find(name);
      if (it == workers.end()) continue;
      v1::Worker& worker = it->second.worker;
      auto& running = *worker.mutable_running_jobs();
      auto held = std::remove(running.begin(), running.end(), job.id());
      if (held == running.end()) continue;
      running.erase(held, running.end());
      worker.set_free_slots(std::min(worker.slots(),
                                     worker.free_slots() + job.spec().resources().slots_per_worker()));
    }
  }

  // ---- transitions ------------------------------------------------------------------------

  static v1::JobEvent StateEvent(v1::JobState from, v1::JobState to, const std::string& reason) {
    v1::JobEvent event;
    event.mutable_state_change()->set_from(from);
    event.mutable_state_change()->set_to(to);
    event.mutable_state_change()->set_reason(reason);
    return event;
  }

  // The attempt no longer holds its workers: slots back, ranks stopped (unless it succeeded),
  // port free. Called after the state change is persisted.
  void LeaveWorkers(const v1::Job& before, bool cancel, const std::string& reason,
                    uint32_t port, Wakeups& wakeups) {
    if (!HoldsSlots(before.state())) return;
    ReleaseSlots(before);
    if (cancel) SendCancellation(before, reason, wakeups);
    ports_in_use.erase(port);
  }

  // Moves an active job to a final state: persists first, then frees slots and cancels ranks.
  absl::Status Finish(ActiveJob& entry, v1::JobState to, const std::string& reason,
                      Wakeups& wakeups) {
    const v1::Job before = entry.job;
    const uint32_t port = entry.rendezvous_port;
    v1::Job job = before;
    job.set_state(to);
    job.set_state_reason(reason);
    *job.mutable_finished_at() = ToProto(Now());
    std::vector<v1::JobEvent> events = {StateEvent(before.state(), to, reason)};
    RETURN_IF_ERROR(Commit(std::move(job), std::move(events), wakeups));  // erases `entry`
    LeaveWorkers(before, to != v1::JOB_STATE_SUCCEEDED, reason, port, wakeups);
    if (metrics != nullptr) metrics->JobFinished(to);
    return absl::OkStatus();
  }

  // The attempt is lost: requeue with attempt + 1 while max_restarts allows, else FAILED.
  absl::Status Restart(ActiveJob& entry, const std::string& reason, Wakeups& wakeups) {
    const v1::Job before = entry.job;
    uint32_t restarts_done = before.attempt() - 1;
    if (restarts_done >= before.spec().max_restarts()) {
      return Finish(entry, v1::JOB_STATE_FAILED,
                    absl::StrCat(reason, "; no restarts left (max_restarts ",
                                 before.spec().max_restarts(), ")"),
                    wakeups);
    }
    v1::Job job = before;
    std::vector<v1::JobEvent> events;
    events.push_back(StateEvent(before.state(), v1::JOB_STATE_RESTARTING, reason));
    events.back().set_attempt(before.attempt());
    job.set_attempt(before.attempt() + 1);
    job.clear_workers();
    job.set_state(v1::JOB_STATE_QUEUED);
    job.set_state_reason(absl::StrCat("attempt ", job.attempt(), " after: ", reason));
    events.push_back(StateEvent(v1::JOB_STATE_RESTARTING, v1::JOB_STATE_QUEUED, job.state_reason()));
    events.back().set_attempt(job.attempt());
    RETURN_IF_ERROR(Commit(std::move(job), std::move(events), wakeups));
    LeaveWorkers(before, /*cancel=*/true, reason, entry.rendezvous_port, wakeups);
    entry.queued_at = Now();
    entry.attach_deadline.reset();
    entry.attached.clear();
    entry.next_report_index.clear();
    entry.final_checkpoint = false;
    entry.rendezvous_port = 0;
    entry.resume_checkpoint.clear();
    entry.finished_nodes.clear();
    entry.missing_beats.clear();
    if (metrics != nullptr) metrics->JobRestarted();
    return absl::OkStatus();
  }

  // ---- ticks ------------------------------------------------------------------------------

  void ExpireLeases(Wakeups& wakeups) {
    absl::Time now = Now();
    for (auto& [name, entry] : workers) {
      if (entry.worker.state() == v1::WORKER_STATE_LOST || entry.lease_expires > now) continue;
      entry.worker.set_state(v1::WORKER_STATE_LOST);
      entry.schedulable = false;
      fleet_changed = now;
      entry.commands.clear();
      if (entry.notify) wakeups.push_back(entry.notify);  // its stream ends
      entry.notify = nullptr;
      (void)store->UpsertWorker(entry.worker);  // best effort: the lease is what counts
      if (metrics != nullptr) metrics->WorkerLost();
    }
    // Every attempt that holds a lost (or vanished) worker restarts. Swept on every tick, so a
    // Restart that failed (a store error) is tried again.
    std::vector<std::pair<std::string, std::string>> lost;  // job, worker
    for (const auto& [id, job] : active) {
      if (!HoldsSlots(job.job.state())) continue;
      for (const std::string& w : job.job.workers()) {
        auto it = workers.find(w);
        if (it == workers.end() || it->second.worker.state() == v1::WORKER_STATE_LOST) {
          lost.emplace_back(id, w);
          break;
        }
      }
    }
    for (const auto& [id, worker] : lost) {
      auto it = active.find(id);
      if (it != active.end()) {
        (void)Restart(it->second, absl::StrCat("worker ", worker, " lost (lease expired)"), wakeups);
      }
    }
    // Attempts recovered from the store whose workers did not come back in time.
    std::vector<std::string> stale;
    for (auto& [id, job] : active) {
      if (job.attach_deadline.has_value() && *job.attach_deadline <= now &&
          job.attached.size() < static_cast<size_t>(job.job.workers_size())) {
        stale.push_back(id);
      }
    }
    for (const std::string& id : stale) {
      auto it = active.find(id);
      if (it != active.end()) {
        (void)Restart(it->second, "its workers did not re-attach after a coordinator restart",
                      wakeups);
      }
    }
  }

  absl::StatusOr<std::string> LatestResumeCheckpoint(const std::string& job_id) {
    ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> checkpoints, store->ListCheckpoints(job_id));
    std::string best;
    uint64_t best_step = 0;
    for (const v1::Checkpoint& checkpoint : checkpoints) {
      if (!checkpoint.final() && (best.empty() || checkpoint.step() >= best_step)) {
        best = checkpoint.id();
        best_step = checkpoint.step();
      }
    }
    return best;
  }

  void ScheduleQueued(Wakeups& wakeups) {
    std::vector<SchedulerJob> queue;
    std::map<std::string, int> running_per_owner;
    for (const auto& [id, entry] : active) {
      const v1::Job& job = entry.job;
      if (job.state() == v1::JOB_STATE_QUEUED) {
        const v1::ResourceSpec& resources = job.spec().resources();
        queue.push_back({id, job.owner(), job.spec().priority(), entry.order,
                         resources.device() == v1::DEVICE_CUDA ? v1::DEVICE_CUDA : v1::DEVICE_CPU,
                         resources.workers(), resources.slots_per_worker()});
      } else if (HoldsSlots(job.state())) {
        ++running_per_owner[job.owner()];
      }
    }
    if (queue.empty()) return;
    std::vector<SchedulerWorker> fleet;
    for (const auto& [name, entry] : workers) {
      if (!entry.schedulable || entry.worker.state() == v1::WORKER_STATE_LOST) continue;
      fleet.push_back({name, entry.worker.device(), entry.worker.slots(), entry.worker.free_slots(),
                       entry.worker.state() == v1::WORKER_STATE_READY});
    }
    bool settled = FleetSettled();
    last_pass_settled = settled;
    SchedulingDecision decision = Schedule(std::move(queue), std::move(fleet), running_per_owner,
                                           options.max_running_per_owner, settled);
    for (const Unschedulable& job : decision.unschedulable) {
      auto it = active.find(job.job_id);
      if (it != active.end()) (void)Finish(it->second, v1::JOB_STATE_FAILED, job.reason, wakeups);
    }
    for (const Placement& placement : decision.placements) {
      auto it = active.find(placement.job_id);
      if (it == active.end()) continue;
      absl::Status status = Place(it->second, placement, wakeups);
      if (!status.ok()) {
        (void)Finish(it->second, v1::JOB_STATE_FAILED,
                     absl::StrCat("cannot be scheduled: ", status.message()), wakeups);
      }
    }
  }

  uint32_t PickPort() {
    const uint32_t low = options.rendezvous_port_low, high = options.rendezvous_port_high;
    uint32_t port = absl::Uniform<uint32_t>(absl::IntervalClosed, random, low, high);
    for (uint32_t tries = 0; tries <= high - low && ports_in_use.count(port) > 0; ++tries) {
      port = port == high ? low : port + 1;
    }
    return port;  // every port taken: reuse one (more attempts than ports is a configuration error)
  }

  // The assignment of `entry`'s current attempt for the worker at `node_rank`.
  v1::WorkerCommand MakeAssignment(const ActiveJob& entry, uint32_t node_rank) {
    const v1::Job& job = entry.job;
    const uint32_t slots = job.spec().resources().slots_per_worker();
    v1::WorkerCommand command;
    v1::Assignment& assignment = *command.mutable_assign();
    assignment.set_job_id(job.id());
    assignment.set_attempt(job.attempt());
    *assignment.mutable_spec() = job.spec();
    assignment.set_node_rank(node_rank);
    assignment.set_world_size(static_cast<uint32_t>(job.workers_size()) * slots);
    assignment.set_local_world_size(slots);
    auto master = workers.find(job.workers(0));
    if (master != workers.end()) assignment.set_master_addr(master->second.worker.address());
    assignment.set_master_port(entry.rendezvous_port);
    assignment.set_resume_checkpoint_id(entry.resume_checkpoint);
    return command;
  }

  absl::Status Place(ActiveJob& entry, const Placement& placement, Wakeups& wakeups) {
    ASSIGN_OR_RETURN(std::string resume, LatestResumeCheckpoint(entry.job.id()));
    v1::Job job = entry.job;
    job.set_state(v1::JOB_STATE_SCHEDULED);
    job.set_state_reason(absl::StrCat("on ", absl::StrJoin(placement.workers, ", ")));
    job.clear_workers();
    for (const std::string& name : placement.workers) job.add_workers(name);
    std::vector<v1::JobEvent> events = {
        StateEvent(v1::JOB_STATE_QUEUED, v1::JOB_STATE_SCHEDULED, job.state_reason())};
    RETURN_IF_ERROR(Commit(std::move(job), std::move(events), wakeups));
    // Persisted: now hold the slots and tell the workers.
    const uint32_t slots = entry.job.spec().resources().slots_per_worker();
    for (const std::string& name : placement.workers) {
      v1::Worker& worker = workers.at(name).worker;
      worker.set_free_slots(worker.free_slots() >= slots ? worker.free_slots() - slots : 0);
      worker.add_running_jobs(entry.job.id());
    }
    entry.rendezvous_port = PickPort();
    ports_in_use.insert(entry.rendezvous_port);
    entry.resume_checkpoint = resume;
    entry.assigned_at = Now();
    if (metrics != nullptr) metrics->SchedulingLatency(Now() - entry.queued_at);
    for (size_t rank = 0; rank < placement.workers.size(); ++rank) {
      Send(placement.workers[rank], MakeAssignment(entry, static_cast<uint32_t>(rank)), wakeups);
    }
    return absl::OkStatus();
  }

  // Whether an assignment for this attempt waits in the worker's queue already.
  static bool AssignmentQueued(const WorkerEntry& worker, const v1::Job& job) {
    for (const v1::WorkerCommand& command : worker.commands) {
      if (command.has_assign() && command.assign().job_id() == job.id() &&
          command.assign().attempt() == job.attempt()) {
        return true;
      }
    }
    return false;
  }

  // A worker's heartbeat lists what it runs. An attempt it holds but does not list is either
  // not started yet (its assignment may have been lost on a broken stream: send it again) or
  // gone (two beats in a row while RUNNING: restart it).
  void CheckListedAttempts(WorkerEntry& worker, Wakeups& wakeups) {
    const std::string& name = worker.worker.name();
    const absl::Duration interval = options.lease_ttl / 3;
    std::vector<std::string> vanished;
    for (auto& [id, entry] : active) {
      const v1::Job& job = entry.job;
      if (!HoldsSlots(job.state())) continue;
      auto pos = std::find(job.workers().begin(), job.workers().end(), name);
      if (pos == job.workers().end()) continue;
      if (worker.reported_running.count({id, job.attempt()}) > 0 ||
          entry.finished_nodes.count(name) > 0) {
        entry.missing_beats.erase(name);
        continue;
      }
      if (job.state() == v1::JOB_STATE_SCHEDULED) {
        if (entry.rendezvous_port != 0 && Now() - entry.assigned_at > interval &&
            !AssignmentQueued(worker, job)) {
          Send(name, MakeAssignment(entry, static_cast<uint32_t>(pos - job.workers().begin())),
               wakeups);
          entry.assigned_at = Now();
        }
      } else if (++entry.missing_beats[name] >= 2) {
        vanished.push_back(id);
      }
    }
    for (const std::string& id : vanished) {
      auto it = active.find(id);
      if (it != active.end()) {
        (void)Restart(it->second, absl::StrCat("worker ", name, " no longer runs attempt ",
                                               it->second.job.attempt()),
                      wakeups);
      }
    }
  }

  void UpdateGauges() {
    if (metrics == nullptr) return;
    int64_t queued = 0, running = 0, ready = 0, slots = 0, free = 0;
    for (const auto& [id, entry] : active) {
      if (entry.job.state() == v1::JOB_STATE_QUEUED) ++queued;
      if (HoldsSlots(entry.job.state())) ++running;
    }
    for (const auto& [name, entry] : workers) {
      if (entry.worker.state() == v1::WORKER_STATE_LOST) continue;
      ready += entry.worker.state() == v1::WORKER_STATE_READY;
      slots += entry.worker.slots();
      free += entry.worker.free_slots();
    }
    metrics->Gauges(queued, running, ready, slots, free);
  }

  // ---- worker calls -----------------------------------------------------------------------

  // The worker `name` holding lease `lease_id`, or FAILED_PRECONDITION telling it to register.
  absl::StatusOr<WorkerEntry*> LeasedWorker(const std::string& name, uint64_t lease_id) {
    auto it = workers.find(name);
    if (it == workers.end() || it->second.lease_id != lease_id ||
        it->second.worker.state() == v1::WORKER_STATE_LOST) {
      return absl::FailedPreconditionError(
          absl::StrCat("worker ", name, ": lease ", lease_id, " is not current; register again"));
    }
    return &it->second;
  }

  // The active job whose current attempt `worker` runs, or FAILED_PRECONDITION (a stale
  // attempt: the worker must stop those ranks).
  absl::StatusOr<ActiveJob*> CurrentAttempt(const std::string& job_id, uint32_t attempt,
                                            const std::string& worker) {
    auto it = active.find(job_id);
    if (it == active.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", job_id, " is not running (final or unknown): stop its ranks"));
    }
    const v1::Job& job = it->second.job;
    if (job.attempt() != attempt) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", job_id, ": attempt ", attempt, " is stale (current: ", job.attempt(), ")"));
    }
    if (std::find(job.workers().begin(), job.workers().end(), worker) == job.workers().end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", job_id, ": worker ", worker, " is not part of attempt ", attempt));
    }
    return &it->second;
  }

  // Fills total_steps and the ETA from the latest train row: steps per epoch follow from the
  // fractional epoch, capped by max_steps.
  static void UpdateProgress(v1::Job& job) {
    const v1::TrainMetrics& train = job.latest_train();
    v1::JobProgress& progress = *job.mutable_progress();
    progress.set_step(train.step());
    progress.set_epoch(std::isfinite(train.epoch()) ? train.epoch() : 0.0);
    // Doubles come from a worker: anything not finite and positive is ignored, and every
    // conversion to an integer is clamped first.
    constexpr double kMaxSteps = 1e15;
    uint64_t total = 0;
    if (train.epoch() > 1e-9 && std::isfinite(train.epoch()) && job.spec().training().epochs() > 0) {
      double estimate = static_cast<double>(train.step()) / train.epoch() *
                        job.spec().training().epochs();
      if (std::isfinite(estimate) && estimate < kMaxSteps) total = static_cast<uint64_t>(std::llround(estimate));
    }
    uint64_t max_steps = job.spec().training().max_steps();
    if (max_steps > 0 && (total == 0 || max_steps < total)) total = max_steps;
    if (total < train.step()) total = train.step();
    progress.set_total_steps(total);
    double step_seconds = train.step_seconds();
    double remaining = static_cast<double>(total - train.step()) *
                       (std::isfinite(step_seconds) && step_seconds > 0 ? step_seconds : 0.0);
    remaining = std::min(remaining, 1e9);  // ~30 years
    *progress.mutable_eta() = TimeUtil::NanosecondsToDuration(static_cast<int64_t>(remaining * 1e9));
    double tokens = train.tokens_per_second() * step_seconds;
    if (std::isfinite(tokens) && tokens > 0 && tokens < 1e15) {
      progress.set_tokens_seen(progress.tokens_seen() + static_cast<uint64_t>(tokens));
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Streams

class JobServiceCore::Impl::EventStreamImpl final
    : public EventStream, public std::enable_shared_from_this<EventStreamImpl> {
 public:
  EventStreamImpl(std::shared_ptr<Impl> core, std::string job_id, uint64_t next_seq, bool follow)
      : core_(std::move(core)), job_id_(std::move(job_id)), next_seq_(next_seq), follow_(follow) {}

  Poll Next(v1::JobEvent& event) override {
    std::lock_guard<std::mutex> lock(core_->mu);
    if (core_->draining) return Poll::kEnd;
    if (!batch_.empty()) return Pop(event);
    auto log = core_->logs.find(job_id_);
    // In the ring: copy from there.
    if (log != core_->logs.end() && !log->second.recent.empty() &&
        log->second.recent.front().seq() <= next_seq_ &&
        log->second.recent.back().seq() >= next_seq_) {
      for (const v1::JobEvent& e : log->second.recent) {
        if (e.seq() >= next_seq_ && batch_.size() < static_cast<size_t>(kStoreBatch)) batch_.push_back(e);
      }
      return Pop(event);
    }
    // Caught up with a live job: nothing to read anywhere (no store query on every wake-up).
    if (auto job = core_->active.find(job_id_);
        job != core_->active.end() && next_seq_ > job->second.job.last_event_seq()) {
      return follow_ ? Poll::kWait : Poll::kEnd;
    }
    // Behind the ring, or the job is not cached (final): the store has everything.
    absl::StatusOr<std::vector<v1::JobEvent>> stored =
        core_->store->ListEvents(job_id_, next_seq_ - 1, kStoreBatch);
    if (stored.ok() && !stored->empty()) {
      batch_.assign(stored->begin(), stored->end());
      return Pop(event);
    }
    if (!follow_) return Poll::kEnd;
    if (core_->active.count(job_id_) == 0) return Poll::kEnd;  // final, all delivered
    return Poll::kWait;
  }

  void SetNotify(std::function<void()> notify) override {
    std::lock_guard<std::mutex> lock(core_->mu);
    notify_ = std::move(notify);
    // A final job has no live events to wait for (and no log entry to keep); a replay-only
    // stream waits for nothing either.
    if (follow_ && core_->active.count(job_id_) > 0) {
      core_->logs[job_id_].watchers.push_back(weak_from_this());
    }
  }

  std::function<void()> notify() const { return notify_; }

 private:
  Poll Pop(v1::JobEvent& event) {
    event = std::move(batch_.front());
    batch_.pop_front();
    next_seq_ = event.seq() + 1;
    return Poll::kEvent;
  }

  std::shared_ptr<Impl> core_;
  const std::string job_id_;
  uint64_t next_seq_;              // guarded by core_->mu
  const bool follow_;
  std::deque<v1::JobEvent> batch_;  // guarded by core_->mu
  std::function<void()> notify_;    // guarded by core_->mu
};

void JobServiceCore::Impl::CollectWatchers(JobEventLog& log, Wakeups& wakeups) {
  auto& watchers = log.watchers;
  for (auto it = watchers.begin(); it != watchers.end();) {
    if (auto watcher = it->lock()) {
      if (auto notify = watcher->notify()) wakeups.push_back(notify);
      ++it;
    } else {
      it = watchers.erase(it);
    }
  }
}

class JobServiceCore::Impl::CommandStreamImpl final : public CommandStream {
 public:
  CommandStreamImpl(std::shared_ptr<Impl> core, std::string worker, uint64_t lease_id,
                    uint64_t generation)
      : core_(std::move(core)), worker_(std::move(worker)), lease_id_(lease_id),
        generation_(generation) {}

  Poll Next(v1::WorkerCommand& command) override {
    std::lock_guard<std::mutex> lock(core_->mu);
    if (core_->draining) return Poll::kEnd;
    auto it = core_->workers.find(worker_);
    if (it == core_->workers.end() || it->second.lease_id != lease_id_ ||
        it->second.stream_generation != generation_ ||
        it->second.worker.state() == v1::WORKER_STATE_LOST) {
      return Poll::kEnd;
    }
    if (it->second.commands.empty()) return Poll::kWait;
    command = std::move(it->second.commands.front());
    it->second.commands.pop_front();
    return Poll::kCommand;
  }

  void SetNotify(std::function<void()> notify) override {
    std::lock_guard<std::mutex> lock(core_->mu);
    auto it = core_->workers.find(worker_);
    if (it != core_->workers.end() && it->second.stream_generation == generation_) {
      it->second.notify = std::move(notify);
    }
  }

 private:
  std::shared_ptr<Impl> core_;
  const std::string worker_;
  const uint64_t lease_id_;
  const uint64_t generation_;
};

// The upload of one checkpoint by node 0's agent.
class CheckpointUploadImpl final : public JobServiceCore::CheckpointUpload {
 public:
  CheckpointUploadImpl(std::shared_ptr<JobServiceCore::Impl> core, v1::Checkpoint checkpoint,
                       std::string worker, std::unique_ptr<ArtifactStore::Upload> upload)
      : core_(std::move(core)), checkpoint_(std::move(checkpoint)), worker_(std::move(worker)),
        upload_(std::move(upload)) {}

  absl::Status Write(const v1::FileChunk& chunk) override { return upload_->Write(chunk); }

  absl::StatusOr<v1::Checkpoint> Finish() override {
    RETURN_IF_ERROR(upload_->Commit());
    JobServiceCore::Impl::Wakeups wakeups;
    absl::StatusOr<v1::Checkpoint> result = Record(wakeups);
    JobServiceCore::Impl::Run(wakeups);
    // Files without a record would block a retried upload and never be listed: remove them.
    if (!result.ok()) (void)core_->artifacts->Remove(checkpoint_);
    return result;
  }

 private:
  absl::StatusOr<v1::Checkpoint> Record(JobServiceCore::Impl::Wakeups& wakeups) {
    std::lock_guard<std::mutex> lock(core_->mu);
    ASSIGN_OR_RETURN(JobServiceCore::Impl::ActiveJob * entry,
                     core_->CurrentAttempt(checkpoint_.job_id(), checkpoint_.attempt(), worker_));
    *checkpoint_.mutable_created_at() = ToProto(core_->Now());
    v1::JobEvent event;
    *event.mutable_checkpoint() = checkpoint_;
    event.set_attempt(checkpoint_.attempt());
    *event.mutable_time() = ToProto(core_->Now());
    ASSIGN_OR_RETURN(std::optional<v1::JobEvent> stored, core_->store->AddCheckpoint(checkpoint_, event));
    if (checkpoint_.final()) entry->final_checkpoint = true;
    uint64_t bytes = 0;
    for (const v1::CheckpointFile& file : checkpoint_.files()) bytes += file.size_bytes();
    if (core_->metrics != nullptr) core_->metrics->CheckpointBytes(bytes);
    if (stored.has_value()) {
      entry->job.set_last_event_seq(stored->seq());
      core_->Publish(checkpoint_.job_id(), {*stored}, false, wakeups);
    }
    return checkpoint_;
  }

  std::shared_ptr<JobServiceCore::Impl> core_;
  v1::Checkpoint checkpoint_;
  const std::string worker_;
  std::unique_ptr<ArtifactStore::Upload> upload_;
};

// ---------------------------------------------------------------------------------------------
// JobServiceCore

JobServiceCore::JobServiceCore(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
JobServiceCore::~JobServiceCore() { Drain(); }

absl::StatusOr<std::unique_ptr<JobServiceCore>> JobServiceCore::Create(
    JobStore* store, ArtifactStore* artifacts, Clock* clock, CoreMetrics* metrics,
    CoreOptions options) {
  if (options.rendezvous_port_low == 0 || options.rendezvous_port_low > options.rendezvous_port_high ||
      options.rendezvous_port_high > 65535) {
    return absl::InvalidArgumentError("rendezvous ports: need 1 <= low <= high <= 65535");
  }
  auto impl = std::make_shared<Impl>();
  impl->store = store;
  impl->artifacts = artifacts;
  impl->clock = clock;
  impl->metrics = metrics;
  impl->options = options;
  impl->next_lease_id = absl::Uniform<uint64_t>(impl->random, 1, uint64_t{1} << 40);
  impl->fleet_changed = clock->Now();

  ASSIGN_OR_RETURN(RecoveredState recovered, store->Recover());
  absl::Time now = clock->Now();
  // Queued jobs come back in queue order; active attempts get one lease TTL to re-attach.
  for (v1::Job& job : recovered.queued) {
    Impl::ActiveJob entry;
    entry.order = impl->next_order++;
    entry.queued_at = now;
    entry.job = std::move(job);
    std::string id = entry.job.id();
    impl->active.emplace(std::move(id), std::move(entry));
  }
  for (v1::Job& job : recovered.active) {
    Impl::ActiveJob entry;
    entry.order = impl->next_order++;
    entry.queued_at = now;
    entry.attach_deadline = now + options.lease_ttl;
    // Node 0 may have uploaded the final checkpoint just before the restart: its SUCCEEDED
    // report (retried after it registers again) must still be accepted.
    ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> checkpoints, store->ListCheckpoints(job.id()));
    for (const v1::Checkpoint& checkpoint : checkpoints) {
      if (checkpoint.final() && checkpoint.attempt() == job.attempt()) entry.final_checkpoint = true;
    }
    entry.job = std::move(job);
    std::string id = entry.job.id();
    impl->active.emplace(std::move(id), std::move(entry));
  }
  // Workers are listed until they register again or their (grace) lease lapses; none takes
  // new work before it registers in this process.
  for (v1::Worker& worker : recovered.workers) {
    if (worker.state() == v1::WORKER_STATE_LOST) continue;
    Impl::WorkerEntry entry;
    entry.lease_expires = now + options.lease_ttl;
    entry.worker = std::move(worker);
    std::string name = entry.worker.name();
    impl->workers.emplace(std::move(name), std::move(entry));
  }
  // Slots held by recovered attempts stay held on their workers.
  for (auto& [name, entry] : impl->workers) {
    uint32_t used = 0;
    entry.worker.clear_running_jobs();
    for (const auto& [id, job] : impl->active) {
      if (!HoldsSlots(job.job.state())) continue;
      for (const std::string& w : job.job.workers()) {
        if (w == name) {
          used += job.job.spec().resources().slots_per_worker();
          entry.worker.add_running_jobs(id);
        }
      }
    }
    entry.worker.set_free_slots(entry.worker.slots() > used ? entry.worker.slots() - used : 0);
  }
  return std::unique_ptr<JobServiceCore>(new JobServiceCore(std::move(impl)));
}

#define RETURN_IF_DRAINING()                                                         \
  do {                                                                               \
    if (impl_->draining) return absl::UnavailableError("the coordinator is draining"); \
  } while (0)

absl::StatusOr<v1::SubmitJobResponse> JobServiceCore::SubmitJob(const Caller& caller,
                                                                const v1::SubmitJobRequest& request) {
  if (request.idempotency_key().size() > kMaxIdempotencyKey) {
    return absl::InvalidArgumentError("idempotency_key: at most 128 characters");
  }
  for (char c : request.idempotency_key()) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError("idempotency_key: printable ASCII only, no spaces");
    }
  }
  RETURN_IF_ERROR(spec::ValidateJobSpec(request.spec()));
  Impl::Wakeups wakeups;
  Impl::RunOnExit run_wakeups{wakeups};
  v1::SubmitJobResponse response;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    RETURN_IF_DRAINING();
    absl::Time now = impl_->Now();
    v1::Job job;
    job.set_id(absl::StrFormat("j-%x-%06x", absl::ToUnixMillis(now),
                               absl::Uniform<uint32_t>(impl_->random, 0, 1u << 24)));
    job.set_name(request.spec().name());
    *job.mutable_spec() = request.spec();
    job.set_state(v1::JOB_STATE_QUEUED);
    job.set_state_reason("waiting for slots");
    job.set_attempt(1);
    *job.mutable_created_at() = ToProto(now);
    *job.mutable_updated_at() = ToProto(now);
    job.set_owner(caller.principal);
    ASSIGN_OR_RETURN(CreateJobResult created,
                     impl_->store->CreateJob(job, request.idempotency_key(), caller.principal));
    *response.mutable_job() = created.job;
    response.set_existing(!created.created);
    if (created.created) {
      Impl::ActiveJob entry;
      entry.job = created.job;
      entry.order = impl_->next_order++;
      entry.queued_at = now;
      impl_->active.emplace(created.job.id(), std::move(entry));
      impl_->Publish(created.job.id(), {job_store_internal::FirstEvent(created.job)}, false, wakeups);
      impl_->MarkScheduleDirty(wakeups);
      if (impl_->metrics != nullptr) impl_->metrics->JobSubmitted();
    }
  }
  return response;
}

absl::StatusOr<v1::Job> JobServiceCore::GetJob(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->active.find(id);
    if (it != impl_->active.end()) return it->second.job;
  }
  return impl_->store->GetJob(id);
}

absl::StatusOr<v1::ListJobsResponse> JobServiceCore::ListJobs(const v1::ListJobsRequest& request) {
  JobFilter filter;
  for (int state : request.states()) filter.states.push_back(static_cast<v1::JobState>(state));
  filter.owner = request.owner();
  filter.name_prefix = request.name_prefix();
  ASSIGN_OR_RETURN(JobPage page, impl_->store->ListJobs(filter, static_cast<int>(std::min<uint32_t>(
                                                                    request.page_size(), 100000)),
                                                        request.page_token()));
  v1::ListJobsResponse response;
  {
    // Active jobs change faster than the store is rewritten (metrics): show the live view.
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (v1::Job& job : page.jobs) {
      auto it = impl_->active.find(job.id());
      *response.add_jobs() = it != impl_->active.end() ? it->second.job : std::move(job);
    }
  }
  response.set_next_page_token(page.next_page_token);
  return response;
}

absl::StatusOr<v1::Job> JobServiceCore::CancelJob(const Caller& caller,
                                                 const v1::CancelJobRequest& request) {
  Impl::Wakeups wakeups;
  Impl::RunOnExit run_wakeups{wakeups};
  v1::Job result;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    RETURN_IF_DRAINING();
    auto it = impl_->active.find(request.id());
    if (it == impl_->active.end()) return impl_->store->GetJob(request.id());  // final: as is
    if (it->second.job.owner() != caller.principal) {
      return absl::PermissionDeniedError(absl::StrCat("job ", request.id(), " belongs to ",
                                                      it->second.job.owner()));
    }
    std::string reason = request.reason().empty()
                             ? absl::StrCat("cancelled by ", caller.principal)
                             : Truncated(request.reason(), kMaxReason);
    std::string id = request.id();
    RETURN_IF_ERROR(impl_->Finish(it->second, v1::JOB_STATE_CANCELLED, reason, wakeups));
    ASSIGN_OR_RETURN(result, impl_->store->GetJob(id));
  }
  return result;
}

absl::StatusOr<std::unique_ptr<EventStream>> JobServiceCore::WatchJob(
    const v1::WatchJobRequest& request) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    RETURN_IF_DRAINING();
  }
  RETURN_IF_ERROR(impl_->store->GetJob(request.id()).status());  // NotFound for a bad id
  uint64_t from = std::max<uint64_t>(request.from_seq(), 1);
  auto stream = std::make_shared<Impl::EventStreamImpl>(impl_, request.id(), from, !request.no_follow());
  // EventStream is handed out as a unique_ptr; the shared one stays alive inside it.
  struct Holder final : EventStream {
    std::shared_ptr<Impl::EventStreamImpl> stream;
    Poll Next(v1::JobEvent& event) override { return stream->Next(event); }
    void SetNotify(std::function<void()> notify) override { stream->SetNotify(std::move(notify)); }
  };
  auto holder = std::make_unique<Holder>();
  holder->stream = std::move(stream);
  return std::unique_ptr<EventStream>(std::move(holder));
}

absl::StatusOr<v1::ListCheckpointsResponse> JobServiceCore::ListCheckpoints(const std::string& job_id) {
  ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> checkpoints, impl_->store->ListCheckpoints(job_id));
  v1::ListCheckpointsResponse response;
  for (v1::Checkpoint& checkpoint : checkpoints) *response.add_checkpoints() = std::move(checkpoint);
  return response;
}

absl::StatusOr<std::pair<v1::Checkpoint, std::unique_ptr<ArtifactStore::Reader>>>
JobServiceCore::OpenCheckpoint(const Caller& caller, const v1::DownloadCheckpointRequest& request) {
  // Adapters are their owner's (and the workers' that resume them): a user may not download
  // another user's.
  ASSIGN_OR_RETURN(v1::Job job, GetJob(request.job_id()));
  if (!caller.may_work && job.owner() != caller.principal) {
    return absl::PermissionDeniedError(
        absl::StrCat("job ", request.job_id(), " belongs to ", job.owner()));
  }
  v1::Checkpoint checkpoint;
  if (!request.checkpoint_id().empty()) {
    ASSIGN_OR_RETURN(checkpoint, impl_->store->GetCheckpoint(request.job_id(), request.checkpoint_id()));
  } else {
    ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> all, impl_->store->ListCheckpoints(request.job_id()));
    if (all.empty()) {
      return absl::NotFoundError(absl::StrCat("job ", request.job_id(), " has no checkpoints yet"));
    }
    // The final one if there is one, else the latest.
    auto final_it = std::find_if(all.rbegin(), all.rend(),
                                 [](const v1::Checkpoint& c) { return c.final(); });
    checkpoint = final_it != all.rend() ? *final_it : all.back();
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ArtifactStore::Reader> reader, impl_->artifacts->Read(checkpoint));
  return std::make_pair(std::move(checkpoint), std::move(reader));
}

v1::ListWorkersResponse JobServiceCore::ListWorkers() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  v1::ListWorkersResponse response;
  for (const auto& [name, entry] : impl_->workers) *response.add_workers() = entry.worker;
  return response;
}

absl::StatusOr<v1::RegisterResponse> JobServiceCore::Register(const v1::RegisterRequest& request) {
  RETURN_IF_ERROR(CheckWorkerName(request.name()));
  if (request.slots() == 0 || request.slots() > 1024) {
    return absl::InvalidArgumentError("slots: must be 1 to 1024");
  }
  if (request.address().empty() || request.address().size() > 255) {
    return absl::InvalidArgumentError("address: required, at most 255 characters");
  }
  Impl::Wakeups wakeups;
  Impl::RunOnExit run_wakeups{wakeups};
  v1::RegisterResponse response;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    RETURN_IF_DRAINING();
    absl::Time now = impl_->Now();
    Impl::WorkerEntry& entry = impl_->workers[request.name()];
    if (!entry.schedulable) impl_->fleet_changed = now;  // a worker joins (or comes back)
    if (entry.notify) wakeups.push_back(entry.notify);  // an old stream of this name ends
    entry.notify = nullptr;
    entry.commands.clear();
    ++entry.stream_generation;
    entry.lease_id = impl_->next_lease_id++;
    entry.lease_expires = now + impl_->options.lease_ttl;
    entry.schedulable = true;
    v1::Worker& worker = entry.worker;
    worker.set_name(request.name());
    worker.set_slots(request.slots());
    worker.set_device(request.device() == v1::DEVICE_CUDA ? v1::DEVICE_CUDA : v1::DEVICE_CPU);
    *worker.mutable_labels() = request.labels();
    worker.set_state(v1::WORKER_STATE_READY);
    worker.set_address(request.address());
    worker.set_version(request.version());
    *worker.mutable_registered_at() = ToProto(now);
    *worker.mutable_last_heartbeat_at() = ToProto(now);
    *worker.mutable_lease_expires_at() = ToProto(entry.lease_expires);
    entry.reported_running.clear();
    std::set<std::pair<std::string, uint32_t>> listed;
    for (const v1::RunningAttempt& running : request.running()) {
      listed.insert({running.job_id(), running.attempt()});
    }
    entry.reported_running = listed;
    // Re-attach what it still runs; requeue what it held but lost; stop what is stale.
    std::vector<std::string> lost;
    uint32_t used = 0;
    worker.clear_running_jobs();
    for (auto& [id, job] : impl_->active) {
      if (!HoldsSlots(job.job.state())) continue;
      const auto& names = job.job.workers();
      if (std::find(names.begin(), names.end(), request.name()) == names.end()) continue;
      if (listed.count({id, job.job.attempt()}) > 0) {
        job.attached.insert(request.name());
        used += job.job.spec().resources().slots_per_worker();
        worker.add_running_jobs(id);
      } else if (job.job.state() == v1::JOB_STATE_RUNNING || job.attach_deadline.has_value()) {
        lost.push_back(id);
      } else {
        // SCHEDULED and never started here: send the assignment again on the new stream.
        used += job.job.spec().resources().slots_per_worker();
        worker.add_running_jobs(id);
        job.attached.insert(request.name());
      }
    }
    worker.set_free_slots(worker.slots() > used ? worker.slots() - used : 0);
    for (const auto& [job_id, attempt] : listed) {
      auto it = impl_->active.find(job_id);
      if (it == impl_->active.end() || it->second.job.attempt() != attempt) {
        v1::WorkerCommand command;
        command.mutable_cancel()->set_job_id(job_id);
        command.mutable_cancel()->set_attempt(attempt);
        command.mutable_cancel()->set_reason("this attempt is no longer current");
        entry.commands.push_back(std::move(command));
      }
    }
    RETURN_IF_ERROR(impl_->store->UpsertWorker(worker));
    for (const std::string& id : lost) {
      auto it = impl_->active.find(id);
      if (it != impl_->active.end()) {
        (void)impl_->Restart(it->second,
                             absl::StrCat("worker ", request.name(),
                                          " restarted without the attempt"),
                             wakeups);
      }
    }
    // Assignments for SCHEDULED attempts it holds go out again on its new stream (attempts
    // placed by an earlier coordinator process have no port here: they re-attach or requeue).
    for (auto& [id, job] : impl_->active) {
      if (job.job.state() != v1::JOB_STATE_SCHEDULED || job.rendezvous_port == 0) continue;
      const auto& names = job.job.workers();
      auto pos = std::find(names.begin(), names.end(), request.name());
      if (pos == names.end() || listed.count({id, job.job.attempt()}) > 0) continue;
      entry.commands.push_back(
          impl_->MakeAssignment(job, static_cast<uint32_t>(pos - names.begin())));
      job.assigned_at = now;
    }
    impl_->MarkScheduleDirty(wakeups);
    response.set_lease_id(entry.lease_id);
    *response.mutable_lease_ttl() =
        TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(impl_->options.lease_ttl));
    *response.mutable_heartbeat_interval() =
        TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(impl_->options.lease_ttl / 3));
  }
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> JobServiceCore::Heartbeat(const v1::HeartbeatRequest& request) {
  Impl::Wakeups wakeups;
  Impl::RunOnExit run_wakeups{wakeups};
  std::lock_guard<std::mutex> lock(impl_->mu);
  RETURN_IF_DRAINING();
  ASSIGN_OR_RETURN(Impl::WorkerEntry * entry, impl_->LeasedWorker(request.name(), request.lease_id()));
  absl::Time now = impl_->Now();
  entry->lease_expires = now + impl_->options.lease_ttl;
  *entry->worker.mutable_last_heartbeat_at() = ToProto(now);
  *entry->worker.mutable_lease_expires_at() = ToProto(entry->lease_expires);
  entry->reported_running.clear();
  for (const v1::RunningAttempt& running : request.running()) {
    entry->reported_running.insert({running.job_id(), running.attempt()});
  }
  impl_->CheckListedAttempts(*entry, wakeups);
  v1::HeartbeatResponse response;
  *response.mutable_lease_expires_at() = ToProto(entry->lease_expires);
  return response;
}

absl::StatusOr<std::unique_ptr<CommandStream>> JobServiceCore::StreamCommands(
    const v1::StreamCommandsRequest& request) {
  Impl::Wakeups wakeups;
  Impl::RunOnExit run_wakeups{wakeups};
  std::unique_ptr<CommandStream> stream;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    RETURN_IF_DRAINING();
    ASSIGN_OR_RETURN(Impl::WorkerEntry * entry, impl_->LeasedWorker(request.name(), request.lease_id()));
    if (entry->notify) wakeups.push_back(entry->notify);  // the previous stream ends
    entry->notify = nullptr;
    ++entry->stream_generation;
    stream = std::make_unique<Impl::CommandStreamImpl>(impl_, request.name(), request.lease_id(),
                                                       entry->stream_generation);
  }
  return stream;
}

absl::StatusOr<v1::ReportEventsResponse> JobServiceCore::ReportEvents(
    const v1::ReportEventsRequest& request) {
  Impl::Wakeups wakeups;
  Impl::RunOnExit run_wakeups{wakeups};
  v1::ReportEventsResponse response;
  std::lock_guard<std::mutex> lock(impl_->mu);
  RETURN_IF_DRAINING();
  RETURN_IF_ERROR(impl_->LeasedWorker(request.worker(), request.lease_id()).status());
  ASSIGN_OR_RETURN(Impl::ActiveJob * entry,
                   impl_->CurrentAttempt(request.job_id(), request.attempt(), request.worker()));
  // Events before the index this worker's reports reached were accepted already (a retry). The
  // index moves only once everything below is persisted, so a failed call is retried whole.
  const uint64_t expected = entry->next_report_index[request.worker()];
  const uint64_t first = request.first_report_index();
  const size_t skip = first < expected ? static_cast<size_t>(std::min<uint64_t>(
                                             expected - first, request.events_size()))
                                       : 0;
  const uint64_t next_index = std::max<uint64_t>(expected, first + request.events_size());

  v1::Job job = entry->job;
  const bool node0 = !job.workers().empty() && job.workers(0) == request.worker();
  std::vector<v1::JobEvent> accepted;
  std::optional<std::pair<v1::JobState, std::string>> outcome;  // an end this report asks for
  for (int i = static_cast<int>(skip); i < request.events_size(); ++i) {
    v1::JobEvent event = request.events(i);
    event.set_seq(0);
    event.set_attempt(job.attempt());
    event.clear_time();  // the coordinator's clock orders events
    switch (event.kind_case()) {
      case v1::JobEvent::kTrain:
        // Metrics are keyed by step: a replayed step (a resumed attempt, a retried report
        // after a coordinator restart) adds nothing.
        if (!node0 || (job.has_latest_train() && event.train().step() <= job.latest_train().step())) {
          continue;
        }
        *job.mutable_latest_train() = event.train();
        Impl::UpdateProgress(job);
        break;
      case v1::JobEvent::kEval:
        if (!node0 || (job.has_latest_eval() && event.eval().step() <= job.latest_eval().step())) {
          continue;
        }
        *job.mutable_latest_eval() = event.eval();
        break;
      case v1::JobEvent::kLog:
        event.mutable_log()->set_text(Truncated(event.log().text(), 4096));
        break;
      case v1::JobEvent::kStateChange: {
        v1::JobState to = event.state_change().to();
        std::string reason = Truncated(event.state_change().reason(), kMaxReason);
        if (to == v1::JOB_STATE_RUNNING) {
          if (job.state() != v1::JOB_STATE_SCHEDULED) continue;  // already running
          event.mutable_state_change()->set_from(job.state());
          job.set_state(v1::JOB_STATE_RUNNING);
          job.set_state_reason("training");
          if (!job.has_started_at()) *job.mutable_started_at() = ToProto(impl_->Now());
          break;
        }
        if (to == v1::JOB_STATE_SUCCEEDED) {
          if (!node0) {
            entry->finished_nodes.insert(request.worker());  // its part is done
            continue;
          }
          if (!entry->final_checkpoint) {
            // Recorded by an earlier process, or under a retried upload? Ask the store.
            ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> checkpoints,
                             impl_->store->ListCheckpoints(job.id()));
            for (const v1::Checkpoint& c : checkpoints) {
              if (c.final() && c.attempt() == job.attempt()) entry->final_checkpoint = true;
            }
          }
          if (!entry->final_checkpoint) {
            return absl::FailedPreconditionError(
                "SUCCEEDED before the final checkpoint was uploaded");
          }
          outcome = {to, "final adapter committed"};
        } else if (to == v1::JOB_STATE_FAILED || to == v1::JOB_STATE_RESTARTING) {
          // Once node 0 has committed the final adapter, another node's late failure (ranks
          // torn down at the end) does not undo the result.
          if (entry->final_checkpoint && !node0) continue;
          outcome = {to, reason.empty() ? "a rank failed" : reason};
        }
        continue;  // end transitions are written by Finish/Restart below
      }
      case v1::JobEvent::kCheckpoint:
        continue;  // only UploadCheckpoint records checkpoints
      default:
        continue;
    }
    accepted.push_back(std::move(event));
  }
  const std::string job_id = request.job_id();
  if (!accepted.empty() || job.state() != entry->job.state()) {
    RETURN_IF_ERROR(impl_->Commit(job, std::move(accepted), wakeups));
  }
  if (outcome.has_value()) {
    auto it = impl_->active.find(job_id);
    if (it != impl_->active.end()) {
      if (outcome->first == v1::JOB_STATE_RESTARTING) {
        RETURN_IF_ERROR(impl_->Restart(it->second, outcome->second, wakeups));
      } else {
        RETURN_IF_ERROR(impl_->Finish(it->second, outcome->first, outcome->second, wakeups));
      }
    }
  }
  // Persisted: the index moves (the attempt may have ended; then there is nothing to keep).
  if (auto it = impl_->active.find(job_id);
      it != impl_->active.end() && it->second.job.attempt() == request.attempt()) {
    it->second.next_report_index[request.worker()] = next_index;
  }
  response.set_next_report_index(next_index);
  return response;
}

absl::StatusOr<std::unique_ptr<JobServiceCore::CheckpointUpload>> JobServiceCore::BeginUpload(
    const v1::UploadCheckpointRequest::Header& header) {
  v1::Checkpoint checkpoint;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    RETURN_IF_DRAINING();
    RETURN_IF_ERROR(impl_->LeasedWorker(header.worker(), header.lease_id()).status());
    ASSIGN_OR_RETURN(Impl::ActiveJob * entry,
                     impl_->CurrentAttempt(header.job_id(), header.attempt(), header.worker()));
    if (entry->job.workers(0) != header.worker()) {
      return absl::FailedPreconditionError("only node rank 0 uploads checkpoints");
    }
    if (header.files_size() == 0) return absl::InvalidArgumentError("files: none given");
    checkpoint.set_id(absl::StrCat("s", header.step(), "-a", header.attempt(),
                                   header.final() ? "-final" : ""));
    checkpoint.set_job_id(header.job_id());
    checkpoint.set_step(header.step());
    checkpoint.set_attempt(header.attempt());
    checkpoint.set_final(header.final());
    *checkpoint.mutable_files() = header.files();
    if (header.has_eval()) *checkpoint.mutable_eval() = header.eval();
    // A retried upload of a checkpoint that is already recorded.
    absl::StatusOr<v1::Checkpoint> existing = impl_->store->GetCheckpoint(header.job_id(), checkpoint.id());
    if (existing.ok()) {
      if (header.final()) entry->final_checkpoint = true;
      return absl::AlreadyExistsError(absl::StrCat("checkpoint ", checkpoint.id(), " is already stored"));
    }
  }
  absl::StatusOr<std::unique_ptr<ArtifactStore::Upload>> upload =
      impl_->artifacts->BeginUpload(checkpoint);
  if (absl::IsAlreadyExists(upload.status())) {
    // Files committed by an upload whose record was never written (a crash between the two,
    // or a record that failed): not a checkpoint until recorded, so replace them.
    RETURN_IF_ERROR(impl_->artifacts->Remove(checkpoint));
    upload = impl_->artifacts->BeginUpload(checkpoint);
  }
  if (!upload.ok()) return upload.status();
  return std::unique_ptr<CheckpointUpload>(
      new CheckpointUploadImpl(impl_, std::move(checkpoint), header.worker(), std::move(*upload)));
}

void JobServiceCore::Tick() {
  Impl::Wakeups wakeups;
  Impl::RunOnExit run_wakeups{wakeups};
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->draining) return;
    impl_->ExpireLeases(wakeups);
    // A pass when something changed, and once more when the fleet has just settled (jobs that
    // can never fit then fail).
    if (impl_->schedule_dirty || (!impl_->last_pass_settled && impl_->FleetSettled())) {
      impl_->schedule_dirty = false;
      impl_->ScheduleQueued(wakeups);
    }
    impl_->UpdateGauges();
  }
}

void JobServiceCore::SetScheduleHook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->schedule_hook = std::move(hook);
}

void JobServiceCore::Drain() {
  Impl::Wakeups wakeups;
  Impl::RunOnExit run_wakeups{wakeups};
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->draining) return;
    impl_->draining = true;
    for (auto& [name, entry] : impl_->workers) {
      if (entry.notify) wakeups.push_back(entry.notify);
    }
    for (auto& [id, log] : impl_->logs) Impl::CollectWatchers(log, wakeups);
  }
}

bool JobServiceCore::draining() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->draining;
}

}  // namespace loratrf::server
