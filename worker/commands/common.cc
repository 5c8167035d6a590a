#include <iostream>

#include "worker/commands/commands.h"

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

int RunCommand(const char* name, const std::vector<std::string>& args,
               const std::vector<CommandLine::Flag>& flags,
               const std::function<absl::Status(const CommandLine&)>& body) {
  auto parsed = CommandLine::Parse(args, flags);
  if (!parsed.ok()) return Fail(parsed.status());
  if (!parsed->positional().empty()) {
    return Fail(absl::InvalidArgumentError(
        std::string(name) + " takes no arguments, got '" + parsed->positional()[0] + "'"));
  }
  try {
    absl::Status status = body(*parsed);
    return status.ok() ? 0 : Fail(status);
  } catch (const std::exception& e) {
    return Fail(absl::InternalError(std::string(name) + " failed: " + e.what()));
  }
}

}  // namespace loratrf::worker
