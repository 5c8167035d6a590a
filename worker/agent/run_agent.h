// The `loratrf-worker agent` command, declared without gRPC so that main.cc builds in every
// configuration: the engine-only build links agent_unavailable.cc instead of the agent.
#pragma once

#include <string>
#include <vector>

namespace loratrf::worker {

// `agent --coordinator HOST:PORT --slots N --work-dir DIR ...`; returns the exit status.
int RunAgent(const std::vector<std::string>& args);

}  // namespace loratrf::worker
