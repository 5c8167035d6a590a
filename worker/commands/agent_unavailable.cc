// The engine-only build has no gRPC, so no agent: the command says so and exits 2.
#include <iostream>

#include "worker/commands/commands.h"

namespace loratrf::worker {

int RunAgent(const std::vector<std::string>&) {
  std::cerr << "loratrf-worker: agent: built without the agent (engine-only build); configure "
               "without -DLORATRF_ENGINE_ONLY=ON to get it\n";
  return 2;
}

}  // namespace loratrf::worker
