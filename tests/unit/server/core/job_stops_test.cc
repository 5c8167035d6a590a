// Pause and resume, cordon / drain / uncordon and priority preemption (server/core/job_stops.h),
// through JobServiceCore with an in-memory store, a fake clock and a worker played by the test
// (its commands read from the core, its reports sent to it). The victim picker alone is tested
// in preemption_test.cc.
#include <filesystem>
#include <map>
#include <string>
#include <tuple>
#include <utility>
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
using ::testing::HasSubstr;

v1::JobSpec Spec(const std::string& name, uint32_t slots = 1, int32_t priority = 0,
                 uint32_t max_restarts = 1) {
  v1::JobSpec spec = core_testing::TestJobSpec(name, 1, slots);
  spec.set_max_restarts(max_restarts);
  spec.set_priority(priority);
  return spec;
}

// Counts the preemptions by kind; the rest is not looked at here.
class PreemptionCounter final : public core_testing::NullCoreMetrics {
 public:
  std::map<StopKind, int> preempted;
  void JobPreempted(StopKind why) override { ++preempted[why]; }
};

class JobStopsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("job_stops_test_" + std::to_string(::getpid()) + "_" +
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
  // A new core on the same store, as after a coordinator restart.
  void MakeCore() {
    CoreOptions options;
    options.lease_ttl = absl::Seconds(10);
    options.stop_timeout = absl::Seconds(30);
    options.min_run_before_preempt = absl::Minutes(1);
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

  uint64_t Register(const std::string& name, uint32_t slots) {
    v1::RegisterRequest request;
    request.set_name(name);
    request.set_slots(slots);
    request.set_device(v1::DEVICE_CPU);
    request.set_address(name + ".local");
    auto response = core_->Register(request);
    EXPECT_TRUE(response.ok()) << response.status();
    leases_[name] = response.ok() ? response->lease_id() : 0;
    return leases_[name];
  }

  // Moves the clock by `total` in heartbeat-sized steps, every registered worker beating, and
  // ticks after each step.
  void Pass(absl::Duration total) {
    for (absl::Duration done; done < total; done += absl::Seconds(3)) {
      clock_.Advance(absl::Seconds(3));
      for (const auto& [name, lease] : leases_) {
        v1::HeartbeatRequest beat;
        beat.set_name(name);
        beat.set_lease_id(lease);
        for (const auto& [job, attempt] : running_[name]) {
          v1::RunningAttempt* r = beat.add_running();
          r->set_job_id(job);
          r->set_attempt(attempt);
        }
        ASSERT_TRUE(core_->Heartbeat(beat).ok()) << name;
      }
      core_->Tick();
    }
  }

  std::vector<v1::WorkerCommand> Commands(const std::string& name) {
    v1::StreamCommandsRequest request;
    request.set_name(name);
    request.set_lease_id(leases_[name]);
    auto stream = core_->StreamCommands(request);
    EXPECT_TRUE(stream.ok()) << stream.status();
    std::vector<v1::WorkerCommand> out;
    if (!stream.ok()) return out;
    (*stream)->SetNotify([] {});
    v1::WorkerCommand command;
    while ((*stream)->Next(command) == CommandStream::Poll::kCommand) out.push_back(command);
    return out;
  }

  // The worker starts the attempt it was assigned and says so.
  void Start(const std::string& worker, const std::string& job) {
    const uint32_t attempt = Get(job).attempt();
    running_[worker][job] = attempt;
    v1::JobEvent event;
    event.mutable_state_change()->set_to(v1::JOB_STATE_RUNNING);
    ASSERT_TRUE(Report(worker, job, attempt, {event}).ok());
  }
  // Its ranks checkpointed and stopped: the report a stop with checkpoint ends with.
  absl::Status ReportPreempted(const std::string& worker, const std::string& job) {
    const uint32_t attempt = Get(job).attempt();
    running_[worker].erase(job);
    v1::JobEvent event;
    event.mutable_state_change()->set_to(v1::JOB_STATE_RESTARTING);
    event.mutable_state_change()->set_reason("stopped after checkpoint");
    event.mutable_state_change()->set_preempted(true);
    return Report(worker, job, attempt, {event});
  }
  absl::Status Report(const std::string& worker, const std::string& job, uint32_t attempt,
                      std::vector<v1::JobEvent> events) {
    v1::ReportEventsRequest request;
    request.set_worker(worker);
    request.set_lease_id(leases_[worker]);
    request.set_job_id(job);
    request.set_attempt(attempt);
    request.set_first_report_index(next_index_[{worker, job, attempt}]);
    next_index_[{worker, job, attempt}] += events.size();
    for (auto& e : events) *request.add_events() = std::move(e);
    return core_->ReportEvents(request).status();
  }
  absl::StatusOr<v1::Checkpoint> Upload(const std::string& worker, const std::string& job,
                                        uint64_t step) {
    const std::string content = "step " + std::to_string(step);
    v1::UploadCheckpointRequest::Header header;
    header.set_worker(worker);
    header.set_lease_id(leases_[worker]);
    header.set_job_id(job);
    header.set_attempt(Get(job).attempt());
    header.set_step(step);
    v1::CheckpointFile* file = header.add_files();
    file->set_path("adapter/adapter_model.safetensors");
    file->set_size_bytes(content.size());
    file->set_sha256(Sha256Hex(content));
    auto upload = core_->BeginUpload(header);
    if (!upload.ok()) return upload.status();
    v1::FileChunk chunk;
    chunk.set_path(file->path());
    chunk.set_data(content);
    if (absl::Status s = (*upload)->Write(chunk); !s.ok()) return s;
    return (*upload)->Finish();
  }

  v1::Job Get(const std::string& id) {
    auto job = core_->GetJob(id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : v1::Job();
  }
  absl::StatusOr<v1::Job> Pause(const std::string& id, const std::string& who = "alice") {
    v1::PauseJobRequest request;
    request.set_id(id);
    request.set_reason("freeing the GPUs for a demo");
    return core_->PauseJob({who}, request);
  }
  absl::StatusOr<v1::Job> Resume(const std::string& id, const std::string& who = "alice") {
    v1::ResumeJobRequest request;
    request.set_id(id);
    return core_->ResumeJob({who}, request);
  }
  absl::StatusOr<v1::Worker> Cordon(const std::string& name,
                                    v1::CordonWorkerRequest::Action action) {
    v1::CordonWorkerRequest request;
    request.set_name(name);
    request.set_action(action);
    return core_->CordonWorker({"ops"}, request);
  }
  bool Cordoned(const std::string& name) {
    const v1::ListWorkersResponse fleet = core_->ListWorkers();
    for (const v1::Worker& w : fleet.workers()) {
      if (w.name() == name) return w.cordoned();
    }
    ADD_FAILURE() << "no worker " << name;
    return false;
  }
  // The coordinator's notes (rank -1 log lines) on the job's event stream.
  std::vector<std::string> Notes(const std::string& id) {
    std::vector<std::string> notes;
    auto events = store_.ListEvents(id, 0, 1000);
    EXPECT_TRUE(events.ok());
    if (!events.ok()) return notes;
    for (const v1::JobEvent& event : *events) {
      if (event.has_log() && event.log().rank() == -1) notes.push_back(event.log().text());
    }
    return notes;
  }
  static std::vector<v1::Cancellation> Cancellations(const std::vector<v1::WorkerCommand>& all) {
    std::vector<v1::Cancellation> out;
    for (const v1::WorkerCommand& command : all) {
      if (command.has_cancel()) out.push_back(command.cancel());
    }
    return out;
  }

  fs::path dir_;
  PreemptionCounter metrics_;
  InMemoryJobStore store_;
  FakeClock clock_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<JobServiceCore> core_;
  std::map<std::string, uint64_t> leases_;
  std::map<std::string, std::map<std::string, uint32_t>> running_;  // worker → job → attempt
  std::map<std::tuple<std::string, std::string, uint32_t>, uint64_t> next_index_;
};

TEST_F(JobStopsTest, APausedQueuedJobIsHeldUntilResumed) {
  std::string id = Submit(Spec("held"));
  EXPECT_EQ(Pause(id, "mallory").status().code(), absl::StatusCode::kPermissionDenied);
  auto paused = Pause(id);
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_TRUE(paused->paused());
  EXPECT_EQ(paused->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(paused->queue().reason(), v1::QUEUE_REASON_PAUSED);
  EXPECT_THAT(Notes(id), ElementsAre(HasSubstr("paused by alice: freeing the GPUs")));
  // Pausing again changes nothing.
  auto again = Pause(id);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->last_event_seq(), paused->last_event_seq());

  Register("w1", 1);
  Pass(absl::Seconds(30));
  EXPECT_EQ(Get(id).state(), v1::JOB_STATE_QUEUED) << "a paused job is never scheduled";
  EXPECT_TRUE(store_.GetJob(id)->paused()) << "the pause is persisted";

  auto resumed = Resume(id);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_FALSE(resumed->paused());
  EXPECT_NE(resumed->queue().reason(), v1::QUEUE_REASON_PAUSED);
  core_->Tick();
  EXPECT_EQ(Get(id).state(), v1::JOB_STATE_SCHEDULED);
  // Resuming a job that is not paused is a no-op returning it.
  auto noop = Resume(id);
  ASSERT_TRUE(noop.ok());
  EXPECT_EQ(noop->last_event_seq(), Get(id).last_event_seq());
  EXPECT_EQ(metrics_.preempted[StopKind::kPause], 0) << "nothing was running";
}

TEST_F(JobStopsTest, FinalAndUnknownJobsCannotBePausedOrResumed) {
  std::string id = Submit(Spec("done"));
  v1::CancelJobRequest cancel;
  cancel.set_id(id);
  ASSERT_TRUE(core_->CancelJob({"alice"}, cancel).ok());
  EXPECT_EQ(Pause(id).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Resume(id).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Pause(id, "mallory").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Pause("j-0-000000").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(JobStopsTest, PausingARunningJobCheckpointsStopsAndHoldsIt) {
  std::string id = Submit(Spec("running", 1, 0, /*max_restarts=*/0));
  Register("w1", 1);
  core_->Tick();
  ASSERT_EQ(Commands("w1").size(), 1u);  // the assignment
  Start("w1", id);
  auto checkpoint = Upload("w1", id, 20);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();

  auto paused = Pause(id);
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_EQ(paused->state(), v1::JOB_STATE_RUNNING) << "it runs until its ranks checkpoint";
  EXPECT_TRUE(paused->paused());
  std::vector<v1::Cancellation> stops = Cancellations(Commands("w1"));
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_TRUE(stops[0].checkpoint_first());
  EXPECT_EQ(stops[0].attempt(), 1u);
  EXPECT_THAT(stops[0].reason(), HasSubstr("paused by alice"));
  // A second request while the stop is pending sends nothing more.
  ASSERT_TRUE(Pause(id).ok());
  EXPECT_TRUE(Commands("w1").empty());
  EXPECT_EQ(metrics_.preempted[StopKind::kPause], 1);

  ASSERT_TRUE(ReportPreempted("w1", id).ok());
  v1::Job held = Get(id);
  EXPECT_EQ(held.state(), v1::JOB_STATE_QUEUED);
  EXPECT_TRUE(held.paused());
  EXPECT_EQ(held.queue().reason(), v1::QUEUE_REASON_PAUSED);
  EXPECT_EQ(held.attempt(), 2u);
  EXPECT_EQ(held.preemptions(), 1u) << "max_restarts 0, yet it is not failed";
  EXPECT_EQ(core_->ListWorkers().workers(0).free_slots(), 1u);
  Commands("w1");  // the plain cancellation that follows the requeue
  Pass(absl::Seconds(30));
  EXPECT_EQ(Get(id).state(), v1::JOB_STATE_QUEUED);

  ASSERT_TRUE(Resume(id).ok());
  core_->Tick();
  EXPECT_EQ(Get(id).state(), v1::JOB_STATE_SCHEDULED);
  std::vector<v1::WorkerCommand> commands = Commands("w1");
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].assign().attempt(), 2u);
  EXPECT_EQ(commands[0].assign().resume_checkpoint_id(), checkpoint->id());
}

TEST_F(JobStopsTest, AStopThatIsNotReportedInTimeRestartsTheAttemptAnyway) {
  std::string id = Submit(Spec("stuck", 1, 0, /*max_restarts=*/0));
  Register("w1", 1);
  core_->Tick();
  Start("w1", id);
  auto checkpoint = Upload("w1", id, 10);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  ASSERT_TRUE(Pause(id).ok());
  Commands("w1");
  Pass(absl::Seconds(27));
  EXPECT_EQ(Get(id).state(), v1::JOB_STATE_RUNNING) << "within the stop timeout it waits";
  Pass(absl::Seconds(6));
  v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_TRUE(job.paused());
  EXPECT_EQ(job.attempt(), 2u);
  EXPECT_EQ(job.preemptions(), 1u) << "a forced stop is still a preemption, not a failure";
  EXPECT_THAT(job.state_reason(), HasSubstr("no checkpoint reported within"));
  std::vector<v1::Cancellation> stops = Cancellations(Commands("w1"));
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_FALSE(stops[0].checkpoint_first()) << "the ranks are now simply stopped";
  ASSERT_TRUE(Resume(id).ok());
  core_->Tick();
  std::vector<v1::WorkerCommand> commands = Commands("w1");
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].assign().resume_checkpoint_id(), checkpoint->id());
}

TEST_F(JobStopsTest, AnAttemptThatVanishesWhileStoppingCountsAsStoppedNotAsAFailure) {
  // An agent without checkpoint-first support just ends the ranks and reports nothing.
  std::string id = Submit(Spec("vanishes", 1, 0, /*max_restarts=*/0));
  Register("w1", 1);
  core_->Tick();
  Start("w1", id);
  ASSERT_TRUE(Pause(id).ok());
  running_["w1"].clear();  // its heartbeats stop listing the attempt
  Pass(absl::Seconds(9));
  v1::Job job = Get(id);
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED) << job.state_reason();
  EXPECT_EQ(job.attempt(), 2u);
  EXPECT_EQ(job.preemptions(), 1u) << "max_restarts 0, yet it is not failed";
  EXPECT_TRUE(job.paused());
}

TEST_F(JobStopsTest, CordonDrainAndUncordon) {
  Register("w1", 1);
  Register("w2", 1);
  EXPECT_EQ(Cordon("nope", v1::CordonWorkerRequest::ACTION_CORDON).status().code(),
            absl::StatusCode::kNotFound);
  auto unspecified = Cordon("w1", v1::CordonWorkerRequest::ACTION_UNSPECIFIED);
  EXPECT_EQ(unspecified.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unspecified.status().message(), HasSubstr("action"));

  auto cordoned = Cordon("w1", v1::CordonWorkerRequest::ACTION_CORDON);
  ASSERT_TRUE(cordoned.ok()) << cordoned.status();
  EXPECT_TRUE(cordoned->cordoned());
  std::string id = Submit(Spec("elsewhere"));
  core_->Tick();
  EXPECT_THAT(Get(id).workers(), ElementsAre("w2")) << "nothing new goes to a cordoned worker";
  Commands("w2");
  Start("w2", id);
  // The cordon outlives the agent's re-registration and a coordinator restart.
  Register("w1", 1);
  EXPECT_TRUE(Cordoned("w1"));
  MakeCore();
  Register("w1", 1);
  EXPECT_TRUE(Cordoned("w1"));

  // Drain w2: cordoned, and its job checkpoints, stops and is requeued.
  v1::RegisterRequest again;  // w2 re-attaches its attempt after the restart
  again.set_name("w2");
  again.set_slots(1);
  again.set_device(v1::DEVICE_CPU);
  again.set_address("w2.local");
  v1::RunningAttempt* attempt = again.add_running();
  attempt->set_job_id(id);
  attempt->set_attempt(1);
  auto registered = core_->Register(again);
  ASSERT_TRUE(registered.ok());
  leases_["w2"] = registered->lease_id();
  ASSERT_EQ(Get(id).state(), v1::JOB_STATE_RUNNING);
  auto drained = Cordon("w2", v1::CordonWorkerRequest::ACTION_DRAIN);
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_TRUE(drained->cordoned());
  std::vector<v1::Cancellation> stops = Cancellations(Commands("w2"));
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_TRUE(stops[0].checkpoint_first());
  EXPECT_THAT(stops[0].reason(), HasSubstr("worker w2 drained by ops"));
  EXPECT_EQ(metrics_.preempted[StopKind::kDrain], 1);
  ASSERT_TRUE(ReportPreempted("w2", id).ok());
  EXPECT_EQ(Get(id).state(), v1::JOB_STATE_QUEUED);
  EXPECT_FALSE(Get(id).paused());
  core_->Tick();
  EXPECT_EQ(Get(id).state(), v1::JOB_STATE_QUEUED) << "both workers are cordoned";

  auto uncordoned = Cordon("w1", v1::CordonWorkerRequest::ACTION_UNCORDON);
  ASSERT_TRUE(uncordoned.ok());
  EXPECT_FALSE(uncordoned->cordoned());
  Register("w1", 1);
  core_->Tick();
  EXPECT_EQ(Get(id).state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_THAT(Get(id).workers(), ElementsAre("w1"));
}

TEST_F(JobStopsTest, AHigherPriorityJobPreemptsALowerOneWhichGoesAheadOfItsPeers) {
  Register("w1", 2);
  std::string victim = Submit(Spec("victim", 2, /*priority=*/0));
  core_->Tick();
  Commands("w1");
  Start("w1", victim);
  std::string peer = Submit(Spec("peer", 2, /*priority=*/0));
  std::string urgent = Submit(Spec("urgent", 2, /*priority=*/5));
  core_->Tick();
  EXPECT_EQ(Get(urgent).state(), v1::JOB_STATE_QUEUED);
  EXPECT_TRUE(Cancellations(Commands("w1")).empty())
      << "not before the victim has run for min_run_before_preempt";

  Pass(absl::Seconds(63));
  std::vector<v1::Cancellation> stops = Cancellations(Commands("w1"));
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_EQ(stops[0].job_id(), victim);
  EXPECT_TRUE(stops[0].checkpoint_first());
  const std::string why = "preempted by job " + urgent + " at priority 5";
  EXPECT_THAT(stops[0].reason(), HasSubstr(why));
  EXPECT_THAT(Notes(victim), ElementsAre(HasSubstr(why)));
  EXPECT_EQ(metrics_.preempted[StopKind::kPriority], 1);
  // While the victim is stopping, no more is picked for the waiting job.
  Pass(absl::Seconds(6));
  EXPECT_TRUE(Cancellations(Commands("w1")).empty());

  ASSERT_TRUE(ReportPreempted("w1", victim).ok());
  EXPECT_EQ(Get(victim).preemptions(), 1u);
  core_->Tick();
  EXPECT_EQ(Get(urgent).state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(Get(victim).state(), v1::JOB_STATE_QUEUED);
  Commands("w1");
  // When the urgent job is done, the victim goes before its equal-priority peer.
  v1::CancelJobRequest cancel;
  cancel.set_id(urgent);
  ASSERT_TRUE(core_->CancelJob({"alice"}, cancel).ok());
  core_->Tick();
  EXPECT_EQ(Get(victim).state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(Get(peer).state(), v1::JOB_STATE_QUEUED);
}

TEST_F(JobStopsTest, AJobThatOptedOutIsNeverPreempted) {
  Register("w1", 1);
  v1::JobSpec spec = Spec("protected", 1, 0);
  spec.set_never_preempt(true);
  std::string kept = Submit(spec);
  core_->Tick();
  Commands("w1");
  Start("w1", kept);
  std::string urgent = Submit(Spec("urgent", 1, 9));
  Pass(absl::Minutes(3));
  EXPECT_TRUE(Cancellations(Commands("w1")).empty());
  EXPECT_EQ(Get(kept).state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(Get(urgent).state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(metrics_.preempted[StopKind::kPriority], 0);
}

}  // namespace
}  // namespace loratrf::server
