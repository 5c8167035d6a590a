// The name, id and key rules every binary shares (proto/contract/names.h).
#include "proto/contract/names.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace loratrf::contract {
namespace {

using ::testing::HasSubstr;

TEST(JobName, FollowsTheSpecRule) {
  for (const std::string& ok : {std::string("a"), std::string("sst2-loratrf"), std::string("x1"),
                                std::string(63, 'a')}) {
    EXPECT_TRUE(CheckJobName("name", ok).ok()) << ok;
  }
  EXPECT_THAT(std::string(CheckJobName("name", "").message()), HasSubstr("name: required"));
  EXPECT_THAT(std::string(CheckJobName("name", std::string(64, 'a')).message()),
              HasSubstr("at most 63"));
  EXPECT_THAT(std::string(CheckJobName("name", "Upper").message()), HasSubstr("a-z, 0-9 and '-'"));
  EXPECT_THAT(std::string(CheckJobName("name", "-lead").message()), HasSubstr("start and end"));
  EXPECT_THAT(std::string(CheckJobName("name", "trail-").message()), HasSubstr("start and end"));
}

TEST(WorkerName, LowerCaseHostNames) {
  for (const char* ok : {"node-a", "gpu01.rack3", "a"}) EXPECT_TRUE(CheckWorkerName("name", ok).ok());
  for (const char* bad : {"", "Node", "a b", "a_b", "a/b"}) {
    absl::Status s = CheckWorkerName("--name", bad);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr("--name: ")) << bad;
  }
  EXPECT_FALSE(CheckWorkerName("name", std::string(64, 'a')).ok());
}

TEST(UserName, NamesFromTheTokenFile) {
  for (const char* ok : {"alice", "Bob.Smith", "ml_team", "ci@example.com", "a-1"}) {
    EXPECT_TRUE(CheckUserName("user NAME", ok).ok()) << ok;
  }
  for (const std::string& bad : {std::string(), std::string("al/ice"), std::string("a b"),
                                 std::string(64, 'a'), std::string("caf\xc3\xa9")}) {
    absl::Status s = CheckUserName("user NAME", bad);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr("user NAME: ")) << bad;
  }
}

TEST(WorkerName, MadeFromAnyHostNamePassesTheRule) {
  for (const std::string& host :
       {std::string("GPU-Node_7.example.com"), std::string(), std::string("\xc3\xbc" "n\xc3\xaf" "code"),
        std::string(300, 'x'), std::string("a\0b", 3)}) {
    const std::string name = WorkerNameFromHostName(host);
    EXPECT_TRUE(CheckWorkerName("name", name).ok()) << host << " -> " << name;
  }
  EXPECT_EQ(WorkerNameFromHostName("GPU-Node_7.example.com"), "gpu-node-7.example.com");
  EXPECT_EQ(WorkerNameFromHostName(""), "worker");
}

TEST(Id, CoordinatorMadeIdsOnly) {
  for (const char* ok : {"j-18c2a-00f3a1", "ckpt-7", "A.b_c-1"}) EXPECT_TRUE(CheckId("id", ok).ok());
  for (const std::string& bad : {std::string(), std::string("."), std::string(".."),
                                std::string("a/b"), std::string("a b"), std::string("a\x01"),
                                std::string(129, 'x')}) {
    EXPECT_TRUE(absl::IsInvalidArgument(CheckId("id", bad))) << bad;
  }
}

// The CLI and the coordinator once disagreed on keys with spaces: the CLI accepted a key the
// server then refused. Both now call this one function.
TEST(IdempotencyKey, PrintableAsciiWithoutSpaces) {
  EXPECT_TRUE(CheckIdempotencyKey("--idempotency-key", "nightly-2024-05-01").ok());
  EXPECT_TRUE(CheckIdempotencyKey("k", std::string(128, '~')).ok());
  for (const std::string& bad : {std::string("nightly 2024-05-01"), std::string(),
                                std::string(129, 'k'), std::string("tab\there"),
                                std::string("caf\xc3\xa9")}) {
    absl::Status s = CheckIdempotencyKey("--idempotency-key", bad);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr("--idempotency-key: must be 1 to 128")) << bad;
  }
}

}  // namespace
}  // namespace loratrf::contract
