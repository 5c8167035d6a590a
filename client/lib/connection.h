// The CLI's side of gRPC: a channel to the coordinator (insecure, or TLS verified against
// --tls-ca), the bearer token on every call, and one function that turns a failed call into the
// line the user sees and the exit status.
//
// Threading: a Connection may be shared by threads (gRPC stubs are thread-safe); the free
// functions have no shared state.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/grpcpp.h"
#include "proto/loratrf/v1/job_service.grpc.pb.h"
#include "proto/rpc/channel.h"

namespace loratrf::client {

// Exit statuses of every `loratrf` command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the server said no, or could not be reached
inline constexpr int kExitUsage = 2;    // bad flags, spec or files: the user's input

// The environment variable that names the coordinator when --coordinator is not given.
inline constexpr char kCoordinatorEnv[] = "LORATRF_COORDINATOR";

struct ConnectionOptions {
  std::string address;      // HOST:PORT, or any gRPC target (dns:///..., unix:...)
  std::string token_file;   // empty: no token
  std::string tls_ca_file;  // empty: plaintext
  double rpc_timeout_seconds = 30;  // deadline of unary calls
};

class Connection {
 public:
  // Reads the token file and the CA file (proto/rpc/channel.h has the rules). InvalidArgument
  // naming the flag when either is missing, unreadable, empty or too large. Connects lazily.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const ConnectionOptions& options);

  v1::JobService::Stub& jobs() { return *stub_; }
  // A context for one call: the bearer token and, for unary calls, the deadline.
  std::unique_ptr<grpc::ClientContext> UnaryContext() const;
  std::unique_ptr<grpc::ClientContext> StreamContext() const;  // no deadline
  const std::string& address() const { return options_.address; }

 private:
  Connection(ConnectionOptions options, rpc::ClientChannel channel);
  const ConnectionOptions options_;
  const rpc::ClientChannel channel_;
  std::unique_ptr<v1::JobService::Stub> stub_;
};

// What a failed call means to the user.
struct RpcFailure {
  int exit_code;        // kExitUsage for INVALID_ARGUMENT (the user's input), else kExitFailure
  std::string message;  // one line, without the "loratrf: " prefix
};
// UNAVAILABLE → "cannot reach coordinator at ADDR: DETAIL"; UNAUTHENTICATED mentions
// --token-file; otherwise the server's message (control characters replaced).
RpcFailure DescribeRpcError(const grpc::Status& status, absl::string_view address);

// "0.0.0.0:1234": non-empty, one line. (Anything gRPC takes as a target is accepted.)
absl::Status CheckAddress(absl::string_view address);

}  // namespace loratrf::client
