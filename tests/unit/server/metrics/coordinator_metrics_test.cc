// The coordinator's Prometheus families: names, labels and values as /metrics shows them.
#include "server/metrics/coordinator_metrics.h"

#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loratrf::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(CoordinatorMetricsTest, CountsWhatTheCoreAndTheHandlersReport) {
  CoordinatorMetrics metrics;
  std::string text = metrics.Text();
  EXPECT_THAT(text, HasSubstr("loratrf_jobs_submitted_total 0"));
  EXPECT_THAT(text, HasSubstr("loratrf_jobs_finished_total{state=\"cancelled\"} 0"));

  metrics.JobSubmitted();
  metrics.JobSubmitted();
  metrics.JobFinished(v1::JOB_STATE_SUCCEEDED);
  metrics.JobRestarted();
  metrics.WorkerLost();
  metrics.CheckpointBytes(1000);
  metrics.SchedulingLatency(absl::Milliseconds(300));
  metrics.Gauges(3, 2, 4, 16, 5);
  metrics.RpcFinished("JobService/SubmitJob", "OK", absl::Milliseconds(2));
  metrics.RpcFinished("JobService/SubmitJob", "INVALID_ARGUMENT", absl::Milliseconds(1));
  text = metrics.Text();
  EXPECT_THAT(text, HasSubstr("loratrf_jobs_submitted_total 2"));
  EXPECT_THAT(text, HasSubstr("loratrf_jobs_finished_total{state=\"succeeded\"} 1"));
  EXPECT_THAT(text, HasSubstr("loratrf_job_restarts_total 1"));
  EXPECT_THAT(text, HasSubstr("loratrf_workers_lost_total 1"));
  EXPECT_THAT(text, HasSubstr("loratrf_checkpoint_bytes_total 1000"));
  EXPECT_THAT(text, HasSubstr("loratrf_scheduling_latency_seconds_count 1"));
  EXPECT_THAT(text, HasSubstr("loratrf_scheduling_latency_seconds_bucket{le=\"0.5\"} 1"));
  EXPECT_THAT(text, HasSubstr("loratrf_jobs{state=\"queued\"} 3"));
  EXPECT_THAT(text, HasSubstr("loratrf_jobs{state=\"running\"} 2"));
  EXPECT_THAT(text, HasSubstr("loratrf_workers_ready 4"));
  EXPECT_THAT(text, HasSubstr("loratrf_slots 16"));
  EXPECT_THAT(text, HasSubstr("loratrf_slots_free 5"));
  EXPECT_THAT(text, HasSubstr("loratrf_grpc_requests_total{code=\"OK\","
                              "method=\"JobService/SubmitJob\"} 1"));
  EXPECT_THAT(text, HasSubstr("loratrf_grpc_requests_total{code=\"INVALID_ARGUMENT\","
                              "method=\"JobService/SubmitJob\"} 1"));
  EXPECT_THAT(text, HasSubstr("loratrf_grpc_request_duration_seconds_count{code=\"OK\","
                              "method=\"JobService/SubmitJob\"} 1"));
  // No family without the prefix.
  EXPECT_THAT(text, Not(HasSubstr("\n# TYPE job")));
}

TEST(CoordinatorMetricsTest, CountsStoreWriteFailuresFromZero) {
  CoordinatorMetrics metrics;
  EXPECT_THAT(metrics.Text(), HasSubstr("loratrf_store_write_failures_total 0"));
  EXPECT_THAT(metrics.Text(), HasSubstr("alert on any increase"));
  metrics.StoreWriteFailed();
  metrics.StoreWriteFailed();
  EXPECT_THAT(metrics.Text(), HasSubstr("loratrf_store_write_failures_total 2"));
}

TEST(CoordinatorMetricsTest, CountsPreemptionsByReasonFromZero) {
  CoordinatorMetrics metrics;
  EXPECT_THAT(metrics.Text(), HasSubstr("loratrf_preemptions_total{reason=\"priority\"} 0"));
  EXPECT_THAT(metrics.Text(), HasSubstr("loratrf_preemptions_total{reason=\"pause\"} 0"));
  EXPECT_THAT(metrics.Text(), HasSubstr("loratrf_preemptions_total{reason=\"drain\"} 0"));
  metrics.JobPreempted(StopKind::kDrain);
  metrics.JobPreempted(StopKind::kDrain);
  metrics.JobPreempted(StopKind::kPriority);
  EXPECT_THAT(metrics.Text(), HasSubstr("loratrf_preemptions_total{reason=\"drain\"} 2"));
  EXPECT_THAT(metrics.Text(), HasSubstr("loratrf_preemptions_total{reason=\"priority\"} 1"));
  EXPECT_THAT(metrics.Text(), HasSubstr("loratrf_preemptions_total{reason=\"pause\"} 0"));
}

TEST(CoordinatorMetricsTest, CountsTheCoreEventsOfEachNewFamily) {
  CoordinatorMetrics metrics;
  std::string text = metrics.Text();
  // Present at 0 before the first event.
  EXPECT_THAT(text, HasSubstr("loratrf_lease_expiries_total 0"));
  EXPECT_THAT(text, HasSubstr("loratrf_idempotent_replays_total 0"));
  EXPECT_THAT(text, HasSubstr("loratrf_job_run_duration_seconds_count{state=\"failed\"} 0"));
  EXPECT_THAT(text, HasSubstr("loratrf_oldest_queued_job_age_seconds 0"));
  EXPECT_THAT(text, HasSubstr("loratrf_open_streams{kind=\"watch\"} 0"));
  EXPECT_THAT(text, HasSubstr("loratrf_open_streams{kind=\"commands\"} 0"));

  metrics.LeaseExpired();
  metrics.IdempotentReplay();
  metrics.IdempotentReplay();
  metrics.StoreWriteDuration(absl::Microseconds(800));
  metrics.SchedulerPass(absl::Microseconds(200));
  metrics.JobRunDuration(v1::JOB_STATE_SUCCEEDED, absl::Minutes(20));
  metrics.JobRunDuration(v1::JOB_STATE_FAILED, absl::Seconds(45));
  metrics.StoredCheckpoints(3, 123456);
  text = metrics.Text();
  EXPECT_THAT(text, HasSubstr("loratrf_lease_expiries_total 1"));
  EXPECT_THAT(text, HasSubstr("loratrf_idempotent_replays_total 2"));
  EXPECT_THAT(text, HasSubstr("loratrf_store_write_duration_seconds_count 1"));
  EXPECT_THAT(text, HasSubstr("loratrf_store_write_duration_seconds_bucket{le=\"0.001\"} 1"));
  EXPECT_THAT(text, HasSubstr("loratrf_store_write_duration_seconds_bucket{le=\"0.0005\"} 0"));
  EXPECT_THAT(text, HasSubstr("loratrf_scheduler_pass_duration_seconds_count 1"));
  EXPECT_THAT(text, HasSubstr("loratrf_scheduler_pass_duration_seconds_bucket{le=\"0.00025\"} 1"));
  EXPECT_THAT(text,
              HasSubstr("loratrf_job_run_duration_seconds_count{state=\"succeeded\"} 1"));
  EXPECT_THAT(text, HasSubstr("loratrf_job_run_duration_seconds_sum{state=\"succeeded\"} 1200"));
  EXPECT_THAT(text, HasSubstr("loratrf_job_run_duration_seconds_bucket{state=\"failed\","
                              "le=\"60\"} 1"));
  EXPECT_THAT(text, HasSubstr("loratrf_job_run_duration_seconds_count{state=\"cancelled\"} 0"));
  EXPECT_THAT(text, HasSubstr("loratrf_artifacts 3"));
  EXPECT_THAT(text, HasSubstr("loratrf_checkpoint_stored_bytes 123456"));
  metrics.StoredCheckpoints(2, 1000);  // a gauge: set, not added
  EXPECT_THAT(metrics.Text(), HasSubstr("loratrf_artifacts 2"));
}

TEST(CoordinatorMetricsTest, PrioritiesFallIntoSevenFixedRanges) {
  EXPECT_EQ(CoordinatorMetrics::PriorityLabel(-1000), "-1000..-101");
  EXPECT_EQ(CoordinatorMetrics::PriorityLabel(-101), "-1000..-101");
  EXPECT_EQ(CoordinatorMetrics::PriorityLabel(-100), "-100..-11");
  EXPECT_EQ(CoordinatorMetrics::PriorityLabel(-11), "-100..-11");
  EXPECT_EQ(CoordinatorMetrics::PriorityLabel(-10), "-10..-1");
  EXPECT_EQ(CoordinatorMetrics::PriorityLabel(-1), "-10..-1");
  EXPECT_EQ(CoordinatorMetrics::PriorityLabel(0), "0");
  EXPECT_EQ(CoordinatorMetrics::PriorityLabel(1), "1..10");
  EXPECT_EQ(CoordinatorMetrics::PriorityLabel(10), "1..10");
  EXPECT_EQ(CoordinatorMetrics::PriorityLabel(11), "11..100");
  EXPECT_EQ(CoordinatorMetrics::PriorityLabel(100), "11..100");
  EXPECT_EQ(CoordinatorMetrics::PriorityLabel(101), "101..1000");
  EXPECT_EQ(CoordinatorMetrics::PriorityLabel(1000), "101..1000");
  EXPECT_EQ(CoordinatorMetrics::PriorityLabel(-5000), "-1000..-101") << "out of range: clamped";
  EXPECT_EQ(CoordinatorMetrics::PriorityLabel(5000), "101..1000");
}

TEST(CoordinatorMetricsTest, QueueGaugesSetEveryRangeAndTheOldestAge) {
  CoordinatorMetrics metrics;
  std::string text = metrics.Text();
  for (const char* range :
       {"-1000..-101", "-100..-11", "-10..-1", "0", "1..10", "11..100", "101..1000"}) {
    EXPECT_THAT(text, HasSubstr(std::string("loratrf_jobs_queued_by_priority{priority=\"") +
                                range + "\"} 0"));
  }
  metrics.QueueGauges({{0, 2}, {3, 1}, {7, 4}, {500, 1}}, absl::Seconds(90));
  text = metrics.Text();
  EXPECT_THAT(text, HasSubstr("loratrf_jobs_queued_by_priority{priority=\"0\"} 2"));
  EXPECT_THAT(text, HasSubstr("loratrf_jobs_queued_by_priority{priority=\"1..10\"} 5"));
  EXPECT_THAT(text, HasSubstr("loratrf_jobs_queued_by_priority{priority=\"101..1000\"} 1"));
  EXPECT_THAT(text, HasSubstr("loratrf_oldest_queued_job_age_seconds 90"));
  // The queue drains: every range goes back to 0.
  metrics.QueueGauges({}, absl::ZeroDuration());
  text = metrics.Text();
  EXPECT_THAT(text, HasSubstr("loratrf_jobs_queued_by_priority{priority=\"1..10\"} 0"));
  EXPECT_THAT(text, HasSubstr("loratrf_oldest_queued_job_age_seconds 0"));
}

TEST(CoordinatorMetricsTest, OpenStreamsFollowOpensAndCloses) {
  CoordinatorMetrics metrics;
  {
    OpenStream watch1(&metrics, RpcMetrics::StreamKind::kWatch);
    OpenStream watch2(&metrics, RpcMetrics::StreamKind::kWatch);
    OpenStream commands(&metrics, RpcMetrics::StreamKind::kCommands);
    std::string text = metrics.Text();
    EXPECT_THAT(text, HasSubstr("loratrf_open_streams{kind=\"watch\"} 2"));
    EXPECT_THAT(text, HasSubstr("loratrf_open_streams{kind=\"commands\"} 1"));
    watch1.Close();
    watch1.Close();  // closing twice counts once
    OpenStream moved(std::move(watch2));
    EXPECT_THAT(metrics.Text(), HasSubstr("loratrf_open_streams{kind=\"watch\"} 1"));
  }
  EXPECT_THAT(metrics.Text(), HasSubstr("loratrf_open_streams{kind=\"watch\"} 0"));
  EXPECT_THAT(metrics.Text(), HasSubstr("loratrf_open_streams{kind=\"commands\"} 0"));
}

// The gauge value of `name` (a family without labels) in `text`, or -1.
double GaugeValue(const std::string& text, const std::string& name) {
  size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + name.size() + 2));
}

TEST(CoordinatorMetricsTest, DataDirGaugesAreReadFromTheFileSystemAtScrapeTime) {
  CoordinatorMetrics metrics;
  EXPECT_EQ(GaugeValue(metrics.Text(), "loratrf_data_dir_capacity_bytes"), 0) << "no data dir";
  metrics.WatchDataDir(::testing::TempDir());
  std::string text = metrics.Text();
  double capacity = GaugeValue(text, "loratrf_data_dir_capacity_bytes");
  double available = GaugeValue(text, "loratrf_data_dir_available_bytes");
  struct statvfs fs;
  ASSERT_EQ(::statvfs(::testing::TempDir().c_str(), &fs), 0);
  EXPECT_EQ(capacity, static_cast<double>(fs.f_blocks) * static_cast<double>(fs.f_frsize));
  EXPECT_GT(capacity, 0);
  EXPECT_GE(available, 0);
  EXPECT_LE(available, capacity);
}

// Every family, after each has seen its event.
CoordinatorMetrics* ExerciseEveryFamily(CoordinatorMetrics& metrics) {
  metrics.WatchDataDir(::testing::TempDir());
  metrics.JobSubmitted();
  for (v1::JobState state :
       {v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED, v1::JOB_STATE_CANCELLED}) {
    metrics.JobFinished(state);
    metrics.JobRunDuration(state, absl::Minutes(3));
  }
  metrics.JobRestarted();
  metrics.WorkerLost();
  metrics.LeaseExpired();
  metrics.IdempotentReplay();
  metrics.CheckpointBytes(4096);
  metrics.StoreWriteFailed();
  metrics.StoreWriteDuration(absl::Milliseconds(2));
  metrics.SchedulingLatency(absl::Seconds(3));
  metrics.SchedulerPass(absl::Microseconds(300));
  metrics.Gauges(3, 1, 2, 8, 4);
  metrics.QueueGauges({{-500, 1}, {0, 1}, {20, 1}}, absl::Seconds(12));
  metrics.StoredCheckpoints(2, 8192);
  metrics.StreamOpened(RpcMetrics::StreamKind::kWatch);
  metrics.StreamOpened(RpcMetrics::StreamKind::kCommands);
  metrics.RpcFinished("JobService/SubmitJob", "OK", absl::Milliseconds(2));
  metrics.RpcFinished("JobService/WatchJob", "CANCELLED", absl::Seconds(40));
  return &metrics;
}

// Where Debian's promtool is: $PATH first, then where the package puts it.
std::string FindPromtool() {
  if (const char* path = std::getenv("PATH")) {
    for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
      std::string candidate = absl::StrCat(dir, "/promtool");
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  return ::access("/usr/bin/promtool", X_OK) == 0 ? "/usr/bin/promtool" : "";
}

// promtool's lint (names, units, _total, help text) has nothing to say about any family.
TEST(CoordinatorMetricsTest, PromtoolCheckMetricsReportsNothing) {
  const std::string promtool = FindPromtool();
  if (promtool.empty()) {
    FAIL() << "promtool not found on $PATH or at /usr/bin/promtool: this test lints the "
              "coordinator's /metrics with `promtool check metrics`; install it with "
              "`apt-get install prometheus` (Debian) or put a promtool on $PATH";
  }
  CoordinatorMetrics metrics;
  const std::string text = ExerciseEveryFamily(metrics)->Text();
  const std::string input = ::testing::TempDir() + "coordinator_metrics_" +
                            std::to_string(::getpid()) + ".prom";
  {
    std::ofstream out(input);
    out << text;
    ASSERT_TRUE(out.good()) << "cannot write " << input;
  }
  const std::string command = promtool + " check metrics < '" + input + "' 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr) << "cannot run " << command;
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  const int status = ::pclose(pipe);
  std::remove(input.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << command << " exited with " << status << ":\n" << output;
  EXPECT_EQ(output, "") << "promtool check metrics has findings:\n" << output
                        << "\non this exposition:\n" << text;
}

TEST(CoordinatorMetricsTest, ServesOnAFreePortAndRefusesABusyOne) {
  CoordinatorMetrics metrics;
  ASSERT_TRUE(metrics.Serve("127.0.0.1:0").ok());
  EXPECT_GT(metrics.port(), 0);
  CoordinatorMetrics other;
  absl::Status busy = other.Serve("127.0.0.1:" + std::to_string(metrics.port()));
  EXPECT_EQ(busy.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(busy.message(), HasSubstr("--metrics-listen"));
}

}  // namespace
}  // namespace loratrf::server
