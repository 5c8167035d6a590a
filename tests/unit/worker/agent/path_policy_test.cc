#include "worker/agent/path_policy.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loratrf::worker::agent {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

class PathPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/path_policy_test.XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = fs::canonical(pattern).string();
    for (const char* sub : {"data", "data2", "models/tiny", "secret", "work/jobs/j1/attempt-1"}) {
      fs::create_directories(dir_ + "/" + sub);
    }
    std::ofstream(dir_ + "/data/train.jsonl") << "{}\n";
    std::ofstream(dir_ + "/data2/train.jsonl") << "{}\n";
    std::ofstream(dir_ + "/secret/token") << "s3cret\n";
    std::ofstream(dir_ + "/models/tiny/config.json") << "{}\n";
  }
  void TearDown() override { fs::remove_all(dir_); }

  PathPolicy Policy(std::vector<std::string> roots) {
    absl::StatusOr<PathPolicy> policy = PathPolicy::Create(roots, dir_ + "/work");
    EXPECT_TRUE(policy.ok()) << policy.status();
    return policy.ok() ? *policy : PathPolicy::Unrestricted();
  }
  std::string Attempt() const { return dir_ + "/work/jobs/j1/attempt-1"; }

  std::string dir_;
};

TEST_F(PathPolicyTest, AllowsPathsUnderARootAndReturnsThemResolved) {
  PathPolicy policy = Policy({dir_ + "/data", dir_ + "/models/"});
  EXPECT_EQ(*policy.CheckFile("data.train", dir_ + "/data/train.jsonl", Attempt()),
            dir_ + "/data/train.jsonl");
  EXPECT_EQ(*policy.CheckFile("data.train", dir_ + "/data/./sub/../train.jsonl", Attempt()),
            dir_ + "/data/train.jsonl");
  EXPECT_EQ(*policy.CheckDirectory("model.path", dir_ + "/models/tiny/", Attempt()),
            dir_ + "/models/tiny");
  // A root itself is allowed.
  EXPECT_EQ(*policy.CheckDirectory("model.path", dir_ + "/models", Attempt()), dir_ + "/models");
}

TEST_F(PathPolicyTest, RefusesPathsOutsideTheRootsNamingTheField) {
  PathPolicy policy = Policy({dir_ + "/data"});
  absl::StatusOr<std::string> checked = policy.CheckFile("model.path", "/proc/self/environ", "/");
  ASSERT_FALSE(checked.ok());
  EXPECT_EQ(checked.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(checked.status().message(),
            "model.path: /proc/self/environ is outside the allowed paths (--allow-path)");
  EXPECT_FALSE(policy.CheckFile("data.train", dir_ + "/secret/token", Attempt()).ok());
}

TEST_F(PathPolicyTest, DotDotCannotClimbOutOfARoot) {
  PathPolicy policy = Policy({dir_ + "/data"});
  absl::StatusOr<std::string> checked =
      policy.CheckFile("data.train", dir_ + "/data/../secret/token", Attempt());
  ASSERT_FALSE(checked.ok());
  EXPECT_THAT(checked.status().message(), HasSubstr("is outside the allowed paths"));
  // Through a directory that does not exist, too.
  EXPECT_FALSE(policy.CheckFile("data.train", dir_ + "/data/nope/../../secret/token", Attempt()).ok());
}

TEST_F(PathPolicyTest, PrefixOfANameIsNotARoot) {
  PathPolicy policy = Policy({dir_ + "/data"});
  EXPECT_FALSE(policy.CheckFile("data.train", dir_ + "/data2/train.jsonl", Attempt()).ok());
  EXPECT_TRUE(IsUnder("/data/x", "/data"));
  EXPECT_TRUE(IsUnder("/data", "/data/"));
  EXPECT_FALSE(IsUnder("/data2/x", "/data"));
  EXPECT_TRUE(IsUnder("/anything", "/"));
}

TEST_F(PathPolicyTest, SymbolicLinksAreFollowedBeforeTheCheck) {
  PathPolicy policy = Policy({dir_ + "/data", dir_ + "/models"});
  fs::create_symlink(dir_ + "/secret/token", dir_ + "/data/link.jsonl");
  fs::create_symlink(dir_ + "/secret", dir_ + "/data/linkdir");
  fs::create_symlink("/proc/self/environ", dir_ + "/data/environ.jsonl");
  for (const std::string& path : {dir_ + "/data/link.jsonl", dir_ + "/data/linkdir/token",
                                  dir_ + "/data/environ.jsonl"}) {
    absl::StatusOr<std::string> checked = policy.CheckFile("data.train", path, Attempt());
    ASSERT_FALSE(checked.ok()) << path;
    EXPECT_EQ(checked.status().message(),
              "data.train: " + path + " is outside the allowed paths (--allow-path)");
  }
  // A link that stays inside a root is fine, and what the ranks get is its target.
  fs::create_symlink(dir_ + "/data/train.jsonl", dir_ + "/data/alias.jsonl");
  EXPECT_EQ(*policy.CheckFile("data.train", dir_ + "/data/alias.jsonl", Attempt()),
            dir_ + "/data/train.jsonl");
}

TEST_F(PathPolicyTest, ALinkInsideTheModelDirectoryIsChecked) {
  PathPolicy policy = Policy({dir_ + "/models"});
  fs::create_symlink("/proc/self/environ", dir_ + "/models/tiny/tokenizer.json");
  absl::StatusOr<std::string> checked =
      policy.CheckDirectory("model.path", dir_ + "/models/tiny", Attempt());
  ASSERT_FALSE(checked.ok());
  EXPECT_EQ(checked.status().message(),
            "model.path: " + dir_ + "/models/tiny/tokenizer.json (a symbolic link) is outside the "
            "allowed paths (--allow-path)");
  fs::remove(dir_ + "/models/tiny/tokenizer.json");
  // Links within the roots (a Hugging Face cache's snapshot → blob links) are fine.
  fs::create_symlink(dir_ + "/models/tiny/config.json", dir_ + "/models/tiny/alias.json");
  EXPECT_TRUE(policy.CheckDirectory("model.path", dir_ + "/models/tiny", Attempt()).ok());
}

TEST_F(PathPolicyTest, MissingPathsInsideARootAreLeftToTheRanks) {
  PathPolicy policy = Policy({dir_ + "/data"});
  EXPECT_EQ(*policy.CheckFile("data.eval", dir_ + "/data/missing/eval.jsonl", Attempt()),
            dir_ + "/data/missing/eval.jsonl");
  // Outside: refused alike whether or not the target exists.
  absl::StatusOr<std::string> missing = policy.CheckFile("data.eval", dir_ + "/secret/nope", "/");
  absl::StatusOr<std::string> present = policy.CheckFile("data.eval", dir_ + "/secret/token", "/");
  ASSERT_FALSE(missing.ok());
  ASSERT_FALSE(present.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("is outside the allowed paths"));
  EXPECT_THAT(present.status().message(), HasSubstr("is outside the allowed paths"));
}

TEST_F(PathPolicyTest, RelativePathsAreTakenFromTheAttemptDirAndTheWorkDirIsRefused) {
  PathPolicy policy = Policy({dir_});  // a root that holds the work dir
  absl::StatusOr<std::string> checked = policy.CheckFile("data.train", "train.jsonl", Attempt());
  ASSERT_FALSE(checked.ok());
  EXPECT_THAT(checked.status().message(), HasSubstr("inside the agent's work dir"));
  // Another job's attempt, by climbing out of this one.
  EXPECT_FALSE(policy.CheckFile("data.train", "../../j2/output/x", Attempt()).ok());
  // Climbing out of the work dir into a root works as a path would.
  EXPECT_EQ(*policy.CheckFile("data.train", "../../../../data/train.jsonl", Attempt()),
            dir_ + "/data/train.jsonl");
}

TEST_F(PathPolicyTest, WithoutRootsNothingIsRefused) {
  // DESIGN.md's contract for a single-user machine: no --allow-path, no restriction.
  PathPolicy policy = Policy({});
  EXPECT_FALSE(policy.restricted());
  for (const std::string& path : {dir_ + "/secret/token", std::string("/proc/self/environ"),
                                  std::string("/dev/zero"), dir_ + "/work/jobs/j1"}) {
    absl::StatusOr<std::string> checked = policy.CheckFile("data.train", path, "/");
    EXPECT_TRUE(checked.ok()) << path << ": " << checked.status();
  }
}

TEST_F(PathPolicyTest, WithARootSystemDirsAndTheWorkDirStayRefused) {
  PathPolicy policy = Policy({"/"});
  EXPECT_TRUE(policy.restricted());
  EXPECT_TRUE(policy.CheckFile("data.train", dir_ + "/secret/token", "/").ok());
  for (const char* path : {"/proc/self/environ", "/sys/kernel", "/dev/zero"}) {
    absl::StatusOr<std::string> checked = policy.CheckFile("data.train", path, "/");
    ASSERT_FALSE(checked.ok()) << path;
    EXPECT_THAT(checked.status().message(), HasSubstr("which jobs may not read"));
  }
  EXPECT_FALSE(policy.CheckFile("data.train", dir_ + "/work/jobs/j1", "/").ok());
  // A link in an ordinary directory to /proc is followed.
  fs::create_symlink("/proc/self/environ", dir_ + "/data/env");
  EXPECT_FALSE(policy.CheckFile("data.train", dir_ + "/data/env", "/").ok());
}

TEST_F(PathPolicyTest, ARootUnderASystemDirOptsThatSubtreeIn) {
  PathPolicy policy = Policy({"/dev/shm", "/"});
  EXPECT_TRUE(policy.CheckFile("data.train", "/dev/shm/train.jsonl", "/").ok());
  EXPECT_FALSE(policy.CheckFile("data.train", "/dev/zero", "/").ok());
  EXPECT_FALSE(policy.CheckFile("data.train", "/proc/self/environ", "/").ok());
  EXPECT_TRUE(policy.CheckFile("data.train", dir_ + "/data/train.jsonl", "/").ok());
}

TEST_F(PathPolicyTest, RootsMustBeDirectories) {
  for (const std::string& root : {dir_ + "/nope", dir_ + "/data/train.jsonl", std::string()}) {
    absl::StatusOr<PathPolicy> policy = PathPolicy::Create({root}, dir_ + "/work");
    ASSERT_FALSE(policy.ok()) << root;
    EXPECT_THAT(policy.status().message(), HasSubstr("--allow-path"));
  }
}

TEST_F(PathPolicyTest, UnrestrictedAllowsEverything) {
  EXPECT_TRUE(PathPolicy::Unrestricted().CheckFile("x", "/proc/self/environ", "/").ok());
}

TEST_F(PathPolicyTest, ErrorsRepeatThePathSanitisedAndNothingElse) {
  PathPolicy policy = Policy({dir_ + "/data"});
  absl::StatusOr<std::string> checked =
      policy.CheckFile("data.train", dir_ + "/secret/a\nb\x1b[31m", "/");
  ASSERT_FALSE(checked.ok());
  EXPECT_THAT(checked.status().message(), Not(HasSubstr("\n")));
  EXPECT_THAT(checked.status().message(), Not(HasSubstr("\x1b")));
}

}  // namespace
}  // namespace loratrf::worker::agent
