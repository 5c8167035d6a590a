// Authenticator (server/grpc/auth.h): the admin role, role gates, and reloading the token file
// while calls go on. Parsing errors and bearer-token handling are covered in
// coordinator_grpc_test.cc; which jobs a caller may see is the core's (job_access_test.cc).
#include "server/grpc/auth.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loratrf::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kAlice[] = "Bearer alice-token-0123456789";
constexpr char kRoot[] = "Bearer root-token-01234567890";
constexpr char kNode[] = "Bearer node1-token-0123456789";

constexpr char kTokens[] =
    "user alice alice-token-0123456789\n"
    "admin root root-token-01234567890\n"
    "worker node-1 node1-token-0123456789\n";

TEST(AuthAdminTest, AnAdminMayCallWhatAUserMayAndTheOperatorRpcs) {
  auto auth = Authenticator::Parse(kTokens, "tokens.txt");
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(auth->size(), 3u);

  auto root = auth->Authenticate(kRoot, kUserOnly);
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(root->principal, "root");
  EXPECT_TRUE(root->admin);
  EXPECT_TRUE(root->may_submit);
  EXPECT_FALSE(root->may_work);
  EXPECT_TRUE(auth->Authenticate(kRoot, kAdminOnly).ok());
  EXPECT_TRUE(auth->Authenticate(kRoot, kUserOrWorker).ok());
  EXPECT_EQ(auth->Authenticate(kRoot, kWorkerOnly).status().code(),
            absl::StatusCode::kPermissionDenied);

  auto alice = auth->Authenticate(kAlice, kUserOnly);
  ASSERT_TRUE(alice.ok());
  EXPECT_FALSE(alice->admin);
  auto denied = auth->Authenticate(kAlice, kAdminOnly);
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.status().message(), HasSubstr("admin role"));
  EXPECT_EQ(auth->Authenticate(kNode, kAdminOnly).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(AuthAdminTest, OneTokenMayCarryTheAdminAndWorkerRolesOfOneName) {
  auto auth = Authenticator::Parse(
      "admin ops ops-token-01234567890123\nworker ops ops-token-01234567890123\n", "t");
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(auth->size(), 1u);
  auto ops = auth->Authenticate("Bearer ops-token-01234567890123", kWorkerOnly);
  ASSERT_TRUE(ops.ok());
  EXPECT_TRUE(ops->admin && ops->may_work && ops->may_submit);

  for (const char* bad : {"admin ops ops-token-01234567890123\nadmin ops ops-token-01234567890123\n",
                          "admin o/ps ops-token-01234567890123\n",
                          "admin ops ops-token-01234567890123\nuser bob ops-token-01234567890123\n"}) {
    EXPECT_EQ(Authenticator::Parse(bad, "t").status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

class AuthReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (fs::temp_directory_path() /
             ("auth_reload_" + std::to_string(::getpid()) + "_" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                .string();
  }
  void TearDown() override { fs::remove(path_); }
  void Write(const std::string& text) {
    std::ofstream out(path_, std::ios::trunc);
    out << text;
  }
  std::string path_;
};

TEST_F(AuthReloadTest, AReloadReplacesTheCredentialsAndABadFileKeepsThem) {
  Write(kTokens);
  auto loaded = Authenticator::FromFile(path_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Authenticator& auth = *loaded;
  ASSERT_TRUE(auth.Authenticate(kAlice, kUserOnly).ok());

  Write("user bob bob-token-0123456789ab\nworker node-1 node1-token-0123456789\n");
  ASSERT_TRUE(auth.Reload(path_).ok());
  EXPECT_EQ(auth.Authenticate(kAlice, kUserOnly).status().code(),
            absl::StatusCode::kUnauthenticated);
  auto bob = auth.Authenticate("Bearer bob-token-0123456789ab", kUserOnly);
  ASSERT_TRUE(bob.ok());
  EXPECT_EQ(bob->principal, "bob");
  EXPECT_EQ(auth.size(), 2u);

  // A broken file: the error names the file and line; bob's set stays in force.
  Write("user carol carol-token-0123456789\nuser dave short\n");
  absl::Status failed = auth.Reload(path_);
  EXPECT_EQ(failed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(failed.message(), HasSubstr(path_ + ":2:"));
  EXPECT_TRUE(auth.Authenticate("Bearer bob-token-0123456789ab", kUserOnly).ok());
  EXPECT_EQ(auth.Authenticate("Bearer carol-token-0123456789", kUserOnly).status().code(),
            absl::StatusCode::kUnauthenticated);
  fs::remove(path_);
  EXPECT_FALSE(auth.Reload(path_).ok()) << "a missing file keeps the set too";
  EXPECT_TRUE(auth.Authenticate("Bearer bob-token-0123456789ab", kUserOnly).ok());
}

TEST_F(AuthReloadTest, WithoutATokenFileAuthCannotBeSwitchedOn) {
  Write(kTokens);
  Authenticator open;
  EXPECT_EQ(open.Reload(path_).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(open.enabled());
}

// Calls on other threads see either the old set or the new one, never a torn one (run under
// TSan/ASan this is the data-race check of the swap).
TEST_F(AuthReloadTest, CallsDuringReloadsSeeOneWholeSet) {
  const std::string a = "user alice alice-token-0123456789\nworker node-1 node1-token-0123456789\n";
  const std::string b = "user alice alice-token-0123456789\nuser bob bob-token-0123456789ab\n";
  Write(a);
  auto loaded = Authenticator::FromFile(path_);
  ASSERT_TRUE(loaded.ok());
  Authenticator& auth = *loaded;
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < 3; ++i) {
    callers.emplace_back([&] {
      while (!stop.load()) {
        // alice is in both sets: she is never refused.
        if (!auth.Authenticate(kAlice, kUserOnly).ok()) failures.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < 200; ++i) {
    Write(i % 2 == 0 ? b : a);
    ASSERT_TRUE(auth.Reload(path_).ok());
  }
  stop.store(true);
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace loratrf::server
