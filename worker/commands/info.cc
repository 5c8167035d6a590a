#include <iostream>

#include "base/command_line.h"
#include "commands/commands.h"
#include "runtime_info.h"
#include "nlohmann/json.hpp"

namespace loratrf::worker {

int RunInfo(const std::vector<std::string>& args) {
  auto flags = CommandLine::Parse(args, {{"-o", true}});
  if (!flags.ok()) return Fail(flags.status());
  if (!flags->positional().empty()) return Fail(absl::InvalidArgumentError("info takes no arguments"));
  auto format = flags->GetChoice("-o", "text", {"text", "json"});
  if (!format.ok()) return Fail(format.status());

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
  return std::cout.good() ? 0 : 1;
}

}  // namespace loratrf::worker
