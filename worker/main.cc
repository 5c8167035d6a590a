// loratrf-worker: the node-side binary. Every command prints one clear line on stderr and
// exits 2 on bad input, 1 when the work itself fails.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "base/command_line.h"
#include "engine/runtime_info.h"
#include "nlohmann/json.hpp"

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

constexpr char kUsage[] =
    "usage: loratrf-worker <command> [flags]\n"
    "\n"
    "commands:\n"
    "  info [-o text|json]   the libtorch version, CUDA devices and NCCL support of this node\n";

int UsageError(const std::string& message) {
  std::cerr << "loratrf-worker: " << message << "\n";
  return kExitUsage;
}

int Info(const std::vector<std::string>& args) {
  auto flags = loratrf::CommandLine::Parse(args, {{"-o", true}});
  if (!flags.ok()) return UsageError(std::string(flags.status().message()));
  if (!flags->positional().empty()) return UsageError("info takes no arguments");
  auto format = flags->GetChoice("-o", "text", {"text", "json"});
  if (!format.ok()) return UsageError(std::string(format.status().message()));

  loratrf::engine::RuntimeInfo info = loratrf::engine::GetRuntimeInfo();
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
  return std::cout.good() ? 0 : kExitFailure;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? kExitUsage : 0;
  }
  std::string command = args[0];
  args.erase(args.begin());
  if (command == "info") return Info(args);
  std::cerr << "loratrf-worker: unknown command '" << command << "'\n" << kUsage;
  return kExitUsage;
}
