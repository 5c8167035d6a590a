// Garbage collection against real processes: a loratrf-coordinator on a temp data dir, spoken to
// over real gRPC by a small fake agent (the WorkerService RPCs an agent makes: register, report,
// upload checkpoints).
//
//   GcCrashTest: seeded runs (LORATRF_GC_CRASH_SEED=N re-runs one) that commit checkpoints, then
//   make GC work (retention as more commit, DeleteJob, purge, the finished-job TTL) while a
//   SIGKILL lands at a seeded random moment; the coordinator restarts on the same dir (its sweep
//   removes orphans), and then every checkpoint the test saw committed and no GC rule deleted is
//   still listed and downloads with its sha256, and after a clean stop `fsck` exits 0.
//   FsckCommandTest: the fsck contract (0 clean, 1 with one line per problem, 2 bad input).
//   DeleteCommandTest: `loratrf delete`.
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/sha256.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "proto/loratrf/v1/job_service.grpc.pb.h"
#include "proto/loratrf/v1/worker_service.grpc.pb.h"
#include "proto/spec/job_spec.h"
#include "tests/integration/subprocess.h"

namespace loratrf {
namespace {

namespace fs = std::filesystem;
using ::loratrf::testing::BackgroundProcess;
using ::loratrf::testing::BinaryPath;
using ::loratrf::testing::RunProcess;
using ::loratrf::testing::Slurp;
using ::loratrf::testing::TempDir;
using ::loratrf::testing::WaitFor;
using ::testing::HasSubstr;

constexpr int kKeep = 2;  // keep_checkpoints of every job here

// A coordinator on `data_dir` and stubs to it.
class Coordinator {
 public:
  // `crash_point`: NAME:N armed in the process (common/crash_point.h); empty: none.
  Coordinator(const std::string& data_dir, const std::string& log,
              std::vector<std::string> extra = {}, const std::string& crash_point = "") {
    fs::create_directories(data_dir);
    fs::remove(data_dir + "/coordinator.address");
    std::vector<std::string> argv;
    if (!crash_point.empty()) argv = {"/usr/bin/env", "LORATRF_CRASH_POINT=" + crash_point};
    for (std::string arg : {BinaryPath("loratrf-coordinator"), std::string("--listen"),
                            std::string("127.0.0.1:0"), std::string("--data-dir"), data_dir,
                            std::string("--lease-ttl"), std::string("60")}) {
      argv.push_back(std::move(arg));
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
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

std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return context;
}

v1::JobSpec Spec(const std::string& name) {
  auto spec = spec::LoadJobSpecFile(std::string(LORATRF_SOURCE_DIR) +
                                    "/tests/data/specs/sst2-loratrf.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status();
  spec->set_name(name);
  spec->mutable_training()->set_keep_checkpoints(kKeep);
  spec->mutable_resources()->set_workers(1);
  spec->mutable_resources()->set_slots_per_worker(1);
  return *spec;
}

// The fake agent: one worker with many slots that runs whatever it is given.
class FakeAgent {
 public:
  explicit FakeAgent(Coordinator& coordinator) : c_(coordinator) {}

  bool Register() {
    v1::RegisterRequest request;
    request.set_name("w1");
    request.set_slots(16);
    request.set_device(v1::DEVICE_CPU);
    request.set_address("127.0.0.1");
    request.set_version("test");
    v1::RegisterResponse response;
    if (!c_.workers->Register(Context().get(), request, &response).ok()) return false;
    lease_ = response.lease_id();
    return true;
  }

  // Submits a job and waits until it is placed on w1; reports it RUNNING. Its id, or "".
  std::string Start(const std::string& name) {
    v1::SubmitJobRequest request;
    *request.mutable_spec() = Spec(name);
    v1::SubmitJobResponse response;
    if (!c_.jobs->SubmitJob(Context().get(), request, &response).ok()) return "";
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

  bool Report(const std::string& id, v1::JobState to) {
    v1::ReportEventsRequest request;
    request.set_worker("w1");
    request.set_lease_id(lease_);
    request.set_job_id(id);
    request.set_attempt(1);
    request.set_first_report_index(next_index_[id]);
    request.add_events()->mutable_state_change()->set_to(to);
    v1::ReportEventsResponse response;
    if (!c_.workers->ReportEvents(Context().get(), request, &response).ok()) return false;
    next_index_[id] = response.next_report_index();
    return true;
  }

  // Uploads a checkpoint of `bytes` (one file) at `step`; its id once committed, else nullopt.
  std::optional<std::string> Upload(const std::string& id, uint64_t step, bool final,
                                    const std::string& bytes) {
    v1::UploadCheckpointResponse uploaded;
    auto context = Context();
    auto writer = c_.workers->UploadCheckpoint(context.get(), &uploaded);
    v1::UploadCheckpointRequest message;
    auto* header = message.mutable_header();
    header->set_worker("w1");
    header->set_lease_id(lease_);
    header->set_job_id(id);
    header->set_attempt(1);
    header->set_step(step);
    header->set_final(final);
    auto* file = header->add_files();
    file->set_path("adapter/adapter_model.safetensors");
    file->set_size_bytes(bytes.size());
    file->set_sha256(Sha256Hex(bytes));
    if (!writer->Write(message)) return std::nullopt;
    for (size_t offset = 0; offset < bytes.size(); offset += 1 << 20) {
      message.Clear();
      message.mutable_chunk()->set_path("adapter/adapter_model.safetensors");
      message.mutable_chunk()->set_offset(offset);
      message.mutable_chunk()->set_data(bytes.substr(offset, 1 << 20));
      if (!writer->Write(message)) break;
    }
    writer->WritesDone();
    if (!writer->Finish().ok()) return std::nullopt;
    return uploaded.checkpoint().id();
  }

 private:
  Coordinator& c_;
  uint64_t lease_ = 0;
  std::map<std::string, uint64_t> next_index_;
};

// What the test saw of one job.
struct SeenJob {
  std::map<std::string, std::pair<uint64_t, std::string>> committed;  // id → step, sha256
  bool finished = false;      // a final state was reported (the TTL or a purge may remove it)
  bool delete_sent = false;   // DeleteJob was sent (its checkpoints may all be gone)
};

std::string RandomBytes(std::mt19937_64& random, size_t size) {
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random() & 0xff);
  return bytes;
}

// The checkpoints a coordinator lists for `id` (id → step), or nullopt when the job is gone.
std::optional<std::map<std::string, uint64_t>> Listed(Coordinator& c, const std::string& id,
                                                      grpc::Status* status) {
  v1::ListCheckpointsRequest request;
  request.set_job_id(id);
  v1::ListCheckpointsResponse response;
  *status = c.jobs->ListCheckpoints(Context().get(), request, &response);
  if (!status->ok()) return std::nullopt;
  std::map<std::string, uint64_t> listed;
  for (const v1::Checkpoint& checkpoint : response.checkpoints()) {
    listed[checkpoint.id()] = checkpoint.step();
  }
  return listed;
}

// Downloads one checkpoint; the sha256 of its bytes, or the error.
std::string DownloadSha(Coordinator& c, const std::string& id, const std::string& checkpoint) {
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

// Where a seed kills the coordinator: at a random moment, or at the Nth time it reaches a crash
// point of the GC and commit paths (common/crash_point.h), counted from the start of the GC
// phase. The setup before it is deterministic: `setup_uploads` uploads, of which
// `setup_removals` made retention remove one checkpoint each.
struct Kill {
  std::string point;  // empty: a random moment
  int nth = 0;
};

Kill KillFor(uint64_t seed, std::mt19937_64& random, int setup_uploads, int setup_removals) {
  const int extra = 1 + static_cast<int>(random() % 2);
  switch (seed % 5) {
    case 1: return {"upload.files_committed", setup_uploads + extra};
    case 2: return {"gc.records_deleted", setup_removals + extra};
    case 3: return {"artifacts.removal_renamed", setup_removals + extra};
    case 4: return {"gc.some_files_removed", 1};  // removing several at once: not in the setup
    default: return {};
  }
}

void RunSeed(uint64_t seed) {
  SCOPED_TRACE("seed " + std::to_string(seed) + " (LORATRF_GC_CRASH_SEED=" +
               std::to_string(seed) + " re-runs it)");
  std::mt19937_64 random(seed);
  TempDir dir;
  const std::string data = dir / "data";
  std::map<std::string, SeenJob> seen;

  // The setup's shape is drawn first, so that the crash point's count can include it.
  std::vector<int> counts;
  int setup_uploads = 0, setup_removals = 0;
  for (int j = 0; j < 4; ++j) {
    counts.push_back(2 + static_cast<int>(random() % 2));
    setup_uploads += counts.back();
    setup_removals += counts.back() > kKeep ? counts.back() - kKeep : 0;
  }
  const Kill kill = KillFor(seed, random, setup_uploads, setup_removals);
  std::printf("[ gc crash ] seed %llu: kill %s\n", static_cast<unsigned long long>(seed),
              kill.point.empty()
                  ? "at a random moment"
                  : (kill.point + " hit " + std::to_string(kill.nth)).c_str());

  {
    Coordinator coordinator(data, dir / "coordinator.log", {"--finished-job-ttl", "1s"},
                            kill.point.empty() ? ""
                                               : kill.point + ":" + std::to_string(kill.nth));
    ASSERT_TRUE(coordinator.ok()) << Slurp(dir / "coordinator.log");
    FakeAgent agent(coordinator);
    ASSERT_TRUE(agent.Register());
    // Before the crash window: four jobs with a few checkpoints each; one finishes (the TTL
    // purges it a second later).
    std::vector<std::string> ids;
    for (int j = 0; j < 4; ++j) {
      std::string id = agent.Start("gc-job-" + std::to_string(j));
      ASSERT_FALSE(id.empty()) << Slurp(dir / "coordinator.log");
      ids.push_back(id);
      const int count = counts[j];
      for (int s = 1; s <= count; ++s) {
        const bool final = j == 3 && s == count;
        std::string bytes = RandomBytes(random, 1000 + random() % 200000);
        auto committed = agent.Upload(id, static_cast<uint64_t>(s * 10), final, bytes);
        ASSERT_TRUE(committed.has_value());
        seen[id].committed[*committed] = {static_cast<uint64_t>(s * 10), Sha256Hex(bytes)};
      }
    }
    seen[ids[3]].finished = true;
    ASSERT_TRUE(agent.Report(ids[3], v1::JOB_STATE_SUCCEEDED));

    // The crash window: a SIGKILL at a seeded moment while GC works. It spans the GC pass that
    // purges job 3 (the TTL is 1 s, passes run every second).
    // A crash point kills it where it is armed; a random moment needs a killer.
    const auto kill_after = std::chrono::milliseconds(random() % 1800);
    std::thread killer([&] {
      if (!kill.point.empty()) return;
      std::this_thread::sleep_for(kill_after);
      coordinator.Kill();
    });
    [&] {
      // Job 0: more checkpoints, so retention deletes older ones as each commits.
      for (int s = 4; s <= 8; ++s) {
        std::string bytes = RandomBytes(random, 1000 + random() % 100000);
        auto committed = agent.Upload(ids[0], static_cast<uint64_t>(s * 10), false, bytes);
        if (!committed) return;
        seen[ids[0]].committed[*committed] = {static_cast<uint64_t>(s * 10), Sha256Hex(bytes)};
      }
      // Jobs 1 and 2 finish; 1's checkpoints are deleted, 2 is purged.
      for (int j : {1, 2}) {
        std::string bytes = RandomBytes(random, 5000);
        auto committed = agent.Upload(ids[j], 100, true, bytes);
        if (!committed) return;
        seen[ids[j]].committed[*committed] = {100, Sha256Hex(bytes)};
        seen[ids[j]].finished = true;  // from here a final report may have landed
        if (!agent.Report(ids[j], v1::JOB_STATE_SUCCEEDED)) return;
        v1::DeleteJobRequest request;
        request.set_id(ids[j]);
        request.set_purge(j == 2);
        v1::DeleteJobResponse response;
        seen[ids[j]].delete_sent = true;
        if (!coordinator.jobs->DeleteJob(Context().get(), request, &response).ok()) return;
      }
      // Then the TTL passes purge what finished, until the kill.
    }();
    killer.join();
    if (!kill.point.empty()) {
      // The GC phase above reaches the armed point: the process killed itself there. (The
      // finished-job TTL purges job 3 within two seconds, for the points only a purge or a
      // delete reaches.)
      EXPECT_TRUE(WaitFor([&] { return !coordinator.running(); }, 5))
          << kill.point << " was not reached " << kill.nth << " time(s)";
      coordinator.Kill();
    }
    coordinator.Reap();
  }

  // Restart on the same dir: the sweep removes what no record names.
  Coordinator restarted(data, dir / "coordinator.log");
  ASSERT_TRUE(restarted.ok()) << Slurp(dir / "coordinator.log");
  for (const auto& [id, job] : seen) {
    SCOPED_TRACE("job " + id);
    grpc::Status status;
    auto listed = Listed(restarted, id, &status);
    if (!listed) {
      ASSERT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
      EXPECT_TRUE(job.finished) << "only a final job may be purged";
      continue;
    }
    if (job.delete_sent && listed->empty()) continue;  // deleted as asked, all at once
    for (const auto& [checkpoint, step_sha] : job.committed) {
      const auto& [step, sha] = step_sha;
      if (listed->count(checkpoint) == 0) {
        // Only retention deletes single checkpoints: kKeep newer ones must be listed.
        int newer = 0;
        for (const auto& [other, other_step] : *listed) newer += other_step > step;
        EXPECT_GE(newer, kKeep) << checkpoint << " is gone, but retention keeps it";
        EXPECT_EQ(checkpoint.find("final"), std::string::npos) << checkpoint;
        continue;
      }
      EXPECT_EQ(DownloadSha(restarted, id, checkpoint), sha) << checkpoint;
    }
    // Every listed checkpoint downloads whole (the server checks each file's sha256).
    for (const auto& [checkpoint, step] : *listed) {
      EXPECT_THAT(DownloadSha(restarted, id, checkpoint), ::testing::Not(HasSubstr("error")))
          << checkpoint;
    }
  }
  ASSERT_EQ(restarted.Stop(), 0) << Slurp(dir / "coordinator.log");
  auto fsck = RunProcess({BinaryPath("loratrf-coordinator"), "fsck", "--data-dir", data});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
}

TEST(GcCrashTest, SigkillDuringGcLosesNothingCommittedAndLeaksNothing) {
  if (const char* one = std::getenv("LORATRF_GC_CRASH_SEED"); one != nullptr && *one != '\0') {
    RunSeed(std::strtoull(one, nullptr, 10));
    return;
  }
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    RunSeed(seed);
    if (::testing::Test::HasFailure()) break;
  }
}

// ---- fsck -------------------------------------------------------------------------------------

class FsckCommandTest : public ::testing::Test {
 protected:
  // A data dir with one job and two committed checkpoints, written by a real coordinator.
  void SetUp() override {
    Coordinator coordinator(data_, dir_ / "coordinator.log");
    ASSERT_TRUE(coordinator.ok()) << Slurp(dir_ / "coordinator.log");
    FakeAgent agent(coordinator);
    ASSERT_TRUE(agent.Register());
    job_ = agent.Start("fsck-job");
    ASSERT_FALSE(job_.empty());
    ASSERT_TRUE(agent.Upload(job_, 10, false, "first checkpoint").has_value());
    ASSERT_TRUE(agent.Upload(job_, 20, false, "second checkpoint").has_value());
    ASSERT_EQ(coordinator.Stop(), 0);
  }

  testing::ProcessResult Fsck(std::vector<std::string> args) {
    args.insert(args.begin(), {BinaryPath("loratrf-coordinator"), "fsck"});
    return RunProcess(args);
  }
  std::string Checkpoint(const std::string& id) { return data_ + "/artifacts/" + job_ + "/" + id; }

  TempDir dir_;
  const std::string data_ = dir_ / "data";
  std::string job_;
};

TEST_F(FsckCommandTest, ACleanDataDirIsExitZero) {
  auto result = Fsck({"--data-dir", data_});
  EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr("2 checkpoint(s)"));
}

TEST_F(FsckCommandTest, AMissingFileIsExitOneNamingIt) {
  fs::remove(Checkpoint("s10-a1") + "/f0");
  auto result = Fsck({"--data-dir", data_});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr(job_ + "/s10-a1: file 'adapter/adapter_model.safetensors'"));
  EXPECT_THAT(result.out, HasSubstr("missing"));
}

TEST_F(FsckCommandTest, AWrongSha256IsExitOneNamingIt) {
  std::ofstream(Checkpoint("s20-a1") + "/f0", std::ios::trunc) << "second checkpoinT";
  auto result = Fsck({"--data-dir", data_});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr(job_ + "/s20-a1"));
  EXPECT_THAT(result.out, HasSubstr("sha256"));
}

TEST_F(FsckCommandTest, AnOrphanFileIsExitOneNamingIt) {
  fs::create_directories(Checkpoint("s30-a1"));
  std::ofstream(Checkpoint("s30-a1") + "/f0") << "never recorded";
  auto result = Fsck({"--data-dir", data_});
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr("unreferenced: " + Checkpoint("s30-a1")));
}

TEST_F(FsckCommandTest, BadFlagsOrAMissingDataDirIsExitTwoWithOneLine) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{}, {"--data-dir"}, {"--data-dir", dir_ / "missing"},
        {"--data-dir", data_, "--bogus"}, {"--data-dir", data_, "extra"}}) {
    auto result = Fsck(args);
    EXPECT_EQ(result.exit_code, 2) << result.out << result.err;
    EXPECT_EQ(std::count(result.err.begin(), result.err.end(), '\n'), 1) << result.err;
  }
}

TEST(GcFlagsTest, ABadTtlIsExitTwoNamingTheFlag) {
  TempDir dir;
  for (std::string flag : {"--finished-job-ttl", "--lost-worker-ttl", "--idempotency-window"}) {
    for (std::string value : {"-5", "soon", "3x", "-1h"}) {
      auto result = RunProcess({BinaryPath("loratrf-coordinator"), "--listen", "127.0.0.1:0",
                                "--data-dir", dir / "data", flag, value});
      EXPECT_EQ(result.exit_code, 2) << flag << " " << value << ": " << result.err;
      EXPECT_THAT(result.err, HasSubstr(flag)) << value;
    }
  }
}

// ---- loratrf delete ---------------------------------------------------------------------------

TEST(DeleteCommandTest, DeletesAFinishedJobsCheckpointsThenPurgesIt) {
  TempDir dir;
  Coordinator coordinator(dir / "data", dir / "coordinator.log");
  ASSERT_TRUE(coordinator.ok()) << Slurp(dir / "coordinator.log");
  FakeAgent agent(coordinator);
  ASSERT_TRUE(agent.Register());
  std::string id = agent.Start("delete-job");
  ASSERT_FALSE(id.empty());
  auto loratrf = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {BinaryPath("loratrf"), "--coordinator", coordinator.address()});
    return RunProcess(args);
  };
  // Not final yet: refused.
  auto refused = loratrf({"delete", id});
  EXPECT_EQ(refused.exit_code, 1) << refused.out << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("not final"));

  ASSERT_TRUE(agent.Upload(id, 10, false, std::string(1000, 'a')).has_value());
  ASSERT_TRUE(agent.Upload(id, 20, true, std::string(500, 'b')).has_value());
  ASSERT_TRUE(agent.Report(id, v1::JOB_STATE_SUCCEEDED));
  auto deleted = loratrf({"delete", id, "-o", "json"});
  ASSERT_EQ(deleted.exit_code, 0) << deleted.out << deleted.err;
  EXPECT_THAT(deleted.out, HasSubstr("\"checkpoints_deleted\":2"));
  EXPECT_THAT(deleted.out, HasSubstr("\"bytes_freed\":\"1500\""));
  EXPECT_FALSE(fs::exists(dir / "data/artifacts/" + id + "/s10-a1"));
  auto listed = loratrf({"checkpoints", id});
  EXPECT_EQ(listed.exit_code, 0) << listed.err;

  auto purged = loratrf({"delete", id, "--purge"});
  ASSERT_EQ(purged.exit_code, 0) << purged.out << purged.err;
  EXPECT_THAT(purged.out, HasSubstr(id + " purged"));
  auto gone = loratrf({"get", id});
  EXPECT_EQ(gone.exit_code, 1) << gone.out << gone.err;
  auto usage = loratrf({"delete"});
  EXPECT_EQ(usage.exit_code, 2);
}

}  // namespace
}  // namespace loratrf
