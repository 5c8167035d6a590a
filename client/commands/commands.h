// The `loratrf` subcommands. Each takes the connection flags given before the subcommand and the
// arguments after it, prints its result on stdout, and returns the exit status: 0 done, 1 the
// server failed or said no, 2 bad input (one line on stderr: "loratrf: ...").
//
// Threading: called once, on the main thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/command_line.h"
#include "google/protobuf/message.h"
#include "grpcpp/grpcpp.h"
#include "client/lib/connection.h"

namespace loratrf::client {

// Flags that may come before the subcommand (and also after it).
struct GlobalOptions {
  std::optional<std::string> coordinator;  // --coordinator HOST:PORT
  std::optional<std::string> token_file;   // --token-file F
  std::optional<std::string> tls_ca;       // --tls-ca F
};

int RunValidate(const GlobalOptions& global, const std::vector<std::string>& args);
int RunSubmit(const GlobalOptions& global, const std::vector<std::string>& args);
int RunGet(const GlobalOptions& global, const std::vector<std::string>& args);
int RunList(const GlobalOptions& global, const std::vector<std::string>& args);
int RunCancel(const GlobalOptions& global, const std::vector<std::string>& args);
int RunDelete(const GlobalOptions& global, const std::vector<std::string>& args);
int RunWatch(const GlobalOptions& global, const std::vector<std::string>& args);
int RunMetrics(const GlobalOptions& global, const std::vector<std::string>& args);
int RunCheckpoints(const GlobalOptions& global, const std::vector<std::string>& args);
int RunDownload(const GlobalOptions& global, const std::vector<std::string>& args);
int RunWorkers(const GlobalOptions& global, const std::vector<std::string>& args);
int RunPause(const GlobalOptions& global, const std::vector<std::string>& args);
int RunResume(const GlobalOptions& global, const std::vector<std::string>& args);
// `workers cordon|drain|uncordon NAME [--reason R]`; args[0] is the action.
bool IsWorkerAction(const std::string& word);
int RunWorkerAction(const GlobalOptions& global, const std::vector<std::string>& args);

// ---- shared by the commands -----------------------------------------------------------------

// Prints "loratrf: MESSAGE" (one line) on stderr and returns `exit_code`.
int Fail(int exit_code, absl::string_view message);
int FailRpc(const grpc::Status& status, const Connection& connection);

// Parses a subcommand's arguments: its own `flags`, plus `-o` (when `with_output`) and the
// connection flags (--coordinator, --token-file, --tls-ca).
absl::StatusOr<CommandLine> ParseCommandFlags(const std::vector<std::string>& args,
                                              std::vector<CommandLine::Flag> flags,
                                              bool with_output = true);
// `-o text|json`, text by default.
absl::StatusOr<bool> WantsJson(const CommandLine& flags);
// The one job id a command takes; `usage` is the message when it is missing or extra.
absl::StatusOr<std::string> OneJobId(const CommandLine& flags, absl::string_view usage);

// What every command about one job starts with: its flags (`flags` plus -o and the connection
// flags) parsed, its one job id, and whether -o json was asked for.
struct JobCommand {
  CommandLine flags;
  std::string id;
  bool json = false;
};
absl::StatusOr<JobCommand> ParseJobCommand(const std::vector<std::string>& args,
                                           std::vector<CommandLine::Flag> flags,
                                           absl::string_view usage);

// The connection: address from --coordinator (before or after the subcommand, not both), else
// $LORATRF_COORDINATOR; InvalidArgument when there is none or a flag's file is bad.
absl::StatusOr<std::unique_ptr<Connection>> Connect(const GlobalOptions& global,
                                                    const CommandLine& flags);

// The message as proto JSON on one line: proto field names, every field (zeros included),
// enums by name, 64-bit integers as strings.
std::string ToJson(const google::protobuf::Message& message);
// Writes `text` to stdout and flushes; false when stdout failed (a closed pipe).
bool Print(absl::string_view text);

}  // namespace loratrf::client
