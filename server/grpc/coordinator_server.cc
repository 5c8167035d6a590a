#include "server/grpc/coordinator_server.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "proto/contract/limits.h"
#include "server/grpc/request_limits.h"
#include "server/grpc/services.h"
#include "server/grpc/stream_pump.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace loratrf::server {
namespace {

// Threads for checkpoint uploads' and downloads' file work: a commit's fsyncs may take a while,
// and concurrent transfers should not wait for each other's chunks.
constexpr int kFileThreads = 4;

}  // namespace

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const TlsFiles* tls) {
  if (tls == nullptr) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(
      tls->client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                             : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = tls->client_ca;
  options.pem_key_cert_pairs.push_back({tls->key, tls->cert});
  return grpc::SslServerCredentials(options);
}

CoordinatorServer::CoordinatorServer() = default;

CoordinatorServer::~CoordinatorServer() {
  if (!shut_down_) Shutdown(absl::ZeroDuration());
}

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const std::string& listen, std::shared_ptr<grpc::ServerCredentials> credentials,
    JobServiceCore* core, const Authenticator* auth, RpcMetrics* metrics) {
  std::unique_ptr<CoordinatorServer> server(new CoordinatorServer());
  server->pump_ = std::make_unique<StreamPump>();
  server->files_ = std::make_unique<StreamPump>(kFileThreads);
  HandlerDeps deps{core, auth, metrics, server->pump_.get(), server->files_.get()};
  server->job_service_ = std::make_unique<JobServiceHandler>(deps);
  server->worker_service_ = std::make_unique<WorkerServiceHandler>(deps);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, std::move(credentials), &server->port_);
  builder.RegisterService(server->job_service_.get());
  builder.RegisterService(server->worker_service_.get());
  builder.SetMaxReceiveMessageSize(limits::kMaxRequestBytes);
  // Watch and command streams live long: ping idle connections so that a vanished client's
  // stream is cancelled (and its resources freed) within a minute, and let clients ping too.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    server->shut_down_ = true;
    return absl::UnavailableError(absl::StrCat("--listen ", listen, ": cannot listen there"));
  }
  server->SetServing(true);
  return server;
}

void CoordinatorServer::SetServing(bool serving) {
  if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
    health->SetServingStatus(serving);
  }
}

void CoordinatorServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  SetServing(false);
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(grace));
  server_->Wait();
  // Every RPC is done; the pump runs what is still queued (dropping the last references to
  // finished streams) and stops. No file work can be queued any more: an RPC with work queued
  // is not done.
  pump_.reset();
  files_.reset();
}

}  // namespace loratrf::server
