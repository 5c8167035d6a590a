// The whole service on 127.0.0.1: a real loratrf-coordinator (SQLite under a temp data dir),
// real `loratrf-worker agent`s starting real rank processes (Gloo over loopback), driven by the
// real `loratrf` CLI: submit, watch, cancel, download, restarts after SIGKILL of an agent or
// the coordinator, a drained (SIGTERMed) agent's job moving on without using a restart, a job
// spread over two agents, auth and idempotency.
#include <signal.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/model_fixtures.h"
#include "tests/integration/run_fixture.h"
#include "tests/integration/service_fixture.h"
#include "tests/integration/subprocess.h"

namespace loratrf::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;

// The repository: the shipped Prometheus configuration, rules and query checker.
const std::string kSourceDir = LORATRF_SOURCE_DIR;

class ControlPlane : public ServiceFixture {
 protected:
  // GET http://127.0.0.1:PORT/metrics: the body, empty when the scrape failed (an agent that
  // is not listening yet).
  std::string Scrape(int port) {
    ProcessResult scraped = RunProcess(
        {kPython, "-c",
         "import sys, urllib.request; "
         "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())",
         "http://127.0.0.1:" + std::to_string(port) + "/metrics"});
    return scraped.exit_code == 0 ? scraped.out : std::string();
  }

  // The scrape, checked by promtool (the real Prometheus parser and linter).
  void ExpectValidMetrics(int port, const std::vector<std::string>& expected_names) {
    const std::string text = Scrape(port);
    ASSERT_FALSE(text.empty()) << "nothing scraped from port " << port;
    for (const std::string& name : expected_names) EXPECT_THAT(text, HasSubstr(name));
    ProcessResult checked = RunProcess({"/usr/bin/promtool", "check", "metrics"}, text);
    EXPECT_EQ(checked.exit_code, 0) << checked.out << checked.err;
  }

};

constexpr char kShortTraining[] =
    "max_steps: 12, batch_size: 8, micro_batch_size: 4, learning_rate: 0.01, "
    "eval_every_steps: 6, checkpoint_every_steps: 6, max_seq_len: 32";
constexpr char kLongTraining[] =
    "epochs: 40, batch_size: 8, micro_batch_size: 8, learning_rate: 0.001, "
    "eval_every_steps: 0, checkpoint_every_steps: 10, keep_checkpoints: 2, max_seq_len: 32";

TEST_F(ControlPlane, SubmitWatchSucceedAndTheDownloadedAdapterLoads) {
  StartCoordinator();
  int agent_metrics = FreePort();
  StartAgent("node-a", 2, {"--metrics-listen", "127.0.0.1:" + std::to_string(agent_metrics)});
  std::string id = Submit(Spec("short", kShortTraining, "workers: 1, slots_per_worker: 2"));
  ASSERT_FALSE(id.empty());
  ProcessResult watched = Cli({"watch", id}, 240);
  EXPECT_EQ(watched.exit_code, 0) << watched.out << watched.err << Logs();
  EXPECT_THAT(watched.out, HasSubstr("succeeded"));
  json job = Get(id);
  EXPECT_EQ(job["state"], "JOB_STATE_SUCCEEDED");
  EXPECT_EQ(job["attempt"], 1);
  EXPECT_EQ(job["workers"], json::array({"node-a"}));
  EXPECT_EQ(job["latest_train"]["step"], "12");
  ProcessResult downloaded = Cli({"download", id, "--output", dir_ / "adapter"});
  ASSERT_EQ(downloaded.exit_code, 0) << downloaded.err;
  EXPECT_TRUE(fs::exists(dir_ / "adapter/adapter_model.safetensors"));
  ProcessResult logits = RunProcess({BinaryPath("loratrf-worker"), "logits", "--model", dir_ / "model",
                                     "--adapter", dir_ / "adapter", "--input-ids", "40,7,9",
                                     "--output", dir_ / "logits.safetensors"});
  EXPECT_EQ(logits.exit_code, 0) << logits.err;
  // Checkpoints at steps 6 and 12 and the final adapter are listed.
  json checkpoints = Checkpoints(id);
  ASSERT_GE(checkpoints.size(), 2u);
  EXPECT_TRUE(checkpoints.back()["final"].get<bool>());
  // Both /metrics endpoints serve valid Prometheus text with what happened in it.
  ExpectValidMetrics(metrics_port_, {"loratrf_jobs_finished_total{state=\"succeeded\"} 1",
                                     "loratrf_scheduling_latency_seconds_bucket",
                                     "loratrf_grpc_requests_total"});
  ExpectValidMetrics(agent_metrics, {"loratrf_agent_slots 2", "loratrf_agent_attempts_total"});
}

// While a job runs, the agent exports each of its ranks' training series, labelled with the
// job, attempt and rank; when the attempt ends they are gone.
TEST_F(ControlPlane, TheAgentExportsEachRunningRanksTrainingSeriesAndDropsThemAtTheEnd) {
  StartCoordinator();
  int agent_metrics = FreePort();
  StartAgent("node-a", 2, {"--metrics-listen", "127.0.0.1:" + std::to_string(agent_metrics)});
  std::string id = Submit(Spec("long",
                               "epochs: 40, batch_size: 16, micro_batch_size: 8, "
                               "learning_rate: 0.001, checkpoint_every_steps: 10, max_seq_len: 32",
                               "workers: 1, slots_per_worker: 2"));
  ASSERT_FALSE(id.empty());
  const std::string rank0 = "{attempt=\"1\",job_id=\"" + id + "\",rank=\"0\"}";
  const std::string rank1 = "{attempt=\"1\",job_id=\"" + id + "\",rank=\"1\"}";
  std::string text;
  ASSERT_TRUE(WaitFor([&] {
    text = Scrape(agent_metrics);
    return text.find("loratrf_train_steps_total" + rank0 + " 3") != std::string::npos ||
           text.find("loratrf_train_steps_total" + rank0 + " 4") != std::string::npos;
  }, 120)) << text << Logs();
  for (const std::string family :
       {"loratrf_train_tokens_total", "loratrf_train_samples_total", "loratrf_train_loss",
        "loratrf_train_learning_rate", "loratrf_train_grad_norm", "loratrf_train_step",
        "loratrf_train_total_steps", "loratrf_train_last_step_timestamp_seconds",
        "loratrf_train_data_wait_seconds_total", "loratrf_train_allreduce_seconds_total",
        "loratrf_train_model_flops_per_second", "loratrf_train_step_duration_seconds_count"}) {
    EXPECT_THAT(text, HasSubstr(family + rank0)) << family;
    EXPECT_THAT(text, HasSubstr(family + rank1)) << family;
  }
  EXPECT_THAT(text, HasSubstr("loratrf_train_memory_bytes{attempt=\"1\",device=\"cpu\",job_id=\"" +
                              id + "\",kind=\"peak\",rank=\"0\"}"));
  EXPECT_THAT(text, HasSubstr("loratrf_agent_work_dir_available_bytes "));
  ProcessResult checked = RunProcess({"/usr/bin/promtool", "check", "metrics"}, text);
  EXPECT_EQ(checked.exit_code, 0) << checked.out << checked.err;

  ASSERT_EQ(Cli({"cancel", id}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] {
    text = Scrape(agent_metrics);
    return text.find("job_id=\"" + id + "\"") == std::string::npos;
  }, 30)) << "the cancelled attempt's series are still exported:\n" << text;
}

// The Prometheus HTTP API's answer to an instant query, parsed; null when it did not answer.
json PromQuery(int port, const std::string& query) {
  ProcessResult answered = RunProcess(
      {kPython, "-c",
       "import sys, urllib.parse, urllib.request; sys.stdout.write(urllib.request.urlopen("
       "sys.argv[1] + '/api/v1/query?query=' + urllib.parse.quote(sys.argv[2]), timeout=10)"
       ".read().decode())",
       "http://127.0.0.1:" + std::to_string(port), query});
  if (answered.exit_code != 0) return nullptr;
  return json::parse(answered.out, nullptr, /*allow_exceptions=*/false);
}

// The number of series an instant query returns (0 when Prometheus did not answer).
size_t PromSeries(int port, const std::string& query) {
  json answer = PromQuery(port, query);
  if (!answer.is_object() || answer.value("status", "") != "success") return 0;
  return answer["data"]["result"].size();
}

// A real Prometheus (Debian's) with the shipped scrape configuration and rules, pointed at a
// real coordinator and agent: it scrapes a running job's series, the recording rules compute
// from them, the dashboards' and rules' names are all served (and are exactly the documented
// families), and killing the agent fires LoratrfAgentLost.
TEST_F(ControlPlane, ARealPrometheusScrapesTheJobRunsTheRulesAndFiresAgentLost) {
  if (!fs::exists("/usr/bin/prometheus")) {
    FAIL() << "/usr/bin/prometheus is missing: deploy/install-deps.sh installs the Debian "
              "package prometheus";
  }
  StartCoordinator();
  const int agent_metrics = FreePort();
  // A peak for the CPU, so that the MFU series exists here too.
  ::setenv("LORATRF_DEVICE_PEAK_FLOPS", "1e12", 1);
  StartAgent("node-a", 1, {"--metrics-listen", "127.0.0.1:" + std::to_string(agent_metrics)});
  ::unsetenv("LORATRF_DEVICE_PEAK_FLOPS");

  // The shipped configuration, its placeholder targets replaced, scraped and evaluated every
  // second instead of every 15, its rule files read from the repository.
  std::string config = Slurp(kSourceDir + "/deploy/prometheus/prometheus.yml");
  auto replace = [&](const std::string& from, const std::string& to) {
    size_t at = config.find(from);
    ASSERT_NE(at, std::string::npos) << "prometheus.yml has no '" << from << "'";
    config.replace(at, from.size(), to);
  };
  replace("coordinator.example:9464", "127.0.0.1:" + std::to_string(metrics_port_));
  replace("node-1.example:9465", "127.0.0.1:" + std::to_string(agent_metrics));
  replace("          - \"node-2.example:9465\"\n", "");
  replace("scrape_interval: 15s", "scrape_interval: 1s");
  replace("evaluation_interval: 15s", "evaluation_interval: 1s");
  replace("  - rules/recording.yml", "  - " + kSourceDir + "/deploy/prometheus/rules/recording.yml");
  replace("  - rules/alerts.yml", "  - " + kSourceDir + "/deploy/prometheus/rules/alerts.yml");
  std::ofstream(dir_ / "prometheus.yml") << config;
  const int prometheus_port = FreePort();
  BackgroundProcess prometheus(
      {"/usr/bin/prometheus", "--config.file=" + (dir_ / "prometheus.yml"),
       "--storage.tsdb.path=" + (dir_ / "tsdb"),
       "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port)},
      dir_ / "prometheus.log");
  auto prometheus_log = [&] { return "--- prometheus\n" + Slurp(dir_ / "prometheus.log"); };
  ASSERT_TRUE(WaitFor([&] { return PromSeries(prometheus_port, "up") == 2; }, 60))
      << prometheus_log();

  std::string id = Submit(Spec("long",
                               "epochs: 40, batch_size: 8, micro_batch_size: 8, "
                               "learning_rate: 0.001, eval_every_steps: 5, "
                               "checkpoint_every_steps: 5, max_seq_len: 32",
                               "workers: 1, slots_per_worker: 1"));
  ASSERT_FALSE(id.empty());
  const std::string job = "{job_id=\"" + id + "\"}";
  // The job's counters and gauges as Prometheus stored them, and the recording rules' outputs.
  for (const std::string& query : std::vector<std::string>{
           "loratrf_train_tokens_total" + job + " > 0", "loratrf_train_loss" + job,
        "loratrf_train_eval_loss" + job, "loratrf_agent_checkpoint_upload_duration_seconds_count" + job,
        "job_id:loratrf_train_tokens:rate2m" + job + " > 0",
        "job_id:loratrf_train_step_duration_seconds:p50_rate5m" + job,
        "fleet:loratrf_slots_utilisation:ratio == 1"}) {
    EXPECT_TRUE(WaitFor([&] { return PromSeries(prometheus_port, query) > 0; }, 120))
        << query << " has no series\n" << Logs() << prometheus_log();
  }
  // While the job runs: every name the dashboards and rules use is served, and the loratrf_
  // families served are exactly the documented ones.
  ProcessResult checked = RunProcess(
      {kPython, kSourceDir + "/tests/monitoring/check_queries.py", "--repo", kSourceDir,
       "--documented", kSourceDir + "/docs/metrics.md",
       "--metrics-url", "http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics",
       "--metrics-url", "http://127.0.0.1:" + std::to_string(agent_metrics) + "/metrics"},
      "", 120);
  EXPECT_EQ(checked.exit_code, 0) << checked.out << checked.err;

  // The agent dies: Prometheus cannot scrape it, and after the rule's minute the alert fires.
  agents_["node-a"]->Signal(SIGKILL);
  agents_["node-a"]->Wait(10);
  EXPECT_TRUE(WaitFor([&] {
    return PromSeries(prometheus_port,
                      "ALERTS{alertname=\"LoratrfAgentLost\",alertstate=\"firing\"}") > 0;
  }, 150)) << prometheus_log();
  EXPECT_EQ(PromSeries(prometheus_port, "ALERTS{alertname=\"LoratrfCoordinatorDown\"}"), 0u);
  prometheus.Signal(SIGTERM);
  prometheus.Wait(10);
}

TEST_F(ControlPlane, CancelStopsTheRanksWithinFiveSecondsAndFreesTheSlots) {
  StartCoordinator();
  StartAgent("node-a", 1);
  std::string id = Submit(Spec("long", kLongTraining, "workers: 1, slots_per_worker: 1"));
  ASSERT_TRUE(WaitFor([&] { return State(id) == "JOB_STATE_RUNNING"; }, 60)) << Logs();
  ASSERT_TRUE(WaitFor([&] { return !ProcessesMentioning(dir_ / "work-node-a").empty(); }, 30));
  ProcessResult cancelled = Cli({"cancel", id});
  ASSERT_EQ(cancelled.exit_code, 0) << cancelled.err;
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitFor([&] { return ProcessesMentioning(dir_ / "work-node-a").empty(); }, 5))
      << "rank processes still running 5 s after cancel";
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(6));
  EXPECT_EQ(State(id), "JOB_STATE_CANCELLED");
  ProcessResult workers = Cli({"workers", "-o", "json"});
  ASSERT_EQ(workers.exit_code, 0);
  json fleet = json::parse(workers.out)["workers"];
  ASSERT_EQ(fleet.size(), 1u);
  EXPECT_EQ(fleet[0]["free_slots"], 1);
  EXPECT_EQ(Cli({"watch", id}).exit_code, 1);
}

TEST_F(ControlPlane, AKilledWorkersJobFinishesOnTheOtherFromItsLastCheckpoint) {
  StartCoordinator();
  StartAgent("node-a", 1);
  StartAgent("node-b", 1);
  WaitForWorkers(2);
  std::string id = Submit(Spec("moves", kLongTraining, "workers: 1, slots_per_worker: 1"));
  ASSERT_TRUE(WaitFor([&] { return Checkpoints(id).size() >= 1; }, 120)) << Logs();
  json job = Get(id);
  ASSERT_EQ(job["workers"].size(), 1u);
  std::string victim = job["workers"][0];
  std::string survivor = victim == "node-a" ? "node-b" : "node-a";
  agents_[victim]->Signal(SIGKILL);
  EXPECT_TRUE(WaitFor([&] { return ProcessesMentioning(dir_ / ("work-" + victim)).empty(); }, 5))
      << "the killed agent's ranks outlived it";
  ProcessResult watched = Cli({"watch", id}, 400);
  ASSERT_EQ(watched.exit_code, 0) << watched.err << Logs();
  job = Get(id);
  EXPECT_EQ(job["attempt"], 2);
  EXPECT_EQ(job["workers"], json::array({survivor}));
  // Every step once, in order: the resumed attempt's replay of steps after the checkpoint
  // adds nothing.
  std::vector<int> steps;
  for (const json& event : Events(id)) {
    if (event.contains("train")) steps.push_back(std::stoi(event["train"]["step"].get<std::string>()));
  }
  ASSERT_FALSE(steps.empty());
  for (size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i], static_cast<int>(i) + 1);
  EXPECT_EQ(std::to_string(steps.back()), job["latest_train"]["step"].get<std::string>());
}

// SIGTERM to an agent (a Kubernetes drain, a spot eviction): its ranks finish their step and
// commit a checkpoint, the agent uploads it, reports the attempt preempted and exits 0; the job
// resumes on the other agent from that checkpoint without using a restart (max_restarts is 0)
// and ends with the adapter an uninterrupted run makes.
TEST_F(ControlPlane, ADrainedAgentsJobResumesElsewhereFromItsStopCheckpointWithoutARestart) {
  StartCoordinator();
  StartAgent("node-a", 1);
  StartAgent("node-b", 1);
  WaitForWorkers(2);
  // Long enough to be caught running; no periodic checkpoint, so a resume can only come from
  // the drain's.
  const std::string training =
      "epochs: 30, max_steps: 900, batch_size: 8, micro_batch_size: 8, learning_rate: 0.001, "
      "eval_every_steps: 0, checkpoint_every_steps: 0, max_seq_len: 32";
  const std::string spec = Spec("drained", training, "workers: 1, slots_per_worker: 1",
                                /*max_restarts=*/0);
  std::string id = Submit(spec);
  ASSERT_FALSE(id.empty());
  json job;
  ASSERT_TRUE(WaitFor([&] {
    job = Get(id);
    return job.contains("latest_train") && std::stoll(job["latest_train"]["step"].get<std::string>()) >= 5;
  }, 120)) << Logs();
  ASSERT_EQ(job["workers"].size(), 1u);
  const std::string victim = job["workers"][0];
  const std::string survivor = victim == "node-a" ? "node-b" : "node-a";
  const int64_t reported = std::stoll(job["latest_train"]["step"].get<std::string>());
  agents_[victim]->Signal(SIGTERM);
  // Bounded by the drain timeout (25 s) and the upload; a tiny adapter takes far less.
  EXPECT_EQ(agents_[victim]->Wait(90), 0) << Logs();
  EXPECT_TRUE(ProcessesMentioning(dir_ / ("work-" + victim)).empty());

  ProcessResult watched = Cli({"watch", id}, 400);
  ASSERT_EQ(watched.exit_code, 0) << watched.out << watched.err << Logs();
  job = Get(id);
  EXPECT_EQ(job["state"], "JOB_STATE_SUCCEEDED");
  EXPECT_EQ(job["attempt"], 2);
  EXPECT_EQ(job.value("preemptions", 0), 1);
  EXPECT_EQ(job["workers"], json::array({survivor}));
  // The drain's checkpoint: at the step reached when the signal came, or one after; at most one
  // step is done twice or lost.
  int64_t stop_step = -1;
  for (const json& checkpoint : Checkpoints(id)) {
    if (checkpoint.value("final", false)) continue;
    const json& step = checkpoint["step"];  // a uint64: a string in proto JSON
    stop_step = std::max<int64_t>(stop_step, step.is_string() ? std::stoll(step.get<std::string>())
                                                              : step.get<int64_t>());
  }
  ASSERT_GE(stop_step, 0) << "no checkpoint from the drain";
  EXPECT_GE(stop_step, reported - 1);
  EXPECT_LT(stop_step, 900);

  // The same job run straight through, locally, ends with the same adapter.
  ProcessResult straight = RunProcess({BinaryPath("loratrf-worker"), "run", "--spec", spec,
                                       "--output", dir_ / "straight"}, "", 400);
  ASSERT_EQ(straight.exit_code, 0) << straight.err;
  ASSERT_EQ(Cli({"download", id, "--output", dir_ / "moved"}).exit_code, 0);
  ExpectSameTensors(dir_ / "moved/adapter_model.safetensors",
                    dir_ / "straight/final/adapter_model.safetensors", 1e-5);
}

TEST_F(ControlPlane, ATwoWorkerJobMatchesTheSameJobOnOneWorker) {
  StartCoordinator();
  StartAgent("node-a", 1);
  StartAgent("node-b", 1);
  StartAgent("node-c", 2);
  WaitForWorkers(3);
  std::string spread = Submit(Spec("spread", kShortTraining, "workers: 2, slots_per_worker: 1"));
  std::string packed = Submit(Spec("packed", kShortTraining, "workers: 1, slots_per_worker: 2"));
  ASSERT_EQ(Cli({"watch", spread}, 240).exit_code, 0) << Logs();
  ASSERT_EQ(Cli({"watch", packed}, 240).exit_code, 0) << Logs();
  json spread_job = Get(spread), packed_job = Get(packed);
  EXPECT_EQ(spread_job["workers"].size(), 2u);
  EXPECT_EQ(packed_job["workers"], json::array({"node-c"}));
  ASSERT_EQ(Cli({"download", spread, "--output", dir_ / "spread"}).exit_code, 0);
  ASSERT_EQ(Cli({"download", packed, "--output", dir_ / "packed"}).exit_code, 0);
  ExpectSameTensors(dir_ / "spread/adapter_model.safetensors",
                    dir_ / "packed/adapter_model.safetensors", 1e-5);
}

TEST_F(ControlPlane, AKilledCoordinatorRestartsWithEverythingAndRunningJobsComplete) {
  int port = FreePort();
  StartCoordinator(port);
  StartAgent("node-a", 1);
  std::string running = Submit(Spec("running", kShortTraining, "workers: 1, slots_per_worker: 1"));
  std::string queued = Submit(Spec("queued", kShortTraining, "workers: 1, slots_per_worker: 1"));
  ASSERT_TRUE(WaitFor([&] { return State(running) == "JOB_STATE_RUNNING"; }, 60)) << Logs();
  json before = Get(running);
  coordinator_->Signal(SIGKILL);
  ASSERT_EQ(coordinator_->Wait(10), 128 + SIGKILL);
  StartCoordinator(port);
  // Everything persisted is there: both jobs, the first one's events so far.
  json after = Get(running);
  EXPECT_EQ(after["id"], running);
  EXPECT_GE(std::stoull(after["last_event_seq"].get<std::string>()),
            std::stoull(before["last_event_seq"].get<std::string>()));
  EXPECT_FALSE(Get(queued).empty());
  ProcessResult first = Cli({"watch", running}, 240);
  EXPECT_EQ(first.exit_code, 0) << first.err << Logs();
  ProcessResult second = Cli({"watch", queued}, 240);
  EXPECT_EQ(second.exit_code, 0) << second.err << Logs();
  EXPECT_EQ(Get(running)["state"], "JOB_STATE_SUCCEEDED");
}

// Pause and resume across real processes: the pause stops the ranks after they commit a
// checkpoint (the agent's side of Cancellation.checkpoint_first), frees the slot and holds the
// job; resume runs it to the end from that checkpoint, every step once.
TEST_F(ControlPlane, PausedJobResumesFromItsCheckpointAndFreesItsSlotMeanwhile) {
  // No periodic checkpoint: the only one before the final adapter is the pause's.
  constexpr char kPausable[] =
      "max_steps: 300, batch_size: 8, micro_batch_size: 8, learning_rate: 0.001, "
      "eval_every_steps: 0, checkpoint_every_steps: 100000, max_seq_len: 32";
  StartCoordinator(0, {"--stop-timeout", "60"});
  StartAgent("node-a", 1);
  WaitForWorkers(1);
  std::string id = Submit(Spec("pausable", kPausable, "workers: 1, slots_per_worker: 1"));
  auto step = [&](const json& job) -> int {
    if (!job.contains("latest_train")) return 0;
    return std::stoi(job["latest_train"].value("step", std::string("0")));
  };
  ASSERT_TRUE(WaitFor([&] { return step(Get(id)) >= 3; }, 120)) << Logs();
  ProcessResult paused = Cli({"pause", id, "--reason", "integration test"});
  ASSERT_EQ(paused.exit_code, 0) << paused.err;
  ASSERT_TRUE(WaitFor([&] {
    json job = Get(id);
    return job.value("state", "") == "JOB_STATE_QUEUED" && job.value("paused", false);
  }, 60)) << Logs();
  EXPECT_TRUE(WaitFor([&] { return ProcessesMentioning(dir_ / "work-node-a").empty(); }, 10))
      << "the paused job's ranks are still running";
  json job = Get(id);
  EXPECT_EQ(job["attempt"], 2);
  EXPECT_EQ(job["preemptions"], 1);
  EXPECT_EQ(job["queue"]["reason"], "QUEUE_REASON_PAUSED");
  json checkpoints = Checkpoints(id);
  ASSERT_EQ(checkpoints.size(), 1u) << "the pause committed exactly one checkpoint";
  const int checkpointed = std::stoi(checkpoints[0]["step"].get<std::string>());
  EXPECT_GE(checkpointed + 1, step(job)) << "at most one reported step is not in the checkpoint";
  ProcessResult workers = Cli({"workers", "-o", "json"});
  ASSERT_EQ(workers.exit_code, 0);
  EXPECT_EQ(json::parse(workers.out)["workers"][0]["free_slots"], 1);

  ProcessResult resumed = Cli({"resume", id});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  ProcessResult watched = Cli({"watch", id}, 400);
  ASSERT_EQ(watched.exit_code, 0) << watched.err << Logs();
  job = Get(id);
  EXPECT_EQ(job["attempt"], 2);
  EXPECT_FALSE(job.value("paused", true));
  std::vector<int> steps;
  for (const json& event : Events(id)) {
    if (event.contains("train")) steps.push_back(std::stoi(event["train"]["step"].get<std::string>()));
  }
  // Every step of the run once, across the pause (the data's 3 epochs end it before
  // max_steps).
  const size_t total = std::stoul(job["progress"]["total_steps"].get<std::string>());
  EXPECT_GT(total, static_cast<size_t>(checkpointed));
  ASSERT_EQ(steps.size(), total);
  for (size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i], static_cast<int>(i) + 1);
}

// Priority preemption across real processes: a higher-priority job that cannot be placed stops
// a running lower-priority one after it commits a checkpoint, runs, and the victim then resumes
// from that checkpoint, without using a restart (max_restarts 0), every step once.
TEST_F(ControlPlane, AHigherPriorityJobPreemptsALowerOneWhichResumesFromItsCheckpoint) {
  constexpr char kLong[] =
      "epochs: 20, batch_size: 8, micro_batch_size: 8, learning_rate: 0.001, "
      "eval_every_steps: 0, checkpoint_every_steps: 100000, max_seq_len: 32";
  StartCoordinator(0, {"--min-run-before-preempt", "0", "--stop-timeout", "60"});
  StartAgent("node-a", 1);
  WaitForWorkers(1);
  std::string low = Submit(Spec("low", kLong, "workers: 1, slots_per_worker: 1", 0));
  auto step = [&](const json& job) -> int {
    if (!job.contains("latest_train")) return 0;
    return std::stoi(job["latest_train"].value("step", std::string("0")));
  };
  ASSERT_TRUE(WaitFor([&] { return step(Get(low)) >= 3; }, 120)) << Logs();
  const std::string urgent_spec = Spec("urgent", kShortTraining, "workers: 1, slots_per_worker: 1");
  std::ofstream(urgent_spec, std::ios::app) << "priority: 10\n";
  std::string urgent = Submit(urgent_spec);
  ProcessResult watched = Cli({"watch", urgent}, 300);
  ASSERT_EQ(watched.exit_code, 0) << watched.err << Logs();
  // The victim was stopped after a checkpoint, requeued without a restart, and finishes.
  ProcessResult resumed = Cli({"watch", low}, 400);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err << Logs();
  json job = Get(low);
  EXPECT_EQ(job["attempt"], 2);
  EXPECT_EQ(job["preemptions"], 1);
  bool preempted_event = false;
  std::vector<int> steps;
  for (const json& event : Events(low)) {
    if (event.contains("train")) steps.push_back(std::stoi(event["train"]["step"].get<std::string>()));
    if (event.contains("state_change") && event["state_change"].value("preempted", false)) {
      preempted_event = true;
      EXPECT_THAT(event["state_change"].value("reason", ""), HasSubstr(urgent));
    }
  }
  EXPECT_TRUE(preempted_event) << "the preemption is an event with its reason";
  const size_t total = std::stoul(job["progress"]["total_steps"].get<std::string>());
  ASSERT_EQ(steps.size(), total);
  for (size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i], static_cast<int>(i) + 1);
  // The urgent job ran while the victim waited: it finished first.
  EXPECT_LT(Get(urgent)["finished_at"].get<std::string>(), job["finished_at"].get<std::string>());
}

TEST_F(ControlPlane, RejectionsAreClear) {
  std::ofstream(dir_ / "tokens") << "user alice s3cret-user-token-0123456789\nworker node-a s3cret-worker-token-0123456789\n";
  std::ofstream(dir_ / "alice.token") << "s3cret-user-token-0123456789\n";
  std::ofstream(dir_ / "node-a.token") << "s3cret-worker-token-0123456789\n";
  StartCoordinator(0, {"--auth-token-file", dir_ / "tokens"});
  StartAgent("node-a", 1, {"--token-file", dir_ / "node-a.token"});
  WaitForWorkers(1, {"--token-file", dir_ / "alice.token"});
  std::string spec = Spec("auth", kShortTraining, "workers: 1, slots_per_worker: 1");
  // No token, or a worker's token for a user call: refused.
  ProcessResult anonymous = Cli({"list"});
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_THAT(anonymous.err, HasSubstr("Bearer"));
  ProcessResult wrong_role = Cli({"--token-file", dir_ / "node-a.token", "list"});
  EXPECT_EQ(wrong_role.exit_code, 1);
  // A bad spec is refused naming the field, before anything is sent.
  std::string bad = dir_ / "bad.yaml";
  std::ofstream(bad) << Slurp(spec) << "priority: banana\n";
  ProcessResult refused = Cli({"--token-file", dir_ / "alice.token", "submit", bad});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("priority"));
  // The same idempotency key twice: one job.
  const std::vector<std::string> alice = {"--token-file", dir_ / "alice.token"};
  std::string first = Submit(spec, {"--idempotency-key", "k-1"}, alice);
  std::string second = Submit(spec, {"--idempotency-key", "k-1"}, alice);
  EXPECT_FALSE(first.empty());
  EXPECT_EQ(first, second);
  // A job that asks for more than the fleet has fails with the reason.
  std::string wide = Submit(Spec("wide", "max_steps: 4, batch_size: 12, micro_batch_size: 4",
                                 "workers: 3, slots_per_worker: 1"), {}, alice);
  ProcessResult watched = Cli({"--token-file", dir_ / "alice.token", "watch", wide}, 60);
  EXPECT_EQ(watched.exit_code, 1);
  EXPECT_THAT(watched.err, HasSubstr("unschedulable"));
  // The authenticated job itself runs.
  EXPECT_EQ(Cli({"--token-file", dir_ / "alice.token", "watch", first}, 240).exit_code, 0) << Logs();
}

}  // namespace
}  // namespace loratrf::testing
