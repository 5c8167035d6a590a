// The local commands of `loratrf-worker` (contracts: docs/api.md). Each takes the arguments
// after the command name and returns the process exit status: 0 done, 2 bad input (one line
// on stderr naming what is wrong, nothing written), 1 a failure of the work itself.
#pragma once

#include <string>
#include <vector>

#include <functional>

#include "absl/status/status.h"
#include "common/command_line.h"

namespace loratrf::worker {

int RunInfo(const std::vector<std::string>& args);
int RunLogits(const std::vector<std::string>& args);
int RunParams(const std::vector<std::string>& args);
int RunMerge(const std::vector<std::string>& args);
int RunRun(const std::vector<std::string>& args);
int RunTokenize(const std::vector<std::string>& args);
// `agent --coordinator HOST:PORT --slots N --work-dir DIR ...` (worker/commands/agent.cc; the
// engine-only build, which has no gRPC, links agent_unavailable.cc instead).
int RunAgent(const std::vector<std::string>& args);

// Prints "loratrf-worker: <message>" and maps the status to an exit code (2 for bad input).
int Fail(const absl::Status& status);

// Parses `args` against `flags`, runs `body`, and turns its Status (or anything libtorch
// throws) into the exit code. `name` prefixes internal errors ("logits failed: ...").
int RunCommand(const char* name, const std::vector<std::string>& args,
               const std::vector<CommandLine::Flag>& flags,
               const std::function<absl::Status(const CommandLine&)>& body);

}  // namespace loratrf::worker
