#include "common/disk_space.h"

#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace loratrf {

absl::StatusOr<DiskSpace> ReadDiskSpace(const std::string& path) {
  struct statvfs info {};
  if (::statvfs(path.c_str(), &info) != 0) {
    const int error = errno;
    const std::string message = absl::StrCat("statvfs ", path, ": ", std::strerror(error));
    return error == ENOENT ? absl::NotFoundError(message) : absl::UnavailableError(message);
  }
  DiskSpace space;
  // f_bavail, not f_bfree: the blocks reserved for root are not ours to fill.
  space.available_bytes = static_cast<uint64_t>(info.f_bavail) * info.f_frsize;
  space.capacity_bytes = static_cast<uint64_t>(info.f_blocks) * info.f_frsize;
  return space;
}

}  // namespace loratrf
