// ReadDiskSpace (common/disk_space.h) against statvfs itself, and its error.
#include "common/disk_space.h"

#include <sys/statvfs.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace loratrf {
namespace {

TEST(DiskSpace, ReportsTheFileSystemOfThePath) {
  absl::StatusOr<DiskSpace> space = ReadDiskSpace("/");
  ASSERT_TRUE(space.ok()) << space.status();
  struct statvfs info {};
  ASSERT_EQ(::statvfs("/", &info), 0);
  EXPECT_EQ(space->capacity_bytes, static_cast<uint64_t>(info.f_blocks) * info.f_frsize);
  EXPECT_GT(space->capacity_bytes, 0u);
  EXPECT_LE(space->available_bytes, space->capacity_bytes);
}

TEST(DiskSpace, AMissingPathIsNotFoundNamingIt) {
  absl::StatusOr<DiskSpace> space = ReadDiskSpace("/no/such/loratrf/dir");
  ASSERT_EQ(space.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(space.status().message()), ::testing::HasSubstr("/no/such/loratrf/dir"));
}

}  // namespace
}  // namespace loratrf
