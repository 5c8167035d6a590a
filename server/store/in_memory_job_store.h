// A JobStore in memory: the fake for unit tests of the layers above the store. Same behaviour
// as SqliteJobStore (one test suite runs against both), nothing survives the object.
//
// Threading: thread-safe; one mutex (mu_) guards all the state, so each call is atomic.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "server/store/job_store.h"

namespace loratrf::server {

class InMemoryJobStore : public JobStore {
 public:
  InMemoryJobStore() = default;
  InMemoryJobStore(const InMemoryJobStore&) = delete;
  InMemoryJobStore& operator=(const InMemoryJobStore&) = delete;

  absl::StatusOr<CreateJobResult> CreateJob(const v1::Job& job, const std::string& idempotency_key,
                                            const std::string& owner) override;
  absl::StatusOr<AppendResult> UpdateJobAndAppendEvents(
      const v1::Job& job, const std::vector<v1::JobEvent>& events) override;
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id) override;
  absl::StatusOr<JobPage> ListJobs(const JobFilter& filter, int page_size,
                                   const std::string& page_token) override;
  absl::StatusOr<std::vector<v1::JobEvent>> ListEvents(const std::string& job_id,
                                                       uint64_t after_seq, int limit) override;
  absl::StatusOr<std::optional<v1::JobEvent>> AddCheckpoint(
      const v1::Checkpoint& checkpoint, std::optional<v1::JobEvent> event) override;
  absl::StatusOr<std::vector<v1::Checkpoint>> ListCheckpoints(const std::string& job_id) override;
  absl::StatusOr<v1::Checkpoint> GetCheckpoint(const std::string& job_id,
                                               const std::string& checkpoint_id) override;
  absl::Status UpsertWorker(const v1::Worker& worker) override;
  absl::StatusOr<std::vector<v1::Worker>> ListWorkers() override;
  absl::Status DeleteWorker(const std::string& name) override;
  absl::StatusOr<RecoveredState> Recover() override;
  absl::StatusOr<std::vector<v1::Checkpoint>> DeleteCheckpoints(
      const std::string& job_id, const std::vector<std::string>& checkpoint_ids) override;
  absl::StatusOr<std::vector<v1::Checkpoint>> DeleteJob(const std::string& job_id) override;
  absl::StatusOr<std::vector<v1::Job>> ListJobsFinishedBefore(absl::Time cutoff,
                                                              int limit) override;
  absl::StatusOr<int64_t> ExpireIdempotencyKeys(absl::Time cutoff) override;
  absl::StatusOr<std::vector<v1::Checkpoint>> ListAllCheckpoints() override;

  // Fault injection for the tests of the layers above (this fake only): while `status` is not
  // OK, every write — CreateJob, UpdateJobAndAppendEvents, AddCheckpoint, UpsertWorker,
  // DeleteWorker, DeleteCheckpoints, DeleteJob, ExpireIdempotencyKeys — fails with it and changes nothing, as a full disk would; reads still work.
  // FailWrites(absl::OkStatus()) heals the store.
  void FailWrites(absl::Status status);

 private:
  struct JobEntry {
    int64_t order = 0;  // creation order, from next_order_
    v1::Job job;        // job.last_event_seq == events.size()
    std::vector<v1::JobEvent> events;            // events[i].seq == i + 1
    std::vector<v1::Checkpoint> checkpoints;     // in the order added
  };

  // Both need mu_ held.
  absl::StatusOr<JobEntry*> FindJob(const std::string& job_id);
  // Numbers `events` after the job's last one, appends them, and returns them.
  std::vector<v1::JobEvent> Append(JobEntry& entry, std::vector<v1::JobEvent> events);

  // Guards every field below. One mutex, not one per map: a call touches several of them and
  // must see and leave them consistent (a job, its order and its idempotency key go together).
  std::mutex mu_;
  int64_t next_order_ = 1;                        // starts at 1, as SQLite's AUTOINCREMENT
  std::map<std::string, JobEntry> jobs_;          // by id
  std::map<int64_t, std::string> ids_by_order_;  // creation order → id
  std::map<std::pair<std::string, std::string>, std::string> idempotency_keys_;  // → job id
  std::map<std::string, v1::Worker> workers_;    // by name
  absl::Status write_failure_;                   // FailWrites: OK, or what every write returns
};

}  // namespace loratrf::server
