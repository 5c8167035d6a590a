// The coordinator's Prometheus families: names, labels and values as /metrics shows them.
#include "server/metrics/coordinator_metrics.h"

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
