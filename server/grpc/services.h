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

class JobServiceHandler final : public v1::JobService::CallbackService {
 public:
  explicit JobServiceHandler(HandlerDeps deps) : deps_(deps) {}

  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* context,
                                      const v1::SubmitJobRequest* request,
                                      v1::SubmitJobResponse* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const v1::GetJobRequest* request, v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerWriteReactor<v1::JobEvent>* WatchJob(grpc::CallbackServerContext* context,
                                                   const v1::WatchJobRequest* request) override;
  grpc::ServerUnaryReactor* ListCheckpoints(grpc::CallbackServerContext* context,
                                            const v1::ListCheckpointsRequest* request,
                                            v1::ListCheckpointsResponse* response) override;
  grpc::ServerWriteReactor<v1::DownloadCheckpointResponse>* DownloadCheckpoint(
      grpc::CallbackServerContext* context,
      const v1::DownloadCheckpointRequest* request) override;
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* context,
                                        const v1::ListWorkersRequest* request,
                                        v1::ListWorkersResponse* response) override;
  grpc::ServerUnaryReactor* DeleteJob(grpc::CallbackServerContext* context,
                                      const v1::DeleteJobRequest* request,
                                      v1::DeleteJobResponse* response) override;
  grpc::ServerUnaryReactor* PauseJob(grpc::CallbackServerContext* context,
                                     const v1::PauseJobRequest* request,
                                     v1::Job* response) override;
  grpc::ServerUnaryReactor* ResumeJob(grpc::CallbackServerContext* context,
                                      const v1::ResumeJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* CordonWorker(grpc::CallbackServerContext* context,
                                         const v1::CordonWorkerRequest* request,
                                         v1::Worker* response) override;

 private:
  const HandlerDeps deps_;
};

class WorkerServiceHandler final : public v1::WorkerService::CallbackService {
 public:
  explicit WorkerServiceHandler(HandlerDeps deps) : deps_(deps) {}

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* context,
                                     const v1::RegisterRequest* request,
                                     v1::RegisterResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;
  grpc::ServerWriteReactor<v1::WorkerCommand>* StreamCommands(
      grpc::CallbackServerContext* context, const v1::StreamCommandsRequest* request) override;
  grpc::ServerUnaryReactor* ReportEvents(grpc::CallbackServerContext* context,
                                         const v1::ReportEventsRequest* request,
                                         v1::ReportEventsResponse* response) override;
  grpc::ServerReadReactor<v1::UploadCheckpointRequest>* UploadCheckpoint(
      grpc::CallbackServerContext* context, v1::UploadCheckpointResponse* response) override;

 private:
  const HandlerDeps deps_;
};

}  // namespace loratrf::server
