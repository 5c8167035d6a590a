// A real loratrf-coordinator on a data dir, and a small fake agent that speaks WorkerService to
// it over real gRPC (register, report, upload checkpoints), for integration tests whose process
// under test is the coordinator: gc_crash_test.cc and infra_fault_test.cc.
//
// Threading: each object is used by one test thread, except Coordinator::Kill, which a killer
// thread may call while the test thread makes calls through the stubs.
#pragma once

#include <signal.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "common/sha256.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/loratrf/v1/job_service.grpc.pb.h"
#include "proto/loratrf/v1/worker_service.grpc.pb.h"
#include "tests/integration/subprocess.h"

namespace loratrf::testing {

inline std::unique_ptr<grpc::ClientContext> Context(int seconds = 10) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return context;
}

// A coordinator on `data_dir` and stubs to it.
class Coordinator {
 public:
  struct Options {
    std::string listen = "127.0.0.1:0";  // a fixed port lets a restart keep the clients' address
    int lease_ttl_seconds = 60;
    std::vector<std::string> extra;  // more flags
    std::string crash_point;         // NAME:N armed in the process (common/crash_point.h)
  };

  Coordinator(const std::string& data_dir, const std::string& log, Options options) {
    std::filesystem::create_directories(data_dir);
    std::filesystem::remove(data_dir + "/coordinator.address");
    std::vector<std::string> argv;
    if (!options.crash_point.empty()) {
      argv = {"/usr/bin/env", "LORATRF_CRASH_POINT=" + options.crash_point};
    }
    for (std::string arg : {BinaryPath("loratrf-coordinator"), std::string("--listen"),
                            options.listen, std::string("--data-dir"), data_dir,
                            std::string("--lease-ttl"),
                            std::to_string(options.lease_ttl_seconds)}) {
      argv.push_back(std::move(arg));
    }
    argv.insert(argv.end(), options.extra.begin(), options.extra.end());
    process_ = std::make_unique<BackgroundProcess>(argv, log);
    std::string address;
    WaitFor(
        [&] {
          address = Slurp(data_dir + "/coordinator.address");
          return (!address.empty() && address.back() == '\n') || !process_->running();
        },
        20);
    if (address.empty() || address.back() != '\n') return;
    address.pop_back();
    address_ = address;
    auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
    jobs = v1::JobService::NewStub(channel);
    workers = v1::WorkerService::NewStub(channel);
  }
  Coordinator(const std::string& data_dir, const std::string& log,
              std::vector<std::string> extra = {}, const std::string& crash_point = "")
      : Coordinator(data_dir, log, Options{"127.0.0.1:0", 60, std::move(extra), crash_point}) {}

  bool ok() const { return !address_.empty(); }
  const std::string& address() const { return address_; }
  void Kill() { process_->Signal(SIGKILL); }
  bool running() { return process_->running(); }
  // SIGTERM, then its exit code. The channel closes first: the drain gives open connections
  // its whole grace period.
  int Stop() {
    jobs.reset();
    workers.reset();
    process_->Signal(SIGTERM);
    return process_->Wait(30);
  }
  void Reap() { process_->Wait(10); }

  std::unique_ptr<v1::JobService::Stub> jobs;
  std::unique_ptr<v1::WorkerService::Stub> workers;

 private:
  std::unique_ptr<BackgroundProcess> process_;
  std::string address_;
};

// The fake agent: one worker with many slots that runs whatever it is given, reporting as
// attempt 1 of each job.
class FakeAgent {
 public:
  explicit FakeAgent(Coordinator& coordinator, std::string name = "w1")
      : c_(coordinator), name_(std::move(name)) {}

  const std::string& name() const { return name_; }

  bool Register() {
    v1::RegisterRequest request;
    request.set_name(name_);
    request.set_slots(16);
    request.set_device(v1::DEVICE_CPU);
    request.set_address("127.0.0.1");
    request.set_version("test");
    v1::RegisterResponse response;
    if (!c_.workers->Register(Context().get(), request, &response).ok()) return false;
    lease_ = response.lease_id();
    return true;
  }

  // Submits a job and waits until it is placed on this worker; reports it RUNNING. Its id,
  // or "" (with the failed call's status in `status` when given).
  std::string Start(const v1::JobSpec& spec, grpc::Status* status = nullptr) {
    v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    v1::SubmitJobResponse response;
    grpc::Status submitted = c_.jobs->SubmitJob(Context().get(), request, &response);
    if (status != nullptr) *status = submitted;
    if (!submitted.ok()) return "";
    const std::string id = response.job().id();
    bool placed = WaitFor(
        [&] {
          v1::GetJobRequest get;
          get.set_id(id);
          v1::Job job;
          return c_.jobs->GetJob(Context().get(), get, &job).ok() &&
                 job.state() == v1::JOB_STATE_SCHEDULED;
        },
        10);
    if (!placed || !Report(id, v1::JOB_STATE_RUNNING)) return "";
    return id;
  }

  bool Report(const std::string& id, v1::JobState to) { return ReportStatus(id, to).ok(); }

  grpc::Status ReportStatus(const std::string& id, v1::JobState to) {
    v1::ReportEventsRequest request;
    request.set_worker(name_);
    request.set_lease_id(lease_);
    request.set_job_id(id);
    request.set_attempt(1);
    request.set_first_report_index(next_index_[id]);
    request.add_events()->mutable_state_change()->set_to(to);
    v1::ReportEventsResponse response;
    grpc::Status status = c_.workers->ReportEvents(Context().get(), request, &response);
    if (status.ok()) next_index_[id] = response.next_report_index();
    return status;
  }

  // Uploads a checkpoint of `bytes` (one file) at `step`; its id once committed, else nullopt
  // (with the call's status in `status` when given).
  std::optional<std::string> Upload(const std::string& id, uint64_t step, bool final,
                                    const std::string& bytes, grpc::Status* status = nullptr) {
    v1::UploadCheckpointResponse uploaded;
    auto context = Context();
    auto writer = c_.workers->UploadCheckpoint(context.get(), &uploaded);
    v1::UploadCheckpointRequest message;
    auto* header = message.mutable_header();
    header->set_worker(name_);
    header->set_lease_id(lease_);
    header->set_job_id(id);
    header->set_attempt(1);
    header->set_step(step);
    header->set_final(final);
    auto* file = header->add_files();
    file->set_path("adapter/adapter_model.safetensors");
    file->set_size_bytes(bytes.size());
    file->set_sha256(Sha256Hex(bytes));
    if (writer->Write(message)) {
      for (size_t offset = 0; offset < bytes.size(); offset += 1 << 20) {
        message.Clear();
        message.mutable_chunk()->set_path("adapter/adapter_model.safetensors");
        message.mutable_chunk()->set_offset(offset);
        message.mutable_chunk()->set_data(bytes.substr(offset, 1 << 20));
        if (!writer->Write(message)) break;
      }
      writer->WritesDone();
    }
    grpc::Status finished = writer->Finish();
    if (status != nullptr) *status = finished;
    if (!finished.ok()) return std::nullopt;
    return uploaded.checkpoint().id();
  }

 private:
  Coordinator& c_;
  std::string name_;
  uint64_t lease_ = 0;
  std::map<std::string, uint64_t> next_index_;
};

inline std::string RandomBytes(std::mt19937_64& random, size_t size) {
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random() & 0xff);
  return bytes;
}

// Downloads one checkpoint; the sha256 of its bytes, or "error: " and the error.
inline std::string DownloadSha(Coordinator& c, const std::string& id,
                               const std::string& checkpoint) {
  v1::DownloadCheckpointRequest request;
  request.set_job_id(id);
  request.set_checkpoint_id(checkpoint);
  auto context = Context();
  auto reader = c.jobs->DownloadCheckpoint(context.get(), request);
  v1::DownloadCheckpointResponse part;
  std::string bytes;
  while (reader->Read(&part)) {
    if (part.has_chunk()) bytes += part.chunk().data();
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return "error: " + status.error_message();
  return Sha256Hex(bytes);
}

}  // namespace loratrf::testing
