#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "client/commands/commands.h"
#include "google/protobuf/util/json_util.h"
#include "client/lib/input.h"

namespace loratrf::client {

int Fail(int exit_code, absl::string_view message) {
  std::string line(message);
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  std::cout.flush();
  std::cerr << "loratrf: " << line << "\n";
  std::cerr.flush();
  return exit_code;
}

int FailRpc(const grpc::Status& status, const Connection& connection) {
  RpcFailure failure = DescribeRpcError(status, connection.address());
  return Fail(failure.exit_code, failure.message);
}

absl::StatusOr<CommandLine> ParseCommandFlags(const std::vector<std::string>& args,
                                              std::vector<CommandLine::Flag> flags,
                                              bool with_output) {
  if (with_output) flags.push_back({"-o", true});
  flags.push_back({"--coordinator", true});
  flags.push_back({"--token-file", true});
  flags.push_back({"--tls-ca", true});
  return CommandLine::Parse(args, flags);
}

absl::StatusOr<bool> WantsJson(const CommandLine& flags) {
  absl::StatusOr<std::string> format = flags.GetChoice("-o", "text", {"text", "json"});
  if (!format.ok()) return format.status();
  return *format == "json";
}

absl::StatusOr<std::string> OneJobId(const CommandLine& flags, absl::string_view usage) {
  if (flags.positional().size() != 1) return absl::InvalidArgumentError(usage);
  const std::string& id = flags.positional()[0];
  if (absl::Status s = CheckJobId(id); !s.ok()) return s;
  return id;
}

absl::StatusOr<JobCommand> ParseJobCommand(const std::vector<std::string>& args,
                                           std::vector<CommandLine::Flag> flags,
                                           absl::string_view usage) {
  absl::StatusOr<CommandLine> parsed = ParseCommandFlags(args, std::move(flags));
  if (!parsed.ok()) return parsed.status();
  absl::StatusOr<std::string> id = OneJobId(*parsed, usage);
  if (!id.ok()) return id.status();
  absl::StatusOr<bool> json = WantsJson(*parsed);
  if (!json.ok()) return json.status();
  return JobCommand{*std::move(parsed), *std::move(id), *json};
}

absl::StatusOr<std::unique_ptr<Connection>> Connect(const GlobalOptions& global,
                                                    const CommandLine& flags) {
  auto pick = [&](const std::optional<std::string>& before,
                  const std::string& name) -> absl::StatusOr<std::optional<std::string>> {
    std::optional<std::string> after = flags.Get(name);
    if (before && after) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": given more than once"));
    }
    std::optional<std::string> value = before ? before : after;
    if (value && value->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": must not be empty"));
    }
    return value;
  };
  ConnectionOptions options;
  auto coordinator = pick(global.coordinator, "--coordinator");
  if (!coordinator.ok()) return coordinator.status();
  if (*coordinator) {
    options.address = **coordinator;
  } else if (const char* env = std::getenv(kCoordinatorEnv); env != nullptr) {
    options.address = env;
  }
  auto token_file = pick(global.token_file, "--token-file");
  if (!token_file.ok()) return token_file.status();
  options.token_file = token_file->value_or("");
  auto tls_ca = pick(global.tls_ca, "--tls-ca");
  if (!tls_ca.ok()) return tls_ca.status();
  options.tls_ca_file = tls_ca->value_or("");
  return Connection::Open(options);
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) return "{}";  // only for invalid UTF-8 in a string; never from our server
  return out;
}

bool Print(absl::string_view text) {
  std::cout.write(text.data(), static_cast<std::streamsize>(text.size()));
  std::cout.flush();
  return std::cout.good();
}

}  // namespace loratrf::client
