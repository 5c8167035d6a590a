#include "proto/rpc/channel.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/read_file.h"
#include "common/text.h"
#include "proto/contract/limits.h"

namespace loratrf::rpc {
namespace {

absl::StatusOr<std::string> ReadFlagFile(absl::string_view flag, const std::string& path,
                                         uint64_t limit) {
  absl::StatusOr<std::string> text = ReadFileWithLimit(path, limit);
  if (!text.ok()) {
    // ReadFileWithLimit names the path; control characters in it must not reach a terminal.
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", SanitizeText(text.status().message(), 1024)));
  }
  return text;
}

}  // namespace

absl::StatusOr<std::string> ReadTokenFile(absl::string_view flag, const std::string& path) {
  absl::StatusOr<std::string> text = ReadFlagFile(flag, path, limits::kMaxTokenFileBytes);
  if (!text.ok()) return text.status();
  absl::string_view first = *text;
  first = absl::StripAsciiWhitespace(first.substr(0, first.find('\n')));
  if (first.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": the first line is empty"));
  }
  if (first.size() > limits::kMaxTokenLength) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": the token is longer than ",
                                                   limits::kMaxTokenLength, " characters"));
  }
  for (char c : first) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, " ", path, ": the first line must be the token alone (printable ASCII, no spaces)"));
    }
  }
  return std::string(first);
}

absl::StatusOr<std::string> ReadPemFile(absl::string_view flag, const std::string& path,
                                        bool certificate) {
  absl::StatusOr<std::string> pem = ReadFlagFile(flag, path, limits::kMaxPemFileBytes);
  if (!pem.ok()) return pem.status();
  if (pem->find(certificate ? "-----BEGIN CERTIFICATE-----" : "-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " ", path, certificate ? ": not a PEM file with a certificate" : ": not a PEM file"));
  }
  return pem;
}

absl::StatusOr<ClientChannel> ClientChannel::Open(const ChannelOptions& options) {
  std::string token;
  if (!options.token_file.empty()) {
    absl::StatusOr<std::string> read = ReadTokenFile("--token-file", options.token_file);
    if (!read.ok()) return read.status();
    token = *std::move(read);
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (!options.tls_ca_file.empty()) {
    absl::StatusOr<std::string> pem = ReadPemFile("--tls-ca", options.tls_ca_file, /*certificate=*/true);
    if (!pem.ok()) return pem.status();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *std::move(pem);
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(limits::kMaxResponseBytes);
  // Reconnect quickly when the coordinator comes back (clients retry on UNAVAILABLE).
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, options.max_reconnect_backoff_ms);
  if (options.keepalive) {
    arguments.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
    arguments.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    arguments.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  }
  return ClientChannel(grpc::CreateCustomChannel(options.target, credentials, arguments),
                       std::move(token));
}

void ClientChannel::Authorize(grpc::ClientContext& context) const {
  if (!token_.empty()) context.AddMetadata("authorization", "Bearer " + token_);
}

}  // namespace loratrf::rpc
