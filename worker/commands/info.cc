#include <iostream>

#include "common/command_line.h"
#include "worker/commands/commands.h"
#include "worker/engine/runtime_info.h"
#include "nlohmann/json.hpp"

namespace loratrf::worker {

namespace {

absl::Status Info(const CommandLine& flags) {
  auto format = flags.GetChoice("-o", "text", {"text", "json"});
  if (!format.ok()) return format.status();
  engine::RuntimeInfo info = engine::GetRuntimeInfo();
  if (*format == "json") {
    nlohmann::json out = {{"loratrf_version", info.loratrf_version},
                          {"torch_version", info.torch_version},
                          {"torch_cuda", info.torch_cuda},
                          {"cuda_device_count", info.cuda_device_count},
                          {"nccl_communicator", info.nccl_communicator},
                          {"intra_op_threads", info.intra_op_threads}};
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << "loratrf " << info.loratrf_version << "\n"
              << "libtorch " << info.torch_version << (info.torch_cuda ? " (CUDA)" : " (CPU)")
              << "\n"
              << "CUDA devices: " << info.cuda_device_count << "\n"
              << "NCCL communicator: " << (info.nccl_communicator ? "yes" : "no") << "\n"
              << "CPU threads: " << info.intra_op_threads << "\n";
  }
  return std::cout.good() ? absl::OkStatus() : absl::InternalError("cannot write to stdout");
}

}  // namespace

int RunInfo(const std::vector<std::string>& args) {
  return RunCommand("info", args, {{"-o", true}}, Info);
}

}  // namespace loratrf::worker
