// The client side of a connection to the coordinator, shared by the CLI and the agent: the
// files the connection flags name (--token-file, --tls-ca), the channel (plaintext, or TLS
// verified against the CA), and the bearer token on every call.
//
// Token file: the token is the first line, with surrounding whitespace (spaces, tabs, a CR)
// removed; it must be 1 or more printable ASCII characters without spaces. Anything after the
// first line is ignored (a comment, a trailing newline). The token is never logged or echoed.
//
// Threading: a ClientChannel may be shared by threads once made (gRPC channels are
// thread-safe); the free functions have no shared state.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace loratrf::rpc {

// Reads a token file. InvalidArgument "FLAG PATH: ..." when it is missing, unreadable, larger
// than limits::kMaxTokenFileBytes, or its first line is not a token.
absl::StatusOr<std::string> ReadTokenFile(absl::string_view flag, const std::string& path);

// Reads a PEM file (at most limits::kMaxPemFileBytes): with `certificate`, one that holds at
// least one certificate (a CA bundle, a server certificate); else any PEM block (a key).
// InvalidArgument "FLAG PATH: ..." otherwise. The coordinator reads its TLS files with it too.
absl::StatusOr<std::string> ReadPemFile(absl::string_view flag, const std::string& path,
                                        bool certificate);

struct ChannelOptions {
  std::string target;       // HOST:PORT, or any gRPC target (dns:///..., unix:...)
  std::string token_file;   // "" for no token
  std::string tls_ca_file;  // "" for plaintext
  // Pings on an idle connection, so that a dead coordinator is noticed by a long-lived client.
  bool keepalive = false;
  int max_reconnect_backoff_ms = 2000;
};

class ClientChannel {
 public:
  // Reads the files the options name and makes the channel (it connects lazily).
  static absl::StatusOr<ClientChannel> Open(const ChannelOptions& options);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  // Adds the bearer token (when there is one) to a call.
  void Authorize(grpc::ClientContext& context) const;

 private:
  ClientChannel(std::shared_ptr<grpc::Channel> channel, std::string token)
      : channel_(std::move(channel)), token_(std::move(token)) {}
  std::shared_ptr<grpc::Channel> channel_;
  std::string token_;
};

}  // namespace loratrf::rpc
