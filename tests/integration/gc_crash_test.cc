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
#include "tests/integration/fake_agent.h"
#include "tests/integration/subprocess.h"

namespace loratrf {
namespace {

namespace fs = std::filesystem;
using ::loratrf::testing::Coordinator;
using ::loratrf::testing::Context;
using ::loratrf::testing::DownloadSha;
using ::loratrf::testing::FakeAgent;
using ::loratrf::testing::RandomBytes;
using ::loratrf::testing::BinaryPath;
using ::loratrf::testing::RunProcess;
using ::loratrf::testing::Slurp;
using ::loratrf::testing::TempDir;
using ::loratrf::testing::WaitFor;
using ::testing::HasSubstr;

constexpr int kKeep = 2;  // keep_checkpoints of every job here

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

// What the test saw of one job.
struct SeenJob {
  std::map<std::string, std::pair<uint64_t, std::string>> committed;  // id → step, sha256
  bool finished = false;      // a final state was reported (the TTL or a purge may remove it)
  bool delete_sent = false;   // DeleteJob was sent (its checkpoints may all be gone)
};

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
      std::string id = agent.Start(Spec("gc-job-" + std::to_string(j)));
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
    job_ = agent.Start(Spec("fsck-job"));
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
  std::string id = agent.Start(Spec("delete-job"));
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
