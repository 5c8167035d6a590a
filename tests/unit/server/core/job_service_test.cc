// JobServiceCore, called directly: an in-memory store (the fake of the layer below), a real
// artifact store in a temp dir, and a fake clock that drives leases. The scheduling policy alone
// is tested in scheduler_test.cc.
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "server/artifacts/artifact_store.h"
#include "common/sha256.h"
#include "server/core/job_service.h"
#include "tests/unit/server/core/core_test_support.h"
#include "proto/contract/limits.h"
#include "proto/spec/job_spec.h"
#include "server/store/in_memory_job_store.h"

namespace loratrf::server {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

v1::JobSpec Spec(const std::string& name, uint32_t workers = 1, uint32_t slots = 1,
                 uint32_t max_restarts = 1, int32_t priority = 0) {
  v1::JobSpec spec = core_testing::TestJobSpec(name, workers, slots);
  spec.mutable_training()->set_epochs(2);
  spec.set_max_restarts(max_restarts);
  spec.set_priority(priority);
  return spec;
}

// What the core counts, for the tests that look at it.
class CountingMetrics final : public core_testing::NullCoreMetrics {
 public:
  int submitted = 0, restarted = 0, workers_lost = 0, store_write_failures = 0;
  int store_writes = 0, scheduler_passes = 0, lease_expiries = 0, idempotent_replays = 0;
  std::vector<std::pair<v1::JobState, absl::Duration>> runs;  // JobRunDuration, in order
  std::map<int32_t, int64_t> queued_by_priority;              // the last QueueGauges
  absl::Duration oldest_queued = absl::InfiniteDuration();
  int64_t stored_checkpoints = -1;
  uint64_t stored_bytes = 0;
  void JobSubmitted() override { ++submitted; }
  void JobRestarted() override { ++restarted; }
  void WorkerLost() override { ++workers_lost; }
  void StoreWriteFailed() override { ++store_write_failures; }
  void StoreWriteDuration(absl::Duration) override { ++store_writes; }
  void JobRunDuration(v1::JobState state, absl::Duration ran_for) override {
    runs.emplace_back(state, ran_for);
  }
  void SchedulerPass(absl::Duration) override { ++scheduler_passes; }
  void LeaseExpired() override { ++lease_expiries; }
  void IdempotentReplay() override { ++idempotent_replays; }
  void QueueGauges(const std::map<int32_t, int64_t>& by_priority,
                   absl::Duration oldest) override {
    queued_by_priority = by_priority;
    oldest_queued = oldest;
  }
  void StoredCheckpoints(int64_t checkpoints, uint64_t bytes) override {
    stored_checkpoints = checkpoints;
    stored_bytes = bytes;
  }
};

class CoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("core_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto artifacts = ArtifactStore::Open(dir_.string());
    ASSERT_TRUE(artifacts.ok()) << artifacts.status();
    artifacts_ = std::move(*artifacts);
    MakeCore();
  }
  void TearDown() override {
    core_.reset();
    fs::remove_all(dir_);
  }
  void MakeCore(CoreOptions options = {}) {
    options.lease_ttl = absl::Seconds(10);
    auto core = JobServiceCore::Create(&store_, artifacts_.get(), &clock_, &metrics_, options);
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = std::move(*core);
  }

  std::string Submit(v1::JobSpec spec, const std::string& owner = "alice") {
    v1::SubmitJobRequest request;
    *request.mutable_spec() = std::move(spec);
    auto response = core_->SubmitJob({owner}, request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? response->job().id() : "";
  }

  uint64_t Register(const std::string& name, uint32_t slots,
                    std::vector<std::pair<std::string, uint32_t>> running = {}) {
    v1::RegisterRequest request;
    request.set_name(name);
    request.set_slots(slots);
    request.set_device(v1::DEVICE_CPU);
    request.set_address(name + ".local");
    for (const auto& [job, attempt] : running) {
      v1::RunningAttempt* r = request.add_running();
      r->set_job_id(job);
      r->set_attempt(attempt);
    }
    auto response = core_->Register(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? response->lease_id() : 0;
  }

  // Every command queued for the worker right now.
  std::vector<v1::WorkerCommand> Commands(const std::string& name, uint64_t lease) {
    v1::StreamCommandsRequest request;
    request.set_name(name);
    request.set_lease_id(lease);
    auto stream = core_->StreamCommands(request);
    EXPECT_TRUE(stream.ok()) << stream.status();
    std::vector<v1::WorkerCommand> out;
    if (!stream.ok()) return out;
    (*stream)->SetNotify([] {});
    v1::WorkerCommand command;
    while ((*stream)->Next(command) == CommandStream::Poll::kCommand) out.push_back(command);
    return out;
  }

  absl::StatusOr<v1::ReportEventsResponse> Report(const std::string& worker, uint64_t lease,
                                                  const std::string& job, uint32_t attempt,
                                                  uint64_t first_index,
                                                  std::vector<v1::JobEvent> events) {
    v1::ReportEventsRequest request;
    request.set_worker(worker);
    request.set_lease_id(lease);
    request.set_job_id(job);
    request.set_attempt(attempt);
    request.set_first_report_index(first_index);
    for (auto& e : events) *request.add_events() = std::move(e);
    return core_->ReportEvents(request);
  }

  static v1::JobEvent State(v1::JobState to, const std::string& reason = "") {
    v1::JobEvent event;
    event.mutable_state_change()->set_to(to);
    event.mutable_state_change()->set_reason(reason);
    return event;
  }
  static v1::JobEvent Train(uint64_t step, double epoch = 0.5) {
    v1::JobEvent event;
    event.mutable_train()->set_step(step);
    event.mutable_train()->set_epoch(epoch);
    event.mutable_train()->set_loss(1.0 / static_cast<double>(step));
    event.mutable_train()->set_step_seconds(0.5);
    return event;
  }

  v1::Job Get(const std::string& id) {
    auto job = core_->GetJob(id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : v1::Job();
  }

  std::vector<v1::JobEvent> Events(const std::string& id) {
    auto events = store_.ListEvents(id, 0, 1000);
    EXPECT_TRUE(events.ok());
    return events.ok() ? *events : std::vector<v1::JobEvent>();
  }

  // Uploads one checkpoint with a single file holding `content`.
  absl::StatusOr<v1::Checkpoint> Upload(const std::string& worker, uint64_t lease,
                                        const std::string& job, uint32_t attempt, uint64_t step,
                                        bool final, const std::string& content) {
    v1::UploadCheckpointRequest::Header header;
    header.set_worker(worker);
    header.set_lease_id(lease);
    header.set_job_id(job);
    header.set_attempt(attempt);
    header.set_step(step);
    header.set_final(final);
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
    absl::Status written = (*upload)->Write(chunk);
    if (!written.ok()) return written;
    return (*upload)->Finish();
  }

  fs::path dir_;
  CountingMetrics metrics_;
  InMemoryJobStore store_;
  FakeClock clock_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<JobServiceCore> core_;
};

TEST_F(CoreTest, ASubmittedJobIsScheduledOnAWorkerWithTheRightAssignment) {
  std::string id = Submit(Spec("one", 1, 2));
  EXPECT_EQ(Get(id).state(), v1::JOB_STATE_QUEUED);
  core_->Tick();
  EXPECT_EQ(Get(id).state(), v1::JOB_STATE_QUEUED) << "an empty fleet fails nothing";
  uint64_t lease = Register("w1", 4);
  core_->Tick();
  v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_THAT(job.workers(), ElementsAre("w1"));
  std::vector<v1::WorkerCommand> commands = Commands("w1", lease);
  ASSERT_EQ(commands.size(), 1u);
  const v1::Assignment& assignment = commands[0].assign();
  EXPECT_EQ(assignment.job_id(), id);
  EXPECT_EQ(assignment.attempt(), 1u);
  EXPECT_EQ(assignment.node_rank(), 0u);
  EXPECT_EQ(assignment.world_size(), 2u);
  EXPECT_EQ(assignment.local_world_size(), 2u);
  EXPECT_EQ(assignment.master_addr(), "w1.local");
  EXPECT_GE(assignment.master_port(), 29500u);
  EXPECT_TRUE(assignment.resume_checkpoint_id().empty());
  EXPECT_EQ(core_->ListWorkers().workers(0).free_slots(), 2u);
}

TEST_F(CoreTest, ReportsDriveStateAndProgressWithoutDuplicates) {
  std::string id = Submit(Spec("run"));
  uint64_t lease = Register("w1", 1);
  core_->Tick();
  ASSERT_TRUE(Report("w1", lease, id, 1, 0, {State(v1::JOB_STATE_RUNNING), Train(1), Train(2)}).ok());
  v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job.progress().step(), 2u);
  EXPECT_EQ(job.progress().total_steps(), 8u);  // step 2 at epoch 0.5, 2 epochs
  // A retried report (same index) and a replayed step add nothing.
  auto again = Report("w1", lease, id, 1, 1, {Train(1), Train(2), Train(3)});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->next_report_index(), 4u);
  ASSERT_TRUE(Report("w1", lease, id, 1, 4, {Train(2)}).ok());
  std::vector<uint64_t> steps;
  for (const v1::JobEvent& event : Events(id)) {
    if (event.has_train()) steps.push_back(event.train().step());
  }
  EXPECT_THAT(steps, ElementsAre(1u, 2u, 3u));
  // A report for another attempt is stale.
  auto stale = Report("w1", lease, id, 7, 5, {Train(9)});
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(stale.status().message(), HasSubstr("stale"));
  // So is a lease that is not the worker's.
  EXPECT_EQ(Report("w1", lease + 1, id, 1, 5, {Train(9)}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(CoreTest, SuccessNeedsTheFinalCheckpointFromNodeZero) {
  std::string id = Submit(Spec("ok"));
  uint64_t lease = Register("w1", 1);
  core_->Tick();
  ASSERT_TRUE(Report("w1", lease, id, 1, 0, {State(v1::JOB_STATE_RUNNING)}).ok());
  EXPECT_EQ(Report("w1", lease, id, 1, 1, {State(v1::JOB_STATE_SUCCEEDED)}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto checkpoint = Upload("w1", lease, id, 1, 8, true, "adapter bytes");
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_TRUE(checkpoint->final());
  // A retried upload of the same checkpoint is recognised.
  EXPECT_EQ(Upload("w1", lease, id, 1, 8, true, "adapter bytes").status().code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(Report("w1", lease, id, 1, 2, {State(v1::JOB_STATE_SUCCEEDED)}).ok());
  v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_TRUE(job.has_finished_at());
  EXPECT_EQ(core_->ListWorkers().workers(0).free_slots(), 1u);
  // The checkpoint is listed and reads back.
  v1::DownloadCheckpointRequest download;
  download.set_job_id(id);
  auto opened = core_->OpenCheckpoint({"alice"}, download);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->first.id(), checkpoint->id());
  v1::FileChunk chunk;
  std::string bytes;
  while (true) {
    auto more = opened->second->Next(chunk);
    ASSERT_TRUE(more.ok()) << more.status();
    if (!*more) break;
    bytes += chunk.data();
  }
  EXPECT_EQ(bytes, "adapter bytes");
  // A wrong sha256 is refused and records nothing.
  std::string other = Submit(Spec("bad-upload"));
  core_->Tick();
  v1::UploadCheckpointRequest::Header header;
  header.set_worker("w1");
  header.set_lease_id(lease);
  header.set_job_id(other);
  header.set_attempt(1);
  header.set_step(1);
  v1::CheckpointFile* file = header.add_files();
  file->set_path("a.bin");
  file->set_size_bytes(3);
  file->set_sha256(Sha256Hex("xyz"));
  auto upload = core_->BeginUpload(header);
  ASSERT_TRUE(upload.ok()) << upload.status();
  v1::FileChunk wrong;
  wrong.set_path("a.bin");
  wrong.set_data("abc");
  ASSERT_TRUE((*upload)->Write(wrong).ok());
  EXPECT_FALSE((*upload)->Finish().ok());
  EXPECT_TRUE(core_->ListCheckpoints(other)->checkpoints().empty());
}

TEST_F(CoreTest, ALostWorkerRequeuesItsJobWhichResumesElsewhereFromTheLatestCheckpoint) {
  std::string id = Submit(Spec("moves", 1, 1, /*max_restarts=*/1));
  uint64_t lease1 = Register("w1", 1);
  core_->Tick();
  ASSERT_EQ(Get(id).workers(0), "w1");
  ASSERT_TRUE(Report("w1", lease1, id, 1, 0, {State(v1::JOB_STATE_RUNNING), Train(1), Train(2)}).ok());
  auto checkpoint = Upload("w1", lease1, id, 1, 2, false, "step 2");
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  uint64_t lease2 = Register("w2", 1);
  // w2 heartbeats, w1 does not.
  clock_.Advance(absl::Seconds(6));
  v1::HeartbeatRequest beat;
  beat.set_name("w2");
  beat.set_lease_id(lease2);
  ASSERT_TRUE(core_->Heartbeat(beat).ok());
  clock_.Advance(absl::Seconds(6));
  core_->Tick();
  v1::Job job = Get(id);
  EXPECT_EQ(job.attempt(), 2u);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_THAT(job.workers(), ElementsAre("w2"));
  std::vector<v1::WorkerCommand> commands = Commands("w2", lease2);
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].assign().attempt(), 2u);
  EXPECT_EQ(commands[0].assign().resume_checkpoint_id(), checkpoint->id());
  // The state changes tell the story in order.
  std::vector<std::pair<v1::JobState, v1::JobState>> changes;
  for (const v1::JobEvent& event : Events(id)) {
    if (event.has_state_change()) {
      changes.push_back({event.state_change().from(), event.state_change().to()});
    }
  }
  EXPECT_THAT(changes, ElementsAre(std::make_pair(v1::JOB_STATE_UNSPECIFIED, v1::JOB_STATE_QUEUED),
                                   std::make_pair(v1::JOB_STATE_QUEUED, v1::JOB_STATE_SCHEDULED),
                                   std::make_pair(v1::JOB_STATE_SCHEDULED, v1::JOB_STATE_RUNNING),
                                   std::make_pair(v1::JOB_STATE_RUNNING, v1::JOB_STATE_RESTARTING),
                                   std::make_pair(v1::JOB_STATE_RESTARTING, v1::JOB_STATE_QUEUED),
                                   std::make_pair(v1::JOB_STATE_QUEUED, v1::JOB_STATE_SCHEDULED)));
  // The old worker's reports are now rejected; so is its heartbeat.
  EXPECT_FALSE(Report("w1", lease1, id, 1, 3, {Train(3)}).ok());
  beat.set_name("w1");
  beat.set_lease_id(lease1);
  EXPECT_EQ(core_->Heartbeat(beat).status().code(), absl::StatusCode::kFailedPrecondition);
  // Metrics replayed by the new attempt after its checkpoint are not duplicated.
  ASSERT_TRUE(Report("w2", lease2, id, 2, 0, {State(v1::JOB_STATE_RUNNING), Train(2), Train(3)}).ok());
  std::vector<uint64_t> steps;
  for (const v1::JobEvent& event : Events(id)) {
    if (event.has_train()) steps.push_back(event.train().step());
  }
  EXPECT_THAT(steps, ElementsAre(1u, 2u, 3u));
  // A second loss exhausts max_restarts: FAILED, with the reason.
  clock_.Advance(absl::Seconds(11));
  core_->Tick();
  job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(job.state_reason(), HasSubstr("no restarts left"));
}

TEST_F(CoreTest, UserErrorsFailWithoutRetryAndCrashesRetry) {
  std::string user_error = Submit(Spec("user-error", 1, 1, 3));
  std::string crash = Submit(Spec("crash", 1, 1, 3));
  uint64_t lease = Register("w1", 2);
  core_->Tick();
  ASSERT_TRUE(Report("w1", lease, user_error, 1, 0,
                     {State(v1::JOB_STATE_FAILED, "train.jsonl:3: label: missing")}).ok());
  v1::Job failed = Get(user_error);
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.attempt(), 1u);
  EXPECT_THAT(failed.state_reason(), HasSubstr("label: missing"));
  ASSERT_TRUE(Report("w1", lease, crash, 1, 0, {State(v1::JOB_STATE_RESTARTING, "rank 0 killed by signal 9")}).ok());
  v1::Job retried = Get(crash);
  EXPECT_EQ(retried.attempt(), 2u);
  EXPECT_THAT(retried.state_reason(), HasSubstr("signal 9"));
}

TEST_F(CoreTest, CancelStopsTheRanksFreesTheSlotsAndIsIdempotent) {
  std::string id = Submit(Spec("cancel-me", 1, 2));
  uint64_t lease = Register("w1", 2);
  core_->Tick();
  ASSERT_EQ(Commands("w1", lease).size(), 1u);  // the assignment
  v1::CancelJobRequest request;
  request.set_id(id);
  EXPECT_EQ(core_->CancelJob({"mallory"}, request).status().code(),
            absl::StatusCode::kPermissionDenied);
  auto cancelled = core_->CancelJob({"alice"}, request);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  std::vector<v1::WorkerCommand> commands = Commands("w1", lease);
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].cancel().job_id(), id);
  EXPECT_EQ(core_->ListWorkers().workers(0).free_slots(), 2u);
  auto again = core_->CancelJob({"alice"}, request);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(again->last_event_seq(), cancelled->last_event_seq());
}

TEST_F(CoreTest, AJobThatCanNeverFitFailsAsUnschedulable) {
  uint64_t lease = Register("w1", 4);
  std::string too_big = Submit(Spec("too-big", 2, 1));
  std::string fits = Submit(Spec("fits", 1, 4));
  core_->Tick();
  // Right after a worker joined, more may be on their way: it waits.
  EXPECT_EQ(Get(too_big).state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(Get(fits).state(), v1::JOB_STATE_SCHEDULED);
  for (int i = 0; i < 3; ++i) {  // two lease TTLs with heartbeats
    clock_.Advance(absl::Seconds(7));
    v1::HeartbeatRequest beat;
    beat.set_name("w1");
    beat.set_lease_id(lease);
    ASSERT_TRUE(core_->Heartbeat(beat).ok());
  }
  core_->Tick();
  v1::Job failed = Get(too_big);
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(failed.state_reason(), HasSubstr("unschedulable"));
}

// Job.queue is a live view: set on every queued job by the scheduling pass, shown by GetJob
// and ListJobs, never written to the store, and gone once the job leaves QUEUED.
TEST_F(CoreTest, QueuedJobsCarryALiveQueueStatusThatIsNeverStored) {
  uint64_t lease = Register("w1", 2);
  std::string running = Submit(Spec("running", 1, 2));
  core_->Tick();
  ASSERT_EQ(Get(running).state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_FALSE(Get(running).has_queue());
  std::string second = Submit(Spec("second", 1, 2));
  std::string third = Submit(Spec("third", 1, 1), "bob");
  core_->Tick();
  v1::Job waiting = Get(second);
  EXPECT_EQ(waiting.queue().reason(), v1::QUEUE_REASON_FAIR_SHARE) << waiting.queue().message();
  EXPECT_EQ(waiting.queue().position(), 2u) << "bob holds no slots: fair share puts him first";
  EXPECT_EQ(waiting.queue().slots_needed(), 2u);
  EXPECT_EQ(Get(third).queue().position(), 1u);
  EXPECT_FALSE(store_.GetJob(second)->has_queue()) << "the store never holds the live view";
  v1::ListJobsRequest list;
  list.add_states(v1::JOB_STATE_QUEUED);
  auto listed = core_->ListJobs(list);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->jobs_size(), 2);
  for (const v1::Job& job : listed->jobs()) EXPECT_TRUE(job.has_queue()) << job.id();
  // The running job reports progress: 6 steps of 0.5 s left, so its 2 slots free in 3 s.
  ASSERT_TRUE(Report("w1", lease, running, 1, 0, {State(v1::JOB_STATE_RUNNING), Train(2)}).ok());
  core_->Tick();
  EXPECT_EQ(Get(third).queue().eta().seconds(), 3) << Get(third).queue().DebugString();
  EXPECT_FALSE(Get(second).queue().has_eta()) << "1 + 2 slots needed, 2 known to free";
  // It finishes: the next job is placed and its status is gone, in memory and in the store.
  ASSERT_TRUE(Upload("w1", lease, running, 1, 8, true, "adapter").ok());
  ASSERT_TRUE(Report("w1", lease, running, 1, 2, {State(v1::JOB_STATE_SUCCEEDED)}).ok());
  core_->Tick();
  // Nobody holds slots now: equal shares, so submission order decides.
  EXPECT_EQ(Get(second).state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_FALSE(Get(second).has_queue());
  EXPECT_EQ(Get(third).queue().position(), 1u);
  EXPECT_EQ(Get(third).queue().reason(), v1::QUEUE_REASON_WAITING_FOR_SLOTS);
  v1::CancelJobRequest cancel;
  cancel.set_id(third);
  auto cancelled = core_->CancelJob({"bob"}, cancel);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_FALSE(cancelled->has_queue());
  EXPECT_FALSE(store_.GetJob(third)->has_queue());
}

// --max-queued-per-owner and --max-running-slots-per-owner at submit; the sweep id is kept.
TEST_F(CoreTest, SubmitEnforcesOwnerLimitsAndKeepsTheSweep) {
  CoreOptions options;
  options.max_queued_per_owner = 2;
  options.max_running_slots_per_owner = 4;
  MakeCore(options);
  v1::SubmitJobRequest request;
  *request.mutable_spec() = Spec("swept");
  request.set_sweep_id("sweep-1");
  auto first = core_->SubmitJob({"alice"}, request);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->job().sweep_id(), "sweep-1");
  EXPECT_EQ(store_.GetJob(first->job().id())->sweep_id(), "sweep-1");
  Submit(Spec("second"));
  auto third = core_->SubmitJob({"alice"}, request);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("2 queued job(s)"));
  EXPECT_THAT(third.status().message(), HasSubstr("max queued per owner 2"));
  EXPECT_TRUE(core_->SubmitJob({"bob"}, request).ok()) << "the limit is per owner";
  *request.mutable_spec() = Spec("too-wide", 1, 5);
  auto wide = core_->SubmitJob({"carol"}, request);
  EXPECT_EQ(wide.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(wide.status().message(), HasSubstr("max running slots per owner 4"));
  request.set_sweep_id("no spaces allowed");
  *request.mutable_spec() = Spec("bad-sweep");
  auto bad = core_->SubmitJob({"carol"}, request);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("sweep_id"));
}

TEST_F(CoreTest, IdempotentSubmitReturnsTheSameJob) {
  v1::SubmitJobRequest request;
  *request.mutable_spec() = Spec("idem");
  request.set_idempotency_key("key-1");
  auto first = core_->SubmitJob({"alice"}, request);
  auto second = core_->SubmitJob({"alice"}, request);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->job().id(), second->job().id());
  EXPECT_FALSE(first->existing());
  EXPECT_TRUE(second->existing());
  request.mutable_spec()->mutable_training()->set_batch_size(7);
  auto bad = core_->SubmitJob({"alice"}, request);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("batch_size"));
}

TEST_F(CoreTest, AnIdempotencyKeyWithAnotherSpecIsAlreadyExistsNamingTheFirstJob) {
  v1::SubmitJobRequest request;
  *request.mutable_spec() = Spec("idem");
  (*request.mutable_spec()->mutable_labels())["b"] = "2";
  (*request.mutable_spec()->mutable_labels())["a"] = "1";
  request.set_idempotency_key("key-1");
  auto first = core_->SubmitJob({"alice"}, request);
  ASSERT_TRUE(first.ok()) << first.status();

  // The same spec, its map entries added in another order: the same spec, the first job.
  v1::SubmitJobRequest same = request;
  same.mutable_spec()->clear_labels();
  (*same.mutable_spec()->mutable_labels())["a"] = "1";
  (*same.mutable_spec()->mutable_labels())["b"] = "2";
  auto replay = core_->SubmitJob({"alice"}, same);
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->job().id(), first->job().id());
  EXPECT_TRUE(replay->existing());

  v1::SubmitJobRequest other = request;
  other.mutable_spec()->mutable_training()->set_epochs(3);
  auto refused = core_->SubmitJob({"alice"}, other);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(refused.status().message(), HasSubstr("idempotency_key key-1"));
  EXPECT_THAT(refused.status().message(), HasSubstr(first->job().id()));
  // Another owner's key space is their own.
  auto bob = core_->SubmitJob({"bob"}, other);
  ASSERT_TRUE(bob.ok()) << bob.status();
  EXPECT_FALSE(bob->existing());
}

TEST_F(CoreTest, ASpecWithUnknownFieldsIsRefusedNamingThem) {
  v1::SubmitJobRequest request;
  *request.mutable_spec() = Spec("unknown");
  request.mutable_spec()->GetReflection()->MutableUnknownFields(request.mutable_spec())
      ->AddLengthDelimited(1000, std::string(1000, 'x'));
  request.mutable_spec()->mutable_data()->GetReflection()
      ->MutableUnknownFields(request.mutable_spec()->mutable_data())->AddVarint(99, 1);
  auto refused = core_->SubmitJob({"alice"}, request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("spec: unknown field number 1000"));
  EXPECT_THAT(refused.status().message(), HasSubstr("data: unknown field number 99"));
  v1::ListJobsRequest list;
  EXPECT_EQ(core_->ListJobs(list)->jobs_size(), 0) << "nothing stored";
}

TEST_F(CoreTest, ASpecAtEveryLimitIsAcceptedAndWithinTheStoredSizeBound) {
  v1::SubmitJobRequest request;
  v1::JobSpec& spec = *request.mutable_spec();
  spec = Spec(std::string(limits::kMaxJobNameLength, 'n'));
  spec.mutable_model()->set_path("/" + std::string(limits::kMaxPathLength - 1, 'm'));
  spec.mutable_data()->set_train("/" + std::string(limits::kMaxPathLength - 1, 't'));
  spec.mutable_data()->set_eval("/" + std::string(limits::kMaxPathLength - 1, 'e'));
  spec.mutable_adapter()->clear_target_modules();
  for (int i = 0; i < limits::kMaxTargetModules; ++i) {
    std::string module = absl::StrCat(i, "_");
    module.resize(limits::kMaxModuleNameLength, 'q');
    spec.mutable_adapter()->add_target_modules(module);
  }
  for (int i = 0; i < limits::kMaxJobLabels; ++i) {
    std::string key = absl::StrCat(i, "-");
    key.resize(limits::kMaxJobLabelKeyBytes, 'k');
    (*spec.mutable_labels())[key] = std::string(limits::kMaxJobLabelValueBytes, 'v');
  }
  EXPECT_LE(spec.ByteSizeLong(), limits::kMaxJobSpecBytes);
  auto submitted = core_->SubmitJob({"alice"}, request);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
}

TEST_F(CoreTest, WatchReplaysThenFollowsAndEndsWhenTheJobIsFinal) {
  CoreOptions options;
  options.event_ring_size = 2;  // most of the replay then comes from the store
  MakeCore(options);
  std::string id = Submit(Spec("watched"));
  uint64_t lease = Register("w1", 1);
  core_->Tick();
  ASSERT_TRUE(Report("w1", lease, id, 1, 0, {State(v1::JOB_STATE_RUNNING), Train(1), Train(2), Train(3)}).ok());
  v1::WatchJobRequest request;
  request.set_id(id);
  request.set_from_seq(2);
  auto stream = core_->WatchJob(request);
  ASSERT_TRUE(stream.ok()) << stream.status();
  int notified = 0;
  (*stream)->SetNotify([&notified] { ++notified; });
  std::vector<uint64_t> seqs;
  v1::JobEvent event;
  while ((*stream)->Next(event) == EventStream::Poll::kEvent) seqs.push_back(event.seq());
  EXPECT_THAT(seqs, ElementsAre(2u, 3u, 4u, 5u, 6u));
  EXPECT_EQ((*stream)->Next(event), EventStream::Poll::kWait);
  ASSERT_TRUE(Report("w1", lease, id, 1, 4, {Train(4)}).ok());
  EXPECT_GE(notified, 1);
  ASSERT_EQ((*stream)->Next(event), EventStream::Poll::kEvent);
  EXPECT_EQ(event.train().step(), 4u);
  v1::CancelJobRequest cancel;
  cancel.set_id(id);
  ASSERT_TRUE(core_->CancelJob({"alice"}, cancel).ok());
  ASSERT_EQ((*stream)->Next(event), EventStream::Poll::kEvent);
  EXPECT_EQ(event.state_change().to(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ((*stream)->Next(event), EventStream::Poll::kEnd);
  request.set_id("no-such-job");
  EXPECT_EQ(core_->WatchJob(request).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CoreTest, ARestartedCoordinatorReattachesWorkersOrRequeuesTheirJobs) {
  std::string kept = Submit(Spec("kept"));
  std::string orphan = Submit(Spec("orphan"));
  std::string queued = Submit(Spec("queued"));  // no slot left for it
  uint64_t lease1 = Register("w1", 1);
  uint64_t lease2 = Register("w2", 1);
  core_->Tick();
  std::string on_w1 = Get(kept).workers(0) == "w1" ? kept : orphan;
  std::string on_w2 = on_w1 == kept ? orphan : kept;
  ASSERT_TRUE(Report("w1", lease1, on_w1, 1, 0, {State(v1::JOB_STATE_RUNNING)}).ok());
  ASSERT_TRUE(Report("w2", lease2, on_w2, 1, 0, {State(v1::JOB_STATE_RUNNING)}).ok());
  // A new core on the same store, as after SIGKILL.
  MakeCore();
  EXPECT_EQ(Get(queued).state(), v1::JOB_STATE_QUEUED);
  uint64_t lease = Register("w1", 1, {{on_w1, 1}});  // w1 comes back with its attempt
  clock_.Advance(absl::Seconds(6));                    // w2 never does
  v1::HeartbeatRequest beat;
  beat.set_name("w1");
  beat.set_lease_id(lease);
  ASSERT_TRUE(core_->Heartbeat(beat).ok());
  clock_.Advance(absl::Seconds(5));
  core_->Tick();
  EXPECT_EQ(Get(on_w1).state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(Get(on_w1).attempt(), 1u);
  v1::Job requeued = Get(on_w2);
  EXPECT_EQ(requeued.attempt(), 2u);
  EXPECT_NE(requeued.state(), v1::JOB_STATE_RUNNING);
}

TEST_F(CoreTest, AWorkerThatComesBackWithOneOfItsTwoAttemptsKeepsOnlyThatOnesSlot) {
  std::string kept = Submit(Spec("kept"));
  std::string dropped = Submit(Spec("dropped"));
  uint64_t lease = Register("w1", 2);
  core_->Tick();
  ASSERT_TRUE(Report("w1", lease, kept, 1, 0, {State(v1::JOB_STATE_RUNNING)}).ok());
  ASSERT_TRUE(Report("w1", lease, dropped, 1, 0, {State(v1::JOB_STATE_RUNNING)}).ok());
  Register("w1", 2, {{kept, 1}});  // the agent restarted and still runs only `kept`
  EXPECT_EQ(Get(kept).state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(Get(dropped).attempt(), 2u);
  EXPECT_EQ(core_->ListWorkers().workers(0).free_slots(), 1u);
}

TEST_F(CoreTest, DrainingRefusesCallsAndEndsStreams) {
  uint64_t lease = Register("w1", 1);
  v1::StreamCommandsRequest request;
  request.set_name("w1");
  request.set_lease_id(lease);
  auto stream = core_->StreamCommands(request);
  ASSERT_TRUE(stream.ok());
  bool woken = false;
  (*stream)->SetNotify([&woken] { woken = true; });
  core_->Drain();
  EXPECT_TRUE(woken);
  v1::WorkerCommand command;
  EXPECT_EQ((*stream)->Next(command), CommandStream::Poll::kEnd);
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = Spec("late");
  EXPECT_EQ(core_->SubmitJob({"alice"}, submit).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(CoreTest, AFinalCheckpointCommittedBeforeACoordinatorRestartStillCounts) {
  std::string id = Submit(Spec("restart-at-the-end"));
  uint64_t lease = Register("w1", 1);
  core_->Tick();
  ASSERT_TRUE(Report("w1", lease, id, 1, 0, {State(v1::JOB_STATE_RUNNING)}).ok());
  ASSERT_TRUE(Upload("w1", lease, id, 1, 8, true, "final").ok());
  MakeCore();  // the coordinator restarts before node 0's SUCCEEDED arrives
  lease = Register("w1", 1, {{id, 1}});
  ASSERT_TRUE(Report("w1", lease, id, 1, 1, {State(v1::JOB_STATE_SUCCEEDED)}).ok());
  EXPECT_EQ(Get(id).state(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(CoreTest, AHeartbeatThatDoesNotListAnAttemptGetsItsAssignmentAgainOrRestartsIt) {
  std::string id = Submit(Spec("lost-assignment"));
  uint64_t lease = Register("w1", 1);
  core_->Tick();
  ASSERT_EQ(Commands("w1", lease).size(), 1u);  // delivered to a stream that then broke
  v1::HeartbeatRequest beat;
  beat.set_name("w1");
  beat.set_lease_id(lease);
  clock_.Advance(absl::Seconds(4));  // more than a heartbeat interval (ttl / 3)
  ASSERT_TRUE(core_->Heartbeat(beat).ok());
  std::vector<v1::WorkerCommand> again = Commands("w1", lease);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].assign().job_id(), id);
  // Once it runs and then vanishes from two heartbeats in a row, the attempt restarts.
  ASSERT_TRUE(Report("w1", lease, id, 1, 0, {State(v1::JOB_STATE_RUNNING)}).ok());
  v1::RunningAttempt* running = beat.add_running();
  running->set_job_id(id);
  running->set_attempt(1);
  ASSERT_TRUE(core_->Heartbeat(beat).ok());
  beat.clear_running();
  ASSERT_TRUE(core_->Heartbeat(beat).ok());
  EXPECT_EQ(Get(id).attempt(), 1u) << "one beat is not enough";
  ASSERT_TRUE(core_->Heartbeat(beat).ok());
  EXPECT_EQ(Get(id).attempt(), 2u);
  EXPECT_THAT(Get(id).state_reason(), HasSubstr("no longer runs"));
}

TEST_F(CoreTest, ALateFailureFromAnotherNodeDoesNotUndoACommittedResult) {
  std::string id = Submit(Spec("two-nodes", 2, 1));
  uint64_t lease1 = Register("w1", 1);
  uint64_t lease2 = Register("w2", 1);
  core_->Tick();
  v1::Job job = Get(id);
  ASSERT_EQ(job.workers_size(), 2);
  std::string node0 = job.workers(0), node1 = job.workers(1);
  uint64_t lease0 = node0 == "w1" ? lease1 : lease2;
  uint64_t other = node0 == "w1" ? lease2 : lease1;
  std::vector<v1::WorkerCommand> commands0 = Commands(node0, lease0);
  std::vector<v1::WorkerCommand> commands1 = Commands(node1, other);
  ASSERT_EQ(commands0.size(), 1u);
  ASSERT_EQ(commands1.size(), 1u);
  EXPECT_EQ(commands1[0].assign().node_rank(), 1u);
  EXPECT_EQ(commands1[0].assign().master_addr(), node0 + ".local");
  EXPECT_EQ(commands1[0].assign().master_port(), commands0[0].assign().master_port());
  ASSERT_TRUE(Report(node0, lease0, id, 1, 0, {State(v1::JOB_STATE_RUNNING)}).ok());
  ASSERT_TRUE(Upload(node0, lease0, id, 1, 4, true, "final").ok());
  ASSERT_TRUE(Report(node1, other, id, 1, 0, {State(v1::JOB_STATE_RESTARTING, "torn down")}).ok());
  EXPECT_EQ(Get(id).attempt(), 1u);
  ASSERT_TRUE(Report(node0, lease0, id, 1, 1, {State(v1::JOB_STATE_SUCCEEDED)}).ok());
  EXPECT_EQ(Get(id).state(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(CoreTest, CheckpointsAreTheOwnersAndEachAttemptGetsItsOwnPort) {
  CoreOptions options;
  options.rendezvous_port_low = 40000;
  options.rendezvous_port_high = 40001;
  MakeCore(options);
  std::string first = Submit(Spec("first"));
  std::string second = Submit(Spec("second"));
  uint64_t lease = Register("w1", 2);
  core_->Tick();
  std::vector<v1::WorkerCommand> commands = Commands("w1", lease);
  ASSERT_EQ(commands.size(), 2u);
  EXPECT_NE(commands[0].assign().master_port(), commands[1].assign().master_port());
  ASSERT_TRUE(Upload("w1", lease, first, 1, 2, false, "adapter").ok());
  v1::DownloadCheckpointRequest download;
  download.set_job_id(first);
  EXPECT_EQ(core_->OpenCheckpoint({"bob", true, false}, download).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(core_->OpenCheckpoint({"alice", true, false}, download).ok());
  EXPECT_TRUE(core_->OpenCheckpoint({"w1", false, true}, download).ok()) << "workers resume";
  (void)second;
}

// ---- visibility: users see and act on their own jobs, admins on all ---------------------------

TEST_F(CoreTest, AUserSeesAndActsOnlyOnTheirOwnJobsAndAnAdminOnAll) {
  const Caller alice{"alice", true, false, false};
  const Caller bob{"bob", true, false, false};
  const Caller root{"root", true, false, true};
  const std::string mine = Submit(Spec("mine"), "alice");
  const std::string theirs = Submit(Spec("theirs"), "bob");
  const auto denied = absl::StatusCode::kPermissionDenied;

  EXPECT_TRUE(core_->GetJob(alice, mine).ok());
  EXPECT_EQ(core_->GetJob(alice, theirs).status().code(), denied);
  EXPECT_TRUE(core_->GetJob(root, theirs).ok());
  EXPECT_EQ(core_->GetJob(alice, "no-such-job").status().code(), absl::StatusCode::kNotFound);

  EXPECT_TRUE(core_->ListCheckpoints(alice, mine).ok());
  EXPECT_EQ(core_->ListCheckpoints(alice, theirs).status().code(), denied);
  EXPECT_TRUE(core_->ListCheckpoints(root, theirs).ok());

  v1::WatchJobRequest watch;
  watch.set_id(theirs);
  EXPECT_EQ(core_->WatchJob(alice, watch).status().code(), denied);
  EXPECT_TRUE(core_->WatchJob(bob, watch).ok());
  EXPECT_TRUE(core_->WatchJob(root, watch).ok());

  v1::CancelJobRequest cancel;
  cancel.set_id(theirs);
  EXPECT_EQ(core_->CancelJob(alice, cancel).status().code(), denied);
  EXPECT_EQ(Get(theirs).state(), v1::JOB_STATE_QUEUED);
  auto cancelled = core_->CancelJob(root, cancel);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  // A finished job is refused like an active one, not answered as it is.
  EXPECT_EQ(core_->CancelJob(alice, cancel).status().code(), denied);
  EXPECT_TRUE(core_->CancelJob(bob, cancel).ok());
}

TEST_F(CoreTest, AUsersListingIsTheirOwnJobsAndOnlyAnAdminListsAnotherOwner) {
  const Caller alice{"alice", true, false, false};
  const Caller root{"root", true, false, true};
  const std::string mine = Submit(Spec("mine"), "alice");
  const std::string theirs = Submit(Spec("theirs"), "bob");
  auto ids = [](const v1::ListJobsResponse& response) {
    std::vector<std::string> out;
    for (const v1::Job& job : response.jobs()) out.push_back(job.id());
    return out;
  };

  v1::ListJobsRequest request;
  auto own = core_->ListJobs(alice, request);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_THAT(ids(*own), ElementsAre(mine)) << "no owner given: forced to the caller";
  request.set_owner("alice");
  EXPECT_THAT(ids(*core_->ListJobs(alice, request)), ElementsAre(mine));
  request.set_owner("bob");
  auto other = core_->ListJobs(alice, request);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(other.status().message(), HasSubstr("admin"));

  auto bobs = core_->ListJobs(root, request);
  ASSERT_TRUE(bobs.ok());
  EXPECT_THAT(ids(*bobs), ElementsAre(theirs));
  request.clear_owner();
  auto everyone = core_->ListJobs(root, request);
  ASSERT_TRUE(everyone.ok());
  EXPECT_EQ(everyone->jobs_size(), 2);
}

TEST_F(CoreTest, AnAdminMayDownloadAnyJobsCheckpoints) {
  const std::string id = Submit(Spec("adapter"), "alice");
  uint64_t lease = Register("w1", 1);
  core_->Tick();
  ASSERT_TRUE(Upload("w1", lease, id, 1, 2, false, "adapter").ok());
  v1::DownloadCheckpointRequest download;
  download.set_job_id(id);
  EXPECT_TRUE(core_->OpenCheckpoint({"root", true, false, true}, download).ok());
  EXPECT_EQ(core_->OpenCheckpoint({"bob", true, false, false}, download).status().code(),
            absl::StatusCode::kPermissionDenied);
}

// ---- metrics: each CoreMetrics call happens when its event does ------------------------------

TEST_F(CoreTest, MetricsFollowAJobFromTheQueueToItsEnd) {
  std::string low = Submit(Spec("low", 1, 1, 1, /*priority=*/0));
  clock_.Advance(absl::Seconds(10));
  std::string high = Submit(Spec("high", 1, 1, 1, /*priority=*/5));
  clock_.Advance(absl::Seconds(20));
  const int writes_before = metrics_.store_writes;
  core_->Tick();  // a pass with no fleet: nothing placed
  EXPECT_EQ(metrics_.scheduler_passes, 1);
  EXPECT_THAT(metrics_.queued_by_priority, ElementsAre(Pair(0, 1), Pair(5, 1)));
  EXPECT_EQ(metrics_.oldest_queued, absl::Seconds(30)) << "since `low` was submitted";

  uint64_t lease = Register("w1", 1);
  core_->Tick();
  EXPECT_EQ(metrics_.scheduler_passes, 2);
  EXPECT_GT(metrics_.store_writes, writes_before) << "the worker and the placement";
  ASSERT_EQ(Get(high).state(), v1::JOB_STATE_SCHEDULED) << "higher priority first";
  EXPECT_THAT(metrics_.queued_by_priority, ElementsAre(Pair(0, 1)));

  ASSERT_TRUE(Report("w1", lease, high, 1, 0, {State(v1::JOB_STATE_RUNNING)}).ok());
  clock_.Advance(absl::Seconds(8));  // within the lease
  ASSERT_TRUE(Upload("w1", lease, high, 1, 8, true, "final adapter").ok());
  core_->Tick();
  EXPECT_EQ(metrics_.stored_checkpoints, 1);
  EXPECT_EQ(metrics_.stored_bytes, std::string("final adapter").size());
  EXPECT_TRUE(metrics_.runs.empty());
  ASSERT_TRUE(Report("w1", lease, high, 1, 1, {State(v1::JOB_STATE_SUCCEEDED)}).ok());
  EXPECT_THAT(metrics_.runs,
              ElementsAre(std::make_pair(v1::JOB_STATE_SUCCEEDED, absl::Seconds(8))));

  // Cancelled after it ran: observed under "cancelled".
  v1::HeartbeatRequest beat;
  beat.set_name("w1");
  beat.set_lease_id(lease);
  ASSERT_TRUE(core_->Heartbeat(beat).ok());
  v1::CancelJobRequest cancel;
  cancel.set_id(low);
  core_->Tick();  // `low` takes the freed slot
  ASSERT_TRUE(Report("w1", lease, low, 1, 0, {State(v1::JOB_STATE_RUNNING)}).ok());
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(core_->CancelJob({"alice"}, cancel).ok());
  ASSERT_EQ(metrics_.runs.size(), 2u);
  EXPECT_EQ(metrics_.runs[1], std::make_pair(v1::JOB_STATE_CANCELLED, absl::Seconds(5)));
  // Cancelled while queued: it never ran, so no run time.
  std::string never_ran = Submit(Spec("never-ran"));
  cancel.set_id(never_ran);
  ASSERT_TRUE(core_->CancelJob({"alice"}, cancel).ok());
  EXPECT_EQ(metrics_.runs.size(), 2u);
  core_->Tick();
  EXPECT_TRUE(metrics_.queued_by_priority.empty());
  EXPECT_EQ(metrics_.oldest_queued, absl::ZeroDuration()) << "0 when nothing is queued";
}

TEST_F(CoreTest, AQueueLargerThanOnePassIsHandedOutOverPassesThatAskForTheNext) {
  MakeCore();
  constexpr int kJobs = 600;
  std::vector<std::string> ids;
  for (int i = 0; i < kJobs; ++i) ids.push_back(Submit(Spec("j" + std::to_string(i))));
  int pokes = 0;
  core_->SetScheduleHook([&] { ++pokes; });
  Register("w1", kJobs);
  auto scheduled = [&] {
    return std::count_if(ids.begin(), ids.end(), [&](const std::string& id) {
      return Get(id).state() == v1::JOB_STATE_SCHEDULED;
    });
  };
  pokes = 0;
  core_->Tick();
  const auto first = scheduled();
  EXPECT_GT(first, 0);
  EXPECT_LT(first, kJobs) << "one pass must not hold the core for the whole queue";
  EXPECT_GE(pokes, 1) << "a pass that stopped early asks for the next one";
  for (int pass = 0; pass < kJobs && scheduled() < kJobs; ++pass) core_->Tick();
  EXPECT_EQ(scheduled(), kJobs);
  EXPECT_EQ(Get(ids.front()).state(), v1::JOB_STATE_SCHEDULED) << "queue order kept";
  core_->SetScheduleHook(nullptr);
}

TEST_F(CoreTest, ScheduleIfChangedRunsOnlyAPassAndOnlyWhenSomethingChanged) {
  MakeCore();
  Register("w1", 1);
  const std::string id = Submit(Spec("a"));
  const int passes = metrics_.scheduler_passes;
  core_->ScheduleIfChanged();
  EXPECT_EQ(Get(id).state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_GT(metrics_.scheduler_passes, passes);
  core_->ScheduleIfChanged();  // the placement itself was a change
  const int settled = metrics_.scheduler_passes;
  core_->ScheduleIfChanged();
  EXPECT_EQ(metrics_.scheduler_passes, settled) << "nothing changed: no pass";
  // The sweeps are Tick's: a lapsed lease is noticed there, not here.
  clock_.Advance(absl::Seconds(11));
  Submit(Spec("b"));
  core_->ScheduleIfChanged();
  EXPECT_EQ(core_->ListWorkers().workers(0).state(), v1::WORKER_STATE_READY);
  EXPECT_EQ(Get(id).state(), v1::JOB_STATE_SCHEDULED);
  core_->Tick();
  EXPECT_EQ(core_->ListWorkers().workers(0).state(), v1::WORKER_STATE_LOST);
}

TEST_F(CoreTest, ALapsedLeaseIsCountedOnce) {
  Register("w1", 1);
  clock_.Advance(absl::Seconds(9));
  core_->Tick();
  EXPECT_EQ(metrics_.lease_expiries, 0);
  clock_.Advance(absl::Seconds(2));
  core_->Tick();
  core_->Tick();
  EXPECT_EQ(metrics_.lease_expiries, 1);
  EXPECT_EQ(metrics_.workers_lost, 1);
}

TEST_F(CoreTest, AnIdempotentRepeatIsCountedAsAReplayNotASubmission) {
  v1::SubmitJobRequest request;
  *request.mutable_spec() = Spec("idem");
  request.set_idempotency_key("key-1");
  ASSERT_TRUE(core_->SubmitJob({"alice"}, request).ok());
  EXPECT_EQ(metrics_.submitted, 1);
  EXPECT_EQ(metrics_.idempotent_replays, 0);
  ASSERT_TRUE(core_->SubmitJob({"alice"}, request).ok());
  ASSERT_TRUE(core_->SubmitJob({"alice"}, request).ok());
  EXPECT_EQ(metrics_.submitted, 1);
  EXPECT_EQ(metrics_.idempotent_replays, 2);
  request.set_idempotency_key("key-2");
  ASSERT_TRUE(core_->SubmitJob({"alice"}, request).ok());
  EXPECT_EQ(metrics_.submitted, 2);
  EXPECT_EQ(metrics_.idempotent_replays, 2);
}

// The gauges are computed from state, and the times from persisted timestamps: a restarted
// coordinator reports the same queue, checkpoints and run times, before its first tick.
TEST_F(CoreTest, GaugesAndRunTimesAreRightAfterACoordinatorRestart) {
  std::string running = Submit(Spec("running", 1, 1, 1, /*priority=*/0));
  uint64_t lease = Register("w1", 1);
  core_->Tick();
  ASSERT_TRUE(Report("w1", lease, running, 1, 0, {State(v1::JOB_STATE_RUNNING)}).ok());
  ASSERT_TRUE(Upload("w1", lease, running, 1, 2, false, "step two").ok());
  std::string queued = Submit(Spec("queued", 1, 1, 1, /*priority=*/200));
  clock_.Advance(absl::Seconds(40));

  // A new process: a new core on the same store, the artifact store opened again.
  core_.reset();
  metrics_ = CountingMetrics();
  artifacts_.reset();
  auto artifacts = ArtifactStore::Open(dir_.string());
  ASSERT_TRUE(artifacts.ok()) << artifacts.status();
  artifacts_ = std::move(*artifacts);
  clock_.Advance(absl::Seconds(20));
  MakeCore();
  EXPECT_THAT(metrics_.queued_by_priority, ElementsAre(Pair(200, 1)));
  EXPECT_EQ(metrics_.oldest_queued, absl::Seconds(60)) << "queued before the restart";
  EXPECT_EQ(metrics_.stored_checkpoints, 1);
  EXPECT_EQ(metrics_.stored_bytes, std::string("step two").size());

  // The running job's run time counts from its first RUNNING, before the restart.
  lease = Register("w1", 1, {{running, 1}});
  ASSERT_TRUE(Upload("w1", lease, running, 1, 8, true, "final").ok());
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(Report("w1", lease, running, 1, 1, {State(v1::JOB_STATE_SUCCEEDED)}).ok());
  EXPECT_THAT(metrics_.runs,
              ElementsAre(std::make_pair(v1::JOB_STATE_SUCCEEDED, absl::Seconds(65))));
  core_->Tick();
  EXPECT_EQ(metrics_.stored_checkpoints, 2);
  (void)queued;
}

// A store whose next N job updates fail, as a full disk would make them.
class FailingStore final : public InMemoryJobStore {
 public:
  int failures = 0;
  absl::StatusOr<AppendResult> UpdateJobAndAppendEvents(
      const v1::Job& job, const std::vector<v1::JobEvent>& events) override {
    if (failures > 0) {
      --failures;
      return absl::UnavailableError("disk full");
    }
    return InMemoryJobStore::UpdateJobAndAppendEvents(job, events);
  }
};

// Captures what is logged through common/logging.h while it lives.
class CapturedLogs {
 public:
  CapturedLogs()
      : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256)),
        previous_(spdlog::default_logger()) {
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink_));
  }
  ~CapturedLogs() { spdlog::set_default_logger(previous_); }
  std::string Text() const {
    std::string text;
    for (const std::string& line : sink_->last_formatted()) text += line;
    return text;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST(CoreStoreFailures, ALeaseThatLapsesWhileTheStoreFailsIsCountedLoggedAndRetried) {
  InMemoryJobStore store;
  FakeClock clock;
  CountingMetrics metrics;
  fs::path dir = fs::temp_directory_path() / ("core_lease_failure_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto artifacts = ArtifactStore::Open(dir.string());
  ASSERT_TRUE(artifacts.ok());
  CoreOptions options;
  options.lease_ttl = absl::Seconds(10);
  auto core = JobServiceCore::Create(&store, artifacts->get(), &clock, &metrics, options);
  ASSERT_TRUE(core.ok());
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = Spec("lapses", 1, 1, /*max_restarts=*/1);
  auto submitted = (*core)->SubmitJob({"alice"}, submit);
  ASSERT_TRUE(submitted.ok());
  const std::string id = submitted->job().id();
  v1::RegisterRequest registration;
  registration.set_name("w1");
  registration.set_slots(1);
  registration.set_address("w1.local");
  auto lease = (*core)->Register(registration);
  ASSERT_TRUE(lease.ok());
  (*core)->Tick();
  v1::ReportEventsRequest report;
  report.set_worker("w1");
  report.set_lease_id(lease->lease_id());
  report.set_job_id(id);
  report.set_attempt(1);
  report.add_events()->mutable_state_change()->set_to(v1::JOB_STATE_RUNNING);
  ASSERT_TRUE((*core)->ReportEvents(report).ok());
  ASSERT_EQ(metrics.store_write_failures, 0);

  // The disk fills up, then w1's lease lapses.
  CapturedLogs logs;
  store.FailWrites(absl::UnavailableError("disk full"));
  clock.Advance(absl::Seconds(11));
  (*core)->Tick();
  EXPECT_EQ(metrics.workers_lost, 1);
  EXPECT_EQ(metrics.store_write_failures, 2) << "the lost worker's record and the restart";
  EXPECT_EQ(metrics.restarted, 0);
  EXPECT_EQ((*core)->ListWorkers().workers(0).state(), v1::WORKER_STATE_LOST);
  // Nothing half-done: the cached job is the stored one, the attempt still RUNNING on w1.
  auto cached = (*core)->GetJob(id);
  auto stored = store.GetJob(id);
  ASSERT_TRUE(cached.ok() && stored.ok());
  EXPECT_EQ(cached->state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(cached->attempt(), 1u);
  EXPECT_EQ(stored->state(), cached->state());
  EXPECT_EQ(stored->attempt(), cached->attempt());
  EXPECT_EQ(stored->last_event_seq(), cached->last_event_seq());
  EXPECT_THAT(cached->workers(), ElementsAre("w1"));
  // Not silent: each failure is logged with what was being done.
  EXPECT_THAT(logs.Text(), HasSubstr("persisting that worker w1 is lost failed"));
  EXPECT_THAT(logs.Text(), HasSubstr("restarting job " + id));
  EXPECT_THAT(logs.Text(), HasSubstr("disk full"));

  // Still failing: the restart is tried again on the next tick, and counted again.
  (*core)->Tick();
  EXPECT_EQ(metrics.store_write_failures, 3);
  EXPECT_EQ((*core)->GetJob(id)->attempt(), 1u);

  // The store heals: the next tick restarts the attempt, once, and both views agree.
  store.FailWrites(absl::OkStatus());
  (*core)->Tick();
  EXPECT_EQ(metrics.store_write_failures, 3);
  EXPECT_EQ(metrics.restarted, 1);
  EXPECT_EQ(metrics.workers_lost, 1);
  cached = (*core)->GetJob(id);
  stored = store.GetJob(id);
  ASSERT_TRUE(cached.ok() && stored.ok());
  EXPECT_EQ(cached->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(cached->attempt(), 2u);
  EXPECT_EQ(stored->state(), cached->state());
  EXPECT_EQ(stored->attempt(), cached->attempt());
  EXPECT_EQ(stored->last_event_seq(), cached->last_event_seq());
  EXPECT_TRUE(cached->workers().empty());
  auto events = store.ListEvents(id, 0, 100);
  ASSERT_TRUE(events.ok());
  int restarting = 0;
  for (const v1::JobEvent& event : *events) {
    restarting += event.state_change().to() == v1::JOB_STATE_RESTARTING;
  }
  EXPECT_EQ(restarting, 1) << "the failed tries left no events behind";
  core->reset();
  fs::remove_all(dir);
}

TEST(CoreStoreFailures, AReportThatFailedToPersistIsAcceptedWhenRetried) {
  FailingStore store;
  FakeClock clock;
  fs::path dir = fs::temp_directory_path() / ("core_store_failure_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto artifacts = ArtifactStore::Open(dir.string());
  ASSERT_TRUE(artifacts.ok());
  auto core = JobServiceCore::Create(&store, artifacts->get(), &clock, nullptr, {});
  ASSERT_TRUE(core.ok());
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = Spec("flaky");
  auto job = (*core)->SubmitJob({"alice"}, submit);
  ASSERT_TRUE(job.ok());
  v1::RegisterRequest registration;
  registration.set_name("w1");
  registration.set_slots(1);
  registration.set_address("w1.local");
  auto lease = (*core)->Register(registration);
  ASSERT_TRUE(lease.ok());
  (*core)->Tick();
  v1::ReportEventsRequest report;
  report.set_worker("w1");
  report.set_lease_id(lease->lease_id());
  report.set_job_id(job->job().id());
  report.set_attempt(1);
  report.add_events()->mutable_state_change()->set_to(v1::JOB_STATE_RUNNING);
  report.add_events()->mutable_train()->set_step(1);
  store.failures = 1;
  EXPECT_FALSE((*core)->ReportEvents(report).ok());
  auto retried = (*core)->ReportEvents(report);  // same first_report_index
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->next_report_index(), 2u);
  auto stored = (*core)->GetJob(job->job().id());
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(stored->latest_train().step(), 1u);
  core->reset();
  fs::remove_all(dir);
}

// A store whose event reads fail (a corrupt page, an I/O error), for the watch replay.
class EventReadFailingStore final : public InMemoryJobStore {
 public:
  absl::Status list_events_error;  // OK: reads work
  absl::StatusOr<std::vector<v1::JobEvent>> ListEvents(const std::string& job_id,
                                                       uint64_t after_seq, int limit) override {
    if (!list_events_error.ok()) return list_events_error;
    return InMemoryJobStore::ListEvents(job_id, after_seq, limit);
  }
};

TEST(CoreStoreFailures, AStoreReadErrorDuringAWatchReplayEndsTheStreamWithAnError) {
  EventReadFailingStore store;
  FakeClock clock;
  fs::path dir = fs::temp_directory_path() / ("core_watch_failure_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto artifacts = ArtifactStore::Open(dir.string());
  ASSERT_TRUE(artifacts.ok());
  auto core = JobServiceCore::Create(&store, artifacts->get(), &clock, nullptr, {});
  ASSERT_TRUE(core.ok());
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = Spec("watched");
  auto job = (*core)->SubmitJob({"alice"}, submit);
  ASSERT_TRUE(job.ok());
  const std::string id = job->job().id();
  v1::CancelJobRequest cancel;
  cancel.set_id(id);
  ASSERT_TRUE((*core)->CancelJob({"alice"}, cancel).ok());  // final: the replay reads the store

  for (bool follow : {true, false}) {
    SCOPED_TRACE(follow ? "follow" : "no_follow");
    store.list_events_error = absl::InternalError("database disk image is malformed");
    v1::WatchJobRequest request;
    request.set_id(id);
    request.set_no_follow(!follow);
    auto stream = (*core)->WatchJob(request);
    ASSERT_TRUE(stream.ok()) << stream.status();
    (*stream)->SetNotify([] {});
    v1::JobEvent event;
    ASSERT_EQ((*stream)->Next(event), EventStream::Poll::kEnd);
    const absl::Status ended = (*stream)->status();
    EXPECT_EQ(ended.code(), absl::StatusCode::kUnavailable) << ended;
    EXPECT_THAT(ended.message(), HasSubstr("database disk image is malformed"));
    EXPECT_THAT(ended.message(), HasSubstr("from seq 1"));

    // Healed: the same replay delivers every event and ends normally.
    store.list_events_error = absl::OkStatus();
    auto again = (*core)->WatchJob(request);
    ASSERT_TRUE(again.ok());
    (*again)->SetNotify([] {});
    std::vector<uint64_t> seqs;
    while ((*again)->Next(event) == EventStream::Poll::kEvent) seqs.push_back(event.seq());
    EXPECT_THAT(seqs, ElementsAre(1u, 2u));
    EXPECT_TRUE((*again)->status().ok());
  }
  core->reset();
  fs::remove_all(dir);
}

// ---- group commit: nothing leaves the core before its write is durable -----------------------

// A store whose Sync (the fsync of group commit) blocks while the test holds it closed.
class HeldSyncStore final : public InMemoryJobStore {
 public:
  absl::Status Sync() override {
    std::unique_lock<std::mutex> lock(mu_);
    ++calls_;
    changed_.notify_all();
    changed_.wait(lock, [this] { return !held_; });
    return absl::OkStatus();
  }
  void Hold(bool held) {
    std::lock_guard<std::mutex> lock(mu_);
    held_ = held;
    changed_.notify_all();
  }
  void WaitForCall(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [&] { return calls_ >= n; });
  }
  int calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  int calls_ = 0;
  bool held_ = false;
};

TEST(CoreGroupCommit, ASubmitIsAnsweredAndItsEventWatchedOnlyOnceItsWriteIsDurable) {
  HeldSyncStore store;
  FakeClock clock;
  fs::path dir = fs::temp_directory_path() / ("core_group_commit_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto artifacts = ArtifactStore::Open(dir.string());
  ASSERT_TRUE(artifacts.ok());
  auto core = JobServiceCore::Create(&store, artifacts->get(), &clock, nullptr, {});
  ASSERT_TRUE(core.ok());
  v1::SubmitJobRequest submit;
  *submit.mutable_spec() = Spec("first");
  auto first = (*core)->SubmitJob({"alice"}, submit);
  ASSERT_TRUE(first.ok());
  const std::string id = first->job().id();
  v1::WatchJobRequest watch;
  watch.set_id(id);
  auto stream = (*core)->WatchJob(watch);
  ASSERT_TRUE(stream.ok());
  std::atomic<int> notified{0};
  (*stream)->SetNotify([&notified] { notified.fetch_add(1); });
  v1::JobEvent event;
  ASSERT_EQ((*stream)->Next(event), EventStream::Poll::kEvent);  // QUEUED, durable
  ASSERT_EQ((*stream)->Next(event), EventStream::Poll::kWait);

  // The disk is slow. A scheduling pass commits SCHEDULED (into the ring) but its Sync does
  // not return yet: the watcher waits for it.
  v1::RegisterRequest registration;
  registration.set_name("w1");
  registration.set_slots(1);
  registration.set_address("w1.local");
  ASSERT_TRUE((*core)->Register(registration).ok());
  const int syncs_registered = store.calls();
  store.Hold(true);
  std::thread ticker([&] { (*core)->Tick(); });
  store.WaitForCall(syncs_registered + 1);
  EXPECT_EQ((*stream)->Next(event), EventStream::Poll::kWait);
  const int woken = notified.load();
  store.Hold(false);
  ticker.join();
  EXPECT_GT(notified.load(), woken) << "woken once durable";
  ASSERT_EQ((*stream)->Next(event), EventStream::Poll::kEvent);
  EXPECT_EQ(event.state_change().to(), v1::JOB_STATE_SCHEDULED);
  ASSERT_EQ((*stream)->Next(event), EventStream::Poll::kWait);

  // A cancel (the job's final event, which watchers read from the store) is committed but its
  // Sync does not return yet: neither answered nor watched.
  const int syncs_before = store.calls();
  store.Hold(true);
  std::atomic<bool> answered{false};
  std::thread canceller([&] {
    v1::CancelJobRequest cancel;
    cancel.set_id(id);
    EXPECT_TRUE((*core)->CancelJob({"alice"}, cancel).ok());
    answered.store(true);
  });
  store.WaitForCall(syncs_before + 1);
  // Committed, published to the ring, but not durable: neither answered nor watched.
  EXPECT_FALSE(answered.load());
  EXPECT_EQ((*stream)->Next(event), EventStream::Poll::kWait);
  EXPECT_FALSE(answered.load());

  store.Hold(false);
  canceller.join();
  EXPECT_TRUE(answered.load());
  EXPECT_GE(notified.load(), 1) << "woken once durable";
  ASSERT_EQ((*stream)->Next(event), EventStream::Poll::kEvent);
  EXPECT_EQ(event.state_change().to(), v1::JOB_STATE_CANCELLED);
  core->reset();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace loratrf::server
