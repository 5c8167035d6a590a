// The coordinator's JobStore: one SQLite file under --data-dir.
//
// Durability: WAL journal with synchronous=FULL, so a change is on disk when its call returns
// and a crash (of the process or the machine) keeps every returned write and no part of an
// unreturned one: each call is one transaction (BEGIN IMMEDIATE ... COMMIT).
//
// Schema: versioned in PRAGMA user_version, one migration step per version, pending steps run
// in one transaction when the file is opened. A file written by a newer coordinator (a higher
// version than this code knows) is refused with FailedPrecondition rather than misread.
//
// Errors: every SQLite error becomes an absl::Status naming the operation and carrying
// SQLite's message: a file that is not a database (or is corrupt) is DataLoss, a database that
// stays locked past the busy timeout is Unavailable, a full disk ResourceExhausted.
//
// Threading: thread-safe. One connection serves all calls, guarded by mu_; SQLite's WAL lets
// readers in other processes (sqlite3 CLI, backups) look at the file meanwhile. A second
// coordinator on the same file waits up to the busy timeout for each write, then fails.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/store/job_store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace loratrf::server {

class SqliteJobStore final : public JobStore {
 public:
  // The schema version this code writes; Open() migrates older files up to it.
  static int SchemaVersion();

  // When a write is on the disk.
  enum class SyncMode {
    // synchronous=FULL: every COMMIT waits for its fsync, so a write is durable when it returns
    // (one fsync per write).
    kEveryCommit,
    // synchronous=NORMAL: a COMMIT returns once its WAL frames are written (a process crash
    // loses nothing; a power cut may lose what was not synced yet), and Sync() fsyncs the WAL,
    // making every write that returned before it durable. The caller syncs before it lets
    // anything depend on a write (server/core/store_sync.h), and one Sync serves many writes.
    kGroupCommit,
  };

  // Opens (creating if needed) the database file at `path` and brings its schema up to date.
  // The directory must exist.
  static absl::StatusOr<std::unique_ptr<SqliteJobStore>> Open(
      const std::string& path, SyncMode sync = SyncMode::kEveryCommit);
  // Opens an existing database for reading only (fsck): nothing is created, migrated or
  // written; a file of another schema version is FailedPrecondition. Every write fails.
  static absl::StatusOr<std::unique_ptr<SqliteJobStore>> OpenReadOnly(const std::string& path);

  SqliteJobStore(const SqliteJobStore&) = delete;
  SqliteJobStore& operator=(const SqliteJobStore&) = delete;
  ~SqliteJobStore() override;

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
  // kGroupCommit: fdatasync of the WAL file (not under mu_: writes go on meanwhile). Internal
  // when the fsync fails: what was written may be lost, and the caller must not go on as if it
  // were durable.
  absl::Status Sync() override;

 private:
  struct Statements;  // the prepared statements, one per query; defined in the .cc
  struct JobRow;      // a jobs row: its columns and the parsed Job

  SqliteJobStore(std::string path, sqlite3* db);

  static absl::StatusOr<std::unique_ptr<SqliteJobStore>> OpenWith(const std::string& path,
                                                                  bool read_only, SyncMode sync);

  // Statement helpers; all need mu_ held (they use the connection).
  absl::Status Init(bool read_only);
  absl::Status InitReadOnly();
  absl::Status BackfillTimes();
  absl::Status PrepareStatements();
  absl::Status Exec(const char* operation, const char* sql);
  absl::Status Error(const char* operation, int rc);
  // Runs `body` inside BEGIN IMMEDIATE ... COMMIT, rolling back when it fails.
  template <typename Body>
  absl::Status InTransaction(const char* operation, Body body);
  // Runs `body` inside a read transaction (BEGIN ... ROLLBACK): its reads see one snapshot.
  template <typename Body>
  absl::Status InReadTransaction(const char* operation, Body body);
  // The stored job row, or NotFound.
  absl::StatusOr<JobRow> LoadJob(const char* operation, const std::string& job_id);
  // Writes what ListJobs filters on besides the jobs row itself (the sweep, the labels) for
  // the job just inserted as row `seq`. Needs mu_, inside CreateJob's transaction.
  absl::Status InsertListingKeys(const char* operation, int64_t seq, const v1::Job& job);
  // Writes `events` after seq `last_seq` of `job_id` (filling in seq and job_id) and returns
  // them; the caller updates jobs.last_event_seq.
  absl::StatusOr<std::vector<v1::JobEvent>> InsertEvents(const char* operation,
                                                         const std::string& job_id,
                                                         uint64_t last_seq,
                                                         std::vector<v1::JobEvent> events);
  absl::Status SetLastEventSeq(const char* operation, const std::string& job_id, uint64_t seq);
  // Steps `stmt` (bound, selecting the job columns) to the end.
  absl::StatusOr<std::vector<v1::Job>> QueryJobs(const char* operation, sqlite3_stmt* stmt);
  absl::StatusOr<std::vector<v1::Worker>> QueryWorkers(const char* operation);
  // The checkpoint records of `job_id` by step (the job must exist). Needs mu_.
  absl::StatusOr<std::vector<v1::Checkpoint>> QueryCheckpoints(const char* operation,
                                                               const std::string& job_id);
  // Steps `stmt` (bound) to the end, parsing its column 0 as a `Message` blob named `what`.
  template <typename Message>
  absl::StatusOr<std::vector<Message>> ReadMessages(const char* operation, sqlite3_stmt* stmt,
                                                    const char* what);

  const std::string path_;  // for error messages
  // Guards db_ and stmts_. One connection, so one caller at a time: SQLite serializes writers
  // anyway, and a single connection keeps one call's BEGIN ... COMMIT from interleaving with
  // another's. (std::mutex rather than absl::Mutex: ThreadSanitizer sees it even with the
  // distribution's uninstrumented abseil.)
  std::mutex mu_;
  sqlite3* db_;                        // owned; closed by the destructor
  std::unique_ptr<Statements> stmts_;  // prepared on db_; finalized before it closes
  SyncMode sync_mode_ = SyncMode::kEveryCommit;  // set by Open, then read-only

  // Sync's own lock and state (never mu_): the WAL file, opened at the first Sync and again if
  // SQLite ever replaced it (a different inode).
  std::mutex sync_mu_;
  int wal_fd_ = -1;      // guarded by sync_mu_
  uint64_t wal_dev_ = 0;  // guarded by sync_mu_
  uint64_t wal_ino_ = 0;  // guarded by sync_mu_
};

}  // namespace loratrf::server
