// The `loratrf` CLI's pure pieces: progress line, ETA, tables, sizes and durations, checkpoint
// path checks, the verified download writer, input checks (client/lib/).
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "client/lib/connection.h"
#include "client/lib/download.h"
#include "client/lib/format.h"
#include "client/lib/input.h"

namespace loratrf::client {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

google::protobuf::Timestamp At(int64_t seconds) {
  google::protobuf::Timestamp t;
  t.set_seconds(seconds);
  return t;
}

// ---- names and numbers ----------------------------------------------------------------------

TEST(CliNames, JobStatesRoundTrip) {
  EXPECT_EQ(JobStateName(v1::JOB_STATE_RUNNING), "running");
  EXPECT_EQ(JobStateName(v1::JOB_STATE_UNSPECIFIED), "unspecified");
  EXPECT_EQ(JobStateName(static_cast<v1::JobState>(42)), "42");
  EXPECT_EQ(*ParseJobStateName("queued"), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(*ParseJobStateName("SUCCEEDED"), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(*ParseJobStateName("JOB_STATE_CANCELLED"), v1::JOB_STATE_CANCELLED);
  EXPECT_FALSE(ParseJobStateName("unspecified").ok());
  EXPECT_THAT(std::string(ParseJobStateName("done").status().message()),
              HasSubstr("must be one of queued | scheduled | running | restarting | succeeded | "
                        "failed | cancelled, got 'done'"));
  EXPECT_TRUE(IsFinalState(v1::JOB_STATE_FAILED));
  EXPECT_FALSE(IsFinalState(v1::JOB_STATE_RESTARTING));
  EXPECT_EQ(WorkerStateName(v1::WORKER_STATE_DRAINING), "draining");
  EXPECT_EQ(DeviceName(v1::DEVICE_CUDA), "cuda");
}

TEST(CliNumbers, Bytes) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1536), "1.50 KiB");
  EXPECT_EQ(FormatBytes(12 << 20), "12.0 MiB");
  EXPECT_EQ(FormatBytes(345ull << 30), "345 GiB");
  EXPECT_EQ(FormatBytes((1ull << 20) - 1), "1024 KiB");  // rounds up, never "1.00e+03"
}

TEST(CliNumbers, Durations) {
  EXPECT_EQ(FormatDuration(0), "0s");
  EXPECT_EQ(FormatDuration(44.6), "45s");
  EXPECT_EQ(FormatDuration(125), "2m05s");
  EXPECT_EQ(FormatDuration(3720), "1h02m");
  EXPECT_EQ(FormatDuration(3 * 86400 + 4 * 3600 + 59), "3d04h");
  EXPECT_EQ(FormatDuration(-1), "?");
  EXPECT_EQ(FormatDuration(std::nan("")), "?");
}

TEST(CliNumbers, MetricsPercentsTimes) {
  EXPECT_EQ(FormatMetric(0.693147), "0.6931");
  EXPECT_EQ(FormatMetric(12.3456), "12.35");
  EXPECT_EQ(FormatMetric(1234.4), "1234");
  EXPECT_EQ(FormatMetric(123456.7), "123457");
  EXPECT_EQ(FormatMetric(1.2e-5), "1.2e-05");
  EXPECT_EQ(FormatMetric(0.0003), "0.0003");
  EXPECT_EQ(FormatPercent(0.9123), "91.2%");
  EXPECT_EQ(FormatTimestamp(At(0)), "-");
  EXPECT_EQ(FormatTimestamp(At(1714564800)), "2024-05-01T12:00:00Z");
  EXPECT_EQ(FormatAge(At(1000), 1125), "2m05s ago");
  EXPECT_EQ(FormatAge(At(1000), 990), "now");
  EXPECT_EQ(FormatAge(At(0), 990), "-");
}

// ---- progress and ETA -----------------------------------------------------------------------

ProgressView Running(uint64_t step, uint64_t total) {
  ProgressView view;
  view.state = v1::JOB_STATE_RUNNING;
  view.attempt = 1;
  view.step = step;
  view.total_steps = total;
  return view;
}

TEST(CliEta, PrefersTheCoordinatorThenTheObservedRateThenStepSeconds) {
  ProgressView view = Running(100, 300);
  EXPECT_EQ(EstimateEtaSeconds(view), std::nullopt);  // nothing to go on
  view.step_seconds = 0.5;
  EXPECT_DOUBLE_EQ(*EstimateEtaSeconds(view), 100);  // 200 steps × 0.5 s
  view.observed_steps = 50;
  view.observed_seconds = 50;
  EXPECT_DOUBLE_EQ(*EstimateEtaSeconds(view), 200);  // 1 s a step observed
  view.server_eta_seconds = 42;
  EXPECT_DOUBLE_EQ(*EstimateEtaSeconds(view), 42);
}

TEST(CliEta, NoneUnlessRunningWithAKnownTotal) {
  ProgressView view = Running(10, 0);
  view.step_seconds = 1;
  EXPECT_EQ(EstimateEtaSeconds(view), std::nullopt);
  view = Running(10, 100);
  view.step_seconds = 1;
  view.state = v1::JOB_STATE_QUEUED;
  EXPECT_EQ(EstimateEtaSeconds(view), std::nullopt);
  view = Running(120, 100);
  EXPECT_DOUBLE_EQ(*EstimateEtaSeconds(view), 0);
}

TEST(CliProgressLine, ShowsEveryKnownField) {
  ProgressView view = Running(120, 300);
  view.loss = 0.41234;
  view.eval_accuracy = 0.9123;
  view.tokens_per_second = 312.4;
  view.server_eta_seconds = 125;
  EXPECT_EQ(FormatProgressLine(view, 0),
            "running  step 120/300 [########............] 40%  loss 0.4123  eval acc 91.2%  "
            "312.4 tok/s  ETA 2m05s");
}

TEST(CliProgressLine, LeavesOutWhatIsUnknown) {
  ProgressView view;
  view.state = v1::JOB_STATE_QUEUED;
  EXPECT_EQ(FormatProgressLine(view, 0), "queued");
  view = Running(7, 0);
  view.attempt = 2;
  view.loss = 2.5;
  EXPECT_EQ(FormatProgressLine(view, 0), "running (attempt 2)  step 7  loss 2.5");
}

TEST(CliProgressLine, DropsTheBarThenCutsToTheWidth) {
  ProgressView view = Running(300, 300);
  view.loss = 0.1;
  std::string full = FormatProgressLine(view, 0);
  EXPECT_EQ(full, "running  step 300/300 [####################] 100%  loss 0.1  ETA 0s");
  EXPECT_EQ(FormatProgressLine(view, 50), "running  step 300/300  loss 0.1  ETA 0s");
  EXPECT_EQ(FormatProgressLine(view, 12), "running  ste");
}

v1::JobEvent Train(uint64_t seq, uint32_t attempt, uint64_t step, int64_t time, double loss) {
  v1::JobEvent e;
  e.set_seq(seq);
  e.set_attempt(attempt);
  *e.mutable_time() = At(time);
  e.mutable_train()->set_step(step);
  e.mutable_train()->set_loss(loss);
  e.mutable_train()->set_tokens_per_second(1000);
  e.mutable_train()->set_step_seconds(3);
  return e;
}

TEST(CliProgressLine, EventsFoldIntoTheViewWithAnObservedRate) {
  ProgressView view;
  view.total_steps = 100;
  std::optional<v1::JobEvent> first;
  v1::JobEvent running;
  running.set_seq(1);
  running.set_attempt(1);
  running.mutable_state_change()->set_from(v1::JOB_STATE_SCHEDULED);
  running.mutable_state_change()->set_to(v1::JOB_STATE_RUNNING);
  EXPECT_TRUE(ApplyEvent(running, view, first));
  EXPECT_TRUE(ApplyEvent(Train(2, 1, 10, 1000, 0.9), view, first));
  EXPECT_DOUBLE_EQ(*EstimateEtaSeconds(view), 90 * 3);  // step_seconds until a second event
  EXPECT_TRUE(ApplyEvent(Train(3, 1, 20, 1010, 0.8), view, first));
  EXPECT_EQ(view.step, 20u);
  EXPECT_DOUBLE_EQ(*view.loss, 0.8);
  EXPECT_DOUBLE_EQ(*EstimateEtaSeconds(view), 80);  // 10 steps in 10 s observed
  // A new attempt resumes from a checkpoint: the rate starts over.
  EXPECT_TRUE(ApplyEvent(Train(4, 2, 15, 2000, 0.85), view, first));
  EXPECT_EQ(view.attempt, 2u);
  EXPECT_EQ(view.observed_steps, 0u);
  v1::JobEvent eval;
  eval.set_attempt(2);
  eval.mutable_eval()->set_accuracy(0.75);
  EXPECT_TRUE(ApplyEvent(eval, view, first));
  EXPECT_DOUBLE_EQ(*view.eval_accuracy, 0.75);
  v1::JobEvent log;
  log.set_attempt(2);
  log.mutable_log()->set_text("hi");
  EXPECT_FALSE(ApplyEvent(log, view, first));
}

// ---- loss trend -----------------------------------------------------------------------------

TEST(CliSparkline, ScalesToTheMinAndMaxOfTheValues) {
  EXPECT_EQ(FormatSparkline({}), "");
  EXPECT_EQ(FormatSparkline({8, 7, 6, 5, 4, 3, 2, 1}), "█▇▆▅▄▃▂▁");
  // Small changes still show their shape: the scale is the values' own range.
  EXPECT_EQ(FormatSparkline({0.5003, 0.5, 0.5007}), "▄▁█");
  EXPECT_EQ(FormatSparkline({-3, 0, 3}), "▁▅█");  // 3.5 rounds up
  // A flat series reads as "no change", one value likewise.
  EXPECT_EQ(FormatSparkline({0.7, 0.7, 0.7}), "▄▄▄");
  EXPECT_EQ(FormatSparkline({2}), "▄");
}

TEST(CliSparkline, NonFiniteValuesAreMarkedAndLeftOutOfTheScale) {
  EXPECT_EQ(FormatSparkline({1, NAN, 0, INFINITY, -INFINITY}), "█!▁!!");
  EXPECT_EQ(FormatSparkline({NAN, NAN}), "!!");
  // Huge values of both signs: their range would overflow a double; the scale still holds.
  EXPECT_EQ(FormatSparkline({-1e308, 1e308, 0}), "▁█▅");
}

TEST(CliSparkline, TheLocaleDecidesWhetherTheTerminalShowsUtf8) {
  EXPECT_TRUE(LocaleIsUtf8(nullptr, nullptr, "en_US.UTF-8"));
  EXPECT_TRUE(LocaleIsUtf8(nullptr, nullptr, "C.utf8"));
  EXPECT_TRUE(LocaleIsUtf8("", "de_DE.utf-8", "C"));
  EXPECT_FALSE(LocaleIsUtf8("C", nullptr, "en_US.UTF-8"));  // LC_ALL wins
  EXPECT_FALSE(LocaleIsUtf8(nullptr, "POSIX", "en_US.UTF-8"));
  EXPECT_FALSE(LocaleIsUtf8(nullptr, nullptr, "en_US.ISO-8859-1"));
  EXPECT_FALSE(LocaleIsUtf8(nullptr, nullptr, nullptr));
  EXPECT_FALSE(LocaleIsUtf8("", "", ""));
}

TEST(CliProgressLine, ShowsTheLossTrendOnlyOnAUtf8Terminal) {
  ProgressView view = Running(120, 300);
  view.loss = 0.4;
  view.eval_accuracy = 0.9123;
  view.recent_losses = {0.9, 0.7, NAN, 0.4};
  EXPECT_EQ(FormatProgressLine(view, 0, /*utf8=*/true),
            "running  step 120/300 [########............] 40%  loss 0.4 █▅!▁  eval acc 91.2%");
  // ASCII: no sparkline at all, not a degraded one.
  EXPECT_EQ(FormatProgressLine(view, 0, /*utf8=*/false),
            "running  step 120/300 [########............] 40%  loss 0.4  eval acc 91.2%");
  EXPECT_EQ(FormatProgressLine(view, 0), FormatProgressLine(view, 0, false));
}

TEST(CliProgressLine, TheTrendGoesAfterTheBarAndTheCutCountsCharactersNotBytes) {
  ProgressView view = Running(300, 300);
  view.loss = 0.1;
  view.recent_losses = {0.3, 0.2, 0.1};
  EXPECT_EQ(FormatProgressLine(view, 0, true),
            "running  step 300/300 [####################] 100%  loss 0.1 █▅▁  ETA 0s");
  // 43 characters (49 bytes): fits without the bar. Then the trend goes, then the line is cut.
  EXPECT_EQ(FormatProgressLine(view, 43, true), "running  step 300/300  loss 0.1 █▅▁  ETA 0s");
  EXPECT_EQ(FormatProgressLine(view, 42, true), "running  step 300/300  loss 0.1  ETA 0s");
  EXPECT_EQ(FormatProgressLine(view, 12, true), "running  ste");
}

TEST(CliProgressLine, KeepsTheLastTwentyLossesAcrossAttempts) {
  ProgressView view;
  std::optional<v1::JobEvent> first;
  for (uint64_t step = 1; step <= 25; ++step) {
    ApplyEvent(Train(step, 1, step, 1000, static_cast<double>(step)), view, first);
  }
  ASSERT_EQ(view.recent_losses.size(), kTrendValues);
  EXPECT_DOUBLE_EQ(view.recent_losses.front(), 6);
  EXPECT_DOUBLE_EQ(view.recent_losses.back(), 25);
  ApplyEvent(Train(26, 2, 21, 2000, NAN), view, first);  // a restart continues the curve
  ASSERT_EQ(view.recent_losses.size(), kTrendValues);
  EXPECT_DOUBLE_EQ(view.recent_losses.front(), 7);
  EXPECT_TRUE(std::isnan(view.recent_losses.back()));
}

TEST(CliEventLine, OneLinePerKind) {
  v1::JobEvent e;
  e.set_seq(4);
  e.set_attempt(1);
  e.mutable_state_change()->set_from(v1::JOB_STATE_SCHEDULED);
  e.mutable_state_change()->set_to(v1::JOB_STATE_RUNNING);
  EXPECT_EQ(FormatEventLine(e, 0), "#4 state scheduled -> running (attempt 1)");
  e.mutable_state_change()->set_to(v1::JOB_STATE_FAILED);
  e.mutable_state_change()->set_reason("bad data\n\x1b[2J");
  EXPECT_EQ(FormatEventLine(e, 0), "#4 state scheduled -> failed (attempt 1): bad data??[2J");

  v1::JobEvent t = Train(5, 1, 10, 0, 0.693147);
  t.mutable_train()->set_epoch(0.1);
  t.mutable_train()->set_learning_rate(3e-4);
  t.mutable_train()->set_grad_norm(1.2);
  EXPECT_EQ(FormatEventLine(t, 300),
            "#5 train step 10/300 epoch 0.1 loss 0.6931 lr 0.0003 grad_norm 1.2 tok/s 1000");

  v1::JobEvent ev;
  ev.set_seq(6);
  ev.mutable_eval()->set_step(10);
  ev.mutable_eval()->set_loss(0.51);
  ev.mutable_eval()->set_accuracy(0.8125);
  ev.mutable_eval()->set_examples(64);
  EXPECT_EQ(FormatEventLine(ev, 0), "#6 eval step 10 loss 0.51 accuracy 81.2% examples 64");

  v1::JobEvent c;
  c.set_seq(7);
  c.mutable_checkpoint()->set_id("ckpt-7");
  c.mutable_checkpoint()->set_step(10);
  c.mutable_checkpoint()->add_files()->set_size_bytes(1 << 20);
  c.mutable_checkpoint()->add_files()->set_size_bytes(1 << 19);
  EXPECT_EQ(FormatEventLine(c, 0), "#7 checkpoint ckpt-7 step 10 final no files 2 size 1.50 MiB");

  v1::JobEvent l;
  l.set_seq(8);
  l.mutable_log()->set_level(v1::LogLine::LEVEL_ERROR);
  l.mutable_log()->set_rank(0);
  l.mutable_log()->set_text("CUDA out of memory");
  EXPECT_EQ(FormatEventLine(l, 0), "#8 log rank 0 error: CUDA out of memory");
  l.mutable_log()->set_rank(-1);
  l.mutable_log()->set_level(v1::LogLine::LEVEL_INFO);
  EXPECT_EQ(FormatEventLine(l, 0), "#8 log agent info: CUDA out of memory");
}

// ---- tables and records ---------------------------------------------------------------------

TEST(CliTable, AlignsColumnsWithoutTrailingSpaces) {
  EXPECT_EQ(FormatTable({"ID", "STATE", "X"}, {{"job-1", "running", ""}, {"j2", "queued", "y"}}),
            "ID     STATE    X\n"
            "job-1  running\n"
            "j2     queued   y\n");
  EXPECT_EQ(FormatTable({"A", "B"}, {}), "A  B\n");
  EXPECT_EQ(FormatTable({"A"}, {{"x\ny"}}), "A\nx?y\n");
}

TEST(CliTable, JobsCheckpointsWorkers) {
  v1::Job job;
  job.set_id("j-1");
  job.set_name("sst2");
  job.set_state(v1::JOB_STATE_RUNNING);
  job.set_owner("alice");
  job.set_attempt(2);
  job.mutable_progress()->set_step(12);
  job.mutable_progress()->set_total_steps(100);
  *job.mutable_created_at() = At(1714564800);
  EXPECT_THAT(JobTableRow(job), ::testing::ElementsAre("j-1", "sst2", "running", "alice", "2",
                                                       "12/100", "2024-05-01T12:00:00Z"));
  EXPECT_EQ(JobTableHeaders().size(), JobTableRow(job).size());

  v1::Checkpoint c;
  c.set_id("c-3");
  c.set_step(50);
  c.set_attempt(1);
  c.set_final(true);
  c.add_files()->set_size_bytes(2048);
  EXPECT_THAT(CheckpointTableRow(c),
              ::testing::ElementsAre("c-3", "50", "1", "yes", "-", "1", "2.00 KiB"));
  c.mutable_eval()->set_accuracy(0.5);
  EXPECT_EQ(CheckpointTableRow(c)[4], "50.0%");
  EXPECT_EQ(CheckpointTableHeaders().size(), CheckpointTableRow(c).size());

  v1::Worker w;
  w.set_name("node-a");
  w.set_state(v1::WORKER_STATE_READY);
  w.set_slots(4);
  w.set_free_slots(1);
  w.set_device(v1::DEVICE_CPU);
  w.add_running_jobs("j-1");
  w.add_running_jobs("j-2");
  *w.mutable_last_heartbeat_at() = At(1000);
  EXPECT_THAT(WorkerTableRow(w, 1003),
              ::testing::ElementsAre("node-a", "ready", "1/4", "cpu", "j-1,j-2", "3s ago"));
  EXPECT_EQ(WorkerTableHeaders().size(), WorkerTableRow(w, 0).size());
  w.set_cordoned(true);  // an operator's cordon shows next to the agent's own state
  EXPECT_EQ(WorkerTableRow(w, 1003)[1], "ready,cordoned");
}

TEST(CliJobDetails, KeyValueLines) {
  v1::Job job;
  job.set_id("j-1");
  job.set_name("sst2");
  job.set_owner("local");
  job.set_state(v1::JOB_STATE_RUNNING);
  job.set_attempt(1);
  job.add_workers("node-a");
  job.add_workers("node-b");
  job.mutable_progress()->set_step(30);
  job.mutable_progress()->set_total_steps(120);
  job.mutable_progress()->mutable_eta()->set_seconds(90);
  job.mutable_latest_train()->set_step(30);
  job.mutable_latest_train()->set_loss(0.5);
  job.mutable_latest_eval()->set_step(20);
  job.mutable_latest_eval()->set_accuracy(0.875);
  job.mutable_latest_eval()->set_examples(8);
  EXPECT_EQ(FormatJobDetails(job),
            "id:       j-1\n"
            "name:     sst2\n"
            "owner:    local\n"
            "state:    running\n"
            "reason:   -\n"
            "attempt:  1\n"
            "workers:  node-a, node-b\n"
            "progress: step 30/120 (25%), ETA 1m30s\n"
            "train:    step 30/120 epoch 0 loss 0.5 lr 0\n"
            "eval:     step 20 loss 0 accuracy 87.5% examples 8\n"
            "created:  -\n"
            "started:  -\n"
            "finished: -\n");
}

v1::CheckpointFile File(const std::string& path, const std::string& content) {
  v1::CheckpointFile f;
  f.set_path(path);
  f.set_size_bytes(content.size());
  f.set_sha256(Sha256Hex(content));
  return f;
}

// ---- metrics history ------------------------------------------------------------------------

v1::JobEvent Eval(uint64_t seq, uint32_t attempt, uint64_t step, double loss, double accuracy) {
  v1::JobEvent e;
  e.set_seq(seq);
  e.set_attempt(attempt);
  e.mutable_eval()->set_step(step);
  e.mutable_eval()->set_loss(loss);
  e.mutable_eval()->set_accuracy(accuracy);
  e.mutable_eval()->set_examples(64);
  return e;
}

uint64_t StepOf(const contract::MetricsRow& row) {
  return std::visit([](const auto& r) { return r.step; }, row);
}

TEST(CliMetricsHistory, TrainAndEvalRowsInOrderOthersSkipped) {
  v1::JobEvent running;
  running.set_attempt(1);
  running.mutable_state_change()->set_to(v1::JOB_STATE_RUNNING);
  v1::JobEvent checkpoint;
  checkpoint.set_attempt(1);
  checkpoint.mutable_checkpoint()->set_step(2);
  std::vector<contract::MetricsRow> rows = MetricsHistory(
      {running, Train(2, 1, 1, 0, 0.9), Train(3, 1, 2, 0, 0.8), Eval(4, 1, 2, 0.7, 0.5), checkpoint});
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_DOUBLE_EQ(std::get<contract::TrainRow>(rows[0]).loss, 0.9);
  EXPECT_EQ(std::get<contract::TrainRow>(rows[1]).step, 2u);
  EXPECT_DOUBLE_EQ(std::get<contract::EvalRow>(rows[2]).accuracy, 0.5);
  EXPECT_TRUE(MetricsHistory({}).empty());
}

TEST(CliMetricsHistory, AResumedAttemptReplacesTheStepsItTrainedAgain) {
  // Attempt 1 reached step 4 (eval at 2 and 4) and died; attempt 2 resumed from the
  // checkpoint at step 2.
  std::vector<contract::MetricsRow> rows = MetricsHistory(
      {Train(1, 1, 1, 0, 0.9), Train(2, 1, 2, 0, 0.8), Eval(3, 1, 2, 0.7, 0.5),
       Train(4, 1, 3, 0, 0.7), Train(5, 1, 4, 0, 0.6), Eval(6, 1, 4, 0.6, 0.6),
       Train(7, 2, 3, 0, 0.75), Train(8, 2, 4, 0, 0.65), Eval(9, 2, 4, 0.62, 0.58)});
  std::vector<uint64_t> steps;
  for (const auto& row : rows) steps.push_back(StepOf(row));
  EXPECT_EQ(steps, (std::vector<uint64_t>{1, 2, 2, 3, 4, 4}));
  EXPECT_DOUBLE_EQ(std::get<contract::TrainRow>(rows[3]).loss, 0.75);
  EXPECT_DOUBLE_EQ(std::get<contract::EvalRow>(rows[5]).accuracy, 0.58);
  // A restart from scratch (no checkpoint) replaces everything.
  rows = MetricsHistory({Train(1, 1, 1, 0, 0.9), Train(2, 1, 2, 0, 0.8), Train(3, 3, 1, 0, 0.95)});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_DOUBLE_EQ(std::get<contract::TrainRow>(rows[0]).loss, 0.95);
}

std::vector<contract::MetricsRow> SampleRows() {
  contract::TrainRow train;
  train.step = 10;
  train.epoch = 0.25;
  train.loss = 0.693147;
  train.learning_rate = 3e-4;
  train.grad_norm = 1.25;
  train.tokens_per_second = 1234.5;
  train.samples_per_second = 40;
  train.step_seconds = 0.5;
  contract::TrainRow unmeasured;  // no grad_norm, no throughput; a diverged loss
  unmeasured.step = 11;
  unmeasured.loss = NAN;
  contract::EvalRow eval;
  eval.step = 10;
  eval.loss = 0.51;
  eval.accuracy = 0.8125;
  eval.examples = 64;
  return {train, unmeasured, eval};
}

TEST(CliMetricsFormats, TableWithADashWhereARowHasNoValue) {
  std::vector<std::vector<std::string>> table;
  for (const auto& row : SampleRows()) table.push_back(MetricsTableRow(row));
  EXPECT_EQ(FormatTable(MetricsTableHeaders(), table),
            "TYPE   STEP  EPOCH  LOSS    LR      GRAD_NORM  TOK/S  EVAL_LOSS  EVAL_ACC\n"
            "train  10    0.25   0.6931  0.0003  1.25       1234   -          -\n"
            "train  11    0      nan     0       -          -      -          -\n"
            "eval   10    -      -       -       -          -      0.51       81.2%\n");
}

TEST(CliMetricsFormats, CsvHasEveryKeyAndEmptyCells) {
  EXPECT_EQ(FormatMetricsCsv(SampleRows()),
            "type,step,epoch,loss,lr,grad_norm,tokens_per_second,samples_per_second,"
            "step_seconds,eval_loss,eval_accuracy,eval_examples\n"
            "train,10,0.25,0.693147,0.0003,1.25,1234.5,40,0.5,,,\n"
            "train,11,0,nan,0,0,0,0,0,,,\n"
            "eval,10,,,,,,,,0.51,0.8125,64\n");
  EXPECT_EQ(FormatMetricsCsv({}),
            "type,step,epoch,loss,lr,grad_norm,tokens_per_second,samples_per_second,"
            "step_seconds,eval_loss,eval_accuracy,eval_examples\n");
}

TEST(CliMetricsFormats, JsonIsOneArrayOfMetricsJsonlRows) {
  std::string json = FormatMetricsJson(SampleRows());
  ASSERT_EQ(json.back(), '\n');
  EXPECT_EQ(std::count(json.begin(), json.end(), '\n'), 1);
  EXPECT_EQ(json.front(), '[');
  // Each element is exactly the contract's metrics.jsonl line, so the keys cannot drift, and
  // it reads back as the same row.
  std::vector<contract::MetricsRow> rows = SampleRows();
  EXPECT_EQ(json, "[" + contract::ToJsonLine(std::get<contract::TrainRow>(rows[0])) + "," +
                      contract::ToJsonLine(std::get<contract::TrainRow>(rows[1])) + "," +
                      contract::ToJsonLine(std::get<contract::EvalRow>(rows[2])) + "]\n");
  EXPECT_THAT(json, HasSubstr("\"loss\":null"));  // NaN: JSON has no such number
  std::string first = contract::ToJsonLine(std::get<contract::TrainRow>(rows[0]));
  auto parsed = contract::ParseMetricsLine(first);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_DOUBLE_EQ(std::get<contract::TrainRow>(*parsed).tokens_per_second, 1234.5);
  EXPECT_EQ(FormatMetricsJson({}), "[]\n");
}

// ---- the download writer --------------------------------------------------------------------

class CliDownload : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("loratrf-cli-format-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::vector<std::string> Entries() {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(root_)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }
  static v1::FileChunk Chunk(const std::string& path, uint64_t offset, const std::string& data) {
    v1::FileChunk chunk;
    chunk.set_path(path);
    chunk.set_offset(offset);
    chunk.set_data(data);
    return chunk;
  }
  static std::string Read(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  fs::path root_;
};

TEST_F(CliDownload, WritesVerifiesAndRenames) {
  v1::Checkpoint c;
  c.set_id("c1");
  *c.add_files() = File("adapter/adapter_model.safetensors", "hello world");
  *c.add_files() = File("empty", "");
  *c.add_files() = File("MANIFEST.json", "{}");
  auto d = CheckpointDownload::Create((root_ / "out").string());
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE((*d)->Begin(c).ok());
  ASSERT_TRUE((*d)->Write(Chunk("adapter/adapter_model.safetensors", 0, "hello ")).ok());
  ASSERT_TRUE((*d)->Write(Chunk("adapter/adapter_model.safetensors", 6, "world")).ok());
  ASSERT_TRUE((*d)->Write(Chunk("MANIFEST.json", 0, "{}")).ok());  // "empty" sent no chunk
  ASSERT_TRUE((*d)->Finish().ok());
  EXPECT_EQ(Read(root_ / "out/adapter/adapter_model.safetensors"), "hello world");
  EXPECT_EQ(Read(root_ / "out/MANIFEST.json"), "{}");
  EXPECT_TRUE(fs::exists(root_ / "out/empty"));
  EXPECT_EQ((*d)->bytes_written(), 13u);
  d->reset();
  EXPECT_THAT(Entries(), ::testing::ElementsAre("out"));  // no temp directory left
}

TEST_F(CliDownload, RefusesAnExistingOrParentlessOutput) {
  fs::create_directories(root_ / "exists");
  auto exists = CheckpointDownload::Create((root_ / "exists").string());
  EXPECT_TRUE(absl::IsInvalidArgument(exists.status()));
  EXPECT_THAT(std::string(exists.status().message()), HasSubstr("already exists"));
  auto orphan = CheckpointDownload::Create((root_ / "no/such/dir").string());
  EXPECT_TRUE(absl::IsInvalidArgument(orphan.status()));
  EXPECT_THAT(std::string(orphan.status().message()), HasSubstr("does not exist"));
  EXPECT_TRUE(absl::IsInvalidArgument(CheckpointDownload::Create("").status()));
}

TEST_F(CliDownload, EveryCorruptionFailsAndLeavesNothing) {
  v1::Checkpoint c;
  *c.add_files() = File("a", "abc");
  *c.add_files() = File("b", "de");
  struct Case {
    std::string name;
    std::vector<v1::FileChunk> chunks;
    std::string expected;
  };
  std::vector<Case> cases = {
      {"wrong sha", {Chunk("a", 0, "abX"), Chunk("b", 0, "de")}, "sha256"},
      {"short file", {Chunk("a", 0, "ab"), Chunk("b", 0, "de")}, "'a' has 2 of 3 bytes"},
      {"long file", {Chunk("a", 0, "abcd")}, "past the file's size of 3"},
      {"gap", {Chunk("a", 1, "bc")}, "offset 1 is out of order (expected 0)"},
      {"out of order", {Chunk("b", 0, "de"), Chunk("a", 0, "abc")}, "'a' has 0 of 3 bytes"},
      {"unknown file", {Chunk("a", 0, "abc"), Chunk("../etc", 0, "x")}, "not a file of this checkpoint"},
      {"missing file", {Chunk("a", 0, "abc")}, "got 0 bytes, expected 2"},
  };
  for (const Case& k : cases) {
    auto d = CheckpointDownload::Create((root_ / "out").string());
    ASSERT_TRUE(d.ok()) << d.status();
    ASSERT_TRUE((*d)->Begin(c).ok());
    absl::Status status = absl::OkStatus();
    for (const v1::FileChunk& chunk : k.chunks) {
      status = (*d)->Write(chunk);
      if (!status.ok()) break;
    }
    if (status.ok()) status = (*d)->Finish();
    EXPECT_FALSE(status.ok()) << k.name;
    EXPECT_TRUE(absl::IsDataLoss(status)) << k.name << ": " << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(k.expected)) << k.name;
    d->reset();
    EXPECT_TRUE(Entries().empty()) << k.name;
  }
}

TEST_F(CliDownload, UnsafeHeadersAreRefusedBeforeAnyFileIsMade) {
  for (const char* bad : {"../escape", "/abs", "a/../../b"}) {
    v1::Checkpoint c;
    *c.add_files() = File(bad, "x");
    auto d = CheckpointDownload::Create((root_ / "out").string());
    ASSERT_TRUE(d.ok());
    absl::Status status = (*d)->Begin(c);
    EXPECT_TRUE(absl::IsDataLoss(status)) << bad;
    EXPECT_THAT(std::string(status.message()), HasSubstr("unsafe file list")) << bad;
    EXPECT_FALSE((*d)->Write(Chunk(bad, 0, "x")).ok());
    d->reset();
    EXPECT_TRUE(Entries().empty());
  }
  EXPECT_FALSE(fs::exists(root_.parent_path() / "escape"));
}

TEST_F(CliDownload, NeverRenamesOverADirectoryThatAppeared) {
  v1::Checkpoint c;
  *c.add_files() = File("a", "abc");
  auto d = CheckpointDownload::Create((root_ / "out").string());
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE((*d)->Begin(c).ok());
  ASSERT_TRUE((*d)->Write(Chunk("a", 0, "abc")).ok());
  fs::create_directories(root_ / "out");  // empty: rename(2) would replace it
  absl::Status status = (*d)->Finish();
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  d->reset();
  EXPECT_THAT(Entries(), ::testing::ElementsAre("out"));
  EXPECT_TRUE(fs::is_empty(root_ / "out"));
}

// ---- input ----------------------------------------------------------------------------------

TEST(CliInput, ResolvesRelativeSpecPathsAgainstTheSpecDirectory) {
  v1::JobSpec spec;
  spec.mutable_model()->set_path("../models/tiny");
  spec.mutable_data()->set_train("train.jsonl");
  spec.mutable_data()->set_eval("/abs/eval.jsonl");
  ResolveSpecPaths("/jobs/sst2", spec);
  EXPECT_EQ(spec.model().path(), "/jobs/models/tiny");
  EXPECT_EQ(spec.data().train(), "/jobs/sst2/train.jsonl");
  EXPECT_EQ(spec.data().eval(), "/abs/eval.jsonl");
  v1::JobSpec no_eval;
  no_eval.mutable_data()->set_train("t.jsonl");
  ResolveSpecPaths("", no_eval);  // a spec in the working directory
  EXPECT_EQ(no_eval.data().train(), (fs::current_path() / "t.jsonl").string());
  EXPECT_EQ(no_eval.data().eval(), "");
}

TEST(CliInput, JobIds) {
  EXPECT_TRUE(CheckJobId("j-0123").ok());
  EXPECT_FALSE(CheckJobId("has space").ok());
  EXPECT_FALSE(CheckJobId("-o").ok());
}

TEST(CliInput, RepeatedFlags) {
  std::vector<std::string> args = {"--state", "running", "--owner", "bob", "--state=queued,failed",
                                   "--", "--state", "x"};
  auto states = ExtractRepeatedFlag(args, "--state");
  ASSERT_TRUE(states.ok());
  EXPECT_THAT(*states, ::testing::ElementsAre("running", "queued", "failed"));
  EXPECT_THAT(args, ::testing::ElementsAre("--owner", "bob", "--", "--state", "x"));
  std::vector<std::string> missing = {"--state"};
  EXPECT_FALSE(ExtractRepeatedFlag(missing, "--state").ok());
  std::vector<std::string> empty = {"--state=a,,b"};
  EXPECT_FALSE(ExtractRepeatedFlag(empty, "--state").ok());
}

// ---- gRPC status → what the user sees -------------------------------------------------------

TEST(CliRpcErrors, MapToOneLineAndTheExitStatus) {
  RpcFailure unavailable =
      DescribeRpcError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused"),
                       "127.0.0.1:9");
  EXPECT_EQ(unavailable.exit_code, kExitFailure);
  EXPECT_EQ(unavailable.message, "cannot reach coordinator at 127.0.0.1:9: connection refused");
  RpcFailure invalid = DescribeRpcError(
      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "spec.name: required"), "h:1");
  EXPECT_EQ(invalid.exit_code, kExitUsage);
  EXPECT_EQ(invalid.message, "spec.name: required");
  RpcFailure missing =
      DescribeRpcError(grpc::Status(grpc::StatusCode::NOT_FOUND, "job j-9: not found"), "h:1");
  EXPECT_EQ(missing.exit_code, kExitFailure);
  EXPECT_EQ(missing.message, "job j-9: not found");
  RpcFailure unauthenticated =
      DescribeRpcError(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no token"), "h:1");
  EXPECT_EQ(unauthenticated.exit_code, kExitFailure);
  EXPECT_THAT(unauthenticated.message, HasSubstr("--token-file"));
  RpcFailure internal =
      DescribeRpcError(grpc::Status(grpc::StatusCode::INTERNAL, "disk\nfull"), "h:1");
  EXPECT_EQ(internal.message, "coordinator at h:1: INTERNAL: disk full");
}

}  // namespace
}  // namespace loratrf::client
