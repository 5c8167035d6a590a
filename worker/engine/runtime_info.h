// What the engine runs on: libtorch version, CUDA devices, NCCL. The agent uses it to count
// GPU slots; `loratrf-worker info` prints it. Deliberately torch-free: callers need not
// compile torch headers to ask.
//
// Threading: GetRuntimeInfo() is safe from any thread.
#pragma once

#include <string>

namespace loratrf::engine {

struct RuntimeInfo {
  std::string loratrf_version;
  std::string torch_version;      // of the libtorch the binary runs with
  bool torch_cuda = false;        // libtorch was built with CUDA
  int cuda_device_count = 0;      // usable CUDA devices (0 when none or CPU-only libtorch)
  bool nccl_communicator = false; // the NCCL communicator was compiled in
  int intra_op_threads = 0;       // libtorch's CPU thread pool size
};

RuntimeInfo GetRuntimeInfo();

}  // namespace loratrf::engine
