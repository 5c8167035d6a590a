// loratrf: the user's command-line client. Bad input of any kind is one line on stderr and
// exit status 2; a failure on the server's side is exit status 1. The commands live in
// commands/, the reusable gRPC pieces and every output format in lib/ (loratrf_client).
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/commands/commands.h"

namespace {

using loratrf::client::GlobalOptions;

constexpr char kUsage[] =
    "usage: loratrf [--coordinator HOST:PORT] [--token-file F] [--tls-ca F] <command> [flags]\n"
    "\n"
    "commands:\n"
    "  validate JOB.yaml [-o yaml|json]   check a job spec without submitting it; prints the\n"
    "                                      spec with every default filled in\n"
    "  submit JOB.yaml [--idempotency-key K] [--sweep ID]\n"
    "                                      validate, then queue the job; prints its id last\n"
    "  get ID                              a job's state, reason, attempt, workers, progress;\n"
    "                                      for a queued job its queue reason, position, ETA\n"
    "  list [--state S[,S]]... [--owner O] [--name-prefix P] [--sweep ID] [-l K=V]...\n"
    "       [--sort created|priority|queue|name] [--page-size N] [--all] [-o wide]\n"
    "                                      jobs, newest first (--all: every page); -o wide\n"
    "                                      adds priority, workers, queue position and ETA\n"
    "  watch ID                            follow a job live; exit 0 only if it succeeds\n"
    "  metrics ID [-o text|json|csv]       a job's train and eval history so far\n"
    "  cancel ID [--reason R]              cancel a job (a finished job is left unchanged)\n"
    "  delete ID [--purge]                 delete a finished job's checkpoints (--purge: its\n"
    "                                      record and events too); prints what was freed\n"
    "  checkpoints ID                      a job's committed checkpoints\n"
    "  download ID [--checkpoint C] --output DIR\n"
    "                                      fetch a checkpoint (default: the final one, else\n"
    "                                      the latest) into a new directory, verified\n"
    "  pause ID [--reason R]               checkpoint and stop a job, then hold it queued\n"
    "  resume ID                           let a paused job be scheduled again\n"
    "  workers                             the fleet\n"
    "  workers cordon|drain|uncordon NAME [--reason R]\n"
    "                                      no new jobs on a worker; drain also moves its jobs\n"
    "                                      after a checkpoint; uncordon undoes both\n"
    "\n"
    "Every command but validate takes -o text|json (proto JSON; for metrics, metrics.jsonl\n"
    "rows; metrics also takes -o csv). The coordinator address may also come from\n"
    "LORATRF_COORDINATOR; connection flags may also follow the command.\n"
    "Exit status: 0 done, 1 the coordinator failed or said no, 2 bad input.\n";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "loratrf: %s\n", message.c_str());
  return loratrf::client::kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  // Connection flags before the command.
  GlobalOptions global;
  const std::map<std::string, std::optional<std::string> GlobalOptions::*> kGlobalFlags = {
      {"--coordinator", &GlobalOptions::coordinator},
      {"--token-file", &GlobalOptions::token_file},
      {"--tls-ca", &GlobalOptions::tls_ca}};
  size_t i = 0;
  for (; i < args.size() && absl::StartsWith(args[i], "--") && args[i] != "--help"; ++i) {
    std::string name = args[i];
    std::optional<std::string> value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    auto flag = kGlobalFlags.find(name);
    if (flag == kGlobalFlags.end()) return UsageError(absl::StrCat("unknown flag ", name));
    if (!value) {
      if (i + 1 >= args.size()) return UsageError(absl::StrCat(name, ": needs a value"));
      value = args[++i];
    }
    if (global.*(flag->second)) return UsageError(absl::StrCat(name, ": given more than once"));
    global.*(flag->second) = *value;
  }
  args.erase(args.begin(), args.begin() + static_cast<std::ptrdiff_t>(i));

  if (args.empty()) {
    std::fputs(kUsage, stderr);
    return loratrf::client::kExitUsage;
  }
  if (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  using Command = int (*)(const GlobalOptions&, const std::vector<std::string>&);
  const std::map<std::string, Command> kCommands = {
      {"validate", loratrf::client::RunValidate},
      {"submit", loratrf::client::RunSubmit},
      {"get", loratrf::client::RunGet},
      {"list", loratrf::client::RunList},
      {"watch", loratrf::client::RunWatch},
      {"metrics", loratrf::client::RunMetrics},
      {"cancel", loratrf::client::RunCancel},
      {"delete", loratrf::client::RunDelete},
      {"checkpoints", loratrf::client::RunCheckpoints},
      {"download", loratrf::client::RunDownload},
      {"workers", loratrf::client::RunWorkers},
      {"pause", loratrf::client::RunPause},
      {"resume", loratrf::client::RunResume}};
  std::string command = args[0];
  args.erase(args.begin());
  auto it = kCommands.find(command);
  if (it == kCommands.end()) {
    std::fprintf(stderr, "loratrf: unknown command '%s'\n%s", command.c_str(), kUsage);
    return loratrf::client::kExitUsage;
  }
  return it->second(global, args);
}
