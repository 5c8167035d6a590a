#include "server/core/worker_registry.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "proto/contract/limits.h"
#include "proto/contract/names.h"
#include "server/core/job_lifecycle.h"

namespace loratrf::server::core_internal {
namespace {

using google::protobuf::util::TimeUtil;

// The attempts a worker says it runs, as (job id, attempt).
using AttemptSet = std::set<std::pair<std::string, uint32_t>>;

// A worker's command stream, valid while its lease and generation are current.
class CommandStreamImpl final : public CommandStream {
 public:
  CommandStreamImpl(std::shared_ptr<CoreState> core, std::string worker, uint64_t lease_id,
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
    // Queued by a change that is not durable yet: woken once it is.
    if (!core_->sync->Durable(it->second.commands_written)) {
      if (it->second.notify) core_->sync->OnDurable(it->second.commands_written, it->second.notify);
      return Poll::kWait;
    }
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
  std::shared_ptr<CoreState> core_;
  const std::string worker_;
  const uint64_t lease_id_;
  const uint64_t generation_;
};

// ---- Register, step by step ------------------------------------------------------------------

// Step 1: a fresh lease and record for the worker `request.name()`. Any stream of an earlier
// registration of this name ends and its queued commands are dropped.
WorkerEntry& RenewLease(CoreState& core, const v1::RegisterRequest& request, absl::Time now,
                        Wakeups& wakeups) {
  WorkerEntry& entry = core.workers[request.name()];
  if (!entry.schedulable) core.fleet_changed = now;  // a worker joins (or comes back)
  if (entry.notify) wakeups.push_back(entry.notify);  // an old stream of this name ends
  entry.notify = nullptr;
  entry.commands.clear();
  ++entry.stream_generation;
  entry.lease_id = core.next_lease_id++;
  entry.lease_expires = now + core.options.lease_ttl;
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
  return entry;
}

// Step 2: the attempts this worker holds are re-attached when it still runs them, kept when
// they are SCHEDULED and never started here (their assignment goes out again, step 5), and
// returned as lost otherwise (restarted in step 4). Its free slots are recounted from what it
// keeps.
std::vector<std::string> ReattachAttempts(CoreState& core, WorkerEntry& entry,
                                          const AttemptSet& listed) {
  v1::Worker& worker = entry.worker;
  const std::string& name = worker.name();
  std::vector<std::string> lost;
  uint32_t used = 0;
  worker.clear_running_jobs();
  for (auto& [id, job] : core.active) {
    if (!HoldsSlots(job.job.state())) continue;
    const auto& names = job.job.workers();
    if (std::find(names.begin(), names.end(), name) == names.end()) continue;
    if (listed.count({id, job.job.attempt()}) > 0) {
      job.attached.insert(name);
      used += job.job.spec().resources().slots_per_worker();
      worker.add_running_jobs(id);
    } else if (job.job.state() == v1::JOB_STATE_RUNNING || job.attach_deadline.has_value()) {
      lost.push_back(id);
    } else {
      // SCHEDULED and never started here: send the assignment again on the new stream.
      used += job.job.spec().resources().slots_per_worker();
      worker.add_running_jobs(id);
      job.attached.insert(name);
    }
  }
  worker.set_free_slots(worker.slots() > used ? worker.slots() - used : 0);
  return lost;
}

// Step 3: attempts the worker lists that are not current (final, unknown, or an older attempt)
// get a Cancellation on its new stream.
void QueueStaleCancellations(const CoreState& core, WorkerEntry& entry, const AttemptSet& listed) {
  for (const auto& [job_id, attempt] : listed) {
    auto it = core.active.find(job_id);
    if (it == core.active.end() || it->second.job.attempt() != attempt) {
      v1::WorkerCommand command;
      command.mutable_cancel()->set_job_id(job_id);
      command.mutable_cancel()->set_attempt(attempt);
      command.mutable_cancel()->set_reason("this attempt is no longer current");
      entry.commands.push_back(std::move(command));
      entry.commands_written = core.sync->written();
    }
  }
}

// Step 4 (after the worker record is persisted): the attempts it lost restart.
void RestartLostAttempts(CoreState& core, const std::string& name,
                         const std::vector<std::string>& lost, Wakeups& wakeups) {
  for (const std::string& id : lost) {
    RestartJobOrLog(core, id, absl::StrCat("worker ", name, " restarted without the attempt"),
                    wakeups);
  }
}

// Step 5: assignments for SCHEDULED attempts it holds go out again on its new stream (attempts
// placed by an earlier coordinator process have no port here: they re-attach or requeue).
void ResendAssignments(CoreState& core, WorkerEntry& entry, const AttemptSet& listed,
                       absl::Time now) {
  const std::string& name = entry.worker.name();
  for (auto& [id, job] : core.active) {
    if (job.job.state() != v1::JOB_STATE_SCHEDULED || job.rendezvous_port == 0) continue;
    const auto& names = job.job.workers();
    auto pos = std::find(names.begin(), names.end(), name);
    if (pos == names.end() || listed.count({id, job.job.attempt()}) > 0) continue;
    entry.commands.push_back(
        MakeAssignment(core, job, static_cast<uint32_t>(pos - names.begin())));
    entry.commands_written = core.sync->written();
    job.assigned_at = now;
  }
}

// Whether an assignment for this attempt waits in the worker's queue already.
bool AssignmentQueued(const WorkerEntry& worker, const v1::Job& job) {
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
void CheckListedAttempts(CoreState& core, WorkerEntry& worker, Wakeups& wakeups) {
  const std::string& name = worker.worker.name();
  const absl::Duration interval = core.options.lease_ttl / 3;
  std::vector<std::string> vanished;
  auto held = core.holding_on.find(name);  // runs on every heartbeat: only this worker's jobs
  if (held == core.holding_on.end()) return;
  for (const std::string& id : held->second) {
    auto it = core.active.find(id);
    if (it == core.active.end()) continue;
    ActiveJob& entry = it->second;
    const v1::Job& job = entry.job;
    auto pos = std::find(job.workers().begin(), job.workers().end(), name);
    if (pos == job.workers().end()) continue;
    if (worker.reported_running.count({id, job.attempt()}) > 0 ||
        entry.finished_nodes.count(name) > 0) {
      entry.missing_beats.erase(name);
      continue;
    }
    if (job.state() == v1::JOB_STATE_SCHEDULED) {
      if (entry.rendezvous_port != 0 && core.Now() - entry.assigned_at > interval &&
          !AssignmentQueued(worker, job)) {
        Send(core, name,
             MakeAssignment(core, entry, static_cast<uint32_t>(pos - job.workers().begin())),
             wakeups);
        entry.assigned_at = core.Now();
      }
    } else if (++entry.missing_beats[name] >= 2) {
      vanished.push_back(id);
    }
  }
  for (const std::string& id : vanished) {
    auto it = core.active.find(id);
    if (it != core.active.end()) {
      RestartJobOrLog(core, id,
                      absl::StrCat("worker ", name, " no longer runs attempt ",
                                   it->second.job.attempt()),
                      wakeups);
    }
  }
}

}  // namespace

// ---- the worker calls -----------------------------------------------------------------------

absl::Status ValidateRegistration(const v1::RegisterRequest& request) {
  RETURN_IF_ERROR(contract::CheckWorkerName("name", request.name()));
  if (request.slots() == 0 || request.slots() > limits::kMaxWorkerSlots) {
    return absl::InvalidArgumentError(
        absl::StrCat("slots: must be 1 to ", limits::kMaxWorkerSlots));
  }
  if (request.address().empty() || request.address().size() > limits::kMaxAddressBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("address: required, at most ", limits::kMaxAddressBytes, " characters"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::RegisterResponse> RegisterWorker(CoreState& core,
                                                    const v1::RegisterRequest& request,
                                                    Wakeups& wakeups) {
  const absl::Time now = core.Now();
  WorkerEntry& entry = RenewLease(core, request, now, wakeups);
  AttemptSet listed;
  for (const v1::RunningAttempt& running : request.running()) {
    listed.insert({running.job_id(), running.attempt()});
  }
  entry.reported_running = listed;
  // Re-attach what it still runs; requeue what it held but lost; stop what is stale.
  std::vector<std::string> lost = ReattachAttempts(core, entry, listed);
  QueueStaleCancellations(core, entry, listed);
  RETURN_IF_ERROR(StoreWrite(core, [&] { return core.store->UpsertWorker(entry.worker); }));
  LOG_INFO("worker {} registered: {} {} slot(s) at {}; {} attempt(s) kept, {} lost",
           request.name(), entry.worker.slots(),
           entry.worker.device() == v1::DEVICE_CUDA ? "cuda" : "cpu", entry.worker.address(),
           entry.worker.running_jobs_size(), lost.size());
  RestartLostAttempts(core, request.name(), lost, wakeups);
  ResendAssignments(core, entry, listed, now);
  core.MarkScheduleDirty(wakeups);
  v1::RegisterResponse response;
  response.set_lease_id(entry.lease_id);
  *response.mutable_lease_ttl() =
      TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(core.options.lease_ttl));
  *response.mutable_heartbeat_interval() =
      TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(core.options.lease_ttl / 3));
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> Heartbeat(CoreState& core,
                                                const v1::HeartbeatRequest& request,
                                                Wakeups& wakeups) {
  ASSIGN_OR_RETURN(WorkerEntry * entry, LeasedWorker(core, request.name(), request.lease_id()));
  absl::Time now = core.Now();
  entry->lease_expires = now + core.options.lease_ttl;
  *entry->worker.mutable_last_heartbeat_at() = ToProto(now);
  *entry->worker.mutable_lease_expires_at() = ToProto(entry->lease_expires);
  entry->reported_running.clear();
  for (const v1::RunningAttempt& running : request.running()) {
    entry->reported_running.insert({running.job_id(), running.attempt()});
  }
  if (request.draining() && entry->worker.state() == v1::WORKER_STATE_READY) {
    // The agent is stopping: no new work while its ranks checkpoint and exit. Its lease still
    // holds, so the attempts it reports on are accepted until it goes.
    entry->worker.set_state(v1::WORKER_STATE_DRAINING);
    core.fleet_changed = now;
    LOG_INFO("worker {} is draining: it takes no new jobs", request.name());
    LogIfError(StoreWrite(core, [&] { return core.store->UpsertWorker(entry->worker); }),
               absl::StrCat("persisting that worker ", request.name(), " is draining"));
  }
  CheckListedAttempts(core, *entry, wakeups);
  v1::HeartbeatResponse response;
  *response.mutable_lease_expires_at() = ToProto(entry->lease_expires);
  return response;
}

absl::StatusOr<std::unique_ptr<CommandStream>> OpenCommandStream(
    const std::shared_ptr<CoreState>& core, const v1::StreamCommandsRequest& request,
    Wakeups& wakeups) {
  ASSIGN_OR_RETURN(WorkerEntry * entry, LeasedWorker(*core, request.name(), request.lease_id()));
  if (entry->notify) wakeups.push_back(entry->notify);  // the previous stream ends
  entry->notify = nullptr;
  ++entry->stream_generation;
  return std::unique_ptr<CommandStream>(std::make_unique<CommandStreamImpl>(
      core, request.name(), request.lease_id(), entry->stream_generation));
}

absl::StatusOr<WorkerEntry*> LeasedWorker(CoreState& core, const std::string& name,
                                          uint64_t lease_id) {
  auto it = core.workers.find(name);
  if (it == core.workers.end() || it->second.lease_id != lease_id ||
      it->second.worker.state() == v1::WORKER_STATE_LOST) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker ", name, ": lease ", lease_id, " is not current; register again"));
  }
  return &it->second;
}

// ---- periodic -------------------------------------------------------------------------------

void ExpireLeases(CoreState& core, Wakeups& wakeups) {
  absl::Time now = core.Now();
  for (auto& [name, entry] : core.workers) {
    if (entry.worker.state() == v1::WORKER_STATE_LOST || entry.lease_expires > now) continue;
    entry.worker.set_state(v1::WORKER_STATE_LOST);
    entry.schedulable = false;
    core.fleet_changed = now;
    entry.commands.clear();
    if (entry.notify) wakeups.push_back(entry.notify);  // its stream ends
    entry.notify = nullptr;
    LOG_INFO("worker {} lost: no heartbeat for {}", name,
             absl::FormatDuration(now - entry.lease_expires + core.options.lease_ttl));
    // Best effort: the lease is what counts, and a restarted coordinator gives a listed worker
    // one more lease TTL anyway.
    const v1::Worker& lost = entry.worker;  // clang 14 cannot capture a structured binding
    LogIfError(StoreWrite(core, [&] { return core.store->UpsertWorker(lost); }),
               absl::StrCat("persisting that worker ", name, " is lost"));
    if (core.metrics != nullptr) {
      core.metrics->LeaseExpired();
      core.metrics->WorkerLost();
    }
  }
  // Every attempt that holds a lost (or vanished) worker restarts. Swept on every tick, so a
  // Restart that failed (a store error) is tried again.
  // Only slot holders have workers (and attachments to wait for): both sweeps walk `holding`,
  // not the whole table.
  std::vector<std::pair<std::string, std::string>> lost;  // job, worker
  for (const std::string& id : core.holding) {
    auto entry = core.active.find(id);
    if (entry == core.active.end()) continue;
    const ActiveJob& job = entry->second;
    for (const std::string& w : job.job.workers()) {
      auto it = core.workers.find(w);
      if (it == core.workers.end() || it->second.worker.state() == v1::WORKER_STATE_LOST) {
        lost.emplace_back(id, w);
        break;
      }
    }
  }
  for (const auto& [id, worker] : lost) {
    RestartJobOrLog(core, id, absl::StrCat("worker ", worker, " lost (lease expired)"), wakeups);
  }
  // Attempts recovered from the store whose workers did not come back in time.
  std::vector<std::string> stale;
  for (const std::string& id : core.holding) {
    auto entry = core.active.find(id);
    if (entry == core.active.end()) continue;
    const ActiveJob& job = entry->second;
    if (job.attach_deadline.has_value() && *job.attach_deadline <= now &&
        job.attached.size() < static_cast<size_t>(job.job.workers_size())) {
      stale.push_back(id);
    }
  }
  for (const std::string& id : stale) {
    RestartJobOrLog(core, id, "its workers did not re-attach after a coordinator restart",
                    wakeups);
  }
}

// ---- slots and commands ---------------------------------------------------------------------

void Send(CoreState& core, const std::string& worker_name, v1::WorkerCommand command,
          Wakeups& wakeups) {
  auto it = core.workers.find(worker_name);
  // A lost worker's ranks are gone or fenced; it gets a fresh queue when it registers again.
  if (it == core.workers.end() || it->second.worker.state() == v1::WORKER_STATE_LOST) return;
  it->second.commands.push_back(std::move(command));
  it->second.commands_written = core.sync->written();
  if (it->second.notify) wakeups.push_back(it->second.notify);
}

void SendCancellation(CoreState& core, const v1::Job& job, const std::string& reason,
                      Wakeups& wakeups) {
  for (const std::string& name : job.workers()) {
    v1::WorkerCommand command;
    command.mutable_cancel()->set_job_id(job.id());
    command.mutable_cancel()->set_attempt(job.attempt());
    command.mutable_cancel()->set_reason(reason);
    Send(core, name, std::move(command), wakeups);
  }
}

void TakeSlots(CoreState& core, const std::vector<std::string>& workers, const std::string& job_id,
               uint32_t slots_per_worker) {
  for (const std::string& name : workers) {
    v1::Worker& worker = core.workers.at(name).worker;
    worker.set_free_slots(worker.free_slots() >= slots_per_worker
                              ? worker.free_slots() - slots_per_worker
                              : 0);
    worker.add_running_jobs(job_id);
  }
}

// Only a worker that still counts the job among its running jobs gives slots back (one that
// re-registered without the attempt has already recounted its slots).
void ReleaseSlots(CoreState& core, const v1::Job& job) {
  for (const std::string& name : job.workers()) {
    auto it = core.workers.find(name);
    if (it == core.workers.end()) continue;
    v1::Worker& worker = it->second.worker;
    auto& running = *worker.mutable_running_jobs();
    auto held = std::remove(running.begin(), running.end(), job.id());
    if (held == running.end()) continue;
    running.erase(held, running.end());
    worker.set_free_slots(std::min(worker.slots(),
                                   worker.free_slots() + job.spec().resources().slots_per_worker()));
  }
}

std::vector<SchedulerWorker> SchedulableFleet(const CoreState& core) {
  std::vector<SchedulerWorker> fleet;
  for (const auto& [name, entry] : core.workers) {
    if (!entry.schedulable || entry.worker.state() == v1::WORKER_STATE_LOST) continue;
    fleet.push_back({name, entry.worker.device(), entry.worker.slots(), entry.worker.free_slots(),
                     entry.worker.state() == v1::WORKER_STATE_READY && !entry.worker.cordoned()});
  }
  return fleet;
}

// ---- views and lifecycle --------------------------------------------------------------------

v1::ListWorkersResponse ListWorkers(const CoreState& core) {
  v1::ListWorkersResponse response;
  for (const auto& [name, entry] : core.workers) *response.add_workers() = entry.worker;
  return response;
}

void WakeAllCommandStreams(CoreState& core, Wakeups& wakeups) {
  for (auto& [name, entry] : core.workers) {
    if (entry.notify) wakeups.push_back(entry.notify);
  }
}

void RecoverWorkers(CoreState& core, std::vector<v1::Worker>& workers, absl::Time now) {
  for (v1::Worker& worker : workers) {
    // A lost worker is forgotten, unless an operator cordoned it: the cordon outlives restarts.
    if (worker.state() == v1::WORKER_STATE_LOST && !worker.cordoned()) continue;
    WorkerEntry entry;
    entry.lease_expires = now + core.options.lease_ttl;
    entry.worker = std::move(worker);
    std::string name = entry.worker.name();
    core.workers.emplace(std::move(name), std::move(entry));
  }
  // Slots held by recovered attempts stay held on their workers.
  for (auto& [name, entry] : core.workers) {
    uint32_t used = 0;
    entry.worker.clear_running_jobs();
    for (const auto& [id, job] : core.active) {
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
}

}  // namespace loratrf::server::core_internal
