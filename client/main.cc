// loratrf: the user's command-line client. Bad input of any kind is one line on stderr and
// exit status 2; a failure on the server's side is exit status 1.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "base/command_line.h"
#include "spec/job_spec.h"

namespace {

constexpr int kExitUsage = 2;

constexpr char kUsage[] =
    "usage: loratrf <command> [flags]\n"
    "\n"
    "commands:\n"
    "  validate JOB.yaml [-o yaml|json]   check a job spec without submitting it; prints the\n"
    "                                      spec with every default filled in\n";

int UsageError(absl::string_view message) {
  std::cerr << "loratrf: " << message << "\n";
  return kExitUsage;
}

int Validate(const std::vector<std::string>& args) {
  auto flags = loratrf::CommandLine::Parse(args, {{"-o", true}});
  if (!flags.ok()) return UsageError(flags.status().message());
  if (flags->positional().size() != 1) return UsageError("validate takes one spec file");
  auto format = flags->GetChoice("-o", "yaml", {"yaml", "json"});
  if (!format.ok()) return UsageError(format.status().message());

  auto spec = loratrf::spec::LoadJobSpecFile(flags->positional()[0]);
  if (!spec.ok()) return UsageError(spec.status().message());
  std::cout << (*format == "json" ? loratrf::spec::JobSpecToJson(*spec) + "\n"
                                  : loratrf::spec::JobSpecToYaml(*spec));
  return std::cout.good() ? 0 : 1;
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
  if (command == "validate") return Validate(args);
  std::cerr << "loratrf: unknown command '" << command << "'\n" << kUsage;
  return kExitUsage;
}
