// JobStore: what the coordinator persists (docs/architecture.md, convention 5) — jobs, each job's
// numbered event log, checkpoints, workers and idempotency keys. The coordinator writes here first,
// then updates its caches and publishes, then replies; on start, Recover() gives back everything it
// needs to carry on.
//
// The domain is the loratrf.v1 messages themselves: a store keeps each one as a serialized blob
// plus the few columns its queries need, so a new proto field needs no schema change.
//
// Invariants every implementation keeps (tests/unit/job_store_test.cc runs the same suite
// against each):
//   - a job's events are numbered 1, 2, 3, ... without gaps, and Job.last_event_seq is the
//     number of its last event; a job and the events written with it change in one atomic step;
//   - a job exists only with its first event (seq 1: a state change to QUEUED);
//   - (owner, idempotency key) names at most one job, until ExpireIdempotencyKeys forgets the
//     key (the job stays; the key may then name a new job);
//   - jobs keep their creation order (a counter, not a timestamp, so equal timestamps are no
//     ambiguity): listings are newest first, the queue is priority then first come first served.
//
// The store checks shapes (ids present, seqs left to it), never the state machine: which
// transitions are legal is the JobService's business.
//
// Threading: implementations are thread-safe; every method may be called from any thread, and
// each call is atomic with respect to the others.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "proto/contract/limits.h"
#include "proto/loratrf/v1/job.pb.h"
#include "proto/loratrf/v1/worker.pb.h"

namespace loratrf::server {

// ListJobs: a page holds at most this many jobs; a page_size of 0 asks for the default.
inline constexpr int kDefaultJobPageSize = 100;

// Which jobs ListJobs returns; an empty field matches everything.
struct JobFilter {
  std::vector<v1::JobState> states;  // any of these
  std::string owner;                 // exactly this owner
  std::string name_prefix;           // names starting with this (case-sensitive)
  // (Default member initializers: callers may brace-initialize only the fields above.)
  std::string sweep_id = {};                       // exactly this Job.sweep_id
  std::map<std::string, std::string> labels = {};  // each present in JobSpec.labels, equal
};

struct JobPage {
  std::vector<v1::Job> jobs;    // newest first
  std::string next_page_token;  // empty on the last page
};

struct CreateJobResult {
  v1::Job job;   // as stored
  bool created;  // false: the idempotency key named an existing job, which `job` is
};

// A job after UpdateJobAndAppendEvents, and the events as persisted (seqs assigned).
struct AppendResult {
  v1::Job job;
  std::vector<v1::JobEvent> events;
};

// What a restarted coordinator carries on from.
struct RecoveredState {
  std::vector<v1::Job> queued;       // QUEUED: priority (spec.priority) high first, then FIFO
  std::vector<v1::Job> active;       // SCHEDULED, RUNNING, RESTARTING: in creation order
  std::vector<v1::Worker> workers;   // by name
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  // Stores a new job with its first event: seq 1, a state change UNSPECIFIED → QUEUED with the
  // job's state_reason, at created_at, for the job's attempt. `job` must have an id and be
  // QUEUED; the store sets job.owner = `owner` and job.last_event_seq = 1.
  // With a non-empty `idempotency_key`, a second call with the same (owner, key) stores nothing
  // and returns the first job (created = false), whatever `job` says: the caller compares specs
  // if it cares. A repeated job id is AlreadyExists.
  virtual absl::StatusOr<CreateJobResult> CreateJob(const v1::Job& job,
                                                    const std::string& idempotency_key,
                                                    const std::string& owner) = 0;

  // Replaces the stored job `job.id` with `job` and appends `events` to its log, atomically.
  // Events get the seqs after the job's last one, in the order given, and job_id = job.id (an
  // event must come with seq 0 and an empty or matching job_id); job.last_event_seq is set by
  // the store (the caller's value is ignored). owner cannot change. NotFound for an unknown job.
  // Concurrent calls for one job each get their own consecutive run of seqs; the job written
  // last wins, so the caller serializes its read-modify-write of a job.
  virtual absl::StatusOr<AppendResult> UpdateJobAndAppendEvents(
      const v1::Job& job, const std::vector<v1::JobEvent>& events) = 0;

  virtual absl::StatusOr<v1::Job> GetJob(const std::string& job_id) = 0;

  // Jobs matching `filter`, newest first. `page_size` 0 means kDefaultJobPageSize, larger than
  // limits::kMaxJobPageSize means that, negative is InvalidArgument. `page_token` is empty or the
  // next_page_token of an earlier call (anything else is InvalidArgument); it marks a position,
  // so paging with a fixed filter returns every matching job once, including on a new process.
  // A page also stops before its serialized jobs would pass limits::kMaxJobPageBytes (it always
  // holds at least one job), so a page fits a client's receive limit whatever the jobs hold.
  virtual absl::StatusOr<JobPage> ListJobs(const JobFilter& filter, int page_size,
                                           const std::string& page_token) = 0;

  // The job's events with seq > `after_seq`, ascending, at most `limit` (> 0) of them.
  // NotFound for an unknown job (a known job always has at least its first event).
  virtual absl::StatusOr<std::vector<v1::JobEvent>> ListEvents(const std::string& job_id,
                                                               uint64_t after_seq,
                                                               int limit) = 0;

  // Stores a committed checkpoint (id and job_id required; NotFound for an unknown job,
  // AlreadyExists for a repeated id within the job). With `event`, appends it to the job's log
  // in the same transaction (as UpdateJobAndAppendEvents does, without rewriting the job) and
  // returns it with its seq.
  virtual absl::StatusOr<std::optional<v1::JobEvent>> AddCheckpoint(
      const v1::Checkpoint& checkpoint, std::optional<v1::JobEvent> event) = 0;

  // The job's checkpoints by step, then in the order they were added. NotFound for an unknown
  // job.
  virtual absl::StatusOr<std::vector<v1::Checkpoint>> ListCheckpoints(
      const std::string& job_id) = 0;
  virtual absl::StatusOr<v1::Checkpoint> GetCheckpoint(const std::string& job_id,
                                                       const std::string& checkpoint_id) = 0;

  // Workers are kept by name; UpsertWorker replaces the whole record.
  virtual absl::Status UpsertWorker(const v1::Worker& worker) = 0;
  virtual absl::StatusOr<std::vector<v1::Worker>> ListWorkers() = 0;  // by name
  virtual absl::Status DeleteWorker(const std::string& name) = 0;     // NotFound if unknown

  // Every job not in a final state, and every worker (see RecoveredState).
  virtual absl::StatusOr<RecoveredState> Recover() = 0;

  // ---- garbage collection (docs/operations.md, "Retention and garbage collection") ----------
  // A record goes before its files: the caller deletes the records here, then the files, so
  // that a crash in between leaves files without a record (swept at the next start), never a
  // record without its files.

  // Removes the records of the job's checkpoints named in `checkpoint_ids`, atomically; ids the
  // job does not have are skipped. Returns the records removed. NotFound for an unknown job.
  virtual absl::StatusOr<std::vector<v1::Checkpoint>> DeleteCheckpoints(
      const std::string& job_id, const std::vector<std::string>& checkpoint_ids) = 0;
  // Removes a final job with its events, its checkpoint records and its idempotency key,
  // atomically, and returns the checkpoint records removed. NotFound for an unknown job,
  // FailedPrecondition for one that is not final (an active job's record is the core's truth).
  virtual absl::StatusOr<std::vector<v1::Checkpoint>> DeleteJob(const std::string& job_id) = 0;
  // Final jobs that finished (Job.finished_at, else updated_at) before `cutoff`, the oldest
  // first, at most `limit` (> 0).
  virtual absl::StatusOr<std::vector<v1::Job>> ListJobsFinishedBefore(absl::Time cutoff,
                                                                      int limit) = 0;
  // Forgets the idempotency keys of the jobs created before `cutoff` (the jobs stay); returns
  // how many keys it forgot.
  virtual absl::StatusOr<int64_t> ExpireIdempotencyKeys(absl::Time cutoff) = 0;
  // Every checkpoint record of every job, by job id, then as ListCheckpoints orders them.
  virtual absl::StatusOr<std::vector<v1::Checkpoint>> ListAllCheckpoints() = 0;
  // Makes every write that has returned so far durable (it survives a power cut), for a store
  // whose writes return once committed but before they reach the disk (SqliteJobStore with
  // SyncMode::kGroupCommit): one Sync covers the writes of many callers, which is how the core
  // batches them (server/core/store_sync.h). Stores whose writes are durable when they return
  // answer OK at once. May run concurrently with writes and reads, from any thread.
  virtual absl::Status Sync() { return absl::OkStatus(); }
};

// ---------------------------------------------------------------------------------------------
// Shared by the implementations, so that they check and encode alike. Not for callers.
namespace job_store_internal {

inline constexpr char kPageTokenPrefix[] = "loratrf.jobs.v1:";

// A page token names the creation number of the last job of the page; the next page starts
// below it. Base64 keeps it opaque-looking and URL-safe; the prefix catches tokens of another
// kind or version.
inline std::string EncodePageToken(int64_t last_creation_order) {
  return absl::WebSafeBase64Escape(absl::StrCat(kPageTokenPrefix, last_creation_order));
}

// Returns 0 for an empty token (the first page), else the creation number it names.
inline absl::StatusOr<int64_t> DecodePageToken(const std::string& token) {
  if (token.empty()) return 0;
  std::string raw;
  int64_t order = 0;
  if (!absl::WebSafeBase64Unescape(token, &raw) || !absl::StartsWith(raw, kPageTokenPrefix) ||
      !absl::SimpleAtoi(absl::string_view(raw).substr(sizeof(kPageTokenPrefix) - 1), &order) ||
      order <= 0) {
    return absl::InvalidArgumentError(
        "page_token: not a token returned by an earlier ListJobs call");
  }
  return order;
}

// page_size → how many jobs to return.
inline absl::StatusOr<int> EffectivePageSize(int page_size) {
  if (page_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: must not be negative (got ", page_size, ")"));
  }
  if (page_size == 0) return kDefaultJobPageSize;
  return page_size > limits::kMaxJobPageSize ? limits::kMaxJobPageSize : page_size;
}

inline absl::Status CheckFilter(const JobFilter& filter) {
  for (v1::JobState state : filter.states) {
    if (!v1::JobState_IsValid(state) || state == v1::JOB_STATE_UNSPECIFIED) {
      return absl::InvalidArgumentError(
          absl::StrCat("filter.states: ", static_cast<int>(state), " is not a job state"));
    }
  }
  return absl::OkStatus();
}

inline absl::Status CheckNewJob(const v1::Job& job) {
  if (job.id().empty()) return absl::InvalidArgumentError("job.id: required");
  if (job.state() != v1::JOB_STATE_QUEUED) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job.state: a new job must be QUEUED, not ", v1::JobState_Name(job.state())));
  }
  return absl::OkStatus();
}

// The event CreateJob writes with a new job.
inline v1::JobEvent FirstEvent(const v1::Job& job) {
  v1::JobEvent event;
  event.set_seq(1);
  event.set_job_id(job.id());
  *event.mutable_time() = job.created_at();
  event.set_attempt(job.attempt());
  event.mutable_state_change()->set_from(v1::JOB_STATE_UNSPECIFIED);
  event.mutable_state_change()->set_to(v1::JOB_STATE_QUEUED);
  event.mutable_state_change()->set_reason(job.state_reason());
  return event;
}

// Checks that `events` may be appended to job `job_id` (seq unset, job_id empty or matching).
inline absl::Status CheckNewEvents(const std::string& job_id,
                                   const std::vector<v1::JobEvent>& events) {
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].seq() != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "events[", i, "].seq: must be 0, the store assigns it (got ", events[i].seq(), ")"));
    }
    if (!events[i].job_id().empty() && events[i].job_id() != job_id) {
      return absl::InvalidArgumentError(absl::StrCat("events[", i, "].job_id: '",
                                                     events[i].job_id(), "' is not job '",
                                                     job_id, "'"));
    }
  }
  return absl::OkStatus();
}

inline absl::Status CheckCheckpoint(const v1::Checkpoint& checkpoint) {
  if (checkpoint.id().empty()) return absl::InvalidArgumentError("checkpoint.id: required");
  if (checkpoint.job_id().empty()) {
    return absl::InvalidArgumentError("checkpoint.job_id: required");
  }
  return absl::OkStatus();
}

inline bool IsFinalState(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

inline int64_t ToMillis(const google::protobuf::Timestamp& time) {
  return time.seconds() * 1000 + time.nanos() / 1000000;
}

// When a final job finished, in Unix milliseconds (finished_at, else its last update); null for
// a job that is not final.
inline std::optional<int64_t> FinishedMillis(const v1::Job& job) {
  if (!IsFinalState(job.state())) return std::nullopt;
  return ToMillis(job.has_finished_at() ? job.finished_at() : job.updated_at());
}

inline bool IsActive(v1::JobState state) {
  return state == v1::JOB_STATE_SCHEDULED || state == v1::JOB_STATE_RUNNING ||
         state == v1::JOB_STATE_RESTARTING;
}

}  // namespace job_store_internal
}  // namespace loratrf::server
