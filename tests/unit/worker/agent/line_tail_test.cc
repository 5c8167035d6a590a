// LineTail (worker/agent/line_tail.h): each complete line a rank appends, once, across
// truncation, replacement and over-long lines.
#include "worker/agent/line_tail.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace loratrf {
namespace {

namespace fs = std::filesystem;
using Lines = std::vector<std::string>;

class LineTailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("loratrf-line-tail-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    path_ = dir_ / "0.jsonl";
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Append(const std::string& text) { std::ofstream(path_, std::ios::app) << text; }

  fs::path dir_;
  std::string path_;
};

TEST_F(LineTailTest, ReturnsEachCompleteLineOnceAndWaitsForTheRest) {
  worker::agent::LineTail tail(path_, 100);
  EXPECT_EQ(tail.Poll(), Lines{}) << "no file yet";
  Append("a\nb\npart");
  EXPECT_EQ(tail.Poll(), (Lines{"a", "b"}));
  EXPECT_EQ(tail.Poll(), Lines{});
  Append("ial\nc\n");
  EXPECT_EQ(tail.Poll(), (Lines{"partial", "c"}));
}

TEST_F(LineTailTest, StartsAgainWhenTheFileIsTruncatedOrReplaced) {
  worker::agent::LineTail tail(path_, 100);
  Append("one\ntwo\n");
  EXPECT_EQ(tail.Poll(), (Lines{"one", "two"}));
  std::ofstream(path_, std::ios::trunc) << "new\n";  // a new rank process starts the file over
  EXPECT_EQ(tail.Poll(), Lines{"new"});
  const std::string replacement = (dir_ / "next").string();
  std::ofstream(replacement) << "first of the replacement, longer than before\n";
  fs::rename(replacement, path_);
  EXPECT_EQ(tail.Poll(), Lines{"first of the replacement, longer than before"});
}

TEST_F(LineTailTest, SkipsLinesLongerThanTheLimit) {
  worker::agent::LineTail tail(path_, 8);
  Append(std::string(20, 'x') + "\nshort\n" + std::string(30, 'y'));
  EXPECT_EQ(tail.Poll(), Lines{"short"});
  Append("\nafter\n");  // the over-long partial line was dropped, not waited for
  EXPECT_EQ(tail.Poll(), Lines{"after"});
}

}  // namespace
}  // namespace loratrf
