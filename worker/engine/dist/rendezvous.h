// The c10d TCPStore every communicator meets through: rank 0 hosts it, the others connect, and
// creation waits (up to the timeout) until all ranks are there. Internal to dist/.
#pragma once

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "worker/engine/dist/communicator.h"

namespace loratrf::engine {

inline c10::intrusive_ptr<c10d::Store> ConnectStore(const RendezvousOptions& options) {
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(options.master_port);
  store_options.isServer = options.rank == 0;
  store_options.numWorkers = options.world_size;
  store_options.waitWorkers = true;
  store_options.timeout = options.timeout;
  return c10::make_intrusive<c10d::TCPStore>(options.master_addr, store_options);
}

}  // namespace loratrf::engine
