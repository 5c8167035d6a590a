#include "server/store/sqlite_job_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace loratrf::server {
namespace {

using job_store_internal::CheckCheckpoint;
using job_store_internal::CheckFilter;
using job_store_internal::CheckNewEvents;
using job_store_internal::CheckNewJob;

// kMigrations[i] takes the schema from version i to version i + 1 (PRAGMA user_version; a new
// file is version 0). Append only: a step that has shipped is never edited, since files out
// there already ran it.
//
// Every record is a serialized loratrf.v1 message; the other columns exist for the queries.
// jobs.seq is the creation order: AUTOINCREMENT never reuses a number, so FIFO and page tokens
// hold even if jobs are deleted one day. jobs.last_event_seq is the truth for
// Job.last_event_seq (the blob's copy can lag when AddCheckpoint appends an event).
constexpr const char* kMigrations[] = {
    // 0 → 1: jobs, their events, checkpoints, workers.
    R"sql(
      CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        owner TEXT NOT NULL,
        idempotency_key TEXT,
        name TEXT NOT NULL,
        state INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        last_event_seq INTEGER NOT NULL,
        job BLOB NOT NULL
      ) STRICT;
      CREATE UNIQUE INDEX jobs_by_idempotency_key ON jobs (owner, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
      CREATE INDEX jobs_by_state ON jobs (state, priority DESC, seq);

      CREATE TABLE job_events (
        job_id TEXT NOT NULL REFERENCES jobs (id),
        seq INTEGER NOT NULL,
        event BLOB NOT NULL,
        PRIMARY KEY (job_id, seq)
      ) STRICT, WITHOUT ROWID;

      CREATE TABLE checkpoints (
        job_id TEXT NOT NULL REFERENCES jobs (id),
        id TEXT NOT NULL,
        step INTEGER NOT NULL,
        checkpoint BLOB NOT NULL,
        UNIQUE (job_id, id)
      ) STRICT;
      CREATE INDEX checkpoints_by_step ON checkpoints (job_id, step);

      CREATE TABLE workers (
        name TEXT PRIMARY KEY,
        worker BLOB NOT NULL
      ) STRICT;
    )sql",
    // 1 → 2: the times garbage collection asks about (Unix ms): when a job was created (for the
    // idempotency window) and when it finished (null while it is not final; for the finished
    // job TTL). BackfillTimes fills them for the rows already there.
    R"sql(
      ALTER TABLE jobs ADD COLUMN created_ms INTEGER;
      ALTER TABLE jobs ADD COLUMN finished_ms INTEGER;
      CREATE INDEX jobs_by_finished ON jobs (finished_ms) WHERE finished_ms IS NOT NULL;
      CREATE INDEX jobs_keyed_by_created ON jobs (created_ms)
        WHERE idempotency_key IS NOT NULL;
    )sql",
    // 2 → 3: what ListJobs filters on besides owner, name and state: the sweep (Job.sweep_id)
    // and the labels (JobSpec.labels, one row each). Both are fixed when a job is created, so
    // only CreateJob writes them; jobs stored before this version had neither field.
    R"sql(
      ALTER TABLE jobs ADD COLUMN sweep_id TEXT NOT NULL DEFAULT '';
      CREATE INDEX jobs_by_sweep ON jobs (sweep_id, seq);

      CREATE TABLE job_labels (
        job_seq INTEGER NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (job_seq, key)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX job_labels_by_value ON job_labels (key, value, job_seq);
      CREATE TRIGGER job_labels_follow_jobs AFTER DELETE ON jobs BEGIN
        DELETE FROM job_labels WHERE job_seq = old.seq;
      END;
    )sql",
};
constexpr int kSchemaVersion = static_cast<int>(std::size(kMigrations));

// How long a write waits for another connection's write to finish before failing.
constexpr int kBusyTimeoutMs = 5000;

// Maps a SQLite result code to the absl code a caller can act on.
absl::StatusCode CodeFor(int rc) {
  switch (rc & 0xff) {  // the primary code of an extended one
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return absl::StatusCode::kDataLoss;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kUnavailable;
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return absl::StatusCode::kFailedPrecondition;
    case SQLITE_CONSTRAINT:
      return (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
                 ? absl::StatusCode::kAlreadyExists
                 : absl::StatusCode::kFailedPrecondition;
    default:
      return absl::StatusCode::kInternal;
  }
}

// Finalizes a prepared statement.
struct StmtDeleter {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

// Binds parameters ?1, ?2, ... in order, remembering the first failure.
class Binder {
 public:
  explicit Binder(sqlite3_stmt* stmt) : stmt_(stmt) {}
  Binder& Int(int64_t value) { return Done(sqlite3_bind_int64(stmt_, next_, value)); }
  Binder& Text(const std::string& value) {
    return Done(sqlite3_bind_text(stmt_, next_, value.data(), static_cast<int>(value.size()),
                                  SQLITE_TRANSIENT));
  }
  Binder& Blob(const std::string& value) {
    return Done(sqlite3_bind_blob(stmt_, next_, value.data(), static_cast<int>(value.size()),
                                  SQLITE_TRANSIENT));
  }
  Binder& Null() { return Done(sqlite3_bind_null(stmt_, next_)); }
  int rc() const { return rc_; }

 private:
  Binder& Done(int rc) {
    if (rc_ == SQLITE_OK) rc_ = rc;
    ++next_;
    return *this;
  }
  sqlite3_stmt* stmt_;
  int next_ = 1;
  int rc_ = SQLITE_OK;
};

// Resets a statement and clears its bindings when a use of it ends, however it ends, so the
// next use starts clean and no read transaction stays open.
class ScopedReset {
 public:
  explicit ScopedReset(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ScopedReset(const ScopedReset&) = delete;
  ScopedReset& operator=(const ScopedReset&) = delete;
  ~ScopedReset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

 private:
  sqlite3_stmt* stmt_;
};

std::string ColumnBytes(sqlite3_stmt* stmt, int column) {
  const void* data = sqlite3_column_blob(stmt, column);
  int size = sqlite3_column_bytes(stmt, column);
  return data == nullptr ? std::string() : std::string(static_cast<const char*>(data), size);
}

template <typename Message>
absl::StatusOr<Message> ParseColumn(sqlite3_stmt* stmt, int column, absl::string_view what) {
  Message message;
  std::string bytes = ColumnBytes(stmt, column);
  if (!message.ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat("job store: a stored ", what, " does not parse"));
  }
  return message;
}

// The labels as a JSON object, for json_each in the list query.
std::string LabelsJson(const std::map<std::string, std::string>& labels) {
  std::string out = "{";
  auto quote = [&out](const std::string& text) {
    out += '"';
    for (unsigned char c : text) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
      } else if (c < 0x20) {
        out += absl::StrFormat("\\u%04x", c);
      } else {
        out += static_cast<char>(c);
      }
    }
    out += '"';
  };
  for (const auto& [key, value] : labels) {
    if (out.size() > 1) out += ',';
    quote(key);
    out += ':';
    quote(value);
  }
  return out + "}";
}

std::string Serialize(const google::protobuf::MessageLite& message) {
  std::string bytes;
  message.SerializeToString(&bytes);
  return bytes;
}

}  // namespace

// The prepared statements. Each is used by one call at a time (mu_), wrapped in a ScopedReset.
struct SqliteJobStore::Statements {
  StmtPtr job_by_id;
  StmtPtr job_by_idempotency_key;
  StmtPtr insert_job;
  StmtPtr update_job;
  StmtPtr set_last_event_seq;
  StmtPtr insert_event;
  StmtPtr list_events;
  StmtPtr list_jobs;
  StmtPtr list_jobs_in_sweep;
  StmtPtr set_sweep_id;
  StmtPtr insert_label;
  StmtPtr queued_jobs;
  StmtPtr active_jobs;
  StmtPtr insert_checkpoint;
  StmtPtr checkpoint_by_id;
  StmtPtr list_checkpoints;
  StmtPtr upsert_worker;
  StmtPtr list_workers;
  StmtPtr delete_worker;
  StmtPtr delete_checkpoint;
  StmtPtr delete_job_events;
  StmtPtr delete_job_checkpoints;
  StmtPtr delete_job;
  StmtPtr jobs_finished_before;
  StmtPtr expire_keys;
  StmtPtr all_checkpoints;
};

struct SqliteJobStore::JobRow {
  std::string owner;
  uint64_t last_event_seq = 0;
  v1::Job job;  // with last_event_seq from its column
};

// Every job query selects these columns, in this order.
#define LORATRF_JOB_COLUMNS "seq, owner, last_event_seq, job"
// ListJobs, with the sweep condition given.
#define LORATRF_LIST_JOBS_SQL(sweep_condition)                                                  \
  "SELECT " LORATRF_JOB_COLUMNS " FROM jobs"                                                  \
  " WHERE (?1 = 0 OR seq < ?1) AND (?2 = '' OR owner = ?2)"                                   \
  " AND substr(name, 1, length(?3)) = ?3 AND (?4 = 0 OR (?4 >> state) & 1 = 1)"               \
  " AND " sweep_condition                                                                     \
  " AND (?7 = 0 OR seq IN (SELECT l.job_seq FROM job_labels l, json_each(?8) f"               \
  " WHERE l.key = f.key AND l.value = f.value GROUP BY l.job_seq HAVING count(*) = ?7))"      \
  " ORDER BY seq DESC LIMIT ?5"

int SqliteJobStore::SchemaVersion() { return kSchemaVersion; }

SqliteJobStore::SqliteJobStore(std::string path, sqlite3* db)
    : path_(std::move(path)), db_(db), stmts_(std::make_unique<Statements>()) {}

SqliteJobStore::~SqliteJobStore() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stmts_.reset();  // statements first: sqlite3_close refuses a connection with live ones
    sqlite3_close(db_);
  }
  std::lock_guard<std::mutex> lock(sync_mu_);
  if (wal_fd_ >= 0) ::close(wal_fd_);
}

absl::Status SqliteJobStore::Sync() {
  if (sync_mode_ == SyncMode::kEveryCommit) return absl::OkStatus();
  std::lock_guard<std::mutex> lock(sync_mu_);
  const std::string wal = path_ + "-wal";
  struct stat now;
  if (::stat(wal.c_str(), &now) != 0) {
    // In WAL mode every commit goes to the -wal file, which SQLite keeps while the connection
    // is open: no file, nothing committed to sync.
    if (errno == ENOENT) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("job store: stat ", wal, ": ", std::strerror(errno)));
  }
  if (wal_fd_ < 0 || static_cast<uint64_t>(now.st_dev) != wal_dev_ ||
      static_cast<uint64_t>(now.st_ino) != wal_ino_) {
    if (wal_fd_ >= 0) ::close(wal_fd_);
    wal_fd_ = ::open(wal.c_str(), O_RDONLY | O_CLOEXEC);
    if (wal_fd_ < 0) {
      return absl::InternalError(absl::StrCat("job store: open ", wal, ": ", std::strerror(errno)));
    }
    wal_dev_ = static_cast<uint64_t>(now.st_dev);
    wal_ino_ = static_cast<uint64_t>(now.st_ino);
    // A new file's name must be durable too: its directory once.
    std::string dir = path_.find('/') == std::string::npos ? "." : path_.substr(0, path_.rfind('/'));
    if (dir.empty()) dir = "/";
    int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0 || ::fsync(dir_fd) != 0) {
      const int error = errno;
      if (dir_fd >= 0) ::close(dir_fd);
      return absl::InternalError(absl::StrCat("job store: fsync ", dir, ": ", std::strerror(error)));
    }
    ::close(dir_fd);
  }
  if (::fdatasync(wal_fd_) != 0) {
    return absl::InternalError(
        absl::StrCat("job store: fdatasync ", wal, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SqliteJobStore>> SqliteJobStore::Open(const std::string& path,
                                                                    SyncMode sync) {
  return OpenWith(path, /*read_only=*/false, sync);
}

absl::StatusOr<std::unique_ptr<SqliteJobStore>> SqliteJobStore::OpenReadOnly(
    const std::string& path) {
  return OpenWith(path, /*read_only=*/true, SyncMode::kEveryCommit);
}

absl::StatusOr<std::unique_ptr<SqliteJobStore>> SqliteJobStore::OpenWith(const std::string& path,
                                                                         bool read_only,
                                                                         SyncMode sync) {
  if (path.empty()) return absl::InvalidArgumentError("job store: empty database path");
  sqlite3* db = nullptr;
  // NOMUTEX: mu_ already serializes every use of the connection.
  const int flags = read_only ? SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX
                              : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status(CodeFor(rc), absl::StrCat("job store: cannot open ", path, ": ",
                                                  db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    sqlite3_close(db);  // a handle comes back even on failure (or null, which close accepts)
    return status;
  }
  std::unique_ptr<SqliteJobStore> store(new SqliteJobStore(path, db));
  store->sync_mode_ = sync;
  std::lock_guard<std::mutex> lock(store->mu_);
  RETURN_IF_ERROR(store->Init(read_only));
  return store;
}

absl::Status SqliteJobStore::Error(const char* operation, int rc) {
  return absl::Status(CodeFor(rc), absl::StrCat("job store: ", operation, ": ",
                                                sqlite3_errmsg(db_), " (", path_, ")"));
}

absl::Status SqliteJobStore::Exec(const char* operation, const char* sql) {
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? absl::OkStatus() : Error(operation, rc);
}

template <typename Body>
absl::Status SqliteJobStore::InTransaction(const char* operation, Body body) {
  // IMMEDIATE takes the write lock up front, so a transaction never fails halfway because
  // another connection wrote first (and busy_timeout applies to the wait).
  RETURN_IF_ERROR(Exec(operation, "BEGIN IMMEDIATE"));
  absl::Status status = body();
  if (status.ok()) {
    status = Exec(operation, "COMMIT");
    if (status.ok()) return status;
  }
  // A failed statement or COMMIT may or may not have ended the transaction already.
  if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  return status;
}

template <typename Body>
absl::Status SqliteJobStore::InReadTransaction(const char* operation, Body body) {
  RETURN_IF_ERROR(Exec(operation, "BEGIN"));
  absl::Status status = body();
  // A read has nothing to commit; ROLLBACK ends it and, unlike COMMIT, cannot be refused.
  if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  return status;
}

absl::Status SqliteJobStore::Init(bool read_only) {
  sqlite3_extended_result_codes(db_, 1);  // tells a UNIQUE violation from the other constraints
  if (read_only) return InitReadOnly();
  sqlite3_busy_timeout(db_, kBusyTimeoutMs);

  // The first statement that reads the file: a file that is not a database fails here.
  {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db_, "PRAGMA journal_mode = WAL", -1, &raw, nullptr);
    StmtPtr stmt(raw);
    if (rc == SQLITE_OK) rc = sqlite3_step(stmt.get());
    if (rc != SQLITE_ROW) {
      absl::Status status = Error("set journal_mode=WAL", rc);
      if (status.code() == absl::StatusCode::kDataLoss) {
        return absl::DataLossError(absl::StrCat("job store: ", path_,
                                                ": not a SQLite database, or a corrupt one (",
                                                sqlite3_errmsg(db_), ")"));
      }
      return status;
    }
    std::string mode = reinterpret_cast<const char*>(sqlite3_column_text(stmt.get(), 0));
    if (mode != "wal") {
      return absl::FailedPreconditionError(absl::StrCat(
          "job store: ", path_, ": cannot use WAL journaling here (journal_mode is ", mode,
          "); put the data dir on a local file system"));
    }
  }
  // synchronous=FULL: in WAL mode, NORMAL could lose the last transactions on a power cut.
  // With kGroupCommit NORMAL is right: Sync() is that fsync, made once for many commits (and
  // NORMAL still syncs around checkpoints, so what a checkpoint moved is never at risk).
  if (sync_mode_ == SyncMode::kGroupCommit) {
    RETURN_IF_ERROR(Exec("set synchronous=NORMAL", "PRAGMA synchronous = NORMAL"));
  } else {
    RETURN_IF_ERROR(Exec("set synchronous=FULL", "PRAGMA synchronous = FULL"));
  }
  RETURN_IF_ERROR(Exec("enable foreign keys", "PRAGMA foreign_keys = ON"));

  // Migrations. The version is read again inside the write transaction, since another process
  // may have migrated the file in between.
  auto read_version = [&]() -> absl::StatusOr<int> {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &raw, nullptr);
    StmtPtr stmt(raw);
    if (rc == SQLITE_OK) rc = sqlite3_step(stmt.get());
    if (rc != SQLITE_ROW) return Error("read schema version", rc);
    int version = sqlite3_column_int(stmt.get(), 0);
    if (version > kSchemaVersion || version < 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job store: ", path_, " has schema version ", version,
          ", newer than this loratrf-coordinator knows (", kSchemaVersion,
          "); run a newer coordinator on this data dir"));
    }
    return version;
  };
  ASSIGN_OR_RETURN(int version, read_version());
  if (version < kSchemaVersion) {
    RETURN_IF_ERROR(InTransaction("migrate schema", [&]() -> absl::Status {
      ASSIGN_OR_RETURN(int current, read_version());
      for (int step = current; step < kSchemaVersion; ++step) {
        RETURN_IF_ERROR(Exec(absl::StrCat("migrate schema to version ", step + 1).c_str(),
                             kMigrations[step]));
      }
      if (current < 2) RETURN_IF_ERROR(BackfillTimes());
      // user_version lives in the file header, which this transaction writes atomically.
      return Exec("set schema version",
                  absl::StrCat("PRAGMA user_version = ", kSchemaVersion).c_str());
    }));
  }

  return PrepareStatements();
}

absl::Status SqliteJobStore::InitReadOnly() {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &raw, nullptr);
  StmtPtr stmt(raw);
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt.get());
  if (rc != SQLITE_ROW) return Error("read schema version", rc);
  int version = sqlite3_column_int(stmt.get(), 0);
  if (version != kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job store: ", path_, " has schema version ", version, ", this program reads version ",
        kSchemaVersion, " (start the coordinator of this version on it once to migrate it)"));
  }
  return PrepareStatements();
}

// Fills jobs.created_ms and finished_ms for the rows written before those columns existed.
// Runs inside the migration's transaction.
absl::Status SqliteJobStore::BackfillTimes() {
  static constexpr char kOp[] = "migrate schema: fill in job times";
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(db_, "SELECT id, job FROM jobs WHERE created_ms IS NULL", -1, &raw,
                              nullptr);
  StmtPtr select(raw);
  if (rc != SQLITE_OK) return Error(kOp, rc);
  rc = sqlite3_prepare_v2(db_, "UPDATE jobs SET created_ms = ?2, finished_ms = ?3 WHERE id = ?1",
                          -1, &raw, nullptr);
  StmtPtr update(raw);
  if (rc != SQLITE_OK) return Error(kOp, rc);
  std::vector<std::pair<std::string, v1::Job>> rows;
  while ((rc = sqlite3_step(select.get())) == SQLITE_ROW) {
    ASSIGN_OR_RETURN(v1::Job job, ParseColumn<v1::Job>(select.get(), 1, "job"));
    rows.emplace_back(ColumnBytes(select.get(), 0), std::move(job));
  }
  if (rc != SQLITE_DONE) return Error(kOp, rc);
  for (const auto& [id, job] : rows) {
    ScopedReset reset(update.get());
    Binder binder(update.get());
    binder.Text(id).Int(job_store_internal::ToMillis(job.created_at()));
    if (std::optional<int64_t> finished = job_store_internal::FinishedMillis(job)) {
      binder.Int(*finished);
    } else {
      binder.Null();
    }
    rc = binder.rc();
    if (rc == SQLITE_OK) rc = sqlite3_step(update.get());
    if (rc != SQLITE_DONE) return Error(kOp, rc);
  }
  return absl::OkStatus();
}

absl::Status SqliteJobStore::PrepareStatements() {
  struct {
    StmtPtr* stmt;
    const char* sql;
  } const statements[] = {
      {&stmts_->job_by_id, "SELECT " LORATRF_JOB_COLUMNS " FROM jobs WHERE id = ?1"},
      {&stmts_->job_by_idempotency_key,
       "SELECT " LORATRF_JOB_COLUMNS " FROM jobs WHERE owner = ?1 AND idempotency_key = ?2"},
      {&stmts_->insert_job,
       "INSERT INTO jobs (id, owner, idempotency_key, name, state, priority, last_event_seq, job,"
       " created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
      {&stmts_->update_job,
       "UPDATE jobs SET name = ?2, state = ?3, priority = ?4, last_event_seq = ?5, job = ?6,"
       " finished_ms = ?7 WHERE id = ?1"},
      {&stmts_->set_last_event_seq, "UPDATE jobs SET last_event_seq = ?2 WHERE id = ?1"},
      {&stmts_->insert_event, "INSERT INTO job_events (job_id, seq, event) VALUES (?1, ?2, ?3)"},
      {&stmts_->list_events,
       "SELECT event FROM job_events WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"},
      // ?1: the page token's position (0: from the newest); ?2: owner ('' any); ?3: name
      // prefix (substr, not LIKE: no wildcards, case-sensitive); ?4: a bit mask of states
      // (0 any); ?5: the limit; ?6: the sweep (list_jobs_in_sweep only: its own statement,
      // so that the (sweep_id, seq) index drives it); ?7: how many labels must match (0:
      // none) and ?8: those labels as a JSON object (matched through job_labels' (key, value)
      // index, once per query).
      {&stmts_->list_jobs, LORATRF_LIST_JOBS_SQL("?6 = ?6")},
      {&stmts_->list_jobs_in_sweep, LORATRF_LIST_JOBS_SQL("sweep_id = ?6")},
      {&stmts_->set_sweep_id, "UPDATE jobs SET sweep_id = ?2 WHERE seq = ?1"},
      {&stmts_->insert_label, "INSERT INTO job_labels (job_seq, key, value) VALUES (?1, ?2, ?3)"},
      {&stmts_->queued_jobs,
       "SELECT " LORATRF_JOB_COLUMNS " FROM jobs WHERE state = ?1 ORDER BY priority DESC, seq"},
      {&stmts_->active_jobs,
       "SELECT " LORATRF_JOB_COLUMNS " FROM jobs WHERE state IN (?1, ?2, ?3) ORDER BY seq"},
      {&stmts_->insert_checkpoint,
       "INSERT INTO checkpoints (job_id, id, step, checkpoint) VALUES (?1, ?2, ?3, ?4)"},
      {&stmts_->checkpoint_by_id,
       "SELECT checkpoint FROM checkpoints WHERE job_id = ?1 AND id = ?2"},
      {&stmts_->list_checkpoints,
       "SELECT checkpoint FROM checkpoints WHERE job_id = ?1 ORDER BY step, rowid"},
      {&stmts_->upsert_worker,
       "INSERT INTO workers (name, worker) VALUES (?1, ?2)"
       " ON CONFLICT (name) DO UPDATE SET worker = excluded.worker"},
      {&stmts_->list_workers, "SELECT worker FROM workers ORDER BY name"},
      {&stmts_->delete_worker, "DELETE FROM workers WHERE name = ?1"},
      {&stmts_->delete_checkpoint, "DELETE FROM checkpoints WHERE job_id = ?1 AND id = ?2"},
      {&stmts_->delete_job_events, "DELETE FROM job_events WHERE job_id = ?1"},
      {&stmts_->delete_job_checkpoints, "DELETE FROM checkpoints WHERE job_id = ?1"},
      {&stmts_->delete_job, "DELETE FROM jobs WHERE id = ?1"},
      {&stmts_->jobs_finished_before,
       "SELECT " LORATRF_JOB_COLUMNS " FROM jobs WHERE finished_ms IS NOT NULL"
       " AND finished_ms < ?1 ORDER BY finished_ms, seq LIMIT ?2"},
      {&stmts_->expire_keys,
       "UPDATE jobs SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL"
       " AND created_ms < ?1"},
      {&stmts_->all_checkpoints,
       "SELECT checkpoint FROM checkpoints ORDER BY job_id, step, rowid"},
  };
  for (const auto& s : statements) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v3(db_, s.sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    s.stmt->reset(raw);
    if (rc != SQLITE_OK) return Error(absl::StrCat("prepare \"", s.sql, "\"").c_str(), rc);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Job>> SqliteJobStore::QueryJobs(const char* operation,
                                                               sqlite3_stmt* stmt) {
  std::vector<v1::Job> jobs;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    ASSIGN_OR_RETURN(v1::Job job, ParseColumn<v1::Job>(stmt, 3, "job"));
    job.set_last_event_seq(static_cast<uint64_t>(sqlite3_column_int64(stmt, 2)));
    jobs.push_back(std::move(job));
  }
  if (rc != SQLITE_DONE) return Error(operation, rc);
  return jobs;
}

absl::StatusOr<SqliteJobStore::JobRow> SqliteJobStore::LoadJob(const char* operation,
                                                               const std::string& job_id) {
  sqlite3_stmt* stmt = stmts_->job_by_id.get();
  ScopedReset reset(stmt);
  int rc = Binder(stmt).Text(job_id).rc();
  if (rc != SQLITE_OK) return Error(operation, rc);
  rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) return absl::NotFoundError(absl::StrCat("job '", job_id, "' not found"));
  if (rc != SQLITE_ROW) return Error(operation, rc);
  JobRow row;
  row.owner = ColumnBytes(stmt, 1);
  row.last_event_seq = static_cast<uint64_t>(sqlite3_column_int64(stmt, 2));
  ASSIGN_OR_RETURN(row.job, ParseColumn<v1::Job>(stmt, 3, "job"));
  row.job.set_last_event_seq(row.last_event_seq);
  return row;
}

absl::StatusOr<std::vector<v1::JobEvent>> SqliteJobStore::InsertEvents(
    const char* operation, const std::string& job_id, uint64_t last_seq,
    std::vector<v1::JobEvent> events) {
  sqlite3_stmt* stmt = stmts_->insert_event.get();
  for (v1::JobEvent& event : events) {
    event.set_seq(++last_seq);
    event.set_job_id(job_id);
    ScopedReset reset(stmt);
    int rc = Binder(stmt)
                 .Text(job_id)
                 .Int(static_cast<int64_t>(event.seq()))
                 .Blob(Serialize(event))
                 .rc();
    if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE) return Error(operation, rc);
  }
  return events;
}

absl::Status SqliteJobStore::SetLastEventSeq(const char* operation, const std::string& job_id,
                                             uint64_t seq) {
  sqlite3_stmt* stmt = stmts_->set_last_event_seq.get();
  ScopedReset reset(stmt);
  int rc = Binder(stmt).Text(job_id).Int(static_cast<int64_t>(seq)).rc();
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  return rc == SQLITE_DONE ? absl::OkStatus() : Error(operation, rc);
}

absl::Status SqliteJobStore::InsertListingKeys(const char* operation, int64_t seq,
                                              const v1::Job& job) {
  if (!job.sweep_id().empty()) {
    sqlite3_stmt* stmt = stmts_->set_sweep_id.get();
    ScopedReset reset(stmt);
    int rc = Binder(stmt).Int(seq).Text(job.sweep_id()).rc();
    if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE) return Error(operation, rc);
  }
  for (const auto& [key, value] : job.spec().labels()) {
    sqlite3_stmt* stmt = stmts_->insert_label.get();
    ScopedReset reset(stmt);
    int rc = Binder(stmt).Int(seq).Text(key).Text(value).rc();
    if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
    if (rc != SQLITE_DONE) return Error(operation, rc);
  }
  return absl::OkStatus();
}

absl::StatusOr<CreateJobResult> SqliteJobStore::CreateJob(const v1::Job& job,
                                                          const std::string& idempotency_key,
                                                          const std::string& owner) {
  static constexpr char kOp[] = "create job";
  RETURN_IF_ERROR(CheckNewJob(job));
  std::lock_guard<std::mutex> lock(mu_);
  CreateJobResult result{v1::Job(), false};
  RETURN_IF_ERROR(InTransaction(kOp, [&]() -> absl::Status {
    if (!idempotency_key.empty()) {
      sqlite3_stmt* stmt = stmts_->job_by_idempotency_key.get();
      ScopedReset reset(stmt);
      int rc = Binder(stmt).Text(owner).Text(idempotency_key).rc();
      if (rc != SQLITE_OK) return Error(kOp, rc);
      ASSIGN_OR_RETURN(std::vector<v1::Job> existing, QueryJobs(kOp, stmt));
      if (!existing.empty()) {
        result.job = std::move(existing.front());
        return absl::OkStatus();  // nothing written; COMMIT of an empty transaction is free
      }
    }
    absl::StatusOr<JobRow> same_id = LoadJob(kOp, job.id());
    if (same_id.ok()) {
      return absl::AlreadyExistsError(absl::StrCat("job '", job.id(), "' already exists"));
    }
    if (!absl::IsNotFound(same_id.status())) return same_id.status();

    v1::Job stored = job;
    stored.set_owner(owner);
    stored.set_last_event_seq(1);
    {
      sqlite3_stmt* stmt = stmts_->insert_job.get();
      ScopedReset reset(stmt);
      Binder binder(stmt);
      binder.Text(stored.id()).Text(owner);
      if (idempotency_key.empty()) {
        binder.Null();
      } else {
        binder.Text(idempotency_key);
      }
      int rc = binder.Text(stored.name())
                   .Int(stored.state())
                   .Int(stored.spec().priority())
                   .Int(1)
                   .Blob(Serialize(stored))
                   .Int(job_store_internal::ToMillis(stored.created_at()))
                   .rc();
      if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
      if (rc != SQLITE_DONE) return Error(kOp, rc);
    }
    RETURN_IF_ERROR(InsertListingKeys(kOp, sqlite3_last_insert_rowid(db_), stored));
    v1::JobEvent first = job_store_internal::FirstEvent(stored);
    first.clear_seq();  // InsertEvents numbers it after seq 0
    RETURN_IF_ERROR(InsertEvents(kOp, stored.id(), 0, {std::move(first)}).status());
    result.job = std::move(stored);
    result.created = true;
    return absl::OkStatus();
  }));
  return result;
}

absl::StatusOr<AppendResult> SqliteJobStore::UpdateJobAndAppendEvents(
    const v1::Job& job, const std::vector<v1::JobEvent>& events) {
  static constexpr char kOp[] = "update job";
  RETURN_IF_ERROR(CheckNewEvents(job.id(), events));
  std::lock_guard<std::mutex> lock(mu_);
  AppendResult result;
  RETURN_IF_ERROR(InTransaction(kOp, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(JobRow row, LoadJob(kOp, job.id()));
    if (job.owner() != row.owner) {
      return absl::InvalidArgumentError(absl::StrCat("job.owner: cannot change (job '", job.id(),
                                                     "' belongs to '", row.owner, "')"));
    }
    ASSIGN_OR_RETURN(result.events, InsertEvents(kOp, job.id(), row.last_event_seq, events));
    result.job = job;
    result.job.set_last_event_seq(row.last_event_seq + events.size());
    sqlite3_stmt* stmt = stmts_->update_job.get();
    ScopedReset reset(stmt);
    Binder binder(stmt);
    binder.Text(job.id())
        .Text(result.job.name())
        .Int(result.job.state())
        .Int(result.job.spec().priority())
        .Int(static_cast<int64_t>(result.job.last_event_seq()))
        .Blob(Serialize(result.job));
    if (std::optional<int64_t> finished = job_store_internal::FinishedMillis(result.job)) {
      binder.Int(*finished);
    } else {
      binder.Null();
    }
    int rc = binder.rc();
    if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
    return rc == SQLITE_DONE ? absl::OkStatus() : Error(kOp, rc);
  }));
  return result;
}

absl::StatusOr<v1::Job> SqliteJobStore::GetJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(JobRow row, LoadJob("get job", job_id));
  return std::move(row.job);
}

absl::StatusOr<JobPage> SqliteJobStore::ListJobs(const JobFilter& filter, int page_size,
                                                 const std::string& page_token) {
  static constexpr char kOp[] = "list jobs";
  RETURN_IF_ERROR(CheckFilter(filter));
  ASSIGN_OR_RETURN(int limit, job_store_internal::EffectivePageSize(page_size));
  ASSIGN_OR_RETURN(int64_t after, job_store_internal::DecodePageToken(page_token));
  int64_t state_mask = 0;
  for (v1::JobState state : filter.states) state_mask |= int64_t{1} << state;

  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt =
      (filter.sweep_id.empty() ? stmts_->list_jobs : stmts_->list_jobs_in_sweep).get();
  ScopedReset reset(stmt);
  // One more than the page: whether it comes back says whether there is a next page.
  int rc = Binder(stmt)
               .Int(after)
               .Text(filter.owner)
               .Text(filter.name_prefix)
               .Int(state_mask)
               .Int(limit + 1)
               .Text(filter.sweep_id)
               .Int(static_cast<int64_t>(filter.labels.size()))
               .Text(LabelsJson(filter.labels))
               .rc();
  if (rc != SQLITE_OK) return Error(kOp, rc);
  JobPage page;
  std::vector<int64_t> orders;
  size_t page_bytes = 0;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    ASSIGN_OR_RETURN(v1::Job job, ParseColumn<v1::Job>(stmt, 3, "job"));
    job.set_last_event_seq(static_cast<uint64_t>(sqlite3_column_int64(stmt, 2)));
    const size_t job_bytes = job.ByteSizeLong();
    if (!page.jobs.empty() && page_bytes + job_bytes > limits::kMaxJobPageBytes) {
      // The page is full by size: a further match exists, the next page starts below.
      page.next_page_token = job_store_internal::EncodePageToken(orders.back());
      return page;
    }
    page_bytes += job_bytes;
    orders.push_back(sqlite3_column_int64(stmt, 0));
    page.jobs.push_back(std::move(job));
  }
  if (rc != SQLITE_DONE) return Error(kOp, rc);
  if (page.jobs.size() > static_cast<size_t>(limit)) {
    page.jobs.resize(limit);
    page.next_page_token = job_store_internal::EncodePageToken(orders[limit - 1]);
  }
  return page;
}

absl::StatusOr<std::vector<v1::JobEvent>> SqliteJobStore::ListEvents(const std::string& job_id,
                                                                     uint64_t after_seq,
                                                                     int limit) {
  static constexpr char kOp[] = "list events";
  if (limit <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("limit: must be positive (got ", limit, ")"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  // A read transaction, so "the job exists" and its events come from one snapshot.
  std::vector<v1::JobEvent> events;
  RETURN_IF_ERROR(InReadTransaction(kOp, [&]() -> absl::Status {
    RETURN_IF_ERROR(LoadJob(kOp, job_id).status());
    sqlite3_stmt* stmt = stmts_->list_events.get();
    ScopedReset reset(stmt);
    // after_seq beyond int64 means "after everything": clamp rather than wrap negative.
    int64_t after = after_seq > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX
                                                                 : static_cast<int64_t>(after_seq);
    int rc = Binder(stmt).Text(job_id).Int(after).Int(limit).rc();
    if (rc != SQLITE_OK) return Error(kOp, rc);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      ASSIGN_OR_RETURN(v1::JobEvent event, ParseColumn<v1::JobEvent>(stmt, 0, "event"));
      events.push_back(std::move(event));
    }
    return rc == SQLITE_DONE ? absl::OkStatus() : Error(kOp, rc);
  }));
  return events;
}

absl::StatusOr<std::optional<v1::JobEvent>> SqliteJobStore::AddCheckpoint(
    const v1::Checkpoint& checkpoint, std::optional<v1::JobEvent> event) {
  static constexpr char kOp[] = "add checkpoint";
  RETURN_IF_ERROR(CheckCheckpoint(checkpoint));
  if (event.has_value()) RETURN_IF_ERROR(CheckNewEvents(checkpoint.job_id(), {*event}));
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<v1::JobEvent> appended;
  RETURN_IF_ERROR(InTransaction(kOp, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(JobRow row, LoadJob(kOp, checkpoint.job_id()));
    {
      sqlite3_stmt* stmt = stmts_->checkpoint_by_id.get();
      ScopedReset reset(stmt);
      int rc = Binder(stmt).Text(checkpoint.job_id()).Text(checkpoint.id()).rc();
      if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
      if (rc == SQLITE_ROW) {
        return absl::AlreadyExistsError(absl::StrCat("checkpoint '", checkpoint.id(),
                                                     "' of job '", checkpoint.job_id(),
                                                     "' already exists"));
      }
      if (rc != SQLITE_DONE) return Error(kOp, rc);
    }
    {
      sqlite3_stmt* stmt = stmts_->insert_checkpoint.get();
      ScopedReset reset(stmt);
      int rc = Binder(stmt)
                   .Text(checkpoint.job_id())
                   .Text(checkpoint.id())
                   .Int(static_cast<int64_t>(checkpoint.step()))
                   .Blob(Serialize(checkpoint))
                   .rc();
      if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
      if (rc != SQLITE_DONE) return Error(kOp, rc);
    }
    if (!event.has_value()) return absl::OkStatus();
    ASSIGN_OR_RETURN(std::vector<v1::JobEvent> events,
                     InsertEvents(kOp, checkpoint.job_id(), row.last_event_seq, {*event}));
    RETURN_IF_ERROR(SetLastEventSeq(kOp, checkpoint.job_id(), events.front().seq()));
    appended = std::move(events.front());
    return absl::OkStatus();
  }));
  return appended;
}

absl::StatusOr<std::vector<v1::Checkpoint>> SqliteJobStore::ListCheckpoints(
    const std::string& job_id) {
  static constexpr char kOp[] = "list checkpoints";
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::Checkpoint> checkpoints;
  RETURN_IF_ERROR(InReadTransaction(kOp, [&]() -> absl::Status {
    RETURN_IF_ERROR(LoadJob(kOp, job_id).status());
    ASSIGN_OR_RETURN(checkpoints, QueryCheckpoints(kOp, job_id));
    return absl::OkStatus();
  }));
  return checkpoints;
}

absl::StatusOr<std::vector<v1::Checkpoint>> SqliteJobStore::QueryCheckpoints(
    const char* operation, const std::string& job_id) {
  sqlite3_stmt* stmt = stmts_->list_checkpoints.get();
  ScopedReset reset(stmt);
  int rc = Binder(stmt).Text(job_id).rc();
  if (rc != SQLITE_OK) return Error(operation, rc);
  return ReadMessages<v1::Checkpoint>(operation, stmt, "checkpoint");
}

template <typename Message>
absl::StatusOr<std::vector<Message>> SqliteJobStore::ReadMessages(const char* operation,
                                                                  sqlite3_stmt* stmt,
                                                                  const char* what) {
  std::vector<Message> messages;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    ASSIGN_OR_RETURN(Message message, ParseColumn<Message>(stmt, 0, what));
    messages.push_back(std::move(message));
  }
  if (rc != SQLITE_DONE) return Error(operation, rc);
  return messages;
}

absl::StatusOr<v1::Checkpoint> SqliteJobStore::GetCheckpoint(const std::string& job_id,
                                                             const std::string& checkpoint_id) {
  static constexpr char kOp[] = "get checkpoint";
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = stmts_->checkpoint_by_id.get();
  ScopedReset reset(stmt);
  int rc = Binder(stmt).Text(job_id).Text(checkpoint_id).rc();
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint '", checkpoint_id, "' of job '", job_id, "' not found"));
  }
  if (rc != SQLITE_ROW) return Error(kOp, rc);
  return ParseColumn<v1::Checkpoint>(stmt, 0, "checkpoint");
}

absl::Status SqliteJobStore::UpsertWorker(const v1::Worker& worker) {
  static constexpr char kOp[] = "upsert worker";
  if (worker.name().empty()) return absl::InvalidArgumentError("worker.name: required");
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = stmts_->upsert_worker.get();
  ScopedReset reset(stmt);
  int rc = Binder(stmt).Text(worker.name()).Blob(Serialize(worker)).rc();
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  return rc == SQLITE_DONE ? absl::OkStatus() : Error(kOp, rc);
}

absl::StatusOr<std::vector<v1::Worker>> SqliteJobStore::ListWorkers() {
  std::lock_guard<std::mutex> lock(mu_);
  return QueryWorkers("list workers");
}

absl::StatusOr<std::vector<v1::Worker>> SqliteJobStore::QueryWorkers(const char* operation) {
  sqlite3_stmt* stmt = stmts_->list_workers.get();
  ScopedReset reset(stmt);
  return ReadMessages<v1::Worker>(operation, stmt, "worker");
}

absl::Status SqliteJobStore::DeleteWorker(const std::string& name) {
  static constexpr char kOp[] = "delete worker";
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = stmts_->delete_worker.get();
  ScopedReset reset(stmt);
  int rc = Binder(stmt).Text(name).rc();
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  if (rc != SQLITE_DONE) return Error(kOp, rc);
  if (sqlite3_changes(db_) == 0) {
    return absl::NotFoundError(absl::StrCat("worker '", name, "' not found"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Checkpoint>> SqliteJobStore::DeleteCheckpoints(
    const std::string& job_id, const std::vector<std::string>& checkpoint_ids) {
  static constexpr char kOp[] = "delete checkpoints";
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::Checkpoint> deleted;
  RETURN_IF_ERROR(InTransaction(kOp, [&]() -> absl::Status {
    deleted.clear();
    RETURN_IF_ERROR(LoadJob(kOp, job_id).status());
    for (const std::string& id : checkpoint_ids) {
      v1::Checkpoint checkpoint;
      {
        sqlite3_stmt* stmt = stmts_->checkpoint_by_id.get();
        ScopedReset reset(stmt);
        int rc = Binder(stmt).Text(job_id).Text(id).rc();
        if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
        if (rc == SQLITE_DONE) continue;
        if (rc != SQLITE_ROW) return Error(kOp, rc);
        ASSIGN_OR_RETURN(checkpoint, ParseColumn<v1::Checkpoint>(stmt, 0, "checkpoint"));
      }
      sqlite3_stmt* stmt = stmts_->delete_checkpoint.get();
      ScopedReset reset(stmt);
      int rc = Binder(stmt).Text(job_id).Text(id).rc();
      if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
      if (rc != SQLITE_DONE) return Error(kOp, rc);
      deleted.push_back(std::move(checkpoint));
    }
    return absl::OkStatus();
  }));
  return deleted;
}

absl::StatusOr<std::vector<v1::Checkpoint>> SqliteJobStore::DeleteJob(const std::string& job_id) {
  static constexpr char kOp[] = "delete job";
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::Checkpoint> deleted;
  RETURN_IF_ERROR(InTransaction(kOp, [&]() -> absl::Status {
    deleted.clear();
    ASSIGN_OR_RETURN(JobRow row, LoadJob(kOp, job_id));
    if (!job_store_internal::IsFinalState(row.job.state())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job '", job_id, "' is ", v1::JobState_Name(row.job.state()), ", not final"));
    }
    ASSIGN_OR_RETURN(deleted, QueryCheckpoints(kOp, job_id));
    // The rows that reference the job first (foreign keys are on).
    for (sqlite3_stmt* stmt : {stmts_->delete_job_checkpoints.get(),
                               stmts_->delete_job_events.get(), stmts_->delete_job.get()}) {
      ScopedReset reset(stmt);
      int rc = Binder(stmt).Text(job_id).rc();
      if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
      if (rc != SQLITE_DONE) return Error(kOp, rc);
    }
    return absl::OkStatus();
  }));
  return deleted;
}

absl::StatusOr<std::vector<v1::Job>> SqliteJobStore::ListJobsFinishedBefore(absl::Time cutoff,
                                                                            int limit) {
  static constexpr char kOp[] = "list finished jobs";
  if (limit <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("limit: must be positive (got ", limit, ")"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = stmts_->jobs_finished_before.get();
  ScopedReset reset(stmt);
  int rc = Binder(stmt).Int(absl::ToUnixMillis(cutoff)).Int(limit).rc();
  if (rc != SQLITE_OK) return Error(kOp, rc);
  return QueryJobs(kOp, stmt);
}

absl::StatusOr<int64_t> SqliteJobStore::ExpireIdempotencyKeys(absl::Time cutoff) {
  static constexpr char kOp[] = "expire idempotency keys";
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = stmts_->expire_keys.get();
  ScopedReset reset(stmt);
  int rc = Binder(stmt).Int(absl::ToUnixMillis(cutoff)).rc();
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  if (rc != SQLITE_DONE) return Error(kOp, rc);
  return static_cast<int64_t>(sqlite3_changes(db_));
}

absl::StatusOr<std::vector<v1::Checkpoint>> SqliteJobStore::ListAllCheckpoints() {
  static constexpr char kOp[] = "list all checkpoints";
  std::lock_guard<std::mutex> lock(mu_);
  sqlite3_stmt* stmt = stmts_->all_checkpoints.get();
  ScopedReset reset(stmt);
  return ReadMessages<v1::Checkpoint>(kOp, stmt, "checkpoint");
}

absl::StatusOr<RecoveredState> SqliteJobStore::Recover() {
  static constexpr char kOp[] = "recover";
  RecoveredState state;
  std::lock_guard<std::mutex> lock(mu_);
  // One snapshot for all of it.
  RETURN_IF_ERROR(InReadTransaction(kOp, [&]() -> absl::Status {
    {
      sqlite3_stmt* stmt = stmts_->queued_jobs.get();
      ScopedReset reset(stmt);
      int rc = Binder(stmt).Int(v1::JOB_STATE_QUEUED).rc();
      if (rc != SQLITE_OK) return Error(kOp, rc);
      ASSIGN_OR_RETURN(state.queued, QueryJobs(kOp, stmt));
    }
    {
      sqlite3_stmt* stmt = stmts_->active_jobs.get();
      ScopedReset reset(stmt);
      int rc = Binder(stmt)
                   .Int(v1::JOB_STATE_SCHEDULED)
                   .Int(v1::JOB_STATE_RUNNING)
                   .Int(v1::JOB_STATE_RESTARTING)
                   .rc();
      if (rc != SQLITE_OK) return Error(kOp, rc);
      ASSIGN_OR_RETURN(state.active, QueryJobs(kOp, stmt));
    }
    ASSIGN_OR_RETURN(state.workers, QueryWorkers(kOp));
    return absl::OkStatus();
  }));
  return state;
}

}  // namespace loratrf::server
