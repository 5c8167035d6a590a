#include "client/lib/connection.h"

#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/read_file.h"

namespace loratrf::client {
namespace {

constexpr uint64_t kMaxTokenFileBytes = 64 << 10;
constexpr uint64_t kMaxCaFileBytes = 1 << 20;

std::string OneLine(absl::string_view text) {
  std::string out(text);
  for (char& c : out) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = ' ';
  }
  return out;
}

absl::StatusOr<std::string> ReadFlagFile(absl::string_view flag, const std::string& path,
                                         uint64_t limit) {
  absl::StatusOr<std::string> text = ReadFileWithLimit(path, limit);
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", OneLine(text.status().message())));
  }
  return text;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(const ConnectionOptions& options) {
  if (absl::Status s = CheckAddress(options.address); !s.ok()) return s;
  std::string token;
  if (!options.token_file.empty()) {
    absl::StatusOr<std::string> text =
        ReadFlagFile("--token-file", options.token_file, kMaxTokenFileBytes);
    if (!text.ok()) return text.status();
    absl::string_view first = *text;
    first = first.substr(0, first.find('\n'));
    token = std::string(absl::StripAsciiWhitespace(first));
    if (token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token-file ", options.token_file, ": the first line is empty"));
    }
    for (char c : token) {
      if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--token-file ", options.token_file, ": the token must be printable ASCII"));
      }
    }
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (!options.tls_ca_file.empty()) {
    absl::StatusOr<std::string> pem = ReadFlagFile("--tls-ca", options.tls_ca_file, kMaxCaFileBytes);
    if (!pem.ok()) return pem.status();
    if (pem->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls-ca ", options.tls_ca_file, ": not a PEM certificate"));
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *pem;
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // Reconnect quickly when the coordinator comes back (watch retries on UNAVAILABLE).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.address, credentials, args);
  return std::unique_ptr<Connection>(new Connection(options, std::move(token), std::move(channel)));
}

Connection::Connection(ConnectionOptions options, std::string token,
                       std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      token_(std::move(token)),
      channel_(std::move(channel)),
      stub_(v1::JobService::NewStub(channel_)) {}

std::unique_ptr<grpc::ClientContext> Connection::StreamContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
  return context;
}

std::unique_ptr<grpc::ClientContext> Connection::UnaryContext() const {
  std::unique_ptr<grpc::ClientContext> context = StreamContext();
  if (options_.rpc_timeout_seconds > 0) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(
                              static_cast<int64_t>(options_.rpc_timeout_seconds * 1000)));
  }
  return context;
}

RpcFailure DescribeRpcError(const grpc::Status& status, absl::string_view address) {
  std::string detail = OneLine(status.error_message());
  if (detail.empty()) detail = "no details";
  switch (status.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
      return {kExitUsage, detail};
    case grpc::StatusCode::UNAVAILABLE:
      return {kExitFailure, absl::StrCat("cannot reach coordinator at ", address, ": ", detail)};
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return {kExitFailure,
              absl::StrCat("coordinator at ", address, " did not answer in time: ", detail)};
    case grpc::StatusCode::UNAUTHENTICATED:
      return {kExitFailure, absl::StrCat("coordinator at ", address, " rejected the call (",
                                         detail, "); pass a valid --token-file")};
    case grpc::StatusCode::PERMISSION_DENIED:
      return {kExitFailure, absl::StrCat("permission denied: ", detail)};
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::OUT_OF_RANGE:
      return {kExitFailure, detail};
    default: {
      static const char* const kNames[] = {
          "OK",        "CANCELLED",       "UNKNOWN",        "INVALID_ARGUMENT",
          "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
          "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
          "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
      int code = static_cast<int>(status.error_code());
      std::string name = code >= 0 && code < static_cast<int>(std::size(kNames))
                             ? kNames[code]
                             : absl::StrCat("code ", code);
      return {kExitFailure, absl::StrCat("coordinator at ", address, ": ", name, ": ", detail)};
    }
  }
}

absl::Status CheckAddress(absl::string_view address) {
  if (address.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "no coordinator address: pass --coordinator HOST:PORT or set ", kCoordinatorEnv));
  }
  for (char c : address) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      return absl::InvalidArgumentError("--coordinator: must not contain spaces or control "
                                        "characters");
    }
  }
  return absl::OkStatus();
}

}  // namespace loratrf::client
