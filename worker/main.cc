// loratrf-worker: the node-side binary. Every command prints one clear line on stderr and
// exits 2 on bad input, 1 when the work itself fails.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "worker/commands/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: loratrf-worker <command> [flags]\n"
    "\n"
    "commands:\n"
    "  info [-o text|json]\n"
    "      the libtorch version, CUDA devices and NCCL support of this node\n"
    "  logits --model DIR [--adapter DIR] --input-ids 1,2,3 --output F.safetensors\n"
    "      runs one sequence; writes float32 hidden_states [T, hidden] and logits\n"
    "  params --spec JOB.yaml\n"
    "      prints {\"trainable\": N, \"total\": M, ...} for the job's model and adapter\n"
    "  run --spec JOB.yaml [--nproc N] --output DIR\n"
    "      trains the job on this machine with N rank processes; rerun to resume\n"
    "      (SIGTERM/SIGINT: checkpoint after the current step, exit 75)\n"
    "  merge --model DIR --adapter DIR --output DIR\n"
    "      folds a LoRA (or LoRATRF output-filter) adapter into a Hugging Face model dir\n"
    "  tokenize --tokenizer PATH --input FILE.txt [--add-special-tokens]\n"
    "      prints one JSON array of token ids per input line (PATH: tokenizer.json or its dir)\n"
    "  agent --coordinator HOST:PORT --slots N --work-dir DIR [--name NAME]\n"
    "        [--metrics-listen HOST:PORT] [--token-file F] [--tls-ca F] [--address HOST]\n"
    "        [--device auto|cpu|cuda] [--drain-timeout 25s] [--keep-failed-for 24h]\n"
    "      serves a coordinator: registers this node's slots, runs the ranks it assigns\n"
    "      (SIGTERM: drain, the ranks checkpoint and the jobs move; again: stop at once)\n";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  std::string command = args[0];
  args.erase(args.begin());
  if (command == "info") return loratrf::worker::RunInfo(args);
  if (command == "logits") return loratrf::worker::RunLogits(args);
  if (command == "params") return loratrf::worker::RunParams(args);
  if (command == "merge") return loratrf::worker::RunMerge(args);
  if (command == "run") return loratrf::worker::RunRun(args);
  if (command == "tokenize") return loratrf::worker::RunTokenize(args);
  if (command == "agent") return loratrf::worker::RunAgent(args);
  std::cerr << "loratrf-worker: unknown command '" << command << "'\n" << kUsage;
  return 2;
}
