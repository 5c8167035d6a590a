// Faults injected into a running service with real processes (a loratrf-coordinator, a
// `loratrf-worker agent`, its rank processes, Gloo over loopback), each with the outcome it
// must have:
//   - a rank SIGKILLed mid-step: its peer's collective fails, the attempt ends, the job resumes
//     from its last checkpoint and ends with the adapter an uninterrupted run makes;
//   - a rank SIGSTOPped inside an all-reduce: every rank of the attempt exits (the peer through
//     the collective timeout, the stopped one killed by the agent), nothing is left behind,
//     and the job is retried;
//   - a job that fails on the worker every time: exactly 1 + max_restarts attempts, then FAILED
//     with the last attempt's reason; a user error (bad data) fails at once, without a retry;
//   - a crash at each point of a checkpoint's commit (common/crash_point.h, the names in
//     worker/engine/checkpoint/checkpoint_store.cc) and during its upload by the agent
//     (worker/agent/checkpoint_transfer.cc): the previous checkpoint is intact and resumed
//     from, the partial one is removed and never recorded by the coordinator.
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/model_fixtures.h"
#include "tests/integration/service_fixture.h"
#include "tests/integration/subprocess.h"

namespace loratrf::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;

// A checkpoint's or event's uint64 step (a string in proto JSON).
int64_t StepOf(const json& value) {
  return value.is_string() ? std::stoll(value.get<std::string>()) : value.get<int64_t>();
}

// A process that is there and not a zombie.
bool Alive(int pid) {
  std::string stat = Slurp("/proc/" + std::to_string(pid) + "/stat");
  return !stat.empty() && stat.find(") Z") == std::string::npos;
}

// A process group with no process left in it.
bool GroupGone(int pgid) { return ::kill(-pgid, 0) != 0 && errno == ESRCH; }

// SIGKILLs a process on scope exit if it is still there: a SIGSTOPped rank must not outlive a
// failed test (SIGKILL ends stopped processes too).
class KillOnExit {
 public:
  explicit KillOnExit(int pid) : pid_(pid) {}
  ~KillOnExit() {
    if (pid_ > 0 && Alive(pid_)) ::kill(pid_, SIGKILL);
  }
  KillOnExit(const KillOnExit&) = delete;
  KillOnExit& operator=(const KillOnExit&) = delete;

 private:
  int pid_;
};

class Faults : public ServiceFixture {
 protected:
  std::string JobDir(const std::string& agent, const std::string& id) {
    return dir_ / ("work-" + agent + "/jobs/" + id);
  }
  std::string AttemptDir(const std::string& agent, const std::string& id, int attempt) {
    return JobDir(agent, id) + "/attempt-" + std::to_string(attempt) + "/";
  }

  // The pid of rank `rank` of the attempt whose directory is `attempt_dir`, or 0.
  int RankPid(const std::string& attempt_dir, int rank) {
    for (int pid : ProcessesMentioning(attempt_dir)) {
      std::string cmdline = Slurp("/proc/" + std::to_string(pid) + "/cmdline");
      std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
      if (cmdline.find(" --rank " + std::to_string(rank) + " ") != std::string::npos) return pid;
    }
    return 0;
  }

  int64_t LatestStep(const json& job) {
    return job.contains("latest_train") ? StepOf(job["latest_train"]["step"]) : 0;
  }

  // The state changes of a final job, in order.
  std::vector<json> StateChanges(const std::string& id) {
    std::vector<json> changes;
    for (const json& event : Events(id)) {
      if (!event.contains("state_change")) continue;
      json change = event["state_change"];
      change["attempt"] = event.value("attempt", 0);
      changes.push_back(change);
    }
    return changes;
  }

  // The id of the checkpoint that attempt `attempt` resumed from, as the coordinator logged
  // it ("" when it started from scratch or the line is not there).
  std::string ResumedFrom(const std::string& id, int attempt) {
    const std::string log = Slurp(dir_ / "coordinator.log");
    const std::string line = "job " + id + " attempt " + std::to_string(attempt) + " scheduled on ";
    size_t at = log.find(line);
    if (at == std::string::npos) return "";
    const size_t end = log.find('\n', at);
    const std::string text = log.substr(at, end - at);
    const std::string marker = "resuming from checkpoint ";
    const size_t from = text.find(marker);
    return from == std::string::npos ? "" : text.substr(from + marker.size());
  }

  // Runs the same job straight through with `loratrf-worker run` and checks that the job's
  // downloaded final adapter is the same.
  void ExpectSameAdapterAsAStraightRun(const std::string& id, const std::string& spec) {
    const std::string name = "straight-" + id;
    ProcessResult straight = RunProcess({BinaryPath("loratrf-worker"), "run", "--spec", spec,
                                         "--output", dir_ / name}, "", 300);
    ASSERT_EQ(straight.exit_code, 0) << straight.err;
    ProcessResult downloaded = Cli({"download", id, "--output", dir_ / ("job-" + id)});
    ASSERT_EQ(downloaded.exit_code, 0) << downloaded.err;
    ExpectSameTensors(dir_ / ("job-" + id + "/adapter_model.safetensors"),
                      dir_ / (name + "/final/adapter_model.safetensors"), 1e-5);
  }

  // Every checkpoint the coordinator lists downloads whole (the CLI checks every sha256).
  void ExpectEveryCheckpointDownloads(const std::string& id) {
    for (const json& checkpoint : Checkpoints(id)) {
      const std::string checkpoint_id = checkpoint["id"].get<std::string>();
      ProcessResult downloaded = Cli({"download", id, "--checkpoint", checkpoint_id, "--output",
                                      dir_ / ("ck-" + checkpoint_id)});
      EXPECT_EQ(downloaded.exit_code, 0) << checkpoint_id << ": " << downloaded.err;
    }
  }
};

// Two ranks on one agent; short collective timeout so that a lost peer is noticed in seconds.
constexpr char kTwoRanks[] = "workers: 1, slots_per_worker: 2";
constexpr char kTwoRankTraining[] =
    "epochs: 10, max_steps: 40, batch_size: 8, micro_batch_size: 4, learning_rate: 0.01, "
    "eval_every_steps: 0, checkpoint_every_steps: 4, keep_checkpoints: 20, max_seq_len: 32";

TEST_F(Faults, ASigkilledRankFailsItsPeerAndTheJobResumesToTheSameAdapter) {
  StartCoordinator();
  StartAgent("node-a", 2, {"--collective-timeout", "10s"});
  WaitForWorkers(1);
  const std::string spec = Spec("rank-killed", kTwoRankTraining, kTwoRanks);
  const std::string id = Submit(spec);
  ASSERT_FALSE(id.empty());
  const std::string attempt1 = AttemptDir("node-a", id, 1);
  int rank0 = 0, rank1 = 0;
  ASSERT_TRUE(WaitFor([&] {
    rank0 = RankPid(attempt1, 0);
    rank1 = RankPid(attempt1, 1);
    return rank0 != 0 && rank1 != 0 && !Checkpoints(id).empty();
  }, 120)) << Logs();
  ASSERT_EQ(::kill(rank1, SIGKILL), 0);

  // Rank 0 fails its collective and exits; the attempt ends with both ranks gone.
  EXPECT_TRUE(WaitFor([&] { return !Alive(rank0); }, 120)) << "rank 0 outlived its peer";
  EXPECT_THAT(Slurp(attempt1 + "rank-0.stderr.log"),
              HasSubstr("all-reduce failed"));
  EXPECT_TRUE(WaitFor([&] { return GroupGone(rank0) && GroupGone(rank1); }, 30));

  ProcessResult watched = Cli({"watch", id}, 400);
  ASSERT_EQ(watched.exit_code, 0) << watched.out << watched.err << Logs();
  json job = Get(id);
  EXPECT_EQ(job["state"], "JOB_STATE_SUCCEEDED");
  EXPECT_EQ(job["attempt"], 2);
  bool restarted = false;
  for (const json& change : StateChanges(id)) {
    if (change.value("to", "") == "JOB_STATE_RESTARTING") {
      restarted = true;
      EXPECT_EQ(change["attempt"], 1);
      EXPECT_THAT(change.value("reason", ""), HasSubstr("rank "));
      EXPECT_FALSE(change.value("preempted", false));
    }
  }
  EXPECT_TRUE(restarted) << "no RESTARTING event";
  // Attempt 2 resumed from a checkpoint attempt 1 committed.
  const std::string resumed = ResumedFrom(id, 2);
  ASSERT_FALSE(resumed.empty()) << "attempt 2 did not resume from a checkpoint\n" << Logs();
  bool found = false;
  for (const json& checkpoint : Checkpoints(id)) {
    if (checkpoint["id"] == resumed) {
      found = true;
      EXPECT_EQ(checkpoint["attempt"], 1);
      EXPECT_FALSE(checkpoint.value("final", false));
    }
  }
  EXPECT_TRUE(found) << resumed << " is not listed";
  ExpectSameAdapterAsAStraightRun(id, spec);
}

TEST_F(Faults, ASigstoppedRankIsKilledItsPeerTimesOutAndTheJobIsRetried) {
  StartCoordinator();
  StartAgent("node-a", 2, {"--collective-timeout", "5s"});
  WaitForWorkers(1);
  const std::string spec = Spec("rank-stopped", kTwoRankTraining, kTwoRanks);
  const std::string id = Submit(spec);
  ASSERT_FALSE(id.empty());
  const std::string attempt1 = AttemptDir("node-a", id, 1);
  int rank0 = 0, rank1 = 0;
  ASSERT_TRUE(WaitFor([&] {
    rank0 = RankPid(attempt1, 0);
    rank1 = RankPid(attempt1, 1);
    return rank0 != 0 && rank1 != 0 && LatestStep(Get(id)) >= 2;
  }, 120)) << Logs();
  // Every step all-reduces the gradients: rank 0 is, or soon will be, waiting for rank 1 in
  // one, and rank 1 never comes.
  ASSERT_EQ(::kill(rank1, SIGSTOP), 0);
  KillOnExit guard(rank1);

  // Both exit: rank 0 when its all-reduce times out, rank 1 killed by the agent. The deadline
  // only guards against a hang (the timeout is 5 s, the agent's grace 3 s).
  EXPECT_TRUE(WaitFor([&] { return !Alive(rank0); }, 120)) << "rank 0 still waits\n" << Logs();
  EXPECT_TRUE(WaitFor([&] { return !Alive(rank1); }, 120)) << "the stopped rank was left\n" << Logs();
  EXPECT_THAT(Slurp(attempt1 + "rank-0.stderr.log"), HasSubstr("all-reduce timed out"));
  // Nothing of attempt 1 is left: not the ranks, not anything in their process groups.
  EXPECT_TRUE(WaitFor([&] { return GroupGone(rank0) && GroupGone(rank1); }, 30));
  EXPECT_TRUE(ProcessesMentioning(attempt1).empty());

  ProcessResult watched = Cli({"watch", id}, 400);
  ASSERT_EQ(watched.exit_code, 0) << watched.out << watched.err << Logs();
  json job = Get(id);
  EXPECT_EQ(job["state"], "JOB_STATE_SUCCEEDED");
  EXPECT_EQ(job["attempt"], 2);
  int restarts = 0;
  for (const json& change : StateChanges(id)) {
    if (change.value("to", "") == "JOB_STATE_RESTARTING") {
      ++restarts;
      EXPECT_THAT(change.value("reason", ""), HasSubstr("rank 0"));
    }
  }
  EXPECT_EQ(restarts, 1);
}

constexpr char kOneRank[] = "workers: 1, slots_per_worker: 1";
constexpr char kOneRankTraining[] =
    "max_steps: 24, batch_size: 8, micro_batch_size: 8, learning_rate: 0.01, "
    "eval_every_steps: 0, checkpoint_every_steps: 4, keep_checkpoints: 20, max_seq_len: 32";

// The rank dies at its first checkpoint in every attempt: a failure on the worker, retried
// max_restarts times.
TEST_F(Faults, AJobThatAlwaysFailsRunsOnePlusMaxRestartsAttemptsThenFailsWithTheLastReason) {
  StartCoordinator();
  StartAgent("node-a", 1, {}, {"LORATRF_CRASH_POINT=checkpoint.files_written:1"});
  WaitForWorkers(1);
  const std::string id = Submit(Spec("always-fails", kOneRankTraining, kOneRank, 2));
  ASSERT_FALSE(id.empty());
  ProcessResult watched = Cli({"watch", id}, 400);
  EXPECT_EQ(watched.exit_code, 1) << watched.out << watched.err << Logs();
  json job = Get(id);
  EXPECT_EQ(job["state"], "JOB_STATE_FAILED");
  EXPECT_EQ(job["attempt"], 3);
  std::vector<int> restarted, started;
  std::string failed_reason;
  for (const json& change : StateChanges(id)) {
    const std::string to = change.value("to", "");
    if (to == "JOB_STATE_RESTARTING") {
      restarted.push_back(change["attempt"].get<int>());
      EXPECT_THAT(change.value("reason", ""), HasSubstr("killed by signal 9"));
    }
    if (to == "JOB_STATE_RUNNING") started.push_back(change["attempt"].get<int>());
    if (to == "JOB_STATE_FAILED") failed_reason = change.value("reason", "");
  }
  EXPECT_EQ(restarted, (std::vector<int>{1, 2}));
  EXPECT_EQ(started, (std::vector<int>{1, 2, 3}));
  EXPECT_THAT(failed_reason, HasSubstr("rank 0 on node-a was killed by signal 9"));
  EXPECT_THAT(failed_reason, HasSubstr("no restarts left (max_restarts 2)"));
  EXPECT_THAT(job.value("state_reason", ""), HasSubstr("killed by signal 9"));
}

TEST_F(Faults, AUserErrorInTheDataFailsAtOnceWithoutARetry) {
  StartCoordinator();
  StartAgent("node-a", 1);
  WaitForWorkers(1);
  // The training data with one line that has no label.
  std::string data = Slurp(dir_ / "train.jsonl");
  const size_t third = data.find('\n', data.find('\n', data.find('\n') + 1) + 1);
  const std::string lines = data.substr(0, third + 1);
  std::ofstream(dir_ / "unlabelled.jsonl") << lines << "{\"input_ids\": [5, 6, 7]}\n"
                                           << data.substr(third + 1);
  std::string spec = Slurp(Spec("bad-data", kOneRankTraining, kOneRank, 2));
  const std::string from = "train: train.jsonl";
  spec.replace(spec.find(from), from.size(), "train: unlabelled.jsonl");
  std::ofstream(dir_ / "bad-data.yaml") << spec;
  const std::string id = Submit(dir_ / "bad-data.yaml");
  ASSERT_FALSE(id.empty());
  ProcessResult watched = Cli({"watch", id}, 300);
  EXPECT_EQ(watched.exit_code, 1) << watched.out << watched.err << Logs();
  json job = Get(id);
  EXPECT_EQ(job["state"], "JOB_STATE_FAILED");
  EXPECT_EQ(job["attempt"], 1);
  EXPECT_THAT(job.value("state_reason", ""), HasSubstr("unlabelled.jsonl"));
  EXPECT_THAT(job.value("state_reason", ""), HasSubstr("label"));
  for (const json& change : StateChanges(id)) {
    EXPECT_NE(change.value("to", ""), "JOB_STATE_RESTARTING") << change.dump();
  }
}

// A crash of the rank at one point of committing its second checkpoint (step 8), once: the
// next attempt resumes from the first (step 4), which the coordinator holds intact, and the
// partial one is gone.
struct CommitCrash {
  const char* point;
  bool partial_left;   // the crash leaves a .partial- directory behind
  bool manifest_there;  // ... with its MANIFEST.json
};

void PrintTo(const CommitCrash& crash, std::ostream* out) { *out << crash.point; }

class CheckpointCommitCrash : public Faults, public ::testing::WithParamInterface<CommitCrash> {};

TEST_P(CheckpointCommitCrash, ThePreviousCheckpointIsResumedAndThePartialOneRemoved) {
  const CommitCrash crash = GetParam();
  StartCoordinator();
  const std::string marker = dir_ / "crashed";
  StartAgent("node-a", 1, {},
             {std::string("LORATRF_CRASH_POINT=") + crash.point + ":2",
              "LORATRF_CRASH_POINT_ONCE=" + marker});
  WaitForWorkers(1);
  const std::string spec = Spec("commit-crash", kOneRankTraining, kOneRank, 2);
  const std::string id = Submit(spec);
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitFor([&] { return fs::exists(marker); }, 120)) << Logs();
  // What the crash left in the rank's output: the committed step 4 and, before the rename, a
  // partial step 8.
  const std::string checkpoints = JobDir("node-a", id) + "/output/checkpoints";
  std::vector<std::string> partial;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(checkpoints, ec)) {
    const std::string name = entry.path().filename();
    if (name.rfind(".partial-8-", 0) == 0) partial.push_back(entry.path());
  }
  if (crash.partial_left) {
    ASSERT_EQ(partial.size(), 1u) << "the crash did not land inside the commit";
    EXPECT_EQ(fs::exists(partial[0] + "/MANIFEST.json"), crash.manifest_there);
  } else {
    // Committed before the crash (unless the next attempt already cleared it for its resume).
    EXPECT_TRUE(partial.empty());
    if (fs::exists(checkpoints + "/8")) {
      EXPECT_TRUE(fs::exists(checkpoints + "/8/MANIFEST.json"));
    }
  }

  ProcessResult watched = Cli({"watch", id}, 400);
  ASSERT_EQ(watched.exit_code, 0) << watched.out << watched.err << Logs();
  json job = Get(id);
  EXPECT_EQ(job["attempt"], 2);
  // Attempt 2 resumed from attempt 1's latest recorded checkpoint: step 4, or step 8 when the
  // crash came after the rename and the agent uploaded it before it noticed.
  const std::string resumed = ResumedFrom(id, 2);
  int64_t resumed_step = -1;
  for (const json& checkpoint : Checkpoints(id)) {
    if (checkpoint["id"] == resumed) {
      resumed_step = StepOf(checkpoint["step"]);
      EXPECT_EQ(checkpoint["attempt"], 1);
    }
    // Step 8 is recorded once, and only from a commit that finished.
    if (StepOf(checkpoint["step"]) == 8 && crash.partial_left) {
      EXPECT_EQ(checkpoint["attempt"], 2);
    }
  }
  if (crash.partial_left) {
    EXPECT_EQ(resumed_step, 4) << Logs();
  } else {
    EXPECT_THAT(resumed_step, ::testing::AnyOf(4, 8)) << Logs();
  }
  // The job's work dir went with its success, the partial checkpoint with it; the coordinator's
  // checkpoints all download whole, and the adapter is the one an uninterrupted run makes.
  EXPECT_TRUE(WaitFor([&] { return !fs::exists(JobDir("node-a", id)); }, 30));
  ExpectEveryCheckpointDownloads(id);
  ExpectSameAdapterAsAStraightRun(id, spec);
}

INSTANTIATE_TEST_SUITE_P(
    Points, CheckpointCommitCrash,
    ::testing::Values(CommitCrash{"checkpoint.files_written", true, false},
                      CommitCrash{"checkpoint.manifest_written", true, true},
                      CommitCrash{"checkpoint.renamed", false, true}),
    [](const ::testing::TestParamInfo<CommitCrash>& info) {
      std::string name = info.param.point;
      name = name.substr(name.find('.') + 1);
      name.erase(std::remove(name.begin(), name.end(), '_'), name.end());
      return name;
    });

// The agent dies in the middle of uploading the second checkpoint: the coordinator records
// nothing of it and removes what it received; the agent started again resumes the job from the
// first checkpoint.
TEST_F(Faults, AnAgentCrashDuringACheckpointUploadRecordsNothingAndTheJobResumesFromThePrevious) {
  StartCoordinator();
  StartAgent("node-a", 1, {}, {"LORATRF_CRASH_POINT=upload.first_file_sent:2"});
  WaitForWorkers(1);
  const std::string spec = Spec("upload-crash", kOneRankTraining, kOneRank, 2);
  const std::string id = Submit(spec);
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(agents_["node-a"]->Wait(120), 128 + SIGKILL) << Logs();
  // Its rank went with it (PDEATHSIG).
  EXPECT_TRUE(WaitFor([&] { return ProcessesMentioning(dir_ / "work-node-a").empty(); }, 10));
  // The coordinator dropped the half-received upload, and recorded only the first checkpoint.
  EXPECT_TRUE(WaitFor([&] {
    std::error_code ec;
    return fs::is_empty(dir_ / "data/artifacts/tmp", ec) || !fs::exists(dir_ / "data/artifacts/tmp");
  }, 30)) << "an abandoned upload is left in the coordinator's tmp/";
  json checkpoints = Checkpoints(id);
  ASSERT_EQ(checkpoints.size(), 1u) << checkpoints.dump();
  EXPECT_EQ(StepOf(checkpoints[0]["step"]), 4);
  const std::string first = checkpoints[0]["id"].get<std::string>();

  StartAgent("node-a", 1);
  ProcessResult watched = Cli({"watch", id}, 400);
  ASSERT_EQ(watched.exit_code, 0) << watched.out << watched.err << Logs();
  json job = Get(id);
  EXPECT_EQ(job["attempt"], 2);
  EXPECT_EQ(ResumedFrom(id, 2), first) << Logs();
  for (const json& checkpoint : Checkpoints(id)) {
    if (StepOf(checkpoint["step"]) == 8) {
      EXPECT_EQ(checkpoint["attempt"], 2);
    }
  }
  ExpectEveryCheckpointDownloads(id);
  ExpectSameAdapterAsAStraightRun(id, spec);
}

}  // namespace
}  // namespace loratrf::testing
