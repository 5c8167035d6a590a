// MetricsTail (worker/agent/metrics_tail.h): rank 0's metrics.jsonl as events.
#include "worker/agent/metrics_tail.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>

#include <gtest/gtest.h>

namespace loratrf {
namespace {

namespace fs = std::filesystem;

TEST(MetricsTail, FollowsAppendsAndReplacementsWithoutDuplicates) {
  const fs::path dir = fs::temp_directory_path() / ("loratrf-tail-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = dir / "metrics.jsonl";
  worker::agent::MetricsTail tail(path, 0);
  EXPECT_TRUE(tail.Poll().empty()) << "no file yet";
  std::ofstream(path) << R"({"type": "train", "step": 1, "loss": 2.5, "lr": 0.1})" "\n"
                      << R"({"type": "eval", "step": 1, "eval_loss": 1.5, "eval_accuracy": 0.75, "eval_examples": 8})" "\n"
                      << R"({"type": "train", "step": 2, "lo)";  // an incomplete line
  std::vector<v1::JobEvent> events = tail.Poll();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].train().step(), 1u);
  EXPECT_DOUBLE_EQ(events[0].train().learning_rate(), 0.1);
  EXPECT_DOUBLE_EQ(events[1].eval().accuracy(), 0.75);
  EXPECT_EQ(events[1].eval().examples(), 8u);
  std::ofstream(path, std::ios::app) << R"(ss": 2.0})" "\n";
  events = tail.Poll();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].train().step(), 2u);
  // A resumed run rewrites the file (a new inode) and replays step 2: only step 3 is new.
  std::ofstream(path + ".new") << R"({"type": "train", "step": 1, "loss": 2.5})" "\n"
                               << R"({"type": "train", "step": 2, "loss": 2.0})" "\n"
                               << R"({"type": "train", "step": 3, "loss": 1.0})" "\n";
  fs::rename(path + ".new", path);
  events = tail.Poll();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].train().step(), 3u);
  fs::remove_all(dir);
}

TEST(MetricsTail, ClampsCountsThatAreNotNonNegativeIntegers) {
  using worker::agent::MetricsTail;
  auto examples = [](const std::string& value) -> std::optional<uint64_t> {
    std::optional<v1::JobEvent> event = MetricsTail::RowToEvent(
        R"({"type": "eval", "step": 3, "eval_loss": 1.0, "eval_examples": )" + value + "}");
    if (!event || !event->has_eval()) return std::nullopt;
    return event->eval().examples();
  };
  EXPECT_EQ(examples("16"), 16u);
  EXPECT_EQ(examples("16.9"), 16u);
  EXPECT_EQ(examples("-5"), 0u);
  EXPECT_EQ(examples("-5.5"), 0u);
  EXPECT_EQ(examples("1e300"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(examples("18446744073709551615"), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(examples("1e999"), std::nullopt) << "out of a double's range: not JSON, skipped";
  EXPECT_EQ(examples("null"), 0u);
  EXPECT_EQ(examples("\"many\""), 0u);
}

}  // namespace
}  // namespace loratrf
