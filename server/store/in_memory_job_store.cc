#include "server/store/in_memory_job_store.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace loratrf::server {

using job_store_internal::CheckCheckpoint;
using job_store_internal::CheckFilter;
using job_store_internal::CheckNewEvents;
using job_store_internal::CheckNewJob;

absl::StatusOr<InMemoryJobStore::JobEntry*> InMemoryJobStore::FindJob(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("job '", job_id, "' not found"));
  return &it->second;
}

std::vector<v1::JobEvent> InMemoryJobStore::Append(JobEntry& entry,
                                                   std::vector<v1::JobEvent> events) {
  for (v1::JobEvent& event : events) {
    event.set_seq(entry.events.size() + 1);
    event.set_job_id(entry.job.id());
    entry.events.push_back(event);
  }
  entry.job.set_last_event_seq(entry.events.size());
  return events;
}

absl::StatusOr<CreateJobResult> InMemoryJobStore::CreateJob(const v1::Job& job,
                                                            const std::string& idempotency_key,
                                                            const std::string& owner) {
  RETURN_IF_ERROR(CheckNewJob(job));
  std::lock_guard<std::mutex> lock(mu_);
  if (!write_failure_.ok()) return write_failure_;
  if (!idempotency_key.empty()) {
    auto it = idempotency_keys_.find({owner, idempotency_key});
    if (it != idempotency_keys_.end()) return CreateJobResult{jobs_.at(it->second).job, false};
  }
  if (jobs_.count(job.id()) > 0) {
    return absl::AlreadyExistsError(absl::StrCat("job '", job.id(), "' already exists"));
  }
  JobEntry entry;
  entry.order = next_order_++;
  entry.job = job;
  entry.job.set_owner(owner);
  entry.events.push_back(job_store_internal::FirstEvent(entry.job));
  entry.job.set_last_event_seq(1);
  ids_by_order_[entry.order] = job.id();
  if (!idempotency_key.empty()) idempotency_keys_[{owner, idempotency_key}] = job.id();
  v1::Job stored = entry.job;
  jobs_.emplace(job.id(), std::move(entry));
  return CreateJobResult{std::move(stored), true};
}

absl::StatusOr<AppendResult> InMemoryJobStore::UpdateJobAndAppendEvents(
    const v1::Job& job, const std::vector<v1::JobEvent>& events) {
  RETURN_IF_ERROR(CheckNewEvents(job.id(), events));
  std::lock_guard<std::mutex> lock(mu_);
  if (!write_failure_.ok()) return write_failure_;
  ASSIGN_OR_RETURN(JobEntry * entry, FindJob(job.id()));
  if (job.owner() != entry->job.owner()) {
    return absl::InvalidArgumentError(absl::StrCat("job.owner: cannot change (job '", job.id(),
                                                   "' belongs to '", entry->job.owner(), "')"));
  }
  uint64_t last_seq = entry->job.last_event_seq();
  entry->job = job;
  entry->job.set_last_event_seq(last_seq);
  AppendResult result;
  result.events = Append(*entry, events);
  result.job = entry->job;
  return result;
}

absl::StatusOr<v1::Job> InMemoryJobStore::GetJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(JobEntry * entry, FindJob(job_id));
  return entry->job;
}

absl::StatusOr<JobPage> InMemoryJobStore::ListJobs(const JobFilter& filter, int page_size,
                                                   const std::string& page_token) {
  RETURN_IF_ERROR(CheckFilter(filter));
  ASSIGN_OR_RETURN(int limit, job_store_internal::EffectivePageSize(page_size));
  ASSIGN_OR_RETURN(int64_t after, job_store_internal::DecodePageToken(page_token));
  std::lock_guard<std::mutex> lock(mu_);
  JobPage page;
  int64_t last_taken = 0;
  size_t page_bytes = 0;
  // Newest first: walk the creation order backwards from just below the token's position.
  auto it = after == 0 ? ids_by_order_.end() : ids_by_order_.lower_bound(after);
  while (it != ids_by_order_.begin()) {
    --it;
    const v1::Job& job = jobs_.at(it->second).job;
    if (!filter.owner.empty() && job.owner() != filter.owner) continue;
    if (!absl::StartsWith(job.name(), filter.name_prefix)) continue;
    if (!filter.sweep_id.empty() && job.sweep_id() != filter.sweep_id) continue;
    if (!std::all_of(filter.labels.begin(), filter.labels.end(), [&](const auto& label) {
          auto found = job.spec().labels().find(label.first);
          return found != job.spec().labels().end() && found->second == label.second;
        })) {
      continue;
    }
    if (!filter.states.empty() &&
        std::find(filter.states.begin(), filter.states.end(), job.state()) ==
            filter.states.end()) {
      continue;
    }
    const size_t job_bytes = job.ByteSizeLong();
    if (page.jobs.size() == static_cast<size_t>(limit) ||
        (!page.jobs.empty() && page_bytes + job_bytes > limits::kMaxJobPageBytes)) {
      // A further match exists: the next page starts below the last job taken.
      page.next_page_token = job_store_internal::EncodePageToken(last_taken);
      break;
    }
    page.jobs.push_back(job);
    page_bytes += job_bytes;
    last_taken = it->first;
  }
  return page;
}

absl::StatusOr<std::vector<v1::JobEvent>> InMemoryJobStore::ListEvents(const std::string& job_id,
                                                                       uint64_t after_seq,
                                                                       int limit) {
  if (limit <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("limit: must be positive (got ", limit, ")"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(JobEntry * entry, FindJob(job_id));
  std::vector<v1::JobEvent> events;
  for (uint64_t i = after_seq; i < entry->events.size() && events.size() < static_cast<size_t>(limit);
       ++i) {
    events.push_back(entry->events[i]);  // events[i] has seq i + 1
  }
  return events;
}

absl::StatusOr<std::optional<v1::JobEvent>> InMemoryJobStore::AddCheckpoint(
    const v1::Checkpoint& checkpoint, std::optional<v1::JobEvent> event) {
  RETURN_IF_ERROR(CheckCheckpoint(checkpoint));
  if (event.has_value()) RETURN_IF_ERROR(CheckNewEvents(checkpoint.job_id(), {*event}));
  std::lock_guard<std::mutex> lock(mu_);
  if (!write_failure_.ok()) return write_failure_;
  ASSIGN_OR_RETURN(JobEntry * entry, FindJob(checkpoint.job_id()));
  for (const v1::Checkpoint& existing : entry->checkpoints) {
    if (existing.id() == checkpoint.id()) {
      return absl::AlreadyExistsError(absl::StrCat("checkpoint '", checkpoint.id(), "' of job '",
                                                   checkpoint.job_id(), "' already exists"));
    }
  }
  entry->checkpoints.push_back(checkpoint);
  if (!event.has_value()) return std::optional<v1::JobEvent>();
  return std::optional<v1::JobEvent>(Append(*entry, {std::move(*event)}).front());
}

absl::StatusOr<std::vector<v1::Checkpoint>> InMemoryJobStore::ListCheckpoints(
    const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(JobEntry * entry, FindJob(job_id));
  std::vector<v1::Checkpoint> checkpoints = entry->checkpoints;
  std::stable_sort(checkpoints.begin(), checkpoints.end(),
                   [](const v1::Checkpoint& a, const v1::Checkpoint& b) {
                     return a.step() < b.step();
                   });
  return checkpoints;
}

absl::StatusOr<v1::Checkpoint> InMemoryJobStore::GetCheckpoint(const std::string& job_id,
                                                               const std::string& checkpoint_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(job_id);
  if (it != jobs_.end()) {
    for (const v1::Checkpoint& checkpoint : it->second.checkpoints) {
      if (checkpoint.id() == checkpoint_id) return checkpoint;
    }
  }
  return absl::NotFoundError(
      absl::StrCat("checkpoint '", checkpoint_id, "' of job '", job_id, "' not found"));
}

absl::Status InMemoryJobStore::UpsertWorker(const v1::Worker& worker) {
  if (worker.name().empty()) return absl::InvalidArgumentError("worker.name: required");
  std::lock_guard<std::mutex> lock(mu_);
  if (!write_failure_.ok()) return write_failure_;
  workers_[worker.name()] = worker;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Worker>> InMemoryJobStore::ListWorkers() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::Worker> workers;
  for (const auto& [name, worker] : workers_) workers.push_back(worker);
  return workers;
}

absl::Status InMemoryJobStore::DeleteWorker(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!write_failure_.ok()) return write_failure_;
  if (workers_.erase(name) == 0) {
    return absl::NotFoundError(absl::StrCat("worker '", name, "' not found"));
  }
  return absl::OkStatus();
}

void InMemoryJobStore::FailWrites(absl::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  write_failure_ = std::move(status);
}

absl::StatusOr<RecoveredState> InMemoryJobStore::Recover() {
  std::lock_guard<std::mutex> lock(mu_);
  RecoveredState state;
  std::vector<std::pair<int32_t, const v1::Job*>> queued;  // in creation order
  for (const auto& [order, id] : ids_by_order_) {
    const v1::Job& job = jobs_.at(id).job;
    if (job.state() == v1::JOB_STATE_QUEUED) {
      queued.emplace_back(job.spec().priority(), &job);
    } else if (job_store_internal::IsActive(job.state())) {
      state.active.push_back(job);
    }
  }
  // Stable: within a priority, creation order stays.
  std::stable_sort(queued.begin(), queued.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [priority, job] : queued) state.queued.push_back(*job);
  for (const auto& [name, worker] : workers_) state.workers.push_back(worker);
  return state;
}

absl::StatusOr<std::vector<v1::Checkpoint>> InMemoryJobStore::DeleteCheckpoints(
    const std::string& job_id, const std::vector<std::string>& checkpoint_ids) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!write_failure_.ok()) return write_failure_;
  ASSIGN_OR_RETURN(JobEntry * entry, FindJob(job_id));
  std::vector<v1::Checkpoint> deleted;
  for (const std::string& id : checkpoint_ids) {
    auto it = std::find_if(entry->checkpoints.begin(), entry->checkpoints.end(),
                           [&](const v1::Checkpoint& c) { return c.id() == id; });
    if (it == entry->checkpoints.end()) continue;
    deleted.push_back(std::move(*it));
    entry->checkpoints.erase(it);
  }
  return deleted;
}

absl::StatusOr<std::vector<v1::Checkpoint>> InMemoryJobStore::DeleteJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!write_failure_.ok()) return write_failure_;
  ASSIGN_OR_RETURN(JobEntry * entry, FindJob(job_id));
  if (!job_store_internal::IsFinalState(entry->job.state())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job '", job_id, "' is ", v1::JobState_Name(entry->job.state()), ", not final"));
  }
  std::vector<v1::Checkpoint> deleted = entry->checkpoints;
  std::stable_sort(deleted.begin(), deleted.end(),
                   [](const v1::Checkpoint& a, const v1::Checkpoint& b) {
                     return a.step() < b.step();
                   });
  for (auto it = idempotency_keys_.begin(); it != idempotency_keys_.end();) {
    it = it->second == job_id ? idempotency_keys_.erase(it) : std::next(it);
  }
  ids_by_order_.erase(entry->order);
  jobs_.erase(job_id);
  return deleted;
}

absl::StatusOr<std::vector<v1::Job>> InMemoryJobStore::ListJobsFinishedBefore(absl::Time cutoff,
                                                                              int limit) {
  if (limit <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("limit: must be positive (got ", limit, ")"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t before = absl::ToUnixMillis(cutoff);
  std::vector<std::pair<std::pair<int64_t, int64_t>, const v1::Job*>> finished;
  for (const auto& [order, id] : ids_by_order_) {
    const v1::Job& job = jobs_.at(id).job;
    std::optional<int64_t> at = job_store_internal::FinishedMillis(job);
    if (at.has_value() && *at < before) finished.push_back({{*at, order}, &job});
  }
  std::sort(finished.begin(), finished.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<v1::Job> jobs;
  for (const auto& [key, job] : finished) {
    if (jobs.size() == static_cast<size_t>(limit)) break;
    jobs.push_back(*job);
  }
  return jobs;
}

absl::StatusOr<int64_t> InMemoryJobStore::ExpireIdempotencyKeys(absl::Time cutoff) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!write_failure_.ok()) return write_failure_;
  const int64_t before = absl::ToUnixMillis(cutoff);
  int64_t expired = 0;
  for (auto it = idempotency_keys_.begin(); it != idempotency_keys_.end();) {
    if (job_store_internal::ToMillis(jobs_.at(it->second).job.created_at()) < before) {
      it = idempotency_keys_.erase(it);
      ++expired;
    } else {
      ++it;
    }
  }
  return expired;
}

absl::StatusOr<std::vector<v1::Checkpoint>> InMemoryJobStore::ListAllCheckpoints() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::Checkpoint> all;
  for (const auto& [id, entry] : jobs_) {
    std::vector<v1::Checkpoint> checkpoints = entry.checkpoints;
    std::stable_sort(checkpoints.begin(), checkpoints.end(),
                     [](const v1::Checkpoint& a, const v1::Checkpoint& b) {
                       return a.step() < b.step();
                     });
    all.insert(all.end(), checkpoints.begin(), checkpoints.end());
  }
  return all;
}

}  // namespace loratrf::server
