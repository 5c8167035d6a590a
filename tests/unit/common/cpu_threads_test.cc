#include "common/cpu_threads.h"

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace loratrf {
namespace {

TEST(CpuThreadsTest, EachProcessGetsItsShareAndAtLeastOne) {
  EXPECT_EQ(CpuThreadsPerProcess(16, 4), 4);
  EXPECT_EQ(CpuThreadsPerProcess(2, 2), 1);
  EXPECT_EQ(CpuThreadsPerProcess(3, 2), 1);
  EXPECT_EQ(CpuThreadsPerProcess(2, 8), 1);
  EXPECT_EQ(CpuThreadsPerProcess(8, 0), 8);
  EXPECT_EQ(CpuThreadsPerProcess(8, -3), 8);
}

TEST(CpuThreadsTest, UsableCpusIsPositive) { EXPECT_GE(UsableCpus(), 1); }

TEST(CpuThreadsTest, TheSettingIsTheShareUnlessTheOperatorChoseOne) {
  const char* before = std::getenv("OMP_NUM_THREADS");
  const std::string saved = before != nullptr ? before : "";
  ::unsetenv("OMP_NUM_THREADS");
  EXPECT_EQ(OmpThreadsSetting(1),
            "OMP_NUM_THREADS=" + std::to_string(CpuThreadsPerProcess(UsableCpus(), 1)));
  EXPECT_EQ(OmpThreadsSetting(UsableCpus() * 2), "OMP_NUM_THREADS=1");
  ::setenv("OMP_NUM_THREADS", "3", 1);
  EXPECT_EQ(OmpThreadsSetting(2), std::nullopt);
  if (before != nullptr) {
    ::setenv("OMP_NUM_THREADS", saved.c_str(), 1);
  } else {
    ::unsetenv("OMP_NUM_THREADS");
  }
}

}  // namespace
}  // namespace loratrf
