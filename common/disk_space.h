// The space of the file system holding a path, as the metrics report it.
//
// Threading: pure function of the file system's state.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace loratrf {

struct DiskSpace {
  uint64_t available_bytes = 0;  // what an unprivileged process may still write
  uint64_t capacity_bytes = 0;   // the file system's size
};

// statvfs(path). NOT_FOUND or UNAVAILABLE naming the path and the reason when it fails.
absl::StatusOr<DiskSpace> ReadDiskSpace(const std::string& path);

}  // namespace loratrf
