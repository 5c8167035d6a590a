// FinishedAttempts (worker/agent/agent.h): which assignments are repeats.
#include <string>

#include <gtest/gtest.h>

#include "worker/agent/agent.h"

namespace loratrf {
namespace {

TEST(FinishedAttempts, CoversRepeatsAndOlderAttemptsAndStaysBounded) {
  worker::agent::FinishedAttempts finished(3);
  EXPECT_FALSE(finished.Covers("a", 1));
  finished.Add("a", 2);
  EXPECT_TRUE(finished.Covers("a", 2)) << "a repeat";
  EXPECT_TRUE(finished.Covers("a", 1)) << "an older attempt";
  EXPECT_FALSE(finished.Covers("a", 3)) << "a newer attempt runs";
  finished.Add("a", 1);
  EXPECT_TRUE(finished.Covers("a", 2)) << "never lowered";
  finished.Add("b", 1);
  finished.Add("c", 1);
  EXPECT_TRUE(finished.Covers("a", 2));  // a is now the most recently used
  finished.Add("d", 1);                  // over the bound: b, the least recently used, goes
  EXPECT_EQ(finished.size(), 3u);
  EXPECT_FALSE(finished.Covers("b", 1));
  EXPECT_TRUE(finished.Covers("a", 2));
  EXPECT_TRUE(finished.Covers("c", 1));
  EXPECT_TRUE(finished.Covers("d", 1));
  for (int i = 0; i < 1000; ++i) finished.Add("job-" + std::to_string(i), 1);
  EXPECT_EQ(finished.size(), 3u);
}

}  // namespace
}  // namespace loratrf
