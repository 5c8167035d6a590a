#include <iostream>

#include "commands/commands.h"

namespace loratrf::worker {

int Fail(const absl::Status& status) {
  std::cerr << "loratrf-worker: " << status.message() << "\n";
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kOutOfRange:
      return 2;
    default:
      return 1;
  }
}

}  // namespace loratrf::worker
