#include "server/core/job_stops.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "proto/contract/limits.h"
#include "proto/contract/names.h"
#include "server/core/job_access.h"
#include "server/core/job_lifecycle.h"
#include "server/core/preemption.h"
#include "server/core/worker_registry.h"

namespace loratrf::server::core_internal {
namespace {

const char* KindName(StopKind kind) {
  switch (kind) {
    case StopKind::kPriority: return "priority preemption";
    case StopKind::kPause: return "pause";
    case StopKind::kDrain: return "drain";
  }
  return "stop";
}

// The coordinator's note on a job's event stream (rank -1: not a rank's line).
v1::JobEvent Note(const std::string& text) {
  v1::JobEvent event;
  event.mutable_log()->set_level(v1::LogLine::LEVEL_INFO);
  event.mutable_log()->set_rank(-1);
  event.mutable_log()->set_text(text);
  return event;
}

// "paused by alice" or "paused by alice: REASON".
std::string Because(const std::string& what, const Caller& caller, const std::string& reason) {
  std::string text = absl::StrCat(what, " by ", caller.principal);
  if (!reason.empty()) {
    absl::StrAppend(&text, ": ", SanitizeText(reason, limits::kMaxReasonBytes));
  }
  return text;
}

void SendStop(CoreState& core, const ActiveJob& entry, Wakeups& wakeups) {
  for (const std::string& name : entry.job.workers()) {
    v1::WorkerCommand command;
    v1::Cancellation& cancel = *command.mutable_cancel();
    cancel.set_job_id(entry.job.id());
    cancel.set_attempt(entry.job.attempt());
    cancel.set_reason(entry.stop->reason);
    cancel.set_checkpoint_first(true);
    Send(core, name, std::move(command), wakeups);
  }
}

// Every worker of the attempt registered in this process (a recovered stop can be delivered).
bool WorkersBack(const CoreState& core, const v1::Job& job) {
  for (const std::string& name : job.workers()) {
    auto it = core.workers.find(name);
    if (it == core.workers.end() || !it->second.schedulable ||
        it->second.worker.state() == v1::WORKER_STATE_LOST) {
      return false;
    }
  }
  return true;
}

// The active job `id` the caller may act on, or the error to return; a final job (not in the
// table) is FAILED_PRECONDITION for `what`, once the caller is known to own it.
absl::StatusOr<ActiveJob*> OwnedActiveJob(CoreState& core, const Caller& caller,
                                          const std::string& id, const char* what) {
  auto it = core.active.find(id);
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
  if (it != core.active.end()) {
    RETURN_IF_ERROR(CheckJobAccess(caller, it->second.job));
  } else {
    ASSIGN_OR_RETURN(v1::Job stored, core.store->GetJob(id));
    RETURN_IF_ERROR(CheckJobAccess(caller, stored));
    state = stored.state();
  }
  if (it == core.active.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", id, " is ", v1::JobState_Name(state), ": only a job that has not finished can be ",
        what));
  }
  return &it->second;
}

}  // namespace

// ---- the stop itself ------------------------------------------------------------------------

absl::Status RequestStop(CoreState& core, ActiveJob& entry, StopKind kind,
                         const std::string& requested_by, const std::string& reason,
                         const std::string& for_job, bool pause, Wakeups& wakeups) {
  if (!HoldsSlots(entry.job.state())) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", entry.job.id(), " holds no workers: nothing to stop"));
  }
  const bool pending = entry.stop.has_value();
  if (pending && (!pause || entry.job.paused())) return absl::OkStatus();  // idempotent
  v1::Job job = entry.job;
  if (pause) job.set_paused(true);
  const std::string text =
      pending ? absl::StrCat(reason, "; the attempt is already stopping (",
                             KindName(entry.stop->kind), ") and stays paused")
              : absl::StrCat(reason, "; the attempt checkpoints and stops");
  RETURN_IF_ERROR(CommitJob(core, std::move(job), {Note(text)}, wakeups));
  if (pending) return absl::OkStatus();
  // Persisted: now tell the workers.
  entry.stop = StopRequest{kind, requested_by, reason, core.Now() + core.options.stop_timeout,
                           for_job, /*sent=*/true};
  SendStop(core, entry, wakeups);
  if (core.metrics != nullptr) core.metrics->JobPreempted(kind);
  LOG_INFO("job {} attempt {}: {} asked ({}); it checkpoints and stops within {}",
           entry.job.id(), entry.job.attempt(), KindName(kind), reason,
           absl::FormatDuration(core.options.stop_timeout));
  return absl::OkStatus();
}

void ExpireStops(CoreState& core, Wakeups& wakeups) {
  const absl::Time now = core.Now();
  std::vector<std::string> overdue;
  // A stop is pending only for a slot holder (Reindex drops it when a job starts holding slots
  // again), so `holding` is all there is to walk.
  for (const std::string& id : core.holding) {
    auto it = core.active.find(id);
    if (it == core.active.end()) continue;
    ActiveJob& entry = it->second;
    if (!entry.stop.has_value()) continue;
    if (!entry.stop->sent && WorkersBack(core, entry.job)) {
      SendStop(core, entry, wakeups);
      entry.stop->sent = true;
    }
    if (entry.stop->deadline <= now) overdue.push_back(id);
  }
  for (const std::string& id : overdue) {
    auto it = core.active.find(id);
    if (it == core.active.end()) continue;
    const std::string reason = absl::StrCat(
        it->second.stop->reason, "; no checkpoint reported within ",
        absl::FormatDuration(core.options.stop_timeout),
        ": stopped and requeued from the latest committed checkpoint");
    LOG_WARN("job {} attempt {}: {}", id, it->second.job.attempt(), reason);
    absl::Status status = RestartJob(core, it->second, reason, wakeups, AttemptEnd::kPreempted);
    if (!status.ok()) {
      LOG_WARN("restarting job {} after its stop timed out failed: {}; tried again on the next "
               "tick", id, status.ToString());
    }
  }
}

bool IsHeld(const CoreState& core, const ActiveJob& entry) {
  if (entry.job.paused()) return true;
  if (entry.held_for.empty()) return false;
  auto waiter = core.active.find(entry.held_for);
  if (waiter == core.active.end() || waiter->second.job.state() != v1::JOB_STATE_QUEUED) {
    return false;
  }
  for (const std::string& id : core.holding) {
    auto other = core.active.find(id);
    if (other != core.active.end() && other->second.stop.has_value() &&
        other->second.stop->kind == StopKind::kPriority &&
        other->second.stop->for_job == entry.held_for) {
      return true;
    }
  }
  return false;
}

// ---- the calls ------------------------------------------------------------------------------

absl::StatusOr<v1::Job> PauseJob(CoreState& core, const Caller& caller,
                                 const v1::PauseJobRequest& request, Wakeups& wakeups) {
  ASSIGN_OR_RETURN(ActiveJob * entry, OwnedActiveJob(core, caller, request.id(), "paused"));
  if (entry->job.paused()) return entry->job;
  const std::string reason = Because("paused", caller, request.reason());
  if (entry->job.state() == v1::JOB_STATE_QUEUED) {
    v1::Job job = entry->job;
    job.set_paused(true);
    job.set_state_reason(reason);
    job.mutable_queue()->set_reason(v1::QUEUE_REASON_PAUSED);
    job.mutable_queue()->set_message("paused: waits for `loratrf resume`");
    RETURN_IF_ERROR(CommitJob(core, std::move(job), {Note(reason)}, wakeups));
    LOG_INFO("job {} paused while queued ({})", request.id(), reason);
  } else {
    RETURN_IF_ERROR(RequestStop(core, *entry, StopKind::kPause, caller.principal, reason, "",
                                /*pause=*/true, wakeups));
  }
  return entry->job;
}

absl::StatusOr<v1::Job> ResumeJob(CoreState& core, const Caller& caller,
                                  const v1::ResumeJobRequest& request, Wakeups& wakeups) {
  ASSIGN_OR_RETURN(ActiveJob * entry, OwnedActiveJob(core, caller, request.id(), "resumed"));
  if (!entry->job.paused()) return entry->job;
  const std::string reason = Because("resumed", caller, "");
  v1::Job job = entry->job;
  job.set_paused(false);
  if (job.state() == v1::JOB_STATE_QUEUED) {
    job.clear_queue();  // the next scheduling pass says why it waits, if it does
    job.set_state_reason(reason);
  }
  // CommitJob marks scheduling dirty: the job is placed on the next pass if it fits.
  RETURN_IF_ERROR(CommitJob(core, std::move(job), {Note(reason)}, wakeups));
  LOG_INFO("job {} resumed by {}", request.id(), caller.principal);
  return entry->job;
}

absl::Status ValidateCordon(const v1::CordonWorkerRequest& request) {
  RETURN_IF_ERROR(contract::CheckWorkerName("name", request.name()));
  switch (request.action()) {
    case v1::CordonWorkerRequest::ACTION_CORDON:
    case v1::CordonWorkerRequest::ACTION_DRAIN:
    case v1::CordonWorkerRequest::ACTION_UNCORDON:
      break;
    default:
      return absl::InvalidArgumentError(
          "action: must be ACTION_CORDON, ACTION_DRAIN or ACTION_UNCORDON");
  }
  if (request.reason().size() > limits::kMaxReasonBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("reason: at most ", limits::kMaxReasonBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Worker> CordonWorker(CoreState& core, const Caller& caller,
                                        const v1::CordonWorkerRequest& request,
                                        Wakeups& wakeups) {
  auto it = core.workers.find(request.name());
  if (it == core.workers.end()) {
    return absl::NotFoundError(absl::StrCat("worker ", request.name(), " is not known"));
  }
  WorkerEntry& entry = it->second;
  const bool cordon = request.action() != v1::CordonWorkerRequest::ACTION_UNCORDON;
  if (entry.worker.cordoned() != cordon) {
    v1::Worker worker = entry.worker;
    worker.set_cordoned(cordon);
    RETURN_IF_ERROR(StoreWrite(core, [&] { return core.store->UpsertWorker(worker); }));
    entry.worker.set_cordoned(cordon);
    // Uncordoned: it takes work on the next pass. (Cordoned: nothing new goes there.)
    core.MarkScheduleDirty(wakeups);
    LOG_INFO("worker {} {}", request.name(),
             Because(cordon ? "cordoned" : "uncordoned", caller, request.reason()));
  }
  if (request.action() == v1::CordonWorkerRequest::ACTION_DRAIN) {
    const std::string reason =
        Because(absl::StrCat("worker ", request.name(), " drained"), caller, request.reason());
    std::vector<std::string> on_it;
    for (const auto& [id, job] : core.active) {
      const auto& names = job.job.workers();
      if (HoldsSlots(job.job.state()) &&
          std::find(names.begin(), names.end(), request.name()) != names.end()) {
        on_it.push_back(id);
      }
    }
    for (const std::string& id : on_it) {
      auto job = core.active.find(id);
      if (job == core.active.end()) continue;
      RETURN_IF_ERROR(RequestStop(core, job->second, StopKind::kDrain, caller.principal, reason,
                                  "", /*pause=*/false, wakeups));
    }
  }
  return entry.worker;
}

// ---- priority preemption --------------------------------------------------------------------

void PreemptForWaiting(CoreState& core, Wakeups& wakeups) {
  // Agents may still be joining (after a coordinator start): what they bring may be enough.
  if (!core.FleetSettled()) return;
  const absl::Time now = core.Now();
  // From the core's indexes, never the whole table: this runs on every tick. Candidates are
  // the slot holders; waiters come from the queue, already in scheduling order (priority
  // first), so the walk stops at the first priority no candidate is below.
  std::vector<PreemptionCandidate> candidates;
  std::set<std::string> stopping_for;  // waiting jobs whose victims are still stopping
  std::map<std::string, int> running_per_owner;
  int32_t lowest_candidate = std::numeric_limits<int32_t>::max();
  for (const std::string& id : core.holding) {
    auto it = core.active.find(id);
    if (it == core.active.end()) continue;
    const ActiveJob& entry = it->second;
    const v1::Job& job = entry.job;
    ++running_per_owner[job.owner()];
    if (entry.stop.has_value()) {
      if (entry.stop->kind == StopKind::kPriority) stopping_for.insert(entry.stop->for_job);
      continue;
    }
    // Recovered and not re-attached yet: it may be requeued anyway.
    if (entry.attach_deadline.has_value() &&
        entry.attached.size() < static_cast<size_t>(job.workers_size())) {
      continue;
    }
    PreemptionCandidate candidate;
    candidate.id = id;
    candidate.priority = job.spec().priority();
    candidate.workers.assign(job.workers().begin(), job.workers().end());
    candidate.slots_per_worker = job.spec().resources().slots_per_worker();
    candidate.never_preempt = job.spec().never_preempt();
    candidate.ran_for = now - entry.assigned_at;
    lowest_candidate = std::min(lowest_candidate, candidate.priority);
    candidates.push_back(std::move(candidate));
  }
  if (candidates.empty()) return;
  std::vector<const ActiveJob*> waiters;
  for (const auto& [priority, owners] : core.queue.groups()) {
    if (priority <= lowest_candidate) break;
    for (const auto& [owner, run] : owners) {
      for (const auto& [key, queued] : run) {
        if (!queued.paused && !queued.held) {
          waiters.push_back(static_cast<const ActiveJob*>(queued.context));
        }
      }
    }
  }
  if (waiters.empty()) return;
  std::vector<SchedulerWorker> fleet = SchedulableFleet(core);
  // Shapes (priority, device, workers, slots) that found no victims in this pass: the fleet and
  // the candidates only shrink within it, so a long queue of alike jobs costs one search.
  std::set<std::tuple<int32_t, int, uint32_t, uint32_t>> hopeless;
  for (const ActiveJob* waiter : waiters) {
    const v1::Job& job = waiter->job;
    if (stopping_for.count(job.id()) > 0) continue;
    const int limit = core.options.max_running_per_owner;
    if (limit > 0 && running_per_owner[job.owner()] >= limit) continue;  // would not run anyway
    const v1::ResourceSpec& resources = job.spec().resources();
    SchedulerJob wanted{job.id(), job.owner(), job.spec().priority(), waiter->order,
                        resources.device() == v1::DEVICE_CUDA ? v1::DEVICE_CUDA : v1::DEVICE_CPU,
                        resources.workers(), resources.slots_per_worker()};
    const auto shape = std::make_tuple(wanted.priority, static_cast<int>(wanted.device),
                                       wanted.workers, wanted.slots_per_worker);
    if (wanted.priority <= lowest_candidate || hopeless.count(shape) > 0) continue;
    std::optional<PreemptionPlan> plan =
        PickVictims(wanted, fleet, candidates, core.options.min_run_before_preempt);
    if (!plan.has_value()) {
      hopeless.insert(shape);
      continue;
    }
    // The free slots the plan counts on are spoken for: later waiters do not count them again.
    std::map<std::string, uint32_t> freed;
    for (const PreemptionCandidate& candidate : candidates) {
      if (std::find(plan->victims.begin(), plan->victims.end(), candidate.id) ==
          plan->victims.end()) {
        continue;
      }
      for (const std::string& w : candidate.workers) freed[w] += candidate.slots_per_worker;
    }
    for (SchedulerWorker& worker : fleet) {
      if (std::find(plan->workers.begin(), plan->workers.end(), worker.name) ==
          plan->workers.end()) {
        continue;
      }
      uint32_t from_free = wanted.slots_per_worker > freed[worker.name]
                               ? wanted.slots_per_worker - freed[worker.name]
                               : 0;
      worker.free_slots -= std::min(worker.free_slots, from_free);
    }
    candidates.erase(std::remove_if(candidates.begin(), candidates.end(),
                                    [&](const PreemptionCandidate& c) {
                                      return std::find(plan->victims.begin(),
                                                       plan->victims.end(),
                                                       c.id) != plan->victims.end();
                                    }),
                     candidates.end());
    ++running_per_owner[job.owner()];
    const std::string reason = absl::StrCat("preempted by job ", job.id(), " at priority ",
                                            job.spec().priority());
    for (const std::string& victim : plan->victims) {
      auto it = core.active.find(victim);
      if (it == core.active.end()) continue;
      absl::Status status = RequestStop(core, it->second, StopKind::kPriority, "scheduler",
                                        reason, job.id(), /*pause=*/false, wakeups);
      if (!status.ok()) {
        LOG_WARN("preempting job {} for job {} failed: {}; tried again on the next tick", victim,
                 job.id(), status.ToString());
      }
    }
  }
}

// ---- recovery -------------------------------------------------------------------------------

void RecoverStops(CoreState& core, absl::Time now) {
  for (auto& [id, entry] : core.active) {
    if (!HoldsSlots(entry.job.state()) || !entry.job.paused()) continue;
    entry.stop = StopRequest{StopKind::kPause, "", "paused before the coordinator restarted",
                             now + core.options.stop_timeout, "", /*sent=*/false};
  }
}

}  // namespace loratrf::server::core_internal
