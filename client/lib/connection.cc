#include "client/lib/connection.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "proto/rpc/status.h"

namespace loratrf::client {
namespace {

std::string OneLine(absl::string_view text) {
  std::string out(text);
  for (char& c : out) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = ' ';
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(const ConnectionOptions& options) {
  if (absl::Status s = CheckAddress(options.address); !s.ok()) return s;
  rpc::ChannelOptions channel_options;
  channel_options.target = options.address;
  channel_options.token_file = options.token_file;
  channel_options.tls_ca_file = options.tls_ca_file;
  absl::StatusOr<rpc::ClientChannel> channel = rpc::ClientChannel::Open(channel_options);
  if (!channel.ok()) return channel.status();
  return std::unique_ptr<Connection>(new Connection(options, *std::move(channel)));
}

Connection::Connection(ConnectionOptions options, rpc::ClientChannel channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::JobService::NewStub(channel_.channel())) {}

std::unique_ptr<grpc::ClientContext> Connection::StreamContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  channel_.Authorize(*context);
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
    default:
      return {kExitFailure, absl::StrCat("coordinator at ", address, ": ",
                                         rpc::GrpcCodeName(status.error_code()), ": ", detail)};
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
