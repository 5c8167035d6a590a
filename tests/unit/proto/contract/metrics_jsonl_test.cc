// metrics.jsonl (proto/contract/metrics_jsonl.h): the trainer writes rows, the agent reads them.
#include "proto/contract/metrics_jsonl.h"

#include <cmath>
#include <limits>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "proto/contract/limits.h"

namespace loratrf::contract {
namespace {

TEST(MetricsJsonl, TrainRowsRoundTrip) {
  TrainRow row;
  row.step = 12;
  row.epoch = 0.5;
  row.loss = 0.6931;
  row.learning_rate = 3e-4;
  row.grad_norm = 1.25;
  row.tokens_per_second = 1234.5;
  row.samples_per_second = 8;
  row.step_seconds = 0.75;
  const std::string line = ToJsonLine(row);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  std::optional<MetricsRow> back = ParseMetricsLine(line);
  ASSERT_TRUE(back.has_value());
  const TrainRow& train = std::get<TrainRow>(*back);
  EXPECT_EQ(train.step, 12u);
  EXPECT_DOUBLE_EQ(train.epoch, 0.5);
  EXPECT_DOUBLE_EQ(train.loss, 0.6931);
  EXPECT_DOUBLE_EQ(train.learning_rate, 3e-4);
  EXPECT_DOUBLE_EQ(train.grad_norm, 1.25);
  EXPECT_DOUBLE_EQ(train.tokens_per_second, 1234.5);
  EXPECT_DOUBLE_EQ(train.samples_per_second, 8);
  EXPECT_DOUBLE_EQ(train.step_seconds, 0.75);
  EXPECT_EQ(MetricsLineStep(line), 12u);
}

TEST(MetricsJsonl, EvalRowsRoundTrip) {
  EvalRow row;
  row.step = 40;
  row.loss = 0.4;
  row.accuracy = 0.9;
  row.examples = 872;
  std::optional<MetricsRow> back = ParseMetricsLine(ToJsonLine(row));
  ASSERT_TRUE(back.has_value());
  const EvalRow& eval = std::get<EvalRow>(*back);
  EXPECT_EQ(eval.step, 40u);
  EXPECT_DOUBLE_EQ(eval.loss, 0.4);
  EXPECT_DOUBLE_EQ(eval.accuracy, 0.9);
  EXPECT_EQ(eval.examples, 872u);
}

TEST(MetricsJsonl, SkipsWhatIsNotARow) {
  for (const std::string& line :
       {std::string(""), std::string("{"), std::string("[]"), std::string(R"({"type":"train"})"),
        std::string(R"({"type":"train","step":-1})"), std::string(R"({"type":"train","step":1.5})"),
        std::string(R"({"type":"other","step":1})"), std::string(R"({"type":3,"step":1})"),
        std::string(R"({"type":"train","step":1,"x":[[[[1]]]]})"),
        std::string(limits::kMaxMetricsLineBytes + 1, ' ')}) {
    EXPECT_FALSE(ParseMetricsLine(line).has_value()) << line.substr(0, 80);
  }
  EXPECT_FALSE(MetricsLineStep("not json").has_value());
  EXPECT_EQ(MetricsLineStep(R"({"type":"future-kind","step":7})"), 7u)
      << "a row of a type this reader does not know still has a step";
}

// Wide and deep rows up to the line limit are answered after one pass: a wide row is a row, a
// deep or repeated-key one is not.
TEST(MetricsJsonl, WideAndDeepLinesAreAnswered) {
  std::string wide = R"({"type":"train","step":3)";
  for (int i = 0; wide.size() < limits::kMaxMetricsLineBytes - 100; ++i) {
    wide += ",\"k" + std::to_string(i) + "\":0";
  }
  wide += "}";
  ASSERT_LE(wide.size(), limits::kMaxMetricsLineBytes);
  EXPECT_EQ(MetricsLineStep(wide), 3u);
  std::string deep = R"({"type":"train","step":1,"x":)" + std::string(30000, '[') +
                     std::string(30000, ']') + "}";
  EXPECT_FALSE(MetricsLineStep(deep).has_value());
  EXPECT_FALSE(MetricsLineStep(R"({"type":"train","step":1,"step":2})").has_value());
}

// A count that is not a non-negative integer is clamped, never cast blindly.
TEST(MetricsJsonl, ClampsCountsThatAreNotNonNegativeIntegers) {
  struct Case {
    const char* examples;
    uint64_t expected;
  };
  for (const Case& k : std::vector<Case>{{"12", 12},
                                         {"-3", 0},
                                         {"2.9", 2},
                                         {"1e300", std::numeric_limits<uint64_t>::max()},
                                         {"-1e300", 0},
                                         {"\"7\"", 0}}) {
    std::optional<MetricsRow> row = ParseMetricsLine(
        std::string(R"({"type":"eval","step":1,"eval_loss":0.5,"eval_examples":)") + k.examples +
        "}");
    ASSERT_TRUE(row.has_value()) << k.examples;
    EXPECT_EQ(std::get<EvalRow>(*row).examples, k.expected) << k.examples;
  }
}

TEST(MetricsJsonl, MissingNumbersReadAsZero) {
  std::optional<MetricsRow> row = ParseMetricsLine(R"({"type":"train","step":3,"loss":"x"})");
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(std::get<TrainRow>(*row).loss, 0);
  EXPECT_EQ(std::get<TrainRow>(*row).epoch, 0);
}

// Rank telemetry: every field survives the round trip, non-finite numbers included.
TEST(RankTelemetry, StepRowsRoundTripWithNonFiniteNumbers) {
  RankStepRow row;
  row.step = 7;
  row.total_steps = 100;
  row.time = 1.75e9;
  row.tokens = 4096;
  row.samples = 16;
  row.step_seconds = 0.25;
  row.data_wait_seconds = 0.01;
  row.allreduce_seconds = 0.02;
  row.loss = std::numeric_limits<double>::quiet_NaN();
  row.learning_rate = 1e-4;
  row.grad_norm = std::numeric_limits<double>::infinity();
  row.memory_device = "cuda";
  row.memory_bytes = 1ull << 33;
  row.memory_peak_bytes = 1ull << 34;
  row.model_flops_per_second = -std::numeric_limits<double>::infinity();
  row.mfu = 0.5;
  const std::string line = ToJsonLine(row);
  EXPECT_NE(line.find(R"("loss":"nan")"), std::string::npos) << line;
  std::optional<RankRow> parsed = ParseRankLine(line);
  ASSERT_TRUE(parsed.has_value()) << line;
  const auto& back = std::get<RankStepRow>(*parsed);
  EXPECT_EQ(back.step, 7u);
  EXPECT_EQ(back.total_steps, 100u);
  EXPECT_EQ(back.time, 1.75e9);
  EXPECT_EQ(back.tokens, 4096u);
  EXPECT_EQ(back.samples, 16u);
  EXPECT_EQ(back.step_seconds, 0.25);
  EXPECT_EQ(back.data_wait_seconds, 0.01);
  EXPECT_EQ(back.allreduce_seconds, 0.02);
  EXPECT_TRUE(std::isnan(back.loss));
  EXPECT_EQ(back.learning_rate, 1e-4);
  EXPECT_EQ(back.grad_norm, std::numeric_limits<double>::infinity());
  EXPECT_EQ(back.memory_device, "cuda");
  EXPECT_EQ(back.memory_bytes, 1ull << 33);
  EXPECT_EQ(back.memory_peak_bytes, 1ull << 34);
  EXPECT_EQ(back.model_flops_per_second, -std::numeric_limits<double>::infinity());
  ASSERT_TRUE(back.mfu.has_value());
  EXPECT_EQ(*back.mfu, 0.5);

  row.mfu.reset();
  row.memory_device = "tpu";  // not one of ours: written and read as the CPU's
  parsed = ParseRankLine(ToJsonLine(row));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_FALSE(std::get<RankStepRow>(*parsed).mfu.has_value());
  EXPECT_EQ(std::get<RankStepRow>(*parsed).memory_device, "cpu");
}

TEST(RankTelemetry, EvalAndCheckpointRowsRoundTripAndOthersAreSkipped) {
  std::optional<RankRow> eval = ParseRankLine(ToJsonLine(RankEvalRow{5, 0.5, 0.75}));
  ASSERT_TRUE(eval.has_value());
  EXPECT_EQ(std::get<RankEvalRow>(*eval).step, 5u);
  EXPECT_EQ(std::get<RankEvalRow>(*eval).loss, 0.5);
  EXPECT_EQ(std::get<RankEvalRow>(*eval).accuracy, 0.75);
  std::optional<RankRow> checkpoint = ParseRankLine(ToJsonLine(RankCheckpointRow{20, 1.5}));
  ASSERT_TRUE(checkpoint.has_value());
  EXPECT_EQ(std::get<RankCheckpointRow>(*checkpoint).step, 20u);
  EXPECT_EQ(std::get<RankCheckpointRow>(*checkpoint).save_seconds, 1.5);
  for (const char* line : {R"({"type":"train","step":1})", R"({"type":"step","step":-1})",
                           R"({"type":"step"})", "[1]", "{", ""}) {
    EXPECT_FALSE(ParseRankLine(line).has_value()) << line;
  }
}

}  // namespace
}  // namespace loratrf::contract
