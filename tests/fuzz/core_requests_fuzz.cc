// Fuzz target: the coordinator's request handling. The input is a script of calls against an
// in-process JobServiceCore (in-memory JobStore, a real ArtifactStore in a temp dir, a fake
// clock): each call is [op][caller][length: 2 bytes, little-endian][length bytes], the bytes
// parsed as that RPC's request message (bytes that do not parse are skipped, as the gRPC layer
// refuses them). So that random bytes reach deep states, a job id written "$N" means the Nth
// job submitted so far, a lease id below 16 the Nth lease handed out, and SubmitJob's spec is
// merged over a spec that validation accepts. Besides the RPCs there are ops for Tick, moving
// the clock, garbage collection, and restarting the core over the same store (recovery).
//
// Asserted (abort on violation): no crash or sanitizer report; every error is a status with a
// code other than UNKNOWN or INTERNAL and a non-empty message; and after every call the tables
// agree with themselves: every listed job can be read back with the same state, ids are unique,
// no worker has more free slots than slots, and no job holds more workers than it asked for.
//
// `make_seeds DIR` (core_requests_seeds.cc) writes the seed corpus in this format.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "proto/loratrf/v1/job_service.pb.h"
#include "proto/loratrf/v1/worker_service.pb.h"
#include "server/artifacts/artifact_store.h"
#include "server/core/clock.h"
#include "server/core/job_service.h"
#include "server/store/in_memory_job_store.h"
#include "tests/fuzz/core_requests_ops.h"
#include "tests/unit/server/core/core_test_support.h"

namespace {

namespace fs = std::filesystem;
using namespace loratrf;          // NOLINT
using namespace loratrf::server;  // NOLINT
using loratrf::fuzz::CoreOp;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

// LORATRF_FUZZ_VERBOSE=1: print each call's outcome and the jobs after it, to see how far a
// seed gets.
const bool kVerbose = std::getenv("LORATRF_FUZZ_VERBOSE") != nullptr;

void CheckStatus(const absl::Status& status) {
  if (kVerbose) std::fprintf(stderr, "  -> %s\n", status.ToString().c_str());
  if (status.ok()) return;
  if (status.code() == absl::StatusCode::kUnknown || status.code() == absl::StatusCode::kInternal ||
      status.message().empty()) {
    std::fprintf(stderr, "bad error status: %s\n", status.ToString().c_str());
    std::abort();
  }
}

template <typename T>
void CheckStatus(const absl::StatusOr<T>& result) {
  CheckStatus(result.status());
}

Caller CallerFor(uint8_t selector) {
  switch (selector % 4) {
    case 0: return Caller{"alice", true, false, false};
    case 1: return Caller{"bob", true, false, false};
    case 2: return Caller{"root", true, true, true};
    default: return Caller{"w1", false, true, false};
  }
}

class Session {
 public:
  explicit Session(const fs::path& dir) : dir_(dir) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    artifacts_ = *ArtifactStore::Open(dir_.string());
    Restart();
  }
  ~Session() {
    core_.reset();
    artifacts_.reset();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  void Restart() {
    core_.reset();
    CoreOptions options;
    options.lease_ttl = absl::Seconds(10);
    options.finished_job_ttl = absl::Minutes(5);
    options.lost_worker_ttl = absl::Minutes(5);
    options.stop_timeout = absl::Seconds(30);
    options.min_run_before_preempt = absl::Seconds(20);
    auto core = JobServiceCore::Create(&store_, artifacts_.get(), &clock_, &metrics_, options);
    Check(core.ok(), "the core restarts over its own store");
    core_ = std::move(*core);
  }

  void Run(CoreOp op, const Caller& caller, const std::string& payload) {
    switch (op) {
      case CoreOp::kSubmitJob: {
        v1::SubmitJobRequest request;
        if (!request.ParseFromString(payload)) return;
        v1::JobSpec spec = core_testing::TestJobSpec("fuzz");
        spec.MergeFrom(request.spec());
        *request.mutable_spec() = spec;
        auto response = core_->SubmitJob(caller, request);
        CheckStatus(response);
        if (response.ok() && !response->existing()) jobs_.push_back(response->job().id());
        break;
      }
      case CoreOp::kGetJob: {
        v1::GetJobRequest request;
        if (!request.ParseFromString(payload)) return;
        CheckStatus(core_->GetJob(caller, Job(request.id())));
        break;
      }
      case CoreOp::kListJobs: {
        v1::ListJobsRequest request;
        if (!request.ParseFromString(payload)) return;
        CheckStatus(core_->ListJobs(caller, request));
        break;
      }
      case CoreOp::kCancelJob: {
        v1::CancelJobRequest request;
        if (!request.ParseFromString(payload)) return;
        request.set_id(Job(request.id()));
        CheckStatus(core_->CancelJob(caller, request));
        break;
      }
      case CoreOp::kWatchJob: {
        v1::WatchJobRequest request;
        if (!request.ParseFromString(payload)) return;
        request.set_id(Job(request.id()));
        auto stream = core_->WatchJob(caller, request);
        CheckStatus(stream);
        if (stream.ok()) {
          (*stream)->SetNotify([] {});
          v1::JobEvent event;
          uint64_t last = 0;
          for (int i = 0; i < 10000; ++i) {
            EventStream::Poll poll = (*stream)->Next(event);
            if (poll != EventStream::Poll::kEvent) {
              if (poll == EventStream::Poll::kEnd) CheckStatus((*stream)->status());
              break;
            }
            Check(event.seq() > last, "a watch stream's events come in seq order");
            last = event.seq();
          }
        }
        break;
      }
      case CoreOp::kListCheckpoints: {
        v1::ListCheckpointsRequest request;
        if (!request.ParseFromString(payload)) return;
        CheckStatus(core_->ListCheckpoints(caller, Job(request.job_id())));
        break;
      }
      case CoreOp::kDownloadCheckpoint: {
        v1::DownloadCheckpointRequest request;
        if (!request.ParseFromString(payload)) return;
        request.set_job_id(Job(request.job_id()));
        auto opened = core_->OpenCheckpoint(caller, request);
        CheckStatus(opened);
        if (opened.ok()) {
          v1::FileChunk chunk;
          for (int i = 0; i < 1000; ++i) {
            absl::StatusOr<bool> more = opened->second->Next(chunk);
            CheckStatus(more);
            if (!more.ok() || !*more) break;
          }
        }
        break;
      }
      case CoreOp::kListWorkers:
        core_->ListWorkers();
        break;
      case CoreOp::kPauseJob: {
        v1::PauseJobRequest request;
        if (!request.ParseFromString(payload)) return;
        request.set_id(Job(request.id()));
        CheckStatus(core_->PauseJob(caller, request));
        break;
      }
      case CoreOp::kResumeJob: {
        v1::ResumeJobRequest request;
        if (!request.ParseFromString(payload)) return;
        request.set_id(Job(request.id()));
        CheckStatus(core_->ResumeJob(caller, request));
        break;
      }
      case CoreOp::kDeleteJob: {
        v1::DeleteJobRequest request;
        if (!request.ParseFromString(payload)) return;
        request.set_id(Job(request.id()));
        CheckStatus(core_->DeleteJob(caller, request));
        break;
      }
      case CoreOp::kCordonWorker: {
        v1::CordonWorkerRequest request;
        if (!request.ParseFromString(payload)) return;
        CheckStatus(core_->CordonWorker(caller, request));
        break;
      }
      case CoreOp::kRegister: {
        v1::RegisterRequest request;
        if (!request.ParseFromString(payload)) return;
        for (v1::RunningAttempt& running : *request.mutable_running()) {
          running.set_job_id(Job(running.job_id()));
        }
        auto response = core_->Register(request);
        CheckStatus(response);
        if (response.ok()) leases_.push_back(response->lease_id());
        break;
      }
      case CoreOp::kHeartbeat: {
        v1::HeartbeatRequest request;
        if (!request.ParseFromString(payload)) return;
        request.set_lease_id(Lease(request.lease_id()));
        for (v1::RunningAttempt& running : *request.mutable_running()) {
          running.set_job_id(Job(running.job_id()));
        }
        CheckStatus(core_->Heartbeat(request));
        break;
      }
      case CoreOp::kStreamCommands: {
        v1::StreamCommandsRequest request;
        if (!request.ParseFromString(payload)) return;
        request.set_lease_id(Lease(request.lease_id()));
        auto stream = core_->StreamCommands(request);
        CheckStatus(stream);
        if (stream.ok()) {
          (*stream)->SetNotify([] {});
          v1::WorkerCommand command;
          for (int i = 0; i < 1000; ++i) {
            if ((*stream)->Next(command) != CommandStream::Poll::kCommand) break;
          }
        }
        break;
      }
      case CoreOp::kReportEvents: {
        v1::ReportEventsRequest request;
        if (!request.ParseFromString(payload)) return;
        request.set_lease_id(Lease(request.lease_id()));
        request.set_job_id(Job(request.job_id()));
        CheckStatus(core_->ReportEvents(request));
        break;
      }
      case CoreOp::kUploadCheckpoint: {
        v1::UploadCheckpointRequest request;
        if (!request.ParseFromString(payload) || !request.has_header()) return;
        v1::UploadCheckpointRequest::Header header = request.header();
        header.set_lease_id(Lease(header.lease_id()));
        header.set_job_id(Job(header.job_id()));
        auto upload = core_->BeginUpload(header);
        CheckStatus(upload);
        if (!upload.ok()) break;
        // One chunk per file, holding the bytes the header's sha256 may or may not match.
        for (const v1::CheckpointFile& file : header.files()) {
          v1::FileChunk chunk;
          chunk.set_path(file.path());
          chunk.set_offset(0);
          chunk.set_data(std::string(std::min<uint64_t>(file.size_bytes(), 64), 'x'));
          absl::Status written = (*upload)->Write(chunk);
          CheckStatus(written);
          if (!written.ok()) break;
        }
        CheckStatus((*upload)->Finish());
        break;
      }
      case CoreOp::kTick:
        core_->Tick();
        break;
      case CoreOp::kAdvanceClock:
        clock_.Advance(absl::Seconds(payload.empty() ? 1 : static_cast<uint8_t>(payload[0])));
        break;
      case CoreOp::kCollectGarbage:
        core_->CollectGarbage();
        break;
      case CoreOp::kRestart:
        Restart();
        break;
      case CoreOp::kCount:
        break;
    }
  }

  // The tables agree with themselves, as any caller can see them.
  void CheckInvariants() {
    std::set<std::string> seen;
    v1::ListJobsRequest list;
    list.set_page_size(100);
    std::map<std::string, v1::Job> listed;
    for (int page = 0; page < 1000; ++page) {
      auto response = core_->ListJobs(list);
      Check(response.ok(), "an unscoped ListJobs succeeds");
      for (const v1::Job& job : response->jobs()) {
        Check(seen.insert(job.id()).second, "a job is listed once");
        listed[job.id()] = job;
      }
      if (response->next_page_token().empty()) break;
      list.set_page_token(response->next_page_token());
    }
    std::map<std::string, uint32_t> used;  // worker → slots that active jobs hold on it
    for (const auto& [id, job] : listed) {
      if (kVerbose) {
        std::fprintf(stderr, "  job %s %s attempt %u\n", id.c_str(),
                     v1::JobState_Name(job.state()).c_str(), job.attempt());
      }
      auto got = core_->GetJob(id);
      Check(got.ok(), "a listed job can be read");
      Check(got->state() == job.state(), "a listed job reads back in the same state");
      if (job.state() == v1::JOB_STATE_SCHEDULED || job.state() == v1::JOB_STATE_RUNNING) {
        Check(static_cast<uint32_t>(job.workers_size()) <= job.spec().resources().workers(),
              "a job holds at most the workers it asked for");
      }
    }
    const v1::ListWorkersResponse workers = core_->ListWorkers();
    for (const v1::Worker& worker : workers.workers()) {
      Check(worker.free_slots() <= worker.slots(), "free slots never exceed slots");
    }
  }

 private:
  // "$N" → the Nth job submitted (modulo how many there are); anything else as it is.
  std::string Job(const std::string& id) const {
    if (id.size() == 2 && id[0] == '$' && !jobs_.empty()) {
      return jobs_[static_cast<uint8_t>(id[1]) % jobs_.size()];
    }
    return id;
  }
  uint64_t Lease(uint64_t lease) const {
    if (lease < 16 && !leases_.empty()) return leases_[lease % leases_.size()];
    return lease;
  }

  fs::path dir_;
  InMemoryJobStore store_;
  FakeClock clock_;
  core_testing::NullCoreMetrics metrics_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<JobServiceCore> core_;
  std::vector<std::string> jobs_;
  std::vector<uint64_t> leases_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool quiet = [] {
    spdlog::set_level(spdlog::level::off);
    return true;
  }();
  (void)quiet;
  static const fs::path dir =
      fs::temp_directory_path() / absl::StrCat("loratrf_core_fuzz_", ::getpid());
  Session session(dir);
  size_t at = 0;
  for (int calls = 0; calls < 64 && at + 4 <= size; ++calls) {
    const uint8_t op = data[at], caller = data[at + 1];
    const size_t length = std::min<size_t>(data[at + 2] | (size_t{data[at + 3]} << 8), size - at - 4);
    std::string payload(reinterpret_cast<const char*>(data) + at + 4, length);
    at += 4 + length;
    if (op >= static_cast<uint8_t>(CoreOp::kCount)) continue;
    if (kVerbose) std::fprintf(stderr, "op %u caller %u, %zu bytes\n", op, caller % 4, length);
    session.Run(static_cast<CoreOp>(op), CallerFor(caller), payload);
    session.CheckInvariants();
  }
  return 0;
}
