// CheckJobAccess and ListingOwner (server/core/job_access.h): the access rule as a matrix of
// callers (the job's owner, another user, an admin, a worker) and actions.
#include "server/core/job_access.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loratrf::server {
namespace {

using ::testing::HasSubstr;

v1::Job JobOf(const std::string& owner) {
  v1::Job job;
  job.set_id("j-1");
  job.set_owner(owner);
  return job;
}

TEST(JobAccessTest, Matrix) {
  const v1::Job job = JobOf("alice");
  struct Case {
    const char* who;
    Caller caller;
    bool owner_actions;  // see, watch, cancel, pause, delete
    bool resume;         // read its checkpoints
  };
  for (const Case& c : {
           Case{"owner", {"alice", true, false, false}, true, true},
           Case{"other user", {"bob", true, false, false}, false, false},
           Case{"admin", {"root", true, false, true}, true, true},
           Case{"worker", {"node-1", false, true, false}, false, true},
           Case{"local (no token file)", {"local", true, true, true}, true, true},
       }) {
    SCOPED_TRACE(c.who);
    absl::Status owner = CheckJobAccess(c.caller, job);
    EXPECT_EQ(owner.ok(), c.owner_actions) << owner;
    absl::Status resume = CheckJobAccess(c.caller, job, JobAccess::kResume);
    EXPECT_EQ(resume.ok(), c.resume) << resume;
    if (!owner.ok()) {
      EXPECT_EQ(owner.code(), absl::StatusCode::kPermissionDenied);
      EXPECT_THAT(owner.message(), HasSubstr("belongs to alice"));
    }
  }
}

TEST(JobAccessTest, AUsersListingIsForcedToTheirOwnJobs) {
  const Caller alice{"alice", true, false, false};
  EXPECT_EQ(*ListingOwner(alice, ""), "alice");
  EXPECT_EQ(*ListingOwner(alice, "alice"), "alice");
  absl::StatusOr<std::string> other = ListingOwner(alice, "bob");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(other.status().message(), HasSubstr("owner:"));

  const Caller root{"root", true, false, true};
  EXPECT_EQ(*ListingOwner(root, ""), "") << "an admin lists every owner's jobs";
  EXPECT_EQ(*ListingOwner(root, "bob"), "bob");
}

}  // namespace
}  // namespace loratrf::server
