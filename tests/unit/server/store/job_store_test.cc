// The JobStore contract, run against both implementations (SQLite on real files, and the
// in-memory fake), then what only SQLite promises: persistence across reopen, refusing files it
// cannot read, schema versions, and atomic transactions under SIGKILL.
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "server/store/in_memory_job_store.h"
#include "server/store/sqlite_job_store.h"

namespace loratrf::server {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

MATCHER_P(EqualsProto, expected, "") {
  std::string diff;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  if (differencer.Compare(arg, expected)) return true;
  *result_listener << diff;
  return false;
}

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "loratrf-store-test-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data()) ? pattern : "";
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) fs::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

v1::Job NewJob(const std::string& id, const std::string& name = "job", int priority = 0) {
  v1::Job job;
  job.set_id(id);
  job.set_name(name);
  job.set_state(v1::JOB_STATE_QUEUED);
  job.set_state_reason("submitted");
  job.set_attempt(1);
  job.mutable_spec()->set_name(name);
  job.mutable_spec()->set_priority(priority);
  job.mutable_created_at()->set_seconds(1700000000);  // equal timestamps: order must not need them
  return job;
}

v1::JobEvent LogEvent(const std::string& text) {
  v1::JobEvent event;
  event.mutable_log()->set_text(text);
  event.mutable_log()->set_rank(-1);
  return event;
}

v1::JobEvent StateEvent(v1::JobState from, v1::JobState to) {
  v1::JobEvent event;
  event.mutable_state_change()->set_from(from);
  event.mutable_state_change()->set_to(to);
  return event;
}

v1::Checkpoint NewCheckpoint(const std::string& job_id, const std::string& id, uint64_t step) {
  v1::Checkpoint checkpoint;
  checkpoint.set_job_id(job_id);
  checkpoint.set_id(id);
  checkpoint.set_step(step);
  checkpoint.set_attempt(1);
  auto* file = checkpoint.add_files();
  file->set_path("adapter/adapter_model.safetensors");
  file->set_size_bytes(1234);
  file->set_sha256(std::string(64, 'a'));
  return checkpoint;
}

v1::Worker NewWorker(const std::string& name, uint32_t slots) {
  v1::Worker worker;
  worker.set_name(name);
  worker.set_slots(slots);
  worker.set_free_slots(slots);
  worker.set_state(v1::WORKER_STATE_READY);
  worker.set_address("10.0.0.1");
  (*worker.mutable_labels())["zone"] = "a";
  return worker;
}

std::vector<std::string> Ids(const std::vector<v1::Job>& jobs) {
  std::vector<std::string> ids;
  for (const v1::Job& job : jobs) ids.push_back(job.id());
  return ids;
}

std::vector<uint64_t> Seqs(const std::vector<v1::JobEvent>& events) {
  std::vector<uint64_t> seqs;
  for (const v1::JobEvent& event : events) seqs.push_back(event.seq());
  return seqs;
}

// ---------------------------------------------------------------------------------------------
// The shared behaviour suite.

struct SqliteStore {
  static std::unique_ptr<JobStore> Open(const std::string& dir) {
    auto store = SqliteJobStore::Open(dir + "/jobs.db");
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(store).value() : nullptr;
  }
};
struct InMemoryStore {
  static std::unique_ptr<JobStore> Open(const std::string&) {
    return std::make_unique<InMemoryJobStore>();
  }
};

template <typename Impl>
class JobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    store_ = Impl::Open(dir_.path());
    ASSERT_NE(store_, nullptr);
  }

  v1::Job Create(const std::string& id, const std::string& name = "job", int priority = 0,
                 const std::string& owner = "alice") {
    auto result = store_->CreateJob(NewJob(id, name, priority), "", owner);
    EXPECT_TRUE(result.ok()) << result.status();
    EXPECT_TRUE(result.ok() && result->created);
    return result.ok() ? result->job : v1::Job();
  }

  // Moves a stored job to `state`, with the state-change event.
  void SetState(const std::string& id, v1::JobState state) {
    auto job = store_->GetJob(id);
    ASSERT_TRUE(job.ok()) << job.status();
    v1::JobState from = job->state();
    job->set_state(state);
    auto result = store_->UpdateJobAndAppendEvents(*job, {StateEvent(from, state)});
    ASSERT_TRUE(result.ok()) << result.status();
  }

  // Every job matching `filter`, following page tokens to the end.
  std::vector<std::string> ListAll(const JobFilter& filter, int page_size) {
    std::vector<std::string> ids;
    std::string token;
    for (int pages = 0; pages < 1000; ++pages) {
      auto page = store_->ListJobs(filter, page_size, token);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      if (page_size > 0) {
        EXPECT_LE(page->jobs.size(), static_cast<size_t>(page_size));
      }
      // A page that says more follow is full (no short pages mid-listing).
      if (!page->next_page_token.empty() && page_size > 0) {
        EXPECT_EQ(page->jobs.size(), static_cast<size_t>(page_size));
      }
      for (const v1::Job& job : page->jobs) ids.push_back(job.id());
      if (page->next_page_token.empty()) break;
      token = page->next_page_token;
    }
    return ids;
  }

  TempDir dir_;
  std::unique_ptr<JobStore> store_;
};

using Implementations = ::testing::Types<SqliteStore, InMemoryStore>;
class ImplementationNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, SqliteStore> ? "Sqlite" : "InMemory";
  }
};
TYPED_TEST_SUITE(JobStoreTest, Implementations, ImplementationNames);

TYPED_TEST(JobStoreTest, CreateJobWritesTheJobWithItsFirstEvent) {
  auto result = this->store_->CreateJob(NewJob("j1", "train"), "", "alice");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->created);
  EXPECT_EQ(result->job.owner(), "alice");
  EXPECT_EQ(result->job.last_event_seq(), 1u);

  auto stored = this->store_->GetJob("j1");
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_THAT(*stored, EqualsProto(result->job));
  EXPECT_EQ(stored->spec().name(), "train");

  auto events = this->store_->ListEvents("j1", 0, 100);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 1u);
  const v1::JobEvent& first = events->front();
  EXPECT_EQ(first.seq(), 1u);
  EXPECT_EQ(first.job_id(), "j1");
  EXPECT_EQ(first.attempt(), 1u);
  EXPECT_EQ(first.time().seconds(), 1700000000);
  ASSERT_TRUE(first.has_state_change());
  EXPECT_EQ(first.state_change().from(), v1::JOB_STATE_UNSPECIFIED);
  EXPECT_EQ(first.state_change().to(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(first.state_change().reason(), "submitted");

  EXPECT_TRUE(absl::IsNotFound(this->store_->GetJob("nope").status()));
}

TYPED_TEST(JobStoreTest, CreateJobIsIdempotentPerOwnerAndKey) {
  auto first = this->store_->CreateJob(NewJob("j1", "first"), "key-1", "alice");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->created);

  // A retry (the coordinator made a new id for it) returns the first job and stores nothing.
  auto retry = this->store_->CreateJob(NewJob("j2", "second"), "key-1", "alice");
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_FALSE(retry->created);
  EXPECT_THAT(retry->job, EqualsProto(first->job));
  EXPECT_TRUE(absl::IsNotFound(this->store_->GetJob("j2").status()));

  // The same key of another owner is another job; no key means no deduplication.
  auto bob = this->store_->CreateJob(NewJob("j3"), "key-1", "bob");
  ASSERT_TRUE(bob.ok()) << bob.status();
  EXPECT_TRUE(bob->created);
  EXPECT_EQ(bob->job.id(), "j3");
  for (const char* id : {"j4", "j5"}) {
    auto unkeyed = this->store_->CreateJob(NewJob(id), "", "alice");
    ASSERT_TRUE(unkeyed.ok()) << unkeyed.status();
    EXPECT_TRUE(unkeyed->created);
  }
  EXPECT_THAT(this->ListAll({}, 0), ElementsAre("j5", "j4", "j3", "j1"));

  // The key still names j1 after j1 changed state.
  this->SetState("j1", v1::JOB_STATE_RUNNING);
  auto later = this->store_->CreateJob(NewJob("j6"), "key-1", "alice");
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_FALSE(later->created);
  EXPECT_EQ(later->job.id(), "j1");
  EXPECT_EQ(later->job.state(), v1::JOB_STATE_RUNNING);
}

TYPED_TEST(JobStoreTest, CreateJobRejectsBadJobs) {
  auto no_id = this->store_->CreateJob(NewJob(""), "", "alice");
  EXPECT_TRUE(absl::IsInvalidArgument(no_id.status())) << no_id.status();
  EXPECT_THAT(no_id.status().message(), HasSubstr("job.id"));

  v1::Job running = NewJob("j1");
  running.set_state(v1::JOB_STATE_RUNNING);
  auto not_queued = this->store_->CreateJob(running, "", "alice");
  EXPECT_TRUE(absl::IsInvalidArgument(not_queued.status())) << not_queued.status();
  EXPECT_THAT(not_queued.status().message(), HasSubstr("job.state"));

  this->Create("j1");
  auto again = this->store_->CreateJob(NewJob("j1"), "", "alice");
  EXPECT_TRUE(absl::IsAlreadyExists(again.status())) << again.status();
  // The failed attempts left no events behind.
  auto events = this->store_->ListEvents("j1", 0, 100);
  ASSERT_TRUE(events.ok());
  EXPECT_THAT(Seqs(*events), ElementsAre(1));
}

TYPED_TEST(JobStoreTest, UpdateAssignsConsecutiveSeqsAndReplacesTheJob) {
  v1::Job job = this->Create("j1");
  job.set_state(v1::JOB_STATE_SCHEDULED);
  job.add_workers("w1");
  job.set_last_event_seq(999);  // the store's count wins
  auto result = this->store_->UpdateJobAndAppendEvents(
      job, {StateEvent(v1::JOB_STATE_QUEUED, v1::JOB_STATE_SCHEDULED), LogEvent("a"),
            LogEvent("b")});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(Seqs(result->events), ElementsAre(2, 3, 4));
  for (const v1::JobEvent& event : result->events) EXPECT_EQ(event.job_id(), "j1");
  EXPECT_EQ(result->job.last_event_seq(), 4u);
  EXPECT_EQ(result->events[2].log().text(), "b");

  auto stored = this->store_->GetJob("j1");
  ASSERT_TRUE(stored.ok());
  EXPECT_THAT(*stored, EqualsProto(result->job));
  EXPECT_EQ(stored->state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_THAT(stored->workers(), ElementsAre("w1"));

  // No events: the job changes, the seq does not.
  stored->mutable_progress()->set_step(7);
  auto quiet = this->store_->UpdateJobAndAppendEvents(*stored, {});
  ASSERT_TRUE(quiet.ok()) << quiet.status();
  EXPECT_EQ(quiet->job.last_event_seq(), 4u);
  EXPECT_EQ(this->store_->GetJob("j1")->progress().step(), 7u);

  auto events = this->store_->ListEvents("j1", 0, 100);
  ASSERT_TRUE(events.ok());
  EXPECT_THAT(Seqs(*events), ElementsAre(1, 2, 3, 4));
  EXPECT_THAT((*events)[3], EqualsProto(result->events[2]));
}

TYPED_TEST(JobStoreTest, UpdateRejectsBadInputAndWritesNothing) {
  v1::Job job = this->Create("j1");
  job.set_state(v1::JOB_STATE_RUNNING);

  v1::JobEvent numbered = LogEvent("x");
  numbered.set_seq(2);
  auto status = this->store_->UpdateJobAndAppendEvents(job, {LogEvent("ok"), numbered}).status();
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("events[1].seq"));

  v1::JobEvent other_job = LogEvent("x");
  other_job.set_job_id("j2");
  status = this->store_->UpdateJobAndAppendEvents(job, {other_job}).status();
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("events[0].job_id"));

  v1::Job stolen = job;
  stolen.set_owner("mallory");
  status = this->store_->UpdateJobAndAppendEvents(stolen, {LogEvent("x")}).status();
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_THAT(status.message(), HasSubstr("owner"));

  v1::Job unknown = NewJob("j9");
  unknown.set_owner("alice");
  status = this->store_->UpdateJobAndAppendEvents(unknown, {LogEvent("x")}).status();
  EXPECT_TRUE(absl::IsNotFound(status)) << status;

  auto stored = this->store_->GetJob("j1");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(stored->last_event_seq(), 1u);
  EXPECT_THAT(Seqs(*this->store_->ListEvents("j1", 0, 100)), ElementsAre(1));
}

TYPED_TEST(JobStoreTest, ConcurrentAppendsAreGaplessPerJob) {
  constexpr int kThreads = 8;
  constexpr int kCallsPerThread = 25;
  const std::vector<std::string> ids = {"a", "b"};
  for (const std::string& id : ids) this->Create(id);

  std::atomic<int> failures{0};
  std::vector<std::vector<uint64_t>> seqs_by_thread(kThreads);  // each thread's, of job "a"
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int call = 0; call < kCallsPerThread; ++call) {
        const std::string& id = ids[(t + call) % ids.size()];
        auto job = this->store_->GetJob(id);
        if (!job.ok()) {
          ++failures;
          continue;
        }
        std::vector<v1::JobEvent> events;
        for (int e = 0; e <= call % 3; ++e) events.push_back(LogEvent(absl::StrCat(t, "/", call)));
        auto result = this->store_->UpdateJobAndAppendEvents(*job, events);
        if (!result.ok() || result->events.size() != events.size()) {
          ++failures;
          continue;
        }
        // One call's events are one consecutive run.
        for (size_t i = 1; i < result->events.size(); ++i) {
          if (result->events[i].seq() != result->events[i - 1].seq() + 1) ++failures;
        }
        if (result->job.last_event_seq() < result->events.back().seq()) ++failures;
        if (id == "a") {
          for (const auto& event : result->events) seqs_by_thread[t].push_back(event.seq());
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);

  uint64_t total = 0;
  for (const std::string& id : ids) {
    auto events = this->store_->ListEvents(id, 0, 100000);
    ASSERT_TRUE(events.ok()) << events.status();
    for (size_t i = 0; i < events->size(); ++i) ASSERT_EQ((*events)[i].seq(), i + 1) << id;
    auto job = this->store_->GetJob(id);
    ASSERT_TRUE(job.ok());
    EXPECT_EQ(job->last_event_seq(), events->size()) << id;
    total += events->size();
  }
  uint64_t appended = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (int call = 0; call < kCallsPerThread; ++call) appended += call % 3 + 1;
  }
  EXPECT_EQ(total, appended + ids.size());  // + each job's first event

  // No seq of job "a" was handed to two callers.
  std::set<uint64_t> seen;
  size_t handed_out = 0;
  for (const auto& seqs : seqs_by_thread) {
    seen.insert(seqs.begin(), seqs.end());
    handed_out += seqs.size();
  }
  EXPECT_EQ(seen.size(), handed_out);
}

TYPED_TEST(JobStoreTest, ListJobsPagesCoverEveryMatchOnceNewestFirst) {
  // 23 jobs: owners alternate, names "train-N" or "eval-N", states spread over all kinds.
  struct Made {
    std::string id, owner, name;
    v1::JobState state;
  };
  std::vector<Made> made;
  const v1::JobState states[] = {v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING,
                                 v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED};
  for (int i = 0; i < 23; ++i) {
    Made m{absl::StrCat("job-", i), i % 2 ? "bob" : "alice",
           absl::StrCat(i % 3 ? "train-" : "eval-", i), states[i % 4]};
    this->Create(m.id, m.name, 0, m.owner);
    if (m.state != v1::JOB_STATE_QUEUED) this->SetState(m.id, m.state);
    made.push_back(m);
  }

  std::vector<JobFilter> filters = {
      {},
      {{}, "bob", ""},
      {{}, "", "train-"},
      {{v1::JOB_STATE_RUNNING, v1::JOB_STATE_FAILED}, "", ""},
      {{v1::JOB_STATE_QUEUED}, "alice", "eval-"},
      {{v1::JOB_STATE_CANCELLED}, "", ""},
      {{}, "carol", ""},
      {{}, "", "train-1"},  // train-1, train-10, ...: a prefix, not a word
  };
  for (size_t f = 0; f < filters.size(); ++f) {
    const JobFilter& filter = filters[f];
    std::vector<std::string> expected;
    for (auto it = made.rbegin(); it != made.rend(); ++it) {
      bool state_ok = filter.states.empty() || std::count(filter.states.begin(),
                                                          filter.states.end(), it->state) > 0;
      bool owner_ok = filter.owner.empty() || filter.owner == it->owner;
      bool name_ok = it->name.rfind(filter.name_prefix, 0) == 0;
      if (state_ok && owner_ok && name_ok) expected.push_back(it->id);
    }
    for (int page_size : {1, 2, 5, 7, 0, 1000, 5000}) {
      EXPECT_EQ(this->ListAll(filter, page_size), expected)
          << "filter " << f << ", page_size " << page_size;
    }
  }
  // The one-shot listing shows the stored jobs themselves.
  auto page = this->store_->ListJobs({{}, "", "eval-0"}, 10, "");
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->jobs.size(), 1u);
  EXPECT_THAT(page->jobs[0], EqualsProto(*this->store_->GetJob("job-0")));
  EXPECT_THAT(page->next_page_token, IsEmpty());
}

// ListJobs by sweep and by labels: every given label must be among the job's, with the same
// value; pagination stays exact with these filters too.
TYPED_TEST(JobStoreTest, ListJobsFiltersBySweepAndLabels) {
  struct Made {
    std::string id, sweep;
    std::map<std::string, std::string> labels;
  };
  std::vector<Made> made;
  for (int i = 0; i < 17; ++i) {
    Made m{absl::StrCat("job-", i), i % 3 == 0 ? "sweep-a" : i % 3 == 1 ? "sweep-b" : "", {}};
    if (i % 2 == 0) m.labels["team"] = "nlp";
    if (i % 2 == 1) m.labels["team"] = "vision";
    if (i % 4 == 0) m.labels["size"] = "small";
    if (i == 5) m.labels["note"] = "a \"quoted\" \\ value";
    v1::Job job = NewJob(m.id);
    job.set_sweep_id(m.sweep);
    job.mutable_spec()->mutable_labels()->insert(m.labels.begin(), m.labels.end());
    auto created = this->store_->CreateJob(job, "", i % 2 ? "bob" : "alice");
    ASSERT_TRUE(created.ok()) << created.status();
    if (i % 5 == 0) this->SetState(m.id, v1::JOB_STATE_RUNNING);  // rewriting keeps both
    made.push_back(m);
  }
  std::vector<JobFilter> filters(7);
  filters[0].sweep_id = "sweep-a";
  filters[1].labels = {{"team", "nlp"}};
  filters[2].labels = {{"team", "nlp"}, {"size", "small"}};
  filters[3].sweep_id = "sweep-b";
  filters[3].labels = {{"team", "vision"}};
  filters[4].labels = {{"team", "nlp"}, {"size", "large"}};  // no job has both
  filters[5].labels = {{"note", "a \"quoted\" \\ value"}};
  filters[6].sweep_id = "sweep-a";
  filters[6].owner = "bob";
  filters[6].labels = {{"team", "vision"}};
  for (size_t f = 0; f < filters.size(); ++f) {
    const JobFilter& filter = filters[f];
    std::vector<std::string> expected;
    for (size_t i = made.size(); i-- > 0;) {
      const Made& m = made[i];
      bool owner_ok = filter.owner.empty() || filter.owner == (i % 2 ? "bob" : "alice");
      bool sweep_ok = filter.sweep_id.empty() || filter.sweep_id == m.sweep;
      bool labels_ok = true;
      for (const auto& [key, value] : filter.labels) {
        auto it = m.labels.find(key);
        labels_ok = labels_ok && it != m.labels.end() && it->second == value;
      }
      if (owner_ok && sweep_ok && labels_ok) expected.push_back(m.id);
    }
    for (int page_size : {1, 2, 3, 0}) {
      EXPECT_EQ(this->ListAll(filter, page_size), expected)
          << "filter " << f << ", page_size " << page_size;
    }
  }
  EXPECT_THAT(this->ListAll(filters[5], 0), ElementsAre("job-5"));
  EXPECT_THAT(this->ListAll(filters[4], 0), IsEmpty());
  // The stored job keeps its sweep and labels.
  auto job = this->store_->GetJob("job-4");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->sweep_id(), "sweep-b");
  EXPECT_EQ(job->spec().labels().at("size"), "small");
}

TYPED_TEST(JobStoreTest, PageTokenIsAPositionThatNewJobsDoNotShift) {
  for (int i = 0; i < 6; ++i) this->Create(absl::StrCat("j", i));
  auto first = this->store_->ListJobs({}, 3, "");
  ASSERT_TRUE(first.ok());
  EXPECT_THAT(Ids(first->jobs), ElementsAre("j5", "j4", "j3"));
  ASSERT_FALSE(first->next_page_token.empty());
  this->Create("j6");  // newer than the whole listing: not on later pages
  auto second = this->store_->ListJobs({}, 3, first->next_page_token);
  ASSERT_TRUE(second.ok());
  EXPECT_THAT(Ids(second->jobs), ElementsAre("j2", "j1", "j0"));
  EXPECT_TRUE(second->next_page_token.empty());
}

// A page is bounded in bytes as well as in count: large jobs come over several pages, each
// within limits::kMaxJobPageBytes, every job once; a job larger than the budget comes alone.
TYPED_TEST(JobStoreTest, ListJobsPagesAreBoundedInBytes) {
  const std::string big_path(60 << 10, 'p');
  constexpr int kJobs = 80;  // about 4.7 MiB in all
  for (int i = 0; i < kJobs; ++i) {
    v1::Job job = NewJob(absl::StrCat("j", i));
    job.mutable_spec()->mutable_model()->set_path(big_path);
    ASSERT_TRUE(this->store_->CreateJob(job, "", "alice").ok());
  }
  std::set<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    auto page = this->store_->ListJobs({}, limits::kMaxJobPageSize, token);
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_FALSE(page->jobs.empty());
    size_t bytes = 0;
    for (const v1::Job& job : page->jobs) {
      bytes += job.ByteSizeLong();
      EXPECT_TRUE(seen.insert(job.id()).second) << job.id() << " twice";
    }
    EXPECT_LE(bytes, limits::kMaxJobPageBytes);
    token = page->next_page_token;
    ++pages;
  } while (!token.empty() && pages < 100);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kJobs));
  EXPECT_GE(pages, 3);

  v1::Job huge = NewJob("huge");
  huge.mutable_spec()->mutable_model()->set_path(std::string(limits::kMaxJobPageBytes + 1, 'h'));
  ASSERT_TRUE(this->store_->CreateJob(huge, "", "alice").ok());
  auto first = this->store_->ListJobs({}, 10, "");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(Ids(first->jobs), ElementsAre("huge"));
  EXPECT_FALSE(first->next_page_token.empty());
}

TYPED_TEST(JobStoreTest, ListJobsRejectsBadArguments) {
  this->Create("j1");
  const std::string bad_tokens[] = {
      "not-a-token",
      "%%%",
      absl::WebSafeBase64Escape("something.else:3"),
      absl::WebSafeBase64Escape("loratrf.jobs.v1:"),
      absl::WebSafeBase64Escape("loratrf.jobs.v1:-4"),
      absl::WebSafeBase64Escape("loratrf.jobs.v1:0"),
      absl::WebSafeBase64Escape("loratrf.jobs.v1:12x"),
  };
  for (const std::string& token : bad_tokens) {
    auto page = this->store_->ListJobs({}, 10, token);
    EXPECT_TRUE(absl::IsInvalidArgument(page.status())) << token << ": " << page.status();
    EXPECT_THAT(page.status().message(), HasSubstr("page_token")) << token;
  }
  auto negative = this->store_->ListJobs({}, -1, "");
  EXPECT_TRUE(absl::IsInvalidArgument(negative.status())) << negative.status();
  EXPECT_THAT(negative.status().message(), HasSubstr("page_size"));
  auto bad_state = this->store_->ListJobs({{static_cast<v1::JobState>(42)}, "", ""}, 10, "");
  EXPECT_TRUE(absl::IsInvalidArgument(bad_state.status())) << bad_state.status();
  auto unspecified = this->store_->ListJobs({{v1::JOB_STATE_UNSPECIFIED}, "", ""}, 10, "");
  EXPECT_TRUE(absl::IsInvalidArgument(unspecified.status())) << unspecified.status();
}

TYPED_TEST(JobStoreTest, ListEventsReadsAfterASeqUpToALimit) {
  v1::Job job = this->Create("j1");
  std::vector<v1::JobEvent> events;
  for (int i = 2; i <= 10; ++i) events.push_back(LogEvent(absl::StrCat("line ", i)));
  ASSERT_TRUE(this->store_->UpdateJobAndAppendEvents(job, events).ok());

  auto head = this->store_->ListEvents("j1", 0, 3);
  ASSERT_TRUE(head.ok());
  EXPECT_THAT(Seqs(*head), ElementsAre(1, 2, 3));
  auto tail = this->store_->ListEvents("j1", 3, 100);
  ASSERT_TRUE(tail.ok());
  EXPECT_THAT(Seqs(*tail), ElementsAre(4, 5, 6, 7, 8, 9, 10));
  EXPECT_EQ((*tail)[0].log().text(), "line 4");
  auto middle = this->store_->ListEvents("j1", 7, 2);
  ASSERT_TRUE(middle.ok());
  EXPECT_THAT(Seqs(*middle), ElementsAre(8, 9));
  for (uint64_t after : {uint64_t{10}, uint64_t{11}, ~uint64_t{0}}) {
    auto none = this->store_->ListEvents("j1", after, 5);
    ASSERT_TRUE(none.ok()) << none.status();
    EXPECT_THAT(*none, IsEmpty()) << after;
  }
  EXPECT_TRUE(absl::IsInvalidArgument(this->store_->ListEvents("j1", 0, 0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(this->store_->ListEvents("j1", 0, -1).status()));
  EXPECT_TRUE(absl::IsNotFound(this->store_->ListEvents("nope", 0, 5).status()));
}

TYPED_TEST(JobStoreTest, CheckpointsWithTheirEvents) {
  this->Create("j1");
  this->Create("j2");
  // Added out of step order; listed by step, ties in the order added.
  for (const auto& [id, step] : std::vector<std::pair<std::string, uint64_t>>{
           {"c-100", 100}, {"c-50", 50}, {"c-100b", 100}}) {
    auto added = this->store_->AddCheckpoint(NewCheckpoint("j1", id, step), std::nullopt);
    ASSERT_TRUE(added.ok()) << added.status();
    EXPECT_FALSE(added->has_value());
  }
  EXPECT_EQ(this->store_->GetJob("j1")->last_event_seq(), 1u);  // no event asked for

  v1::JobEvent event;
  *event.mutable_checkpoint() = NewCheckpoint("j1", "c-150", 150);
  event.set_attempt(1);
  auto with_event = this->store_->AddCheckpoint(NewCheckpoint("j1", "c-150", 150), event);
  ASSERT_TRUE(with_event.ok()) << with_event.status();
  ASSERT_TRUE(with_event->has_value());
  EXPECT_EQ((*with_event)->seq(), 2u);
  EXPECT_EQ((*with_event)->job_id(), "j1");
  EXPECT_EQ((*with_event)->checkpoint().id(), "c-150");
  EXPECT_EQ(this->store_->GetJob("j1")->last_event_seq(), 2u);
  auto events = this->store_->ListEvents("j1", 1, 10);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 1u);
  EXPECT_THAT(events->front(), EqualsProto(**with_event));

  // The next update continues after the checkpoint's event.
  auto job = this->store_->GetJob("j1");
  auto update = this->store_->UpdateJobAndAppendEvents(*job, {LogEvent("after")});
  ASSERT_TRUE(update.ok());
  EXPECT_THAT(Seqs(update->events), ElementsAre(3));

  auto list = this->store_->ListCheckpoints("j1");
  ASSERT_TRUE(list.ok()) << list.status();
  std::vector<std::string> ids;
  for (const auto& checkpoint : *list) ids.push_back(checkpoint.id());
  EXPECT_THAT(ids, ElementsAre("c-50", "c-100", "c-100b", "c-150"));
  EXPECT_THAT((*list)[0], EqualsProto(NewCheckpoint("j1", "c-50", 50)));
  auto none = this->store_->ListCheckpoints("j2");
  ASSERT_TRUE(none.ok());
  EXPECT_THAT(*none, IsEmpty());

  auto got = this->store_->GetCheckpoint("j1", "c-100b");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(*got, EqualsProto(NewCheckpoint("j1", "c-100b", 100)));
  EXPECT_TRUE(absl::IsNotFound(this->store_->GetCheckpoint("j2", "c-100b").status()));
  EXPECT_TRUE(absl::IsNotFound(this->store_->GetCheckpoint("j9", "c-100b").status()));

  // A repeated id is refused, and its event is not appended.
  auto duplicate = this->store_->AddCheckpoint(NewCheckpoint("j1", "c-50", 60), LogEvent("dup"));
  EXPECT_TRUE(absl::IsAlreadyExists(duplicate.status())) << duplicate.status();
  EXPECT_EQ(this->store_->GetJob("j1")->last_event_seq(), 3u);
  EXPECT_EQ(this->store_->ListEvents("j1", 0, 100)->size(), 3u);
  // The same id in another job is another checkpoint.
  EXPECT_TRUE(this->store_->AddCheckpoint(NewCheckpoint("j2", "c-50", 50), std::nullopt).ok());

  auto unknown_job = this->store_->AddCheckpoint(NewCheckpoint("j9", "c", 1), std::nullopt);
  EXPECT_TRUE(absl::IsNotFound(unknown_job.status())) << unknown_job.status();
  EXPECT_TRUE(absl::IsNotFound(this->store_->ListCheckpoints("j9").status()));
  auto no_id = this->store_->AddCheckpoint(NewCheckpoint("j1", "", 1), std::nullopt);
  EXPECT_TRUE(absl::IsInvalidArgument(no_id.status())) << no_id.status();
  v1::JobEvent numbered = LogEvent("x");
  numbered.set_seq(4);
  auto bad_event = this->store_->AddCheckpoint(NewCheckpoint("j1", "c-200", 200), numbered);
  EXPECT_TRUE(absl::IsInvalidArgument(bad_event.status())) << bad_event.status();
  EXPECT_TRUE(absl::IsNotFound(this->store_->GetCheckpoint("j1", "c-200").status()));
}

TYPED_TEST(JobStoreTest, WorkersUpsertListDelete) {
  ASSERT_TRUE(this->store_->UpsertWorker(NewWorker("node-b", 2)).ok());
  ASSERT_TRUE(this->store_->UpsertWorker(NewWorker("node-a", 4)).ok());
  v1::Worker busy = NewWorker("node-b", 2);
  busy.set_free_slots(0);
  busy.add_running_jobs("j1");
  busy.mutable_lease_expires_at()->set_seconds(1700000100);
  (*busy.mutable_labels())["gpu"] = "h100";
  ASSERT_TRUE(this->store_->UpsertWorker(busy).ok());

  auto workers = this->store_->ListWorkers();
  ASSERT_TRUE(workers.ok()) << workers.status();
  ASSERT_EQ(workers->size(), 2u);
  EXPECT_THAT((*workers)[0], EqualsProto(NewWorker("node-a", 4)));
  EXPECT_THAT((*workers)[1], EqualsProto(busy));

  ASSERT_TRUE(this->store_->DeleteWorker("node-a").ok());
  EXPECT_TRUE(absl::IsNotFound(this->store_->DeleteWorker("node-a")));
  workers = this->store_->ListWorkers();
  ASSERT_TRUE(workers.ok());
  ASSERT_EQ(workers->size(), 1u);
  EXPECT_EQ((*workers)[0].name(), "node-b");

  EXPECT_TRUE(absl::IsInvalidArgument(this->store_->UpsertWorker(NewWorker("", 1))));
}

TYPED_TEST(JobStoreTest, RecoverQueuesByPriorityThenFifoAndKeepsActiveJobs) {
  // All created in the same second: only the creation order tells them apart.
  this->Create("low-1", "low", -1);
  this->Create("mid-1", "mid", 0);
  this->Create("high-1", "high", 5);
  this->Create("mid-2", "mid", 0);
  this->Create("running", "run", 9);
  this->Create("high-2", "high", 5);
  this->Create("done", "done", 9);
  this->Create("scheduled", "sch", 0);
  this->Create("mid-3", "mid", 0);
  this->Create("restarting", "rst", 0);
  this->Create("failed", "f", 9);
  this->Create("cancelled", "c", 9);
  this->Create("requeued", "rq", 0);  // went to RUNNING and back: keeps its place in the queue
  this->SetState("running", v1::JOB_STATE_RUNNING);
  this->SetState("done", v1::JOB_STATE_SUCCEEDED);
  this->SetState("scheduled", v1::JOB_STATE_SCHEDULED);
  this->SetState("restarting", v1::JOB_STATE_RESTARTING);
  this->SetState("failed", v1::JOB_STATE_FAILED);
  this->SetState("cancelled", v1::JOB_STATE_CANCELLED);
  this->SetState("requeued", v1::JOB_STATE_RUNNING);
  this->SetState("requeued", v1::JOB_STATE_QUEUED);
  // A priority raised after submission counts.
  auto mid3 = this->store_->GetJob("mid-3");
  ASSERT_TRUE(mid3.ok());
  mid3->mutable_spec()->set_priority(5);
  ASSERT_TRUE(this->store_->UpdateJobAndAppendEvents(*mid3, {}).ok());
  ASSERT_TRUE(this->store_->UpsertWorker(NewWorker("w2", 1)).ok());
  ASSERT_TRUE(this->store_->UpsertWorker(NewWorker("w1", 1)).ok());

  auto state = this->store_->Recover();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_THAT(Ids(state->queued),
              ElementsAre("high-1", "high-2", "mid-3", "mid-1", "mid-2", "requeued", "low-1"));
  EXPECT_THAT(Ids(state->active), ElementsAre("running", "scheduled", "restarting"));
  ASSERT_EQ(state->workers.size(), 2u);
  EXPECT_EQ(state->workers[0].name(), "w1");
  EXPECT_EQ(state->workers[1].name(), "w2");
  // Recovered jobs are the stored ones, seq counters included.
  EXPECT_THAT(state->active[0], EqualsProto(*this->store_->GetJob("running")));
  EXPECT_EQ(state->queued[5].last_event_seq(), 3u);
}

// ---------------------------------------------------------------------------------------------
// SQLite only.

class SqliteJobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }
  std::string DbPath() const { return dir_.path() + "/jobs.db"; }
  std::unique_ptr<SqliteJobStore> Open() {
    auto store = SqliteJobStore::Open(DbPath());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(store).value() : nullptr;
  }
  TempDir dir_;
};

// Runs one statement on the file with the plain SQLite API; returns the first column of the
// first row as text ("" when there is none).
// ---- garbage collection ----------------------------------------------------------------------

TYPED_TEST(JobStoreTest, DeleteCheckpointsRemovesOnlyTheNamedRecords) {
  JobStore& store = *this->store_;
  this->Create("j1");
  this->Create("j2");
  for (uint64_t step : {10, 20, 30}) {
    ASSERT_TRUE(store.AddCheckpoint(NewCheckpoint("j1", absl::StrCat("s", step), step),
                                    std::nullopt).ok());
  }
  ASSERT_TRUE(store.AddCheckpoint(NewCheckpoint("j2", "s10", 10), std::nullopt).ok());

  auto deleted = store.DeleteCheckpoints("j1", {"s10", "s30", "no-such"});
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  ASSERT_EQ(deleted->size(), 2u);
  EXPECT_EQ((*deleted)[0].id(), "s10");
  EXPECT_EQ((*deleted)[1].id(), "s30");
  EXPECT_EQ((*deleted)[0].files(0).size_bytes(), 1234u);  // the record, for the caller's files
  auto left = store.ListCheckpoints("j1");
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ(left->front().id(), "s20");
  EXPECT_TRUE(absl::IsNotFound(store.GetCheckpoint("j1", "s10").status()));
  EXPECT_TRUE(store.GetCheckpoint("j2", "s10").ok());  // another job's same id stays
  // Deleting again is a no-op; an unknown job is NotFound.
  auto again = store.DeleteCheckpoints("j1", {"s10"});
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
  EXPECT_TRUE(absl::IsNotFound(store.DeleteCheckpoints("nope", {"s10"}).status()));
  // A deleted id may be recorded again (a retried upload after a crash).
  EXPECT_TRUE(store.AddCheckpoint(NewCheckpoint("j1", "s10", 10), std::nullopt).ok());
}

TYPED_TEST(JobStoreTest, DeleteJobPurgesRecordEventsCheckpointsAndKey) {
  JobStore& store = *this->store_;
  auto first = store.CreateJob(NewJob("j1"), "key-1", "alice");
  ASSERT_TRUE(first.ok() && first->created);
  this->Create("j2");
  ASSERT_TRUE(store.AddCheckpoint(NewCheckpoint("j1", "s10", 10), std::nullopt).ok());
  ASSERT_TRUE(store.AddCheckpoint(NewCheckpoint("j1", "s20", 20), LogEvent("ckpt")).ok());

  // Not final: refused, nothing removed.
  EXPECT_EQ(store.DeleteJob("j1").status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store.GetJob("j1").ok());
  EXPECT_TRUE(absl::IsNotFound(store.DeleteJob("nope").status()));

  this->SetState("j1", v1::JOB_STATE_SUCCEEDED);
  auto deleted = store.DeleteJob("j1");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  ASSERT_EQ(deleted->size(), 2u);
  EXPECT_EQ((*deleted)[0].id(), "s10");
  EXPECT_EQ((*deleted)[1].id(), "s20");
  EXPECT_TRUE(absl::IsNotFound(store.GetJob("j1").status()));
  EXPECT_TRUE(absl::IsNotFound(store.ListEvents("j1", 0, 10).status()));
  EXPECT_TRUE(absl::IsNotFound(store.ListCheckpoints("j1").status()));
  EXPECT_EQ(this->ListAll(JobFilter{}, 0), std::vector<std::string>{"j2"});
  auto all = store.ListAllCheckpoints();
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->empty());
  // The key went with the job: it makes a new one now.
  auto second = store.CreateJob(NewJob("j3"), "key-1", "alice");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->created);
  EXPECT_EQ(second->job.id(), "j3");
  // So does the id.
  EXPECT_TRUE(store.CreateJob(NewJob("j1"), "", "alice").ok());
}

TYPED_TEST(JobStoreTest, ListJobsFinishedBeforeIsOldestFirstAndBounded) {
  JobStore& store = *this->store_;
  // j1 finished at t=300, j2 at t=100, j3 at t=200, j4 still running, j5 finished at t=900.
  const std::map<std::string, int64_t> finished = {
      {"j1", 300}, {"j2", 100}, {"j3", 200}, {"j5", 900}};
  for (const char* id : {"j1", "j2", "j3", "j4", "j5"}) this->Create(id);
  for (const auto& [id, at] : finished) {
    auto job = store.GetJob(id);
    ASSERT_TRUE(job.ok());
    job->set_state(v1::JOB_STATE_FAILED);
    job->mutable_finished_at()->set_seconds(at);
    ASSERT_TRUE(store.UpdateJobAndAppendEvents(*job, {}).ok());
  }
  this->SetState("j4", v1::JOB_STATE_RUNNING);

  auto jobs = store.ListJobsFinishedBefore(absl::FromUnixSeconds(500), 10);
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_THAT(Ids(*jobs), ElementsAre("j2", "j3", "j1"));
  jobs = store.ListJobsFinishedBefore(absl::FromUnixSeconds(500), 2);
  ASSERT_TRUE(jobs.ok());
  EXPECT_THAT(Ids(*jobs), ElementsAre("j2", "j3"));
  jobs = store.ListJobsFinishedBefore(absl::FromUnixSeconds(100), 10);  // strictly before
  ASSERT_TRUE(jobs.ok());
  EXPECT_THAT(*jobs, IsEmpty());
  EXPECT_EQ(store.ListJobsFinishedBefore(absl::FromUnixSeconds(500), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TYPED_TEST(JobStoreTest, ExpiredIdempotencyKeysNameNewJobs) {
  JobStore& store = *this->store_;
  v1::Job old_job = NewJob("j-old");
  old_job.mutable_created_at()->set_seconds(1000);
  v1::Job new_job = NewJob("j-new");
  new_job.mutable_created_at()->set_seconds(5000);
  ASSERT_TRUE(store.CreateJob(old_job, "old-key", "alice").ok());
  ASSERT_TRUE(store.CreateJob(new_job, "new-key", "alice").ok());

  auto expired = store.ExpireIdempotencyKeys(absl::FromUnixSeconds(2000));
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, 1);
  EXPECT_TRUE(store.GetJob("j-old").ok());  // the job stays
  auto again = store.CreateJob(NewJob("j-again"), "old-key", "alice");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->created);
  auto replay = store.CreateJob(NewJob("j-other"), "new-key", "alice");
  ASSERT_TRUE(replay.ok());
  EXPECT_FALSE(replay->created);
  EXPECT_EQ(replay->job.id(), "j-new");
  expired = store.ExpireIdempotencyKeys(absl::FromUnixSeconds(2000));
  ASSERT_TRUE(expired.ok());
  EXPECT_EQ(*expired, 0);
}

TYPED_TEST(JobStoreTest, ListAllCheckpointsNamesEveryRecord) {
  JobStore& store = *this->store_;
  this->Create("j2");
  this->Create("j1");
  ASSERT_TRUE(store.AddCheckpoint(NewCheckpoint("j2", "b", 20), std::nullopt).ok());
  ASSERT_TRUE(store.AddCheckpoint(NewCheckpoint("j2", "a", 10), std::nullopt).ok());
  ASSERT_TRUE(store.AddCheckpoint(NewCheckpoint("j1", "c", 5), std::nullopt).ok());
  auto all = store.ListAllCheckpoints();
  ASSERT_TRUE(all.ok()) << all.status();
  std::vector<std::string> names;
  for (const v1::Checkpoint& c : *all) names.push_back(c.job_id() + "/" + c.id());
  EXPECT_THAT(names, ElementsAre("j1/c", "j2/a", "j2/b"));
}

// ---------------------------------------------------------------------------------------------

std::string RawQuery(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  std::string value;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW && sqlite3_column_text(stmt, 0) != nullptr) {
    value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  }
  EXPECT_TRUE(rc == SQLITE_ROW || rc == SQLITE_DONE) << sqlite3_errmsg(db);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return value;
}

TEST_F(SqliteJobStoreTest, ReopeningTheFileKeepsEverything) {
  v1::Job job;
  std::vector<v1::JobEvent> events;
  std::string page_token;
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    auto created = store->CreateJob(NewJob("j1", "train", 3), "key", "alice");
    ASSERT_TRUE(created.ok());
    for (int i = 2; i <= 4; ++i) ASSERT_TRUE(store->CreateJob(NewJob(absl::StrCat("j", i)), "", "bob").ok());
    job = created->job;
    job.set_state(v1::JOB_STATE_RUNNING);
    job.mutable_latest_train()->set_loss(0.25);
    auto updated = store->UpdateJobAndAppendEvents(
        job, {StateEvent(v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING), LogEvent("go")});
    ASSERT_TRUE(updated.ok());
    job = updated->job;
    v1::JobEvent checkpoint_event;
    *checkpoint_event.mutable_checkpoint() = NewCheckpoint("j1", "c1", 10);
    ASSERT_TRUE(store->AddCheckpoint(NewCheckpoint("j1", "c1", 10), checkpoint_event).ok());
    job.set_last_event_seq(4);
    ASSERT_TRUE(store->UpsertWorker(NewWorker("w1", 2)).ok());
    events = *store->ListEvents("j1", 0, 100);
    auto page = store->ListJobs({}, 2, "");
    ASSERT_TRUE(page.ok());
    EXPECT_THAT(Ids(page->jobs), ElementsAre("j4", "j3"));
    page_token = page->next_page_token;
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto stored = store->GetJob("j1");
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_THAT(*stored, EqualsProto(job));
  auto reread = store->ListEvents("j1", 0, 100);
  ASSERT_TRUE(reread.ok());
  ASSERT_EQ(reread->size(), 4u);
  for (size_t i = 0; i < events.size(); ++i) EXPECT_THAT((*reread)[i], EqualsProto(events[i]));
  auto checkpoint = store->GetCheckpoint("j1", "c1");
  ASSERT_TRUE(checkpoint.ok());
  EXPECT_THAT(*checkpoint, EqualsProto(NewCheckpoint("j1", "c1", 10)));
  auto workers = store->ListWorkers();
  ASSERT_TRUE(workers.ok());
  ASSERT_EQ(workers->size(), 1u);
  EXPECT_THAT((*workers)[0], EqualsProto(NewWorker("w1", 2)));
  // The idempotency key, the page token and the creation order all outlive the process.
  auto retry = store->CreateJob(NewJob("j-retry"), "key", "alice");
  ASSERT_TRUE(retry.ok());
  EXPECT_FALSE(retry->created);
  EXPECT_EQ(retry->job.id(), "j1");
  auto page = store->ListJobs({}, 2, page_token);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_THAT(Ids(page->jobs), ElementsAre("j2", "j1"));
  ASSERT_TRUE(store->CreateJob(NewJob("j5"), "", "bob").ok());
  auto newest = store->ListJobs({}, 1, "");
  ASSERT_TRUE(newest.ok());
  EXPECT_THAT(Ids(newest->jobs), ElementsAre("j5"));
  auto recovered = store->Recover();
  ASSERT_TRUE(recovered.ok());
  EXPECT_THAT(Ids(recovered->queued), ElementsAre("j2", "j3", "j4", "j5"));
  EXPECT_THAT(Ids(recovered->active), ElementsAre("j1"));
}

// Group commit: writes return before their fsync; Sync makes them durable (an fdatasync of the
// WAL, which leaves no trace to assert on), and what was written is all there when reopened.
TEST_F(SqliteJobStoreTest, GroupCommitSyncsTheWalAndKeepsEveryWrite) {
  {
    auto store = SqliteJobStore::Open(DbPath(), SqliteJobStore::SyncMode::kGroupCommit);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_TRUE((*store)->Sync().ok()) << "nothing written yet";
    for (int i = 1; i <= 3; ++i) {
      ASSERT_TRUE((*store)->CreateJob(NewJob(absl::StrCat("j", i)), "", "alice").ok());
    }
    ASSERT_TRUE((*store)->Sync().ok());
    ASSERT_TRUE((*store)->UpsertWorker(NewWorker("w1", 2)).ok());
    ASSERT_TRUE((*store)->Sync().ok());
    ASSERT_TRUE((*store)->Sync().ok()) << "nothing new: still fine";
  }
  auto store = Open();  // every-commit mode on the same file: the modes share the format
  ASSERT_NE(store, nullptr);
  auto recovered = store->Recover();
  ASSERT_TRUE(recovered.ok());
  EXPECT_THAT(Ids(recovered->queued), ElementsAre("j1", "j2", "j3"));
  ASSERT_EQ(recovered->workers.size(), 1u);
  EXPECT_TRUE(store->Sync().ok());
}

TEST_F(SqliteJobStoreTest, UsesWalAndRecordsTheSchemaVersion) {
  ASSERT_NE(Open(), nullptr);
  EXPECT_EQ(RawQuery(DbPath(), "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(RawQuery(DbPath(), "PRAGMA user_version"),
            std::to_string(SqliteJobStore::SchemaVersion()));
  EXPECT_GE(SqliteJobStore::SchemaVersion(), 1);
}

TEST_F(SqliteJobStoreTest, MigratesAnEmptyDatabaseFromVersionZero) {
  // An existing SQLite file at version 0 (say, made by hand) gets the schema and keeps its data.
  RawQuery(DbPath(), "CREATE TABLE notes (text TEXT)");
  RawQuery(DbPath(), "INSERT INTO notes VALUES ('kept')");
  ASSERT_EQ(RawQuery(DbPath(), "PRAGMA user_version"), "0");
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->CreateJob(NewJob("j1"), "", "alice").ok());
  store.reset();
  EXPECT_EQ(RawQuery(DbPath(), "PRAGMA user_version"),
            std::to_string(SqliteJobStore::SchemaVersion()));
  EXPECT_EQ(RawQuery(DbPath(), "SELECT text FROM notes"), "kept");
  EXPECT_EQ(RawQuery(DbPath(), "SELECT id FROM jobs"), "j1");
}

// Version 1 → 2 adds the sweep column and the labels table: a file from version 1 keeps its
// jobs, which match no sweep or label (they had neither), and new jobs are found by both.
TEST_F(SqliteJobStoreTest, MigratesAVersionTwoFileToSweepsAndLabels) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->CreateJob(NewJob("old"), "", "alice").ok());
  }
  // Back to version 2 by hand: what a coordinator of that version left.
  for (const char* sql : {"DROP TRIGGER job_labels_follow_jobs", "DROP INDEX jobs_by_sweep",
                          "DROP TABLE job_labels", "ALTER TABLE jobs DROP COLUMN sweep_id",
                          "PRAGMA user_version = 2"}) {
    RawQuery(DbPath(), sql);
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(RawQuery(DbPath(), "PRAGMA user_version"),
            std::to_string(SqliteJobStore::SchemaVersion()));
  v1::Job labelled = NewJob("new");
  labelled.set_sweep_id("s-1");
  (*labelled.mutable_spec()->mutable_labels())["team"] = "nlp";
  ASSERT_TRUE(store->CreateJob(labelled, "", "alice").ok());
  JobFilter by_sweep;
  by_sweep.sweep_id = "s-1";
  JobFilter by_label;
  by_label.labels = {{"team", "nlp"}};
  for (const JobFilter& filter : {JobFilter{}, by_sweep, by_label}) {
    auto page = store->ListJobs(filter, 10, "");
    ASSERT_TRUE(page.ok()) << page.status();
    const bool any = filter.sweep_id.empty() && filter.labels.empty();
    const std::vector<std::string> expected =
        any ? std::vector<std::string>{"new", "old"} : std::vector<std::string>{"new"};
    EXPECT_EQ(Ids(page->jobs), expected);
  }
}

TEST_F(SqliteJobStoreTest, RefusesADatabaseFromANewerVersion) {
  const int future = SqliteJobStore::SchemaVersion() + 7;
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->CreateJob(NewJob("j1"), "", "alice").ok());
  }
  RawQuery(DbPath(), absl::StrCat("PRAGMA user_version = ", future));
  auto store = SqliteJobStore::Open(DbPath());
  ASSERT_FALSE(store.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(store.status())) << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr(absl::StrCat("version ", future)));
  EXPECT_THAT(store.status().message(),
              HasSubstr(absl::StrCat("(", SqliteJobStore::SchemaVersion(), ")")));
  EXPECT_THAT(store.status().message(), HasSubstr(DbPath()));
  // Refusing changed nothing: the version and the data are as they were.
  EXPECT_EQ(RawQuery(DbPath(), "PRAGMA user_version"), std::to_string(future));
  EXPECT_EQ(RawQuery(DbPath(), "SELECT id FROM jobs"), "j1");
}

TEST_F(SqliteJobStoreTest, AFileThatIsNotADatabaseIsAnErrorNotACrash) {
  std::mt19937 random(7);
  std::string garbage;
  for (int i = 0; i < 8192; ++i) garbage.push_back(static_cast<char>(random()));
  const std::string contents[] = {garbage, "name,state\nj1,QUEUED\n" + std::string(4096, 'x')};
  for (const std::string& content : contents) {
    {
      std::ofstream out(DbPath(), std::ios::binary | std::ios::trunc);
      out << content;
    }
    auto store = SqliteJobStore::Open(DbPath());
    ASSERT_FALSE(store.ok());
    EXPECT_TRUE(absl::IsDataLoss(store.status())) << store.status();
    EXPECT_THAT(store.status().message(), HasSubstr(DbPath()));
    EXPECT_THAT(store.status().message(), HasSubstr("not a SQLite database"));
    // The file is left as it was.
    std::ifstream in(DbPath(), std::ios::binary);
    std::string after((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(after, content);
  }
}

TEST_F(SqliteJobStoreTest, AnUnusablePathIsAnError) {
  auto in_missing_dir = SqliteJobStore::Open(dir_.path() + "/no/such/dir/jobs.db");
  EXPECT_FALSE(in_missing_dir.ok());
  EXPECT_THAT(in_missing_dir.status().message(), HasSubstr("no/such/dir"));
  auto a_directory = SqliteJobStore::Open(dir_.path());
  EXPECT_FALSE(a_directory.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(SqliteJobStore::Open("").status()));
}

TEST_F(SqliteJobStoreTest, ASecondStoreOnTheSameFileSeesTheFirstOnesWrites) {
  auto first = Open();
  auto second = Open();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(first->CreateJob(NewJob("j1"), "", "alice").ok());
  auto job = second->GetJob("j1");
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(second->UpdateJobAndAppendEvents(*job, {LogEvent("from second")}).ok());
  auto events = first->ListEvents("j1", 0, 10);
  ASSERT_TRUE(events.ok());
  EXPECT_THAT(Seqs(*events), ElementsAre(1, 2));
}

// The child's loop: new jobs, each given updates (1-4 events) and checkpoints (with an event),
// until it is killed. Every train event records the seq the writer expected it to get, and a
// job's progress.step the seq of the last train event written with it, so a torn transaction
// would show up as a mismatch. Writes one byte to `ready_fd` after the first commit.
[[noreturn]] void WriteUntilKilled(const std::string& path, int round, int ready_fd) {
  auto opened = SqliteJobStore::Open(path);
  if (!opened.ok()) ::_exit(3);
  std::unique_ptr<SqliteJobStore> store = std::move(opened).value();
  std::mt19937 random(static_cast<unsigned>(::getpid()));
  bool told = false;
  for (int j = 0;; ++j) {
    auto created = store->CreateJob(NewJob(absl::StrCat("r", round, "-job-", j)), "", "crash");
    if (!created.ok()) ::_exit(4);
    v1::Job job = created->job;
    if (!told) {
      if (::write(ready_fd, "x", 1) != 1) ::_exit(5);
      told = true;
    }
    for (int u = 0; u < 20; ++u) {
      if (u % 5 == 4) {
        v1::JobEvent event;
        *event.mutable_checkpoint() = NewCheckpoint(job.id(), absl::StrCat("c", u), u);
        auto added = store->AddCheckpoint(event.checkpoint(), event);
        if (!added.ok() || !added->has_value()) ::_exit(6);
        job.set_last_event_seq((*added)->seq());
        continue;
      }
      std::vector<v1::JobEvent> events;
      int count = 1 + static_cast<int>(random() % 4);
      for (int e = 1; e <= count; ++e) {
        v1::JobEvent event;
        event.mutable_train()->set_step(job.last_event_seq() + e);
        events.push_back(event);
      }
      job.mutable_progress()->set_step(job.last_event_seq() + count);
      auto result = store->UpdateJobAndAppendEvents(job, events);
      if (!result.ok()) ::_exit(7);
      job = result->job;
    }
  }
}

TEST_F(SqliteJobStoreTest, SigkillMidWriteLeavesEveryJobConsistent) {
  std::random_device seed;
  std::mt19937 random(seed());
  constexpr int kRounds = 4;
  for (int round = 0; round < kRounds; ++round) {
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(ready[0]);
      WriteUntilKilled(DbPath(), round, ready[1]);
    }
    ::close(ready[1]);
    char byte = 0;
    ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the writer died before its first commit";
    ::close(ready[0]);
    int delay_ms = std::uniform_int_distribution<int>(0, 300)(random);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the writer exited on its own with status " << status << " (round " << round
        << ", killed after " << delay_ms << " ms)";

    auto store = Open();
    ASSERT_NE(store, nullptr) << "round " << round;
    JobFilter filter;
    filter.owner = "crash";
    std::string token;
    int jobs = 0;
    do {
      auto page = store->ListJobs(filter, limits::kMaxJobPageSize, token);
      ASSERT_TRUE(page.ok()) << page.status();
      for (const v1::Job& job : page->jobs) {
        ++jobs;
        auto events = store->ListEvents(job.id(), 0, 100000);
        ASSERT_TRUE(events.ok()) << events.status();
        ASSERT_FALSE(events->empty()) << job.id();
        uint64_t last_train = 0;
        std::set<std::string> checkpoint_events;
        for (size_t i = 0; i < events->size(); ++i) {
          const v1::JobEvent& event = (*events)[i];
          ASSERT_EQ(event.seq(), i + 1) << job.id() << ": a gap in the event log";
          if (event.has_train()) {
            ASSERT_EQ(event.train().step(), event.seq()) << job.id();
            last_train = event.seq();
          }
          if (event.has_checkpoint()) checkpoint_events.insert(event.checkpoint().id());
        }
        EXPECT_EQ(job.last_event_seq(), events->size()) << job.id();
        EXPECT_EQ(job.progress().step(), last_train) << job.id() << ": job and events disagree";
        auto checkpoints = store->ListCheckpoints(job.id());
        ASSERT_TRUE(checkpoints.ok());
        std::set<std::string> stored_checkpoints;
        for (const auto& checkpoint : *checkpoints) stored_checkpoints.insert(checkpoint.id());
        EXPECT_EQ(stored_checkpoints, checkpoint_events) << job.id();
      }
      token = page->next_page_token;
    } while (!token.empty());
    EXPECT_GT(jobs, 0);
  }
}

TEST_F(SqliteJobStoreTest, ReadOnlyOpenReadsAndNeverWrites) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->CreateJob(NewJob("j1"), "", "alice").ok());
    ASSERT_TRUE(store->AddCheckpoint(NewCheckpoint("j1", "s1", 1), std::nullopt).ok());
  }
  auto reader = SqliteJobStore::OpenReadOnly(DbPath());
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto all = (*reader)->ListAllCheckpoints();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_FALSE((*reader)->CreateJob(NewJob("j2"), "", "alice").ok());
  EXPECT_FALSE(SqliteJobStore::OpenReadOnly(DbPath() + ".missing").ok());
  EXPECT_FALSE(fs::exists(DbPath() + ".missing"));
}

TEST_F(SqliteJobStoreTest, MigratingFromVersionOneFillsInTheGcTimes) {
  // A file as version 1 wrote it: no created_ms or finished_ms columns.
  v1::Job keyed = NewJob("j-keyed");
  keyed.mutable_created_at()->set_seconds(1000);
  v1::Job done = NewJob("j-done");
  done.set_state(v1::JOB_STATE_SUCCEEDED);
  done.mutable_finished_at()->set_seconds(3000);
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(DbPath().c_str(), &db), SQLITE_OK);
    const char* schema = R"sql(
      CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
        owner TEXT NOT NULL, idempotency_key TEXT, name TEXT NOT NULL, state INTEGER NOT NULL,
        priority INTEGER NOT NULL, last_event_seq INTEGER NOT NULL, job BLOB NOT NULL) STRICT;
      CREATE UNIQUE INDEX jobs_by_idempotency_key ON jobs (owner, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
      CREATE INDEX jobs_by_state ON jobs (state, priority DESC, seq);
      CREATE TABLE job_events (job_id TEXT NOT NULL REFERENCES jobs (id), seq INTEGER NOT NULL,
        event BLOB NOT NULL, PRIMARY KEY (job_id, seq)) STRICT, WITHOUT ROWID;
      CREATE TABLE checkpoints (job_id TEXT NOT NULL REFERENCES jobs (id), id TEXT NOT NULL,
        step INTEGER NOT NULL, checkpoint BLOB NOT NULL, UNIQUE (job_id, id)) STRICT;
      CREATE INDEX checkpoints_by_step ON checkpoints (job_id, step);
      CREATE TABLE workers (name TEXT PRIMARY KEY, worker BLOB NOT NULL) STRICT;
      PRAGMA user_version = 1;
    )sql";
    ASSERT_EQ(sqlite3_exec(db, schema, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "INSERT INTO jobs (id, owner, idempotency_key, name, state,"
                                 " priority, last_event_seq, job) VALUES (?1, 'alice', ?2, 'job',"
                                 " ?3, 0, 0, ?4)",
                                 -1, &stmt, nullptr),
              SQLITE_OK);
    for (const v1::Job* job : {&keyed, &done}) {
      std::string blob = job->SerializeAsString();
      std::string key = job == &keyed ? "k1" : "";
      sqlite3_bind_text(stmt, 1, job->id().c_str(), -1, SQLITE_TRANSIENT);
      if (key.empty()) {
        sqlite3_bind_null(stmt, 2);
      } else {
        sqlite3_bind_text(stmt, 2, key.c_str(), -1, SQLITE_TRANSIENT);
      }
      sqlite3_bind_int(stmt, 3, job->state());
      sqlite3_bind_blob(stmt, 4, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
      ASSERT_EQ(sqlite3_step(stmt), SQLITE_DONE) << sqlite3_errmsg(db);
      sqlite3_reset(stmt);
      sqlite3_clear_bindings(stmt);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto finished = store->ListJobsFinishedBefore(absl::FromUnixSeconds(4000), 10);
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_THAT(Ids(*finished), ElementsAre("j-done"));
  auto expired = store->ExpireIdempotencyKeys(absl::FromUnixSeconds(2000));
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_EQ(*expired, 1);
}

}  // namespace
}  // namespace loratrf::server
