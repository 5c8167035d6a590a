// Writes the seed corpus of the core_requests fuzz target (core_requests_fuzz.cc explains the
// script format): whole job lives, cross-owner calls, lease expiry and restarts, GC.
//
//   make_core_requests_seeds tests/fuzz/corpus/core_requests
#include <cstdio>
#include <fstream>
#include <string>

#include "common/sha256.h"
#include "google/protobuf/message.h"
#include "proto/loratrf/v1/job_service.pb.h"
#include "proto/loratrf/v1/worker_service.pb.h"
#include "tests/fuzz/core_requests_ops.h"

namespace {

using namespace loratrf;  // NOLINT
using loratrf::fuzz::CoreOp;

class Script {
 public:
  Script& Call(CoreOp op, uint8_t caller, const google::protobuf::Message& request) {
    return Raw(op, caller, request.SerializeAsString());
  }
  Script& Raw(CoreOp op, uint8_t caller = 0, const std::string& payload = "") {
    bytes_ += static_cast<char>(op);
    bytes_ += static_cast<char>(caller);
    bytes_ += static_cast<char>(payload.size() & 0xff);
    bytes_ += static_cast<char>(payload.size() >> 8);
    bytes_ += payload;
    return *this;
  }
  Script& Advance(uint8_t seconds) { return Raw(CoreOp::kAdvanceClock, 0, std::string(1, seconds)); }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

v1::SubmitJobRequest Submit(const std::string& name, uint32_t workers = 1,
                            const std::string& key = "") {
  v1::SubmitJobRequest request;
  request.mutable_spec()->set_name(name);
  request.mutable_spec()->mutable_resources()->set_workers(workers);
  request.mutable_spec()->mutable_training()->set_batch_size(8 * workers);
  request.set_idempotency_key(key);
  return request;
}

v1::RegisterRequest Register(const std::string& name, uint32_t slots = 1) {
  v1::RegisterRequest request;
  request.set_name(name);
  request.set_slots(slots);
  request.set_device(v1::DEVICE_CPU);
  request.set_address(name + ".local");
  return request;
}

v1::ReportEventsRequest Report(const std::string& worker, uint64_t lease, uint64_t index,
                               v1::JobState to) {
  v1::ReportEventsRequest request;
  request.set_worker(worker);
  request.set_lease_id(lease);
  request.set_job_id("$0");
  request.set_attempt(1);
  request.set_first_report_index(index);
  v1::JobEvent* event = request.add_events();
  event->mutable_state_change()->set_to(to);
  return request;
}

template <typename M>
M WithId(const std::string& id) {
  M message;
  message.set_id(id);
  return message;
}

void Write(const std::string& dir, const std::string& name, const Script& script) {
  std::ofstream out(dir + "/" + name, std::ios::binary);
  out << script.bytes();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_core_requests_seeds DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  using fuzz::kAdmin, fuzz::kAlice, fuzz::kBob, fuzz::kWorker;

  // A whole life: submit, schedule, run, metrics, final checkpoint, success, then read it all.
  {
    Script s;
    s.Call(CoreOp::kSubmitJob, kAlice, Submit("life"));
    s.Call(CoreOp::kRegister, kWorker, Register("w1"));
    s.Raw(CoreOp::kTick);
    v1::StreamCommandsRequest stream;
    stream.set_name("w1");
    stream.set_lease_id(0);
    s.Call(CoreOp::kStreamCommands, kWorker, stream);
    s.Call(CoreOp::kReportEvents, kWorker, Report("w1", 0, 0, v1::JOB_STATE_RUNNING));
    v1::ReportEventsRequest metrics = Report("w1", 0, 1, v1::JOB_STATE_RUNNING);
    metrics.mutable_events(0)->mutable_train()->set_step(1);
    metrics.mutable_events(0)->mutable_train()->set_loss(0.5);
    s.Call(CoreOp::kReportEvents, kWorker, metrics);
    v1::UploadCheckpointRequest upload;
    v1::UploadCheckpointRequest::Header* header = upload.mutable_header();
    header->set_worker("w1");
    header->set_lease_id(0);
    header->set_job_id("$0");
    header->set_attempt(1);
    header->set_step(1);
    header->set_final(true);
    v1::CheckpointFile* file = header->add_files();
    file->set_path("adapter/adapter_model.safetensors");
    file->set_size_bytes(4);
    file->set_sha256(Sha256Hex("xxxx"));
    s.Call(CoreOp::kUploadCheckpoint, kWorker, upload);
    s.Call(CoreOp::kReportEvents, kWorker, Report("w1", 0, 2, v1::JOB_STATE_SUCCEEDED));
    v1::WatchJobRequest watch;
    watch.set_id("$0");
    watch.set_no_follow(true);
    s.Call(CoreOp::kWatchJob, kAlice, watch);
    v1::ListCheckpointsRequest checkpoints;
    checkpoints.set_job_id("$0");
    s.Call(CoreOp::kListCheckpoints, kAlice, checkpoints);
    v1::DownloadCheckpointRequest download;
    download.set_job_id("$0");
    s.Call(CoreOp::kDownloadCheckpoint, kAlice, download);
    s.Raw(CoreOp::kRestart);
    s.Call(CoreOp::kDownloadCheckpoint, kBob, download);
    v1::DeleteJobRequest remove = WithId<v1::DeleteJobRequest>("$0");
    remove.set_purge(true);
    s.Call(CoreOp::kDeleteJob, kAlice, remove);
    s.Call(CoreOp::kListJobs, kAlice, v1::ListJobsRequest());
    Write(dir, "job-life", s);
  }
  // Owners and their jobs: idempotency keys, cancel, pause and resume, someone else's job.
  {
    Script s;
    s.Call(CoreOp::kSubmitJob, kAlice, Submit("a", 1, "key-1"));
    s.Call(CoreOp::kSubmitJob, kAlice, Submit("a", 1, "key-1"));
    s.Call(CoreOp::kSubmitJob, kBob, Submit("b"));
    s.Call(CoreOp::kCancelJob, kBob, WithId<v1::CancelJobRequest>("$0"));
    s.Call(CoreOp::kPauseJob, kAlice, WithId<v1::PauseJobRequest>("$0"));
    s.Call(CoreOp::kResumeJob, kAlice, WithId<v1::ResumeJobRequest>("$0"));
    s.Call(CoreOp::kCancelJob, kAlice, WithId<v1::CancelJobRequest>("$0"));
    s.Call(CoreOp::kCancelJob, kAlice, WithId<v1::CancelJobRequest>("$1"));
    s.Call(CoreOp::kGetJob, kBob, WithId<v1::GetJobRequest>("$0"));
    v1::ListJobsRequest list;
    list.set_owner("alice");
    list.set_page_size(1);
    s.Call(CoreOp::kListJobs, kBob, list);
    s.Call(CoreOp::kListJobs, kAdmin, list);
    s.Call(CoreOp::kDeleteJob, kAlice, WithId<v1::DeleteJobRequest>("$0"));
    Write(dir, "owners", s);
  }
  // Two workers, a two-worker job, a lease that lapses, a restart, re-registration, a drain.
  {
    Script s;
    s.Call(CoreOp::kRegister, kWorker, Register("w1"));
    s.Call(CoreOp::kRegister, kWorker, Register("w2", 2));
    s.Call(CoreOp::kSubmitJob, kAlice, Submit("pair", 2));
    s.Call(CoreOp::kSubmitJob, kBob, Submit("single"));
    s.Raw(CoreOp::kTick);
    v1::HeartbeatRequest beat;
    beat.set_name("w1");
    beat.set_lease_id(0);
    v1::RunningAttempt* running = beat.add_running();
    running->set_job_id("$0");
    running->set_attempt(1);
    s.Call(CoreOp::kHeartbeat, kWorker, beat);
    s.Advance(11).Raw(CoreOp::kTick);
    s.Raw(CoreOp::kRestart);
    v1::RegisterRequest again = Register("w1");
    *again.add_running() = *running;
    s.Call(CoreOp::kRegister, kWorker, again);
    v1::CordonWorkerRequest drain;
    drain.set_name("w2");
    drain.set_action(v1::CordonWorkerRequest::ACTION_DRAIN);
    s.Call(CoreOp::kCordonWorker, kAdmin, drain);
    s.Raw(CoreOp::kTick).Raw(CoreOp::kListWorkers);
    Write(dir, "leases-restart-drain", s);
  }
  // Garbage collection after the finished-job TTL, and a restart over what is left.
  {
    Script s;
    s.Call(CoreOp::kSubmitJob, kAlice, Submit("gc"));
    s.Call(CoreOp::kCancelJob, kAlice, WithId<v1::CancelJobRequest>("$0"));
    for (int i = 0; i < 3; ++i) s.Advance(255);
    s.Raw(CoreOp::kCollectGarbage).Raw(CoreOp::kRestart);
    s.Call(CoreOp::kGetJob, kAlice, WithId<v1::GetJobRequest>("$0"));
    Write(dir, "gc", s);
  }
  return 0;
}
