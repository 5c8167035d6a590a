// The coordinator's gRPC services on the callback API (docs/architecture.md, convention 1): each
// handler authenticates the caller (auth.h), checks request limits (request_limits.h), calls one
// JobServiceCore method and maps its absl::Status with rpc::ToGrpcStatus (proto/rpc/status.h).
// Unary methods finish on the context's DefaultReactor; WatchJob and StreamCommands are
// PullWriteReactors over the core's pull streams; DownloadCheckpoint and UploadCheckpoint stream
// checkpoint chunks.
//
// Threading: the services hold only pointers to thread-safe objects; gRPC calls the handlers
// and reactions on its own threads. The checkpoint reactors do their blocking file work (and the
// core calls around it) on `files`, never on those threads. `core`, `auth`, `metrics`, `pump`
// and `files` must outlive every RPC (CoordinatorServer orders that).
#pragma once

#include "server/core/job_service.h"
#include "server/grpc/auth.h"
#include "server/grpc/request_parse.h"
#include "server/grpc/rpc_metrics.h"
#include "server/grpc/stream_pump.h"
#include "proto/loratrf/v1/job_service.grpc.pb.h"
#include "proto/loratrf/v1/worker_service.grpc.pb.h"

namespace loratrf::server {

struct HandlerDeps {
  JobServiceCore* core = nullptr;
  const Authenticator* auth = nullptr;
  RpcMetrics* metrics = nullptr;  // may be null
  StreamPump* pump = nullptr;
  // Runs UploadCheckpoint's and DownloadCheckpoint's file work (each chunk read or written and
  // hashed, the commit's fsyncs and rename). Null: inline on gRPC's callback threads.
  StreamPump* files = nullptr;
};

// Every method takes its request as bytes and parses it itself (request_parse.h), so that a
// request that does not parse is answered INVALID_ARGUMENT, not gRPC's bare UNIMPLEMENTED.
class JobServiceHandler final : public RequestBytesService<v1::JobService> {
 public:
  explicit JobServiceHandler(HandlerDeps deps);

 private:
  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request,
                                      v1::SubmitJobResponse* response);
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const grpc::ByteBuffer* request, v1::Job* response);
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     v1::ListJobsResponse* response);
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request, v1::Job* response);
  grpc::ServerWriteReactor<v1::JobEvent>* WatchJob(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* request);
  grpc::ServerUnaryReactor* ListCheckpoints(grpc::CallbackServerContext* context,
                                            const grpc::ByteBuffer* request,
                                            v1::ListCheckpointsResponse* response);
  grpc::ServerWriteReactor<v1::DownloadCheckpointResponse>* DownloadCheckpoint(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request);
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* context,
                                        const grpc::ByteBuffer* request,
                                        v1::ListWorkersResponse* response);
  grpc::ServerUnaryReactor* DeleteJob(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request,
                                      v1::DeleteJobResponse* response);
  grpc::ServerUnaryReactor* PauseJob(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request, v1::Job* response);
  grpc::ServerUnaryReactor* ResumeJob(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request, v1::Job* response);
  grpc::ServerUnaryReactor* CordonWorker(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request, v1::Worker* response);

  const HandlerDeps deps_;
};

class WorkerServiceHandler final : public RequestBytesService<v1::WorkerService> {
 public:
  explicit WorkerServiceHandler(HandlerDeps deps);

 private:
  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     v1::RegisterResponse* response);
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request,
                                      v1::HeartbeatResponse* response);
  grpc::ServerWriteReactor<v1::WorkerCommand>* StreamCommands(grpc::CallbackServerContext* context,
                                                              const grpc::ByteBuffer* request);
  grpc::ServerUnaryReactor* ReportEvents(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         v1::ReportEventsResponse* response);
  // Each streamed message is parsed as it arrives.
  grpc::ServerReadReactor<grpc::ByteBuffer>* UploadCheckpoint(
      grpc::CallbackServerContext* context, v1::UploadCheckpointResponse* response);

  const HandlerDeps deps_;
};

}  // namespace loratrf::server
