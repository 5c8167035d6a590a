// JobServiceCore: the public face of the core. Each method checks what needs no state, takes
// CoreState::mu, refuses the call while draining, and hands over to the part that owns the
// entity (core_state.h lists them); wake-ups collected under mu run after it is released.
#include "server/core/job_service.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <utility>

#include "absl/random/random.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/core/checkpoint_recording.h"
#include "server/core/core_state.h"
#include "server/core/event_log.h"
#include "server/core/gc.h"
#include "server/core/job_access.h"
#include "server/core/job_lifecycle.h"
#include "server/core/job_stops.h"
#include "server/core/report_ingestion.h"
#include "server/core/worker_registry.h"

namespace loratrf::server {
namespace {

using core_internal::HoldsSlots;
using core_internal::RunOnExit;
using core_internal::Wakeups;

// The gauges of CoreMetrics, from the tables, their indexes and the artifact store: computed
// from state, never kept as running counts, so they are right after Recover. Runs on every
// tick, so it never walks the whole job table. Needs mu.
void UpdateGauges(CoreState& core) {
  if (core.metrics == nullptr) return;
  int64_t queued = static_cast<int64_t>(core.queue.size());
  int64_t running = static_cast<int64_t>(core.holding.size());
  int64_t ready = 0, slots = 0, free = 0;
  std::map<int32_t, int64_t> queued_by_priority;
  for (const auto& [priority, owners] : core.queue.groups()) {
    int64_t& count = queued_by_priority[priority];
    for (const auto& [owner, run] : owners) count += static_cast<int64_t>(run.size());
  }
  const absl::Duration oldest = core_internal::LongestQueuedWait(core, core.Now());
  for (const auto& [name, entry] : core.workers) {
    if (entry.worker.state() == v1::WORKER_STATE_LOST) continue;
    ready += entry.worker.state() == v1::WORKER_STATE_READY;
    slots += entry.worker.slots();
    free += entry.worker.free_slots();
  }
  core.metrics->Gauges(queued, running, ready, slots, free);
  core.metrics->QueueGauges(queued_by_priority, oldest);
  if (core.artifacts != nullptr) {
    const ArtifactStore::Usage stored = core.artifacts->usage();
    core.metrics->StoredCheckpoints(stored.checkpoints, stored.bytes);
  }
}

}  // namespace

JobServiceCore::JobServiceCore(std::shared_ptr<CoreState> state) : state_(std::move(state)) {}
JobServiceCore::~JobServiceCore() { Drain(); }

absl::StatusOr<std::unique_ptr<JobServiceCore>> JobServiceCore::Create(
    JobStore* store, ArtifactStore* artifacts, Clock* clock, CoreMetrics* metrics,
    CoreOptions options) {
  if (options.rendezvous_port_low == 0 || options.rendezvous_port_low > options.rendezvous_port_high ||
      options.rendezvous_port_high > 65535) {
    return absl::InvalidArgumentError("rendezvous ports: need 1 <= low <= high <= 65535");
  }
  auto state = std::make_shared<CoreState>();
  state->store = store;
  state->artifacts = artifacts;
  state->clock = clock;
  state->metrics = metrics;
  state->options = options;
  state->sync = std::make_shared<StoreSync>(store);
  state->next_lease_id = absl::Uniform<uint64_t>(state->random, 1, uint64_t{1} << 40);
  state->fleet_changed = clock->Now();

  ASSIGN_OR_RETURN(RecoveredState recovered, store->Recover());
  absl::Time now = clock->Now();
  RETURN_IF_ERROR(core_internal::RecoverJobs(*state, recovered, now));
  core_internal::RecoverWorkers(*state, recovered.workers, now);
  // Before anything can upload: files no record names are leftovers of a crash.
  core_internal::SweepOrphans(*state);
  core_internal::RecoverStops(*state, now);
  LOG_INFO("recovered {} queued job(s), {} active job(s) and {} worker(s) from the store",
           recovered.queued.size(), recovered.active.size(), state->workers.size());
  UpdateGauges(*state);  // before the first tick: a scrape right after a restart sees the state
  Wakeups none;
  core_internal::RunWakeups(none);  // what recovery wrote is durable before anyone sees it
  return std::unique_ptr<JobServiceCore>(new JobServiceCore(std::move(state)));
}

// ---- JobService -----------------------------------------------------------------------------

absl::StatusOr<v1::SubmitJobResponse> JobServiceCore::SubmitJob(const Caller& caller,
                                                                const v1::SubmitJobRequest& request) {
  RETURN_IF_ERROR(core_internal::ValidateSubmission(request));
  Wakeups wakeups;
  RunOnExit run_wakeups{wakeups};
  std::lock_guard<std::mutex> lock(state_->mu);
  RETURN_IF_ERROR(state_->CheckServing());
  return core_internal::SubmitJob(*state_, caller, request, wakeups);
}

absl::StatusOr<v1::Job> JobServiceCore::GetJob(const Caller& caller, const std::string& id) {
  ASSIGN_OR_RETURN(v1::Job job, GetJob(id));
  RETURN_IF_ERROR(CheckJobAccess(caller, job));
  return job;
}

absl::StatusOr<v1::Job> JobServiceCore::GetJob(const std::string& id) {
  absl::StatusOr<v1::Job> job = [&]() -> absl::StatusOr<v1::Job> {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (const v1::Job* cached = core_internal::CachedJob(*state_, id)) return *cached;
    }
    return state_->store->GetJob(id);
  }();
  core_internal::AwaitDurable(*state_);  // never show a state that is not durable yet
  return job;
}

absl::StatusOr<v1::ListJobsResponse> JobServiceCore::ListJobs(const Caller& caller,
                                                              const v1::ListJobsRequest& request) {
  v1::ListJobsRequest scoped = request;
  ASSIGN_OR_RETURN(*scoped.mutable_owner(), ListingOwner(caller, request.owner()));
  return ListJobs(scoped);
}

absl::StatusOr<v1::ListJobsResponse> JobServiceCore::ListJobs(const v1::ListJobsRequest& request) {
  JobFilter filter;
  for (int state : request.states()) filter.states.push_back(static_cast<v1::JobState>(state));
  filter.owner = request.owner();
  filter.name_prefix = request.name_prefix();
  filter.sweep_id = request.sweep_id();
  filter.labels.insert(request.labels().begin(), request.labels().end());
  ASSIGN_OR_RETURN(JobPage page,
                   state_->store->ListJobs(
                       filter, static_cast<int>(std::min<uint32_t>(request.page_size(), 100000)),
                       request.page_token()));
  v1::ListJobsResponse response;
  {
    // Active jobs change faster than the store is rewritten (metrics): show the live view.
    std::lock_guard<std::mutex> lock(state_->mu);
    for (v1::Job& job : page.jobs) {
      const v1::Job* live = core_internal::CachedJob(*state_, job.id());
      *response.add_jobs() = live != nullptr ? *live : std::move(job);
    }
  }
  response.set_next_page_token(page.next_page_token);
  core_internal::AwaitDurable(*state_);
  return response;
}

absl::StatusOr<v1::Job> JobServiceCore::CancelJob(const Caller& caller,
                                                 const v1::CancelJobRequest& request) {
  Wakeups wakeups;
  RunOnExit run_wakeups{wakeups};
  std::lock_guard<std::mutex> lock(state_->mu);
  RETURN_IF_ERROR(state_->CheckServing());
  return core_internal::CancelJob(*state_, caller, request, wakeups);
}

absl::StatusOr<std::unique_ptr<EventStream>> JobServiceCore::WatchJob(
    const Caller& caller, const v1::WatchJobRequest& request) {
  RETURN_IF_ERROR(GetJob(caller, request.id()).status());
  return WatchJob(request);
}

absl::StatusOr<std::unique_ptr<EventStream>> JobServiceCore::WatchJob(
    const v1::WatchJobRequest& request) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    RETURN_IF_ERROR(state_->CheckServing());
  }
  return core_internal::OpenWatch(state_, request);
}

absl::StatusOr<v1::ListCheckpointsResponse> JobServiceCore::ListCheckpoints(
    const Caller& caller, const std::string& job_id) {
  RETURN_IF_ERROR(GetJob(caller, job_id).status());
  return ListCheckpoints(job_id);
}

absl::StatusOr<v1::ListCheckpointsResponse> JobServiceCore::ListCheckpoints(const std::string& job_id) {
  absl::StatusOr<v1::ListCheckpointsResponse> listed = core_internal::ListCheckpoints(*state_, job_id);
  core_internal::AwaitDurable(*state_);
  return listed;
}

absl::StatusOr<std::pair<v1::Checkpoint, std::unique_ptr<ArtifactStore::Reader>>>
JobServiceCore::OpenCheckpoint(const Caller& caller, const v1::DownloadCheckpointRequest& request) {
  ASSIGN_OR_RETURN(v1::Job job, GetJob(request.job_id()));
  return core_internal::OpenCheckpoint(*state_, job, caller, request);
}

absl::StatusOr<v1::DeleteJobResponse> JobServiceCore::DeleteJob(
    const Caller& caller, const v1::DeleteJobRequest& request) {
  std::vector<v1::Checkpoint> deleted;
  absl::StatusOr<v1::DeleteJobResponse> response;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    RETURN_IF_ERROR(state_->CheckServing());
    response = core_internal::DeleteJobRecords(*state_, caller, request, deleted);
  }
  // The records are gone: the files follow, without the lock.
  core_internal::RemoveCheckpointFiles(*state_, deleted);
  return response;
}

void JobServiceCore::CollectGarbage() { core_internal::CollectGarbage(*state_); }

v1::ListWorkersResponse JobServiceCore::ListWorkers() {
  v1::ListWorkersResponse workers;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    workers = core_internal::ListWorkers(*state_);
  }
  core_internal::AwaitDurable(*state_);
  return workers;
}

absl::StatusOr<v1::Job> JobServiceCore::PauseJob(const Caller& caller,
                                                const v1::PauseJobRequest& request) {
  Wakeups wakeups;
  RunOnExit run_wakeups{wakeups};
  std::lock_guard<std::mutex> lock(state_->mu);
  RETURN_IF_ERROR(state_->CheckServing());
  return core_internal::PauseJob(*state_, caller, request, wakeups);
}

absl::StatusOr<v1::Job> JobServiceCore::ResumeJob(const Caller& caller,
                                                 const v1::ResumeJobRequest& request) {
  Wakeups wakeups;
  RunOnExit run_wakeups{wakeups};
  std::lock_guard<std::mutex> lock(state_->mu);
  RETURN_IF_ERROR(state_->CheckServing());
  return core_internal::ResumeJob(*state_, caller, request, wakeups);
}

absl::StatusOr<v1::Worker> JobServiceCore::CordonWorker(const Caller& caller,
                                                       const v1::CordonWorkerRequest& request) {
  RETURN_IF_ERROR(core_internal::ValidateCordon(request));
  Wakeups wakeups;
  RunOnExit run_wakeups{wakeups};
  std::lock_guard<std::mutex> lock(state_->mu);
  RETURN_IF_ERROR(state_->CheckServing());
  return core_internal::CordonWorker(*state_, caller, request, wakeups);
}

// ---- WorkerService --------------------------------------------------------------------------

absl::StatusOr<v1::RegisterResponse> JobServiceCore::Register(const v1::RegisterRequest& request) {
  RETURN_IF_ERROR(core_internal::ValidateRegistration(request));
  Wakeups wakeups;
  RunOnExit run_wakeups{wakeups};
  std::lock_guard<std::mutex> lock(state_->mu);
  RETURN_IF_ERROR(state_->CheckServing());
  return core_internal::RegisterWorker(*state_, request, wakeups);
}

absl::StatusOr<v1::HeartbeatResponse> JobServiceCore::Heartbeat(const v1::HeartbeatRequest& request) {
  Wakeups wakeups;
  RunOnExit run_wakeups{wakeups};
  std::lock_guard<std::mutex> lock(state_->mu);
  RETURN_IF_ERROR(state_->CheckServing());
  return core_internal::Heartbeat(*state_, request, wakeups);
}

absl::StatusOr<std::unique_ptr<CommandStream>> JobServiceCore::StreamCommands(
    const v1::StreamCommandsRequest& request) {
  Wakeups wakeups;
  RunOnExit run_wakeups{wakeups};
  std::lock_guard<std::mutex> lock(state_->mu);
  RETURN_IF_ERROR(state_->CheckServing());
  return core_internal::OpenCommandStream(state_, request, wakeups);
}

absl::StatusOr<v1::ReportEventsResponse> JobServiceCore::ReportEvents(
    const v1::ReportEventsRequest& request) {
  Wakeups wakeups;
  RunOnExit run_wakeups{wakeups};
  std::lock_guard<std::mutex> lock(state_->mu);
  RETURN_IF_ERROR(state_->CheckServing());
  return core_internal::IngestReport(*state_, request, wakeups);
}

absl::StatusOr<std::unique_ptr<JobServiceCore::CheckpointUpload>> JobServiceCore::BeginUpload(
    const v1::UploadCheckpointRequest::Header& header) {
  v1::Checkpoint checkpoint;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    RETURN_IF_ERROR(state_->CheckServing());
    ASSIGN_OR_RETURN(checkpoint, core_internal::PrepareUpload(*state_, header));
  }
  return core_internal::StartUpload(state_, std::move(checkpoint), header.worker());
}

// ---- lifecycle ------------------------------------------------------------------------------

namespace {

// The scheduling pass, timed on a monotonic clock (the pass's cost, not the core's possibly
// fake time). Needs mu.
void TimedSchedulingPass(CoreState& core, Wakeups& wakeups) {
  core.schedule_dirty = false;
  const auto start = std::chrono::steady_clock::now();
  core_internal::ScheduleQueued(core, wakeups);
  if (core.metrics != nullptr) {
    core.metrics->SchedulerPass(absl::FromChrono(std::chrono::steady_clock::now() - start));
  }
}

}  // namespace

void JobServiceCore::Tick() {
  Wakeups wakeups;
  RunOnExit run_wakeups{wakeups};
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->draining) return;
    core_internal::ExpireLeases(*state_, wakeups);
    core_internal::ExpireStops(*state_, wakeups);
    // A pass when something changed, once more when the fleet has just settled (jobs that
    // can never fit then fail), and when a long queue's statuses are due.
    if (state_->schedule_dirty || (!state_->last_pass_settled && state_->FleetSettled()) ||
        core_internal::QueueStatusRefreshDue(*state_, state_->Now())) {
      TimedSchedulingPass(*state_, wakeups);
    }
    // Every tick, not only when dirty: attempts become preemptible as they run.
    core_internal::PreemptForWaiting(*state_, wakeups);
    UpdateGauges(*state_);
  }
}

void JobServiceCore::ScheduleIfChanged() {
  Wakeups wakeups;
  RunOnExit run_wakeups{wakeups};
  std::lock_guard<std::mutex> lock(state_->mu);
  if (state_->draining || !state_->schedule_dirty) return;
  TimedSchedulingPass(*state_, wakeups);
}

void JobServiceCore::SetScheduleHook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->schedule_hook = std::move(hook);
}

void JobServiceCore::Drain() {
  Wakeups wakeups;
  RunOnExit run_wakeups{wakeups};
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->draining) return;
    state_->draining = true;
    core_internal::WakeAllCommandStreams(*state_, wakeups);
    core_internal::WakeAllWatchers(*state_, wakeups);
  }
}

bool JobServiceCore::draining() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->draining;
}

}  // namespace loratrf::server
