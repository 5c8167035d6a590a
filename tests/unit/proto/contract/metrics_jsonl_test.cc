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

}  // namespace
}  // namespace loratrf::contract
