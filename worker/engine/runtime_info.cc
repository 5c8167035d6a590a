#include "worker/engine/runtime_info.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/version.h>

namespace loratrf::engine {

RuntimeInfo GetRuntimeInfo() {
  RuntimeInfo info;
  info.loratrf_version = LORATRF_VERSION;
  info.torch_version = TORCH_VERSION;
  info.torch_cuda = at::hasCUDA();
  info.cuda_device_count = info.torch_cuda ? static_cast<int>(torch::cuda::device_count()) : 0;
#ifdef LORATRF_HAVE_NCCL
  info.nccl_communicator = true;
#endif
  info.intra_op_threads = at::get_num_threads();
  return info;
}

}  // namespace loratrf::engine
