// CoordinatorServer: the gRPC server of loratrf-coordinator — JobService, WorkerService and
// grpc.health.v1 on one port, with the request size limit, keepalive settings that notice
// vanished stream clients, and TLS when configured.
//
// Lifecycle: Start → serving (health SERVING) → SetServing(false) while the core drains →
// Shutdown(grace): no new calls, calls in flight get `grace` to finish, then are cancelled.
//
// Threading: Start, SetServing and Shutdown are called by one thread (main). The core, the
// authenticator and the metrics must outlive the server object.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/core/job_service.h"
#include "server/grpc/auth.h"
#include "server/grpc/rpc_metrics.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"

namespace loratrf::server {

class JobServiceHandler;
class WorkerServiceHandler;
class StreamPump;

// PEM contents. An empty `client_ca` accepts clients without certificates; otherwise every
// client must present one signed by it.
struct TlsFiles {
  std::string cert;
  std::string key;
  std::string client_ca;
};

// TLS server credentials from `tls`, or insecure ones when `tls` is null.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const TlsFiles* tls);

class CoordinatorServer {
 public:
  // Binds `listen` (HOST:PORT; port 0 picks a free one) and starts serving. Unavailable when
  // the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(
      const std::string& listen, std::shared_ptr<grpc::ServerCredentials> credentials,
      JobServiceCore* core, const Authenticator* auth, RpcMetrics* metrics);
  ~CoordinatorServer();  // Shutdown(zero grace) unless already shut down

  int port() const { return port_; }
  // grpc.health.v1 for every service: SERVING or NOT_SERVING.
  void SetServing(bool serving);
  // Stops accepting calls, gives calls in flight `grace`, cancels the rest, waits for them.
  // gRPC also waits for client connections to close on its GOAWAY, and a synchronous client
  // idle between calls does not read it, so Shutdown may take the whole grace period even
  // when no call is in flight.
  void Shutdown(absl::Duration grace);

 private:
  CoordinatorServer();

  // Destroyed in reverse: the server first, then the services it calls, then the pumps (whose
  // last queued pulls release their streams; file work queued for an RPC is what finishes it).
  std::unique_ptr<StreamPump> pump_;
  std::unique_ptr<StreamPump> files_;  // the checkpoint reactors' file I/O (HandlerDeps::files)
  std::unique_ptr<JobServiceHandler> job_service_;
  std::unique_ptr<WorkerServiceHandler> worker_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace loratrf::server
