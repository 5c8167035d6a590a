#include "server/core/job_lifecycle.h"

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

#include "absl/random/random.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/time_util.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "proto/contract/limits.h"
#include "proto/contract/names.h"
#include "proto/spec/job_spec.h"
#include "server/core/event_log.h"
#include "server/core/job_stops.h"
#include "server/core/job_access.h"
#include "server/core/scheduler.h"
#include "server/core/worker_registry.h"

namespace loratrf::server::core_internal {
namespace {

using google::protobuf::util::TimeUtil;


// "JOB_STATE_SUCCEEDED" → "succeeded", for log lines.
std::string StateName(v1::JobState state) {
  std::string name = v1::JobState_Name(state);
  constexpr char kPrefix[] = "JOB_STATE_";
  if (name.rfind(kPrefix, 0) == 0) name = name.substr(sizeof(kPrefix) - 1);
  return absl::AsciiStrToLower(name);
}

std::string DeviceName(v1::Device device) { return device == v1::DEVICE_CUDA ? "cuda" : "cpu"; }

// A queue this short gets its statuses rewritten on every pass; a longer one at most every
// kQueueStatusRefresh, so that a pass with nothing to place stays cheap (docs/control-plane.md,
// "The queue").
constexpr size_t kFullWalkQueue = 1000;
// Placements per scheduling pass: each is persisted under the core's mutex, so a pass that
// hands out thousands of jobs at once would stall every RPC for its whole length; the rest go
// in the passes right after (each pass that stops here asks for the next one).
constexpr size_t kMaxPlacementsPerPass = 256;
constexpr absl::Duration kQueueStatusRefresh = absl::Milliseconds(500);

// The scheduler's view of a queued job.
SchedulerJob QueueEntry(const CoreState& core, ActiveJob& entry) {
  const v1::Job& job = entry.job;
  const v1::ResourceSpec& resources = job.spec().resources();
  SchedulerJob queued;
  queued.id = job.id();
  queued.owner = job.owner();
  queued.priority = job.spec().priority();
  queued.order = entry.order;
  queued.device = resources.device() == v1::DEVICE_CUDA ? v1::DEVICE_CUDA : v1::DEVICE_CPU;
  queued.workers = resources.workers();
  queued.slots_per_worker = resources.slots_per_worker();
  queued.paused = job.paused();
  queued.held = !queued.paused && IsHeld(core, entry);
  queued.context = &entry;
  return queued;
}

void Reindex(CoreState& core, ActiveJob& entry);

// A hold ends once the job it was preempted for is placed or no longer has victims stopping;
// the held job then competes again. Holds are few: only CoreState::held is looked at.
void ReleaseEndedHolds(CoreState& core) {
  for (auto id = core.held.begin(); id != core.held.end();) {
    auto it = core.active.find(*id);
    if (it != core.active.end() && it->second.job.state() == v1::JOB_STATE_QUEUED &&
        IsHeld(core, it->second)) {
      ++id;
      continue;
    }
    if (it != core.active.end()) {
      it->second.held_for.clear();
      Reindex(core, it->second);
    }
    id = core.held.erase(id);
  }
}

// Keeps CoreState::queue and CoreState::holding in step with entry.job: called whenever the
// job (its state, paused flag or order) may have changed, and before the entry is erased.
void Reindex(CoreState& core, ActiveJob& entry) {
  if (entry.queued.has_value()) {
    core.queue.Remove(*entry.queued);
    entry.queued.reset();
  }
  if (entry.job.state() == v1::JOB_STATE_QUEUED) {
    entry.queued = QueueEntry(core, entry);
    core.queue.Add(*entry.queued);
  }
  for (const std::string& worker : entry.holding_on) {
    auto on = core.holding_on.find(worker);
    if (on == core.holding_on.end()) continue;
    on->second.erase(entry.job.id());
    if (on->second.empty()) core.holding_on.erase(on);
  }
  entry.holding_on.clear();
  if (HoldsSlots(entry.job.state())) {
    // A new attempt starts with no stop pending: one left from an attempt that ended some
    // other way (it failed, its worker was lost) must not stop this one.
    if (core.holding.insert(entry.job.id()).second) entry.stop.reset();
    for (const std::string& worker : entry.job.workers()) {
      core.holding_on[worker].insert(entry.job.id());
      entry.holding_on.push_back(worker);
    }
  } else {
    core.holding.erase(entry.job.id());
  }
}

// FinishJob for a scheduling decision; a failure is logged and the job stays queued for the
// next pass.
void FinishQueuedOrLog(CoreState& core, ActiveJob& entry, const std::string& reason,
                       Wakeups& wakeups) {
  const std::string id = entry.job.id();
  absl::Status status = FinishJob(core, entry, v1::JOB_STATE_FAILED, reason, wakeups);
  if (!status.ok()) {
    LOG_WARN("failing job {} ({}) failed: {}; it stays queued for the next scheduling pass", id,
             reason, status.ToString());
  }
}

v1::JobEvent StateEvent(v1::JobState from, v1::JobState to, const std::string& reason) {
  v1::JobEvent event;
  event.mutable_state_change()->set_from(from);
  event.mutable_state_change()->set_to(to);
  event.mutable_state_change()->set_reason(reason);
  return event;
}

// The attempt no longer holds its workers: slots back, ranks stopped (unless it succeeded),
// port free. Called after the state change is persisted.
void LeaveWorkers(CoreState& core, const v1::Job& before, bool cancel, const std::string& reason,
                  uint32_t port, Wakeups& wakeups) {
  if (!HoldsSlots(before.state())) return;
  ReleaseSlots(core, before);
  if (cancel) SendCancellation(core, before, reason, wakeups);
  core.ports_in_use.erase(port);
}

absl::StatusOr<std::string> LatestResumeCheckpoint(CoreState& core, const std::string& job_id) {
  ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> checkpoints, core.store->ListCheckpoints(job_id));
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

uint32_t PickPort(CoreState& core) {
  const uint32_t low = core.options.rendezvous_port_low, high = core.options.rendezvous_port_high;
  uint32_t port = absl::Uniform<uint32_t>(absl::IntervalClosed, core.random, low, high);
  for (uint32_t tries = 0; tries <= high - low && core.ports_in_use.count(port) > 0; ++tries) {
    port = port == high ? low : port + 1;
  }
  return port;  // every port taken: reuse one (more attempts than ports is a configuration error)
}

// QUEUED → SCHEDULED on the placement's workers: persisted first, then the slots are held and
// the workers told.
absl::Status Place(CoreState& core, ActiveJob& entry, const Placement& placement,
                   Wakeups& wakeups) {
  ASSIGN_OR_RETURN(std::string resume, LatestResumeCheckpoint(core, entry.job.id()));
  v1::Job job = entry.job;
  job.set_state(v1::JOB_STATE_SCHEDULED);
  job.set_state_reason(absl::StrCat("on ", absl::StrJoin(placement.workers, ", ")));
  job.clear_workers();
  for (const std::string& name : placement.workers) job.add_workers(name);
  std::vector<v1::JobEvent> events = {
      StateEvent(v1::JOB_STATE_QUEUED, v1::JOB_STATE_SCHEDULED, job.state_reason())};
  RETURN_IF_ERROR(CommitJob(core, std::move(job), std::move(events), wakeups));
  // Persisted: now hold the slots and tell the workers.
  TakeSlots(core, placement.workers, entry.job.id(),
            entry.job.spec().resources().slots_per_worker());
  entry.rendezvous_port = PickPort(core);
  core.ports_in_use.insert(entry.rendezvous_port);
  entry.resume_checkpoint = resume;
  entry.assigned_at = core.Now();
  if (core.metrics != nullptr) core.metrics->SchedulingLatency(core.Now() - entry.queued_at);
  LOG_INFO("job {} attempt {} scheduled on {}{}", entry.job.id(), entry.job.attempt(),
           absl::StrJoin(placement.workers, ", "),
           resume.empty() ? "" : absl::StrCat(", resuming from checkpoint ", resume));
  for (size_t rank = 0; rank < placement.workers.size(); ++rank) {
    Send(core, placement.workers[rank], MakeAssignment(core, entry, static_cast<uint32_t>(rank)),
         wakeups);
  }
  return absl::OkStatus();
}

}  // namespace

// ---- submit, cancel, read -------------------------------------------------------------------

namespace {

// SubmitJob's per-owner limits (CoreOptions): ResourceExhausted naming the limit.
absl::Status CheckOwnerLimits(const CoreState& core, const std::string& owner,
                              const v1::JobSpec& spec) {
  const CoreOptions& options = core.options;
  if (options.max_queued_per_owner > 0) {
    const int64_t queued = core.queue.QueuedFor(owner);
    if (queued >= options.max_queued_per_owner) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "owner ", owner, " has ", queued, " queued job(s), the limit (max queued per owner ",
          options.max_queued_per_owner, "); wait for some to start or cancel them"));
    }
  }
  const uint64_t slots =
      uint64_t{spec.resources().workers()} * spec.resources().slots_per_worker();
  if (options.max_running_slots_per_owner > 0 && slots > options.max_running_slots_per_owner) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "resources: the job needs ", slots, " slot(s), more than an owner may hold (max running "
        "slots per owner ", options.max_running_slots_per_owner, ")"));
  }
  return absl::OkStatus();
}

// A spec's bytes in protobuf's deterministic serialization (map entries sorted by key): what
// "the same spec" means for an idempotent replay. The stored spec is the submitted one as is
// (unknown fields are refused, so every byte comes from a known field).
std::string SpecBytes(const v1::JobSpec& spec) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream out(&stream);
    out.SetSerializationDeterministic(true);
    spec.SerializeToCodedStream(&out);
  }
  return bytes;
}

}  // namespace

absl::Status ValidateSubmission(const v1::SubmitJobRequest& request) {
  if (!request.idempotency_key().empty()) {
    RETURN_IF_ERROR(contract::CheckIdempotencyKey("idempotency_key", request.idempotency_key()));
  }
  // A sweep id is made by the coordinator like a job id, and follows the same rule.
  if (!request.sweep_id().empty()) RETURN_IF_ERROR(contract::CheckId("sweep_id", request.sweep_id()));
  return spec::ValidateSubmittedJobSpec(request.spec());
}

absl::StatusOr<v1::SubmitJobResponse> SubmitJob(CoreState& core, const Caller& caller,
                                                const v1::SubmitJobRequest& request,
                                                Wakeups& wakeups) {
  v1::SubmitJobResponse response;
  absl::Time now = core.Now();
  v1::Job job;
  job.set_id(absl::StrFormat("j-%x-%06x", absl::ToUnixMillis(now),
                             absl::Uniform<uint32_t>(core.random, 0, 1u << 24)));
  job.set_name(request.spec().name());
  *job.mutable_spec() = request.spec();
  job.set_state(v1::JOB_STATE_QUEUED);
  job.set_state_reason("waiting for slots");
  job.set_attempt(1);
  *job.mutable_created_at() = ToProto(now);
  *job.mutable_updated_at() = ToProto(now);
  job.set_owner(caller.principal);
  job.set_sweep_id(request.sweep_id());
  RETURN_IF_ERROR(CheckOwnerLimits(core, caller.principal, request.spec()));
  ASSIGN_OR_RETURN(CreateJobResult created,
                   StoreWrite(core, [&] {
                     return core.store->CreateJob(job, request.idempotency_key(), caller.principal);
                   }));
  // A key older than the idempotency window names nothing any more (the periodic pass may not
  // have forgotten it yet): forget it now and make the new job.
  if (!created.created && core.options.idempotency_window > absl::ZeroDuration() &&
      FromProto(created.job.created_at()) < now - core.options.idempotency_window) {
    RETURN_IF_ERROR(StoreWrite(core, [&] {
                      return core.store->ExpireIdempotencyKeys(now -
                                                               core.options.idempotency_window);
                    }).status());
    ASSIGN_OR_RETURN(created, StoreWrite(core, [&] {
                       return core.store->CreateJob(job, request.idempotency_key(),
                                                    caller.principal);
                     }));
  }
  if (!created.created && SpecBytes(created.job.spec()) != SpecBytes(request.spec())) {
    // The key was used for another spec: answering with that job would let the caller believe
    // its new spec was queued.
    return absl::AlreadyExistsError(absl::StrCat(
        "idempotency_key ", request.idempotency_key(), ": already used for job ",
        created.job.id(), " with a different spec (a retry must send the same spec; use a new "
        "key for a new job)"));
  }
  *response.mutable_job() = created.job;
  response.set_existing(!created.created);
  if (created.created) {
    ActiveJob entry;
    entry.job = created.job;
    entry.order = core.next_order++;
    entry.queued_at = now;
    auto [it, inserted] = core.active.emplace(created.job.id(), std::move(entry));
    Reindex(core, it->second);
    Publish(core, created.job.id(), {job_store_internal::FirstEvent(created.job)}, false, wakeups);
    core.MarkScheduleDirty(wakeups);
    if (core.metrics != nullptr) core.metrics->JobSubmitted();
    const v1::ResourceSpec& resources = created.job.spec().resources();
    LOG_INFO("job {} ({}) submitted by {}: {} worker(s) x {} {} slot(s), priority {}",
             created.job.id(), created.job.name(), created.job.owner(), resources.workers(),
             resources.slots_per_worker(), DeviceName(resources.device()),
             created.job.spec().priority());
  } else if (core.metrics != nullptr) {
    core.metrics->IdempotentReplay();
  }
  return response;
}

const v1::Job* CachedJob(const CoreState& core, const std::string& id) {
  auto it = core.active.find(id);
  return it != core.active.end() ? &it->second.job : nullptr;
}

absl::StatusOr<v1::Job> CancelJob(CoreState& core, const Caller& caller,
                                  const v1::CancelJobRequest& request, Wakeups& wakeups) {
  auto it = core.active.find(request.id());
  if (it == core.active.end()) {  // final: as is, to those who may act on it
    ASSIGN_OR_RETURN(v1::Job job, core.store->GetJob(request.id()));
    RETURN_IF_ERROR(CheckJobAccess(caller, job));
    return job;
  }
  RETURN_IF_ERROR(CheckJobAccess(caller, it->second.job));
  std::string reason = request.reason().empty()
                           ? absl::StrCat("cancelled by ", caller.principal)
                           : SanitizeText(request.reason(), limits::kMaxReasonBytes);
  std::string id = request.id();
  RETURN_IF_ERROR(FinishJob(core, it->second, v1::JOB_STATE_CANCELLED, reason, wakeups));
  return core.store->GetJob(id);
}

// ---- transitions ----------------------------------------------------------------------------

absl::Status CommitJob(CoreState& core, v1::Job job, std::vector<v1::JobEvent> events,
                       Wakeups& wakeups) {
  absl::Time now = core.Now();
  *job.mutable_updated_at() = ToProto(now);
  // The queue status is a live view, rewritten by scheduling passes: never persisted. One the
  // caller set (a pause) stands until the next pass.
  std::optional<v1::QueueStatus> given;
  if (job.has_queue()) given = job.queue();
  job.clear_queue();
  for (v1::JobEvent& event : events) {
    event.set_job_id(job.id());
    if (!event.has_time()) *event.mutable_time() = ToProto(now);
    if (event.attempt() == 0) event.set_attempt(job.attempt());
  }
  ASSIGN_OR_RETURN(AppendResult result,
                   StoreWrite(core, [&] {
                     return core.store->UpdateJobAndAppendEvents(job, events);
                   }));
  if (auto it = core.active.find(job.id()); it != core.active.end()) {
    // Still queued: the last status stands until the next pass rewrites it, unless the caller
    // gave one or the paused flag changed (then the old one is wrong).
    std::optional<v1::QueueStatus> status;
    if (result.job.state() == v1::JOB_STATE_QUEUED) {
      if (given.has_value() || it->second.job.paused() != result.job.paused()) {
        status = std::move(given);
      } else if (it->second.job.has_queue()) {
        status = it->second.job.queue();
      }
    }
    it->second.job = result.job;
    if (status.has_value()) *it->second.job.mutable_queue() = std::move(*status);
    Reindex(core, it->second);
    if (IsFinal(result.job.state())) core.active.erase(it);
  }
  Publish(core, result.job.id(), result.events, IsFinal(result.job.state()), wakeups);
  core.MarkScheduleDirty(wakeups);
  return absl::OkStatus();
}

absl::Status FinishJob(CoreState& core, ActiveJob& entry, v1::JobState to,
                       const std::string& reason, Wakeups& wakeups) {
  const v1::Job before = entry.job;
  const uint32_t port = entry.rendezvous_port;
  const absl::Time now = core.Now();
  v1::Job job = before;
  job.set_state(to);
  job.set_state_reason(reason);
  *job.mutable_finished_at() = ToProto(now);
  std::vector<v1::JobEvent> events = {StateEvent(before.state(), to, reason)};
  RETURN_IF_ERROR(CommitJob(core, std::move(job), std::move(events), wakeups));  // erases `entry`
  LeaveWorkers(core, before, to != v1::JOB_STATE_SUCCEEDED, reason, port, wakeups);
  if (core.metrics != nullptr) {
    core.metrics->JobFinished(to);
    if (before.has_started_at()) {
      core.metrics->JobRunDuration(to, now - FromProto(before.started_at()));
    }
  }
  LOG_INFO("job {} {} (attempt {}): {}", before.id(), StateName(to), before.attempt(), reason);
  return absl::OkStatus();
}

absl::Status RestartJob(CoreState& core, ActiveJob& entry, const std::string& reason,
                        Wakeups& wakeups, AttemptEnd end) {
  const v1::Job before = entry.job;
  // An attempt asked to stop (job_stops) that ends any other way was still stopped on purpose.
  const bool preempted = end == AttemptEnd::kPreempted || entry.stop.has_value();
  const uint32_t restarts_done = before.attempt() - 1 - before.preemptions();
  if (!preempted && restarts_done >= before.spec().max_restarts()) {
    return FinishJob(core, entry, v1::JOB_STATE_FAILED,
                     absl::StrCat(reason, "; no restarts left (max_restarts ",
                                  before.spec().max_restarts(), ")"),
                     wakeups);
  }
  v1::Job job = before;
  std::vector<v1::JobEvent> events;
  events.push_back(StateEvent(before.state(), v1::JOB_STATE_RESTARTING, reason));
  events.back().set_attempt(before.attempt());
  events.back().mutable_state_change()->set_preempted(preempted);
  job.set_attempt(before.attempt() + 1);
  if (preempted) job.set_preemptions(before.preemptions() + 1);
  job.clear_workers();
  job.set_state(v1::JOB_STATE_QUEUED);
  job.set_state_reason(absl::StrCat("attempt ", job.attempt(), " after: ", reason));
  if (job.paused()) {  // a pause that stopped the attempt: it waits for ResumeJob
    job.mutable_queue()->set_reason(v1::QUEUE_REASON_PAUSED);
    job.mutable_queue()->set_message("paused: waits for `loratrf resume`");
  }
  events.push_back(StateEvent(v1::JOB_STATE_RESTARTING, v1::JOB_STATE_QUEUED, job.state_reason()));
  events.back().set_attempt(job.attempt());
  // A preempted job lost its place through no fault of its own: it goes ahead of the jobs
  // queued at its priority (orders below every submission's). Set before the commit, which
  // puts it in the queue with this order.
  const uint64_t order_before = entry.order;
  if (preempted) entry.order = core.next_front_order--;
  if (absl::Status committed = CommitJob(core, std::move(job), std::move(events), wakeups);
      !committed.ok()) {
    entry.order = order_before;
    return committed;
  }
  LeaveWorkers(core, before, /*cancel=*/true, reason, entry.rendezvous_port, wakeups);
  entry.queued_at = core.Now();
  entry.attach_deadline.reset();
  entry.attached.clear();
  entry.next_report_index.clear();
  entry.final_checkpoint = false;
  entry.rendezvous_port = 0;
  entry.resume_checkpoint.clear();
  entry.finished_nodes.clear();
  entry.missing_beats.clear();
  // A job preempted for a waiting one stays out of that job's way until it is placed.
  entry.held_for = entry.stop.has_value() && entry.stop->kind == StopKind::kPriority
                       ? entry.stop->for_job
                       : std::string();
  entry.stop.reset();
  if (!entry.held_for.empty()) {
    core.held.insert(before.id());
    Reindex(core, entry);  // queued by CommitJob before the hold was known
  }
  if (core.metrics != nullptr && !preempted) core.metrics->JobRestarted();
  LOG_INFO("job {} {}: attempt {} queued after: {}", before.id(),
           preempted ? "preempted" : "restarted", before.attempt() + 1, reason);
  return absl::OkStatus();
}

void RestartJobOrLog(CoreState& core, const std::string& job_id, const std::string& reason,
                     Wakeups& wakeups) {
  auto it = core.active.find(job_id);
  if (it == core.active.end()) return;
  absl::Status status = RestartJob(core, it->second, reason, wakeups);
  if (!status.ok()) {
    LOG_WARN("restarting job {} ({}) failed: {}; tried again on the next sweep", job_id, reason,
             status.ToString());
  }
}

// ---- scheduling -----------------------------------------------------------------------------

void ScheduleQueued(CoreState& core, Wakeups& wakeups) {
  if (core.queue.empty()) {
    core.queue_status_stale = false;
    return;
  }
  const absl::Time now = core.Now();
  // What runs now, from the index of jobs holding slots (never the whole table): per owner,
  // and when each job expects to give its slots back (its own ETA as of its last report).
  std::map<std::string, OwnerUsage> running;
  std::vector<SlotRelease> releases;
  for (const std::string& id : core.holding) {
    auto it = core.active.find(id);
    if (it == core.active.end()) continue;
    const v1::Job& job = it->second.job;
    const v1::ResourceSpec& resources = job.spec().resources();
    const uint64_t slots = uint64_t{resources.workers()} * resources.slots_per_worker();
    OwnerUsage& usage = running[job.owner()];
    ++usage.jobs;
    usage.slots += slots;
    if (job.progress().has_eta()) {
      const absl::Duration eta =
          absl::Nanoseconds(TimeUtil::DurationToNanoseconds(job.progress().eta()));
      const absl::Duration since = job.has_updated_at() ? now - FromProto(job.updated_at())
                                                        : absl::ZeroDuration();
      releases.push_back(
          {resources.device() == v1::DEVICE_CUDA ? v1::DEVICE_CUDA : v1::DEVICE_CPU,
           std::max(eta - since, absl::ZeroDuration()), slots});
    }
  }
  ReleaseEndedHolds(core);
  const bool settled = core.FleetSettled();
  SchedulerPolicy policy;
  policy.max_running_per_owner = core.options.max_running_per_owner;
  policy.max_running_slots_per_owner = core.options.max_running_slots_per_owner;
  policy.owner_weights = core.options.owner_weights;
  policy.fail_unschedulable = settled;
  // A full walk (every job's status, unschedulable jobs found) when the queue is short, when
  // the statuses are due, and when the fleet has just settled.
  policy.full_walk = core.queue.size() <= kFullWalkQueue ||
                     now - core.last_full_walk >= kQueueStatusRefresh ||
                     (settled && !core.last_pass_settled);
  policy.max_placements = kMaxPlacementsPerPass;
  SchedulingDecision decision =
      Schedule(core.queue, SchedulableFleet(core), running, releases, policy);
  if (decision.capped) {
    core.queue_status_stale = true;
    core.MarkScheduleDirty(wakeups);
  } else if (policy.full_walk) {
    core.last_pass_settled = settled;
    core.last_full_walk = now;
    core.queue_status_stale = false;
  } else {
    core.queue_status_stale = true;
  }
  // Statuses first: the verdicts point into the queue, which placements change.
  for (QueueVerdict& verdict : decision.waiting) {
    auto* entry = static_cast<ActiveJob*>(verdict.job->context);
    entry->job.mutable_queue()->Swap(&verdict.status);
  }
  for (const Unschedulable& job : decision.unschedulable) {
    auto it = core.active.find(job.job_id);
    if (it != core.active.end()) FinishQueuedOrLog(core, it->second, job.reason, wakeups);
  }
  for (const Placement& placement : decision.placements) {
    auto it = core.active.find(placement.job_id);
    if (it == core.active.end()) continue;
    absl::Status status = Place(core, it->second, placement, wakeups);
    if (!status.ok()) {
      FinishQueuedOrLog(core, it->second, absl::StrCat("cannot be scheduled: ", status.message()),
                        wakeups);
    }
  }
}

bool QueueStatusRefreshDue(const CoreState& core, absl::Time now) {
  return core.queue_status_stale && now - core.last_full_walk >= kQueueStatusRefresh;
}

absl::Duration LongestQueuedWait(CoreState& core, absl::Time now) {
  if (core.queue.size() <= kFullWalkQueue || now - core.oldest_queued_checked >= kQueueStatusRefresh) {
    core.oldest_queued_at = absl::InfiniteFuture();
    for (const auto& [priority, owners] : core.queue.groups()) {
      for (const auto& [owner, run] : owners) {
        for (const auto& [key, job] : run) {
          const auto* entry = static_cast<const ActiveJob*>(job.context);
          core.oldest_queued_at = std::min(core.oldest_queued_at, entry->queued_at);
        }
      }
    }
    core.oldest_queued_checked = now;
  }
  if (core.queue.empty() || core.oldest_queued_at == absl::InfiniteFuture()) {
    return absl::ZeroDuration();
  }
  return std::max(now - core.oldest_queued_at, absl::ZeroDuration());
}

v1::WorkerCommand MakeAssignment(const CoreState& core, const ActiveJob& entry,
                                 uint32_t node_rank) {
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
  auto master = core.workers.find(job.workers(0));
  if (master != core.workers.end()) assignment.set_master_addr(master->second.worker.address());
  assignment.set_master_port(entry.rendezvous_port);
  assignment.set_resume_checkpoint_id(entry.resume_checkpoint);
  return command;
}

// ---- attempts -------------------------------------------------------------------------------

absl::StatusOr<ActiveJob*> CurrentAttempt(CoreState& core, const std::string& job_id,
                                          uint32_t attempt, const std::string& worker) {
  auto it = core.active.find(job_id);
  if (it == core.active.end()) {
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

// ---- recovery -------------------------------------------------------------------------------

absl::Status RecoverJobs(CoreState& core, RecoveredState& recovered, absl::Time now) {
  // Queued jobs come back in queue order; active attempts get one lease TTL to re-attach.
  for (v1::Job& job : recovered.queued) {
    ActiveJob entry;
    entry.order = core.next_order++;
    // A queued job's last write is the one that queued it (submit or restart), or a pause or
    // resume (which leave it queued), so updated_at is about when it entered the queue.
    // Waiting keeps counting across a coordinator restart: the oldest-queued gauge and the
    // time-queued histogram would otherwise start over at every restart.
    entry.queued_at = job.has_updated_at() ? std::min(now, FromProto(job.updated_at())) : now;
    entry.job = std::move(job);
    std::string id = entry.job.id();
    auto [it, inserted] = core.active.emplace(std::move(id), std::move(entry));
    Reindex(core, it->second);
  }
  for (v1::Job& job : recovered.active) {
    ActiveJob entry;
    entry.order = core.next_order++;
    entry.queued_at = now;
    entry.attach_deadline = now + core.options.lease_ttl;
    // Node 0 may have uploaded the final checkpoint just before the restart: its SUCCEEDED
    // report (retried after it registers again) must still be accepted.
    ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> checkpoints, core.store->ListCheckpoints(job.id()));
    for (const v1::Checkpoint& checkpoint : checkpoints) {
      if (checkpoint.final() && checkpoint.attempt() == job.attempt()) entry.final_checkpoint = true;
    }
    entry.job = std::move(job);
    std::string id = entry.job.id();
    auto [it, inserted] = core.active.emplace(std::move(id), std::move(entry));
    Reindex(core, it->second);
  }
  return absl::OkStatus();
}

}  // namespace loratrf::server::core_internal
