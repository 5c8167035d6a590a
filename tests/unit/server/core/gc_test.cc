// Garbage collection in JobServiceCore (server/core/gc.*): retention as checkpoints commit,
// DeleteJob, the TTL passes and the orphan sweep at start. An in-memory store, a real artifact
// store in a temp dir, a fake clock. The retention rule alone is retention_test.cc.
#include "server/core/gc.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/sha256.h"
#include "proto/spec/job_spec.h"
#include "server/artifacts/artifact_store.h"
#include "server/core/job_service.h"
#include "tests/unit/server/core/core_test_support.h"
#include "server/store/in_memory_job_store.h"

namespace loratrf::server {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

v1::JobSpec Spec(const std::string& name, uint32_t keep) {
  v1::JobSpec spec = core_testing::TestJobSpec(name);
  spec.mutable_training()->set_keep_checkpoints(keep);
  spec.set_max_restarts(3);
  return spec;
}

class GcMetrics final : public core_testing::NullCoreMetrics {
 public:
  int64_t deleted = 0;
  uint64_t freed = 0;
  void GcDeleted(int64_t checkpoints, uint64_t bytes) override {
    deleted += checkpoints;
    freed += bytes;
  }
};

class GcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("gc_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    MakeCore();
  }
  void TearDown() override {
    core_.reset();
    artifacts_.reset();
    fs::remove_all(dir_);
  }
  // A new core (and artifact store) on the same store and data dir: a restart.
  void MakeCore(CoreOptions options = {}) {
    core_.reset();
    artifacts_.reset();
    auto artifacts = ArtifactStore::Open(dir_.string());
    ASSERT_TRUE(artifacts.ok()) << artifacts.status();
    artifacts_ = std::move(*artifacts);
    options.lease_ttl = absl::Seconds(10);
    auto core = JobServiceCore::Create(&store_, artifacts_.get(), &clock_, &metrics_, options);
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = std::move(*core);
  }

  std::string Submit(v1::JobSpec spec, const std::string& key = "", bool* existing = nullptr) {
    v1::SubmitJobRequest request;
    *request.mutable_spec() = std::move(spec);
    request.set_idempotency_key(key);
    auto response = core_->SubmitJob({"alice"}, request);
    EXPECT_TRUE(response.ok()) << response.status();
    if (existing != nullptr && response.ok()) *existing = response->existing();
    return response.ok() ? response->job().id() : "";
  }

  uint64_t Register(const std::string& name) {
    v1::RegisterRequest request;
    request.set_name(name);
    request.set_slots(1);
    request.set_device(v1::DEVICE_CPU);
    request.set_address(name + ".local");
    auto response = core_->Register(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? response->lease_id() : 0;
  }

  absl::Status Report(const std::string& worker, uint64_t lease, const std::string& job,
                      uint32_t attempt, uint64_t index, v1::JobState to) {
    v1::ReportEventsRequest request;
    request.set_worker(worker);
    request.set_lease_id(lease);
    request.set_job_id(job);
    request.set_attempt(attempt);
    request.set_first_report_index(index);
    request.add_events()->mutable_state_change()->set_to(to);
    return core_->ReportEvents(request).status();
  }

  absl::StatusOr<v1::Checkpoint> Upload(const std::string& worker, uint64_t lease,
                                        const std::string& job, uint32_t attempt, uint64_t step,
                                        bool final = false,
                                        std::optional<double> accuracy = std::nullopt) {
    const std::string content = "checkpoint at step " + std::to_string(step);
    v1::UploadCheckpointRequest::Header header;
    header.set_worker(worker);
    header.set_lease_id(lease);
    header.set_job_id(job);
    header.set_attempt(attempt);
    header.set_step(step);
    header.set_final(final);
    if (accuracy.has_value()) {
      header.mutable_eval()->set_accuracy(*accuracy);
      header.mutable_eval()->set_loss(1.0 - *accuracy);
    }
    v1::CheckpointFile* file = header.add_files();
    file->set_path("adapter/adapter_model.safetensors");
    file->set_size_bytes(content.size());
    file->set_sha256(Sha256Hex(content));
    auto upload = core_->BeginUpload(header);
    if (!upload.ok()) return upload.status();
    v1::FileChunk chunk;
    chunk.set_path(file->path());
    chunk.set_offset(0);
    chunk.set_data(content);
    if (absl::Status written = (*upload)->Write(chunk); !written.ok()) return written;
    return (*upload)->Finish();
  }

  std::vector<std::string> Listed(const std::string& job) {
    std::vector<std::string> ids;
    auto listed = core_->ListCheckpoints(job);
    EXPECT_TRUE(listed.ok()) << listed.status();
    if (listed.ok()) {
      for (const v1::Checkpoint& c : listed->checkpoints()) ids.push_back(c.id());
    }
    return ids;
  }

  bool OnDisk(const std::string& job, const std::string& checkpoint) {
    return fs::exists(dir_ / "artifacts" / job / checkpoint);
  }

  // A job that ran on w1 and succeeded with checkpoints at `steps` (the last one final).
  std::string FinishedJob(const std::vector<uint64_t>& steps, const std::string& key = "") {
    std::string id = Submit(Spec("done", 10), key);
    uint64_t lease = Register("w1");
    core_->Tick();
    EXPECT_TRUE(Report("w1", lease, id, 1, 0, v1::JOB_STATE_RUNNING).ok());
    for (size_t i = 0; i < steps.size(); ++i) {
      EXPECT_TRUE(Upload("w1", lease, id, 1, steps[i], i + 1 == steps.size()).ok());
    }
    EXPECT_TRUE(Report("w1", lease, id, 1, 1, v1::JOB_STATE_SUCCEEDED).ok());
    return id;
  }

  fs::path dir_;
  GcMetrics metrics_;
  InMemoryJobStore store_;
  FakeClock clock_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<JobServiceCore> core_;
};

TEST_F(GcTest, RetentionKeepsTheLastKTheBestAndTheFinalAsCheckpointsCommit) {
  std::string id = Submit(Spec("keep", 2));
  uint64_t lease = Register("w1");
  core_->Tick();
  ASSERT_TRUE(Report("w1", lease, id, 1, 0, v1::JOB_STATE_RUNNING).ok());
  ASSERT_TRUE(Upload("w1", lease, id, 1, 10, false, 0.5).ok());
  ASSERT_TRUE(Upload("w1", lease, id, 1, 20, false, 0.9).ok());  // the best
  EXPECT_THAT(Listed(id), ElementsAre("s10-a1", "s20-a1"));
  ASSERT_TRUE(Upload("w1", lease, id, 1, 30, false, 0.6).ok());
  EXPECT_THAT(Listed(id), ElementsAre("s20-a1", "s30-a1"));
  ASSERT_TRUE(Upload("w1", lease, id, 1, 40).ok());
  EXPECT_THAT(Listed(id), ElementsAre("s20-a1", "s30-a1", "s40-a1"));
  ASSERT_TRUE(Upload("w1", lease, id, 1, 50, /*final=*/true).ok());
  EXPECT_THAT(Listed(id), ElementsAre("s20-a1", "s40-a1", "s50-a1-final"));
  // The files went with the records.
  EXPECT_FALSE(OnDisk(id, "s10-a1"));
  EXPECT_FALSE(OnDisk(id, "s30-a1"));
  EXPECT_TRUE(OnDisk(id, "s20-a1"));
  EXPECT_TRUE(OnDisk(id, "s50-a1-final"));
  EXPECT_EQ(artifacts_->usage().checkpoints, 3);
  EXPECT_EQ(metrics_.deleted, 2);
  EXPECT_EQ(metrics_.freed, 2 * std::string("checkpoint at step 10").size());
}

TEST_F(GcTest, RetentionKeepsTheCheckpointANewAttemptResumesFrom) {
  std::string id = Submit(Spec("resume", 1));
  uint64_t lease = Register("w1");
  core_->Tick();
  ASSERT_TRUE(Report("w1", lease, id, 1, 0, v1::JOB_STATE_RUNNING).ok());
  ASSERT_TRUE(Upload("w1", lease, id, 1, 10).ok());
  // w1 goes silent: attempt 2 on w2 resumes from s10-a1.
  clock_.Advance(absl::Seconds(11));
  core_->Tick();
  uint64_t lease2 = Register("w2");
  core_->Tick();
  ASSERT_EQ(core_->GetJob(id)->attempt(), 2u);
  ASSERT_TRUE(Report("w2", lease2, id, 2, 0, v1::JOB_STATE_RUNNING).ok());
  ASSERT_TRUE(Upload("w2", lease2, id, 2, 20).ok());
  ASSERT_TRUE(Upload("w2", lease2, id, 2, 30).ok());
  // keep_checkpoints 1, but the attempt resumes from s10-a1: it stays.
  EXPECT_THAT(Listed(id), ElementsAre("s10-a1", "s30-a2"));
  EXPECT_TRUE(OnDisk(id, "s10-a1"));
}

TEST_F(GcTest, ADownloadInFlightReadsToTheEndWhileRetentionDeletesIt) {
  std::string id = Submit(Spec("download", 1));
  uint64_t lease = Register("w1");
  core_->Tick();
  ASSERT_TRUE(Report("w1", lease, id, 1, 0, v1::JOB_STATE_RUNNING).ok());
  ASSERT_TRUE(Upload("w1", lease, id, 1, 10).ok());
  v1::DownloadCheckpointRequest request;
  request.set_job_id(id);
  request.set_checkpoint_id("s10-a1");
  auto opened = core_->OpenCheckpoint({"alice"}, request);
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_TRUE(Upload("w1", lease, id, 1, 20).ok());
  ASSERT_FALSE(OnDisk(id, "s10-a1"));  // deleted under the reader
  std::string bytes;
  v1::FileChunk chunk;
  while (true) {
    auto more = opened->second->Next(chunk);
    ASSERT_TRUE(more.ok()) << more.status();
    if (!*more) break;
    bytes += chunk.data();
  }
  EXPECT_EQ(bytes, "checkpoint at step 10");
}

TEST_F(GcTest, DeleteJobRemovesAFinishedJobsCheckpointsAndPurgeTheJob) {
  std::string id = FinishedJob({10, 20}, "key-1");
  ASSERT_THAT(Listed(id), ElementsAre("s10-a1", "s20-a1-final"));
  v1::DeleteJobRequest request;
  request.set_id(id);
  EXPECT_EQ(core_->DeleteJob({"bob"}, request).status().code(),
            absl::StatusCode::kPermissionDenied);
  auto deleted = core_->DeleteJob({"alice"}, request);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->checkpoints_deleted(), 2u);
  EXPECT_EQ(deleted->bytes_freed(), std::string("checkpoint at step 10").size() * 2);
  EXPECT_EQ(deleted->job().id(), id);
  EXPECT_THAT(Listed(id), IsEmpty());
  EXPECT_FALSE(OnDisk(id, "s10-a1"));
  EXPECT_FALSE(OnDisk(id, "s20-a1-final"));
  EXPECT_EQ(core_->GetJob(id)->state(), v1::JOB_STATE_SUCCEEDED);

  request.set_purge(true);
  auto purged = core_->DeleteJob({"alice"}, request);
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_FALSE(purged->has_job());
  EXPECT_TRUE(absl::IsNotFound(core_->GetJob(id).status()));
  EXPECT_TRUE(absl::IsNotFound(core_->DeleteJob({"alice"}, request).status()));
  // The key went with the record.
  bool existing = true;
  std::string again = Submit(Spec("done", 10), "key-1", &existing);
  EXPECT_FALSE(existing);
  EXPECT_NE(again, id);
  EXPECT_EQ(metrics_.deleted, 2);
}

TEST_F(GcTest, DeleteJobRefusesAJobThatIsNotFinal) {
  std::string id = Submit(Spec("active", 3));
  v1::DeleteJobRequest request;
  request.set_id(id);
  request.set_purge(true);
  EXPECT_EQ(core_->DeleteJob({"alice"}, request).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(core_->GetJob(id).ok());
}

TEST_F(GcTest, FinishedJobTtlPurgesOldFinalJobs) {
  CoreOptions options;
  options.finished_job_ttl = absl::Hours(1);
  MakeCore(options);
  std::string old_job = FinishedJob({10});
  clock_.Advance(absl::Minutes(50));
  std::string young_job = Submit(Spec("young", 3));
  v1::CancelJobRequest cancel;
  cancel.set_id(young_job);
  ASSERT_TRUE(core_->CancelJob({"alice"}, cancel).ok());
  core_->CollectGarbage();
  EXPECT_TRUE(core_->GetJob(old_job).ok()) << "not an hour old yet";
  clock_.Advance(absl::Minutes(11));
  core_->CollectGarbage();
  EXPECT_TRUE(absl::IsNotFound(core_->GetJob(old_job).status()));
  EXPECT_FALSE(OnDisk(old_job, "s10-a1-final"));
  EXPECT_TRUE(core_->GetJob(young_job).ok());
  EXPECT_EQ(metrics_.deleted, 1);
}

TEST_F(GcTest, LostWorkerTtlForgetsLostWorkers) {
  CoreOptions options;
  options.lost_worker_ttl = absl::Minutes(5);
  MakeCore(options);
  Register("w1");
  uint64_t lease2 = Register("w2");
  clock_.Advance(absl::Seconds(11));
  v1::HeartbeatRequest beat;
  beat.set_name("w2");
  beat.set_lease_id(lease2);
  ASSERT_TRUE(core_->Heartbeat(beat).ok());
  core_->Tick();  // w1 is LOST now
  core_->CollectGarbage();
  EXPECT_EQ(core_->ListWorkers().workers_size(), 2);
  clock_.Advance(absl::Minutes(5));
  core_->Tick();  // w2 is lost too by now, but not for five minutes yet
  core_->CollectGarbage();
  auto listed = core_->ListWorkers();
  ASSERT_EQ(listed.workers_size(), 1);
  EXPECT_EQ(listed.workers(0).name(), "w2");
  auto stored = store_.ListWorkers();
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ(stored->front().name(), "w2");
}

TEST_F(GcTest, AnIdempotencyKeyNamesItsJobOnlyWithinTheWindow) {
  CoreOptions options;
  options.idempotency_window = absl::Hours(1);
  MakeCore(options);
  bool existing = false;
  std::string first = Submit(Spec("keyed", 3), "k", &existing);
  EXPECT_FALSE(existing);
  clock_.Advance(absl::Minutes(59));
  EXPECT_EQ(Submit(Spec("keyed", 3), "k", &existing), first);
  EXPECT_TRUE(existing);
  clock_.Advance(absl::Minutes(2));
  std::string second = Submit(Spec("keyed", 3), "k", &existing);
  EXPECT_FALSE(existing);
  EXPECT_NE(second, first);
  // The periodic pass forgets expired keys too; the new job's key is young and stays.
  clock_.Advance(absl::Minutes(30));
  core_->CollectGarbage();
  EXPECT_EQ(Submit(Spec("keyed", 3), "k", &existing), second);
  EXPECT_TRUE(existing);
}

TEST_F(GcTest, StartSweepsFilesNoRecordNames) {
  std::string id = FinishedJob({10});
  // An upload committed but never recorded, a stray file, a job directory with no records.
  fs::create_directories(dir_ / "artifacts" / id / "s99-a1");
  std::ofstream(dir_ / "artifacts" / id / "s99-a1" / "f0") << "orphan";
  fs::create_directories(dir_ / "artifacts" / "j-gone" / "s1-a1");
  std::ofstream(dir_ / "artifacts" / "j-gone" / "s1-a1" / "f0") << "orphan";
  std::ofstream(dir_ / "artifacts" / "stray") << "x";
  MakeCore();
  EXPECT_FALSE(OnDisk(id, "s99-a1"));
  EXPECT_FALSE(fs::exists(dir_ / "artifacts" / "j-gone"));
  EXPECT_FALSE(fs::exists(dir_ / "artifacts" / "stray"));
  EXPECT_TRUE(OnDisk(id, "s10-a1-final"));
  EXPECT_EQ(artifacts_->usage().checkpoints, 1);
  auto problems = ArtifactStore::Check(dir_.string(), *store_.ListAllCheckpoints());
  ASSERT_TRUE(problems.ok());
  EXPECT_THAT(*problems, IsEmpty());
}

}  // namespace
}  // namespace loratrf::server
