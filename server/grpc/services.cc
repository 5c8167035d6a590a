#include "server/grpc/services.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "common/status_macros.h"
#include "server/grpc/pull_write_reactor.h"
#include "server/grpc/request_limits.h"
#include "proto/rpc/status.h"

namespace loratrf::server {
namespace {

std::optional<absl::string_view> AuthorizationOf(const grpc::CallbackServerContext* context) {
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return std::nullopt;
  return absl::string_view(it->second.data(), it->second.size());
}

// Authenticates, parses the request (request_parse.h), runs `body(caller, request)`, finishes
// the call with the mapped status.
template <typename Request, typename Body>
grpc::ServerUnaryReactor* Unary(const HandlerDeps& deps, grpc::CallbackServerContext* context,
                                const char* method, Roles roles, const grpc::ByteBuffer* bytes,
                                Body body) {
  RpcTimer timer(deps.metrics, method);
  absl::Status result = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Caller caller, deps.auth->Authenticate(AuthorizationOf(context), roles));
    Request request;
    RETURN_IF_ERROR(ParseRequest(*bytes, method, &request));
    return body(caller, request);
  }();
  grpc::Status status = rpc::ToGrpcStatus(result);
  timer.Done(status.error_code());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(std::move(status));
  return reactor;
}

// How a pull stream ends: OK when its source is done; UNAVAILABLE while draining, so that a
// client reconnects (to the restarted coordinator) instead of taking the end as complete.
std::function<grpc::Status()> EndStatus(JobServiceCore* core, const char* reconnect_hint) {
  return [core, reconnect_hint] {
    if (core->draining()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          std::string("the coordinator is draining; ") + reconnect_hint);
    }
    return grpc::Status::OK;
  };
}

// Runs `task` on `files` (HandlerDeps::files), or inline when there is none.
//
// The checkpoint reactors below hand their blocking work here from OnReadDone/OnWriteDone and
// start their next read or write (or Finish) from the task. That keeps `this` alive: gRPC calls
// OnDone only after Finish, and only the task calls Finish (or starts the operation whose
// reaction posts the next task), so one task per reactor is queued or running at a time, and a
// task touches nothing after its Finish. CoordinatorServer destroys `files` only after every
// RPC is done.
void RunFileWork(StreamPump* files, std::function<void()> task) {
  if (files == nullptr) return task();
  files->Post(std::move(task));
}

// DownloadCheckpoint: the checkpoint first, then its files as chunks read on demand (on
// `files`, see RunFileWork).
class DownloadReactor final : public grpc::ServerWriteReactor<v1::DownloadCheckpointResponse> {
 public:
  DownloadReactor(RpcTimer timer, StreamPump* files, v1::Checkpoint checkpoint,
                  std::unique_ptr<ArtifactStore::Reader> reader)
      : timer_(timer), files_(files), reader_(std::move(reader)) {
    *message_.mutable_checkpoint() = std::move(checkpoint);
    StartWrite(&message_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Done(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
    RunFileWork(files_, [this] { WriteNext(); });
  }

  void OnDone() override {
    timer_.Done(code_);
    delete this;
  }

 private:
  // Reads the next chunk (file I/O and sha256) and writes it, or finishes.
  void WriteNext() {
    message_.Clear();
    absl::StatusOr<bool> more = reader_->Next(*message_.mutable_chunk());
    if (!more.ok()) return Done(rpc::ToGrpcStatus(more.status()));
    if (!*more) return Done(grpc::Status::OK);
    StartWrite(&message_);
  }

  void Done(grpc::Status status) {
    code_ = status.error_code();
    Finish(std::move(status));
  }

  const RpcTimer timer_;
  StreamPump* const files_;
  std::unique_ptr<ArtifactStore::Reader> reader_;
  v1::DownloadCheckpointResponse message_;  // in flight between StartWrite and OnWriteDone
  grpc::StatusCode code_ = grpc::StatusCode::OK;
};

// UploadCheckpoint: a header (checked, then BeginUpload), chunks (Write), the client's
// half-close (Finish: verify and commit). Any error ends the call at once; dropping the core's
// upload discards what was written. Each message is handled on `files` (see RunFileWork).
class UploadReactor final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  UploadReactor(const HandlerDeps& deps, RpcTimer timer, Caller caller,
                grpc::CallbackServerContext* context, v1::UploadCheckpointResponse* response)
      : deps_(deps),
        timer_(timer),
        caller_(std::move(caller)),
        context_(context),
        response_(response) {
    StartRead(&bytes_);
  }

  void OnReadDone(bool ok) override {
    RunFileWork(deps_.files, [this, ok] { Process(ok); });
  }

  void OnDone() override {
    timer_.Done(code_);
    delete this;
  }

 private:
  // The message StartRead got (or, with !ok, the end of the stream): handles it, then reads
  // the next one or finishes.
  void Process(bool ok) {
    if (!ok) return Done(rpc::ToGrpcStatus(Complete()));  // the client half-closed (or went away)
    absl::Status status = ParseRequest(bytes_, "WorkerService/UploadCheckpoint", &request_);
    if (status.ok()) status = Handle();
    if (!status.ok()) return Done(rpc::ToGrpcStatus(status));
    StartRead(&bytes_);
  }

  absl::Status Handle() {
    if (upload_ == nullptr) {
      if (!request_.has_header()) {
        return absl::InvalidArgumentError("header: the first message must be the header");
      }
      const v1::UploadCheckpointRequest::Header& header = request_.header();
      RETURN_IF_ERROR(CheckRequest(header));
      RETURN_IF_ERROR(deps_.auth->CheckWorkerName(caller_, header.worker()));
      ASSIGN_OR_RETURN(upload_, deps_.core->BeginUpload(header));
      return absl::OkStatus();
    }
    if (!request_.has_chunk()) {
      return absl::InvalidArgumentError("chunk: every message after the header must be a chunk");
    }
    return upload_->Write(request_.chunk());
  }

  absl::Status Complete() {
    if (context_->IsCancelled()) return absl::CancelledError("upload cancelled by the client");
    if (upload_ == nullptr) return absl::InvalidArgumentError("header: no header was sent");
    ASSIGN_OR_RETURN(*response_->mutable_checkpoint(), upload_->Finish());
    return absl::OkStatus();
  }

  // Called only from Process (on `files`): dropping an unfinished upload deletes its files
  // there too, not in OnDone on a gRPC thread.
  void Done(grpc::Status status) {
    upload_.reset();
    code_ = status.error_code();
    Finish(std::move(status));
  }

  const HandlerDeps deps_;
  const RpcTimer timer_;
  const Caller caller_;
  grpc::CallbackServerContext* const context_;
  v1::UploadCheckpointResponse* const response_;
  grpc::ByteBuffer bytes_;  // filled by StartRead until OnReadDone
  v1::UploadCheckpointRequest request_;  // parsed from bytes_
  std::unique_ptr<JobServiceCore::CheckpointUpload> upload_;
  grpc::StatusCode code_ = grpc::StatusCode::OK;
};

class FailedReadReactor final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  FailedReadReactor(RpcTimer timer, grpc::Status status)
      : timer_(timer), code_(status.error_code()) {
    Finish(std::move(status));
  }
  void OnDone() override {
    timer_.Done(code_);
    delete this;
  }

 private:
  const RpcTimer timer_;
  const grpc::StatusCode code_;
};

}  // namespace

// ---- JobService -------------------------------------------------------------------------------

JobServiceHandler::JobServiceHandler(HandlerDeps deps) : deps_(deps) {
  using Self = JobServiceHandler;
  auto unary = [this](auto method) {
    return [this, method](grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
                          auto* response) { return (this->*method)(context, bytes, response); };
  };
  auto stream = [this](auto method) {
    return [this, method](grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes) {
      return (this->*method)(context, bytes);
    };
  };
  ServeUnary<v1::SubmitJobResponse>("SubmitJob", unary(&Self::SubmitJob));
  ServeUnary<v1::Job>("GetJob", unary(&Self::GetJob));
  ServeUnary<v1::ListJobsResponse>("ListJobs", unary(&Self::ListJobs));
  ServeUnary<v1::Job>("CancelJob", unary(&Self::CancelJob));
  ServeServerStream<v1::JobEvent>("WatchJob", stream(&Self::WatchJob));
  ServeUnary<v1::ListCheckpointsResponse>("ListCheckpoints", unary(&Self::ListCheckpoints));
  ServeServerStream<v1::DownloadCheckpointResponse>("DownloadCheckpoint",
                                                    stream(&Self::DownloadCheckpoint));
  ServeUnary<v1::ListWorkersResponse>("ListWorkers", unary(&Self::ListWorkers));
  ServeUnary<v1::Job>("PauseJob", unary(&Self::PauseJob));
  ServeUnary<v1::Job>("ResumeJob", unary(&Self::ResumeJob));
  ServeUnary<v1::DeleteJobResponse>("DeleteJob", unary(&Self::DeleteJob));
  ServeUnary<v1::Worker>("CordonWorker", unary(&Self::CordonWorker));
  CheckAllServed();
}

grpc::ServerUnaryReactor* JobServiceHandler::SubmitJob(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* bytes,
                                                       v1::SubmitJobResponse* response) {
  return Unary<v1::SubmitJobRequest>(
      deps_, context, "JobService/SubmitJob", kUserOnly, bytes,
      [&](const Caller& caller, const v1::SubmitJobRequest& request) -> absl::Status {
        RETURN_IF_ERROR(CheckRequest(request));
        ASSIGN_OR_RETURN(*response, deps_.core->SubmitJob(caller, request));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* JobServiceHandler::GetJob(grpc::CallbackServerContext* context,
                                                    const grpc::ByteBuffer* bytes,
                                                    v1::Job* response) {
  return Unary<v1::GetJobRequest>(
      deps_, context, "JobService/GetJob", kUserOnly, bytes,
      [&](const Caller& caller, const v1::GetJobRequest& request) -> absl::Status {
        RETURN_IF_ERROR(CheckRequest(request));
        ASSIGN_OR_RETURN(*response, deps_.core->GetJob(caller, request.id()));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* JobServiceHandler::ListJobs(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* bytes,
                                                      v1::ListJobsResponse* response) {
  return Unary<v1::ListJobsRequest>(
      deps_, context, "JobService/ListJobs", kUserOnly, bytes,
      [&](const Caller& caller, const v1::ListJobsRequest& request) -> absl::Status {
        v1::ListJobsRequest capped = request;
        RETURN_IF_ERROR(CheckRequest(capped));
        ASSIGN_OR_RETURN(*response, deps_.core->ListJobs(caller, capped));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* JobServiceHandler::CancelJob(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* bytes,
                                                       v1::Job* response) {
  return Unary<v1::CancelJobRequest>(
      deps_, context, "JobService/CancelJob", kUserOnly, bytes,
      [&](const Caller& caller, const v1::CancelJobRequest& request) -> absl::Status {
        RETURN_IF_ERROR(CheckRequest(request));
        ASSIGN_OR_RETURN(*response, deps_.core->CancelJob(caller, request));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* JobServiceHandler::DeleteJob(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* bytes,
                                                       v1::DeleteJobResponse* response) {
  return Unary<v1::DeleteJobRequest>(
      deps_, context, "JobService/DeleteJob", kUserOnly, bytes,
      [&](const Caller& caller, const v1::DeleteJobRequest& request) -> absl::Status {
        RETURN_IF_ERROR(CheckRequest(request));
        ASSIGN_OR_RETURN(*response, deps_.core->DeleteJob(caller, request));
        return absl::OkStatus();
      });
}

grpc::ServerWriteReactor<v1::JobEvent>* JobServiceHandler::WatchJob(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes) {
  RpcTimer timer(deps_.metrics, "JobService/WatchJob");
  absl::StatusOr<std::unique_ptr<EventStream>> stream =
      [&]() -> absl::StatusOr<std::unique_ptr<EventStream>> {
    ASSIGN_OR_RETURN(Caller caller, deps_.auth->Authenticate(AuthorizationOf(context), kUserOnly));
    v1::WatchJobRequest request;
    RETURN_IF_ERROR(ParseRequest(*bytes, "JobService/WatchJob", &request));
    RETURN_IF_ERROR(CheckRequest(request));
    return deps_.core->WatchJob(caller, request);
  }();
  if (!stream.ok()) {
    return new FailedWriteReactor<v1::JobEvent>(timer, rpc::ToGrpcStatus(stream.status()));
  }
  auto* reactor = new PullWriteReactor<v1::JobEvent>(
      std::make_unique<CorePullSource<v1::JobEvent, EventStream>>(std::move(*stream)), deps_.pump,
      EndStatus(deps_.core, "watch again from the last seq + 1"), timer,
      OpenStream(deps_.metrics, RpcMetrics::StreamKind::kWatch));
  reactor->Start();
  return reactor;
}

grpc::ServerUnaryReactor* JobServiceHandler::ListCheckpoints(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    v1::ListCheckpointsResponse* response) {
  return Unary<v1::ListCheckpointsRequest>(
      deps_, context, "JobService/ListCheckpoints", kUserOnly, bytes,
      [&](const Caller& caller, const v1::ListCheckpointsRequest& request) -> absl::Status {
        RETURN_IF_ERROR(CheckRequest(request));
        ASSIGN_OR_RETURN(*response, deps_.core->ListCheckpoints(caller, request.job_id()));
        return absl::OkStatus();
      });
}

grpc::ServerWriteReactor<v1::DownloadCheckpointResponse>* JobServiceHandler::DownloadCheckpoint(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes) {
  RpcTimer timer(deps_.metrics, "JobService/DownloadCheckpoint");
  using Opened = std::pair<v1::Checkpoint, std::unique_ptr<ArtifactStore::Reader>>;
  absl::StatusOr<Opened> opened = [&]() -> absl::StatusOr<Opened> {
    // Workers download too: an attempt resumes from the job's latest checkpoint. The core
    // decides who may read which job's (a user only their own jobs', a worker any).
    ASSIGN_OR_RETURN(Caller caller,
                     deps_.auth->Authenticate(AuthorizationOf(context), kUserOrWorker));
    v1::DownloadCheckpointRequest request;
    RETURN_IF_ERROR(ParseRequest(*bytes, "JobService/DownloadCheckpoint", &request));
    RETURN_IF_ERROR(CheckRequest(request));
    return deps_.core->OpenCheckpoint(caller, request);
  }();
  if (!opened.ok()) {
    return new FailedWriteReactor<v1::DownloadCheckpointResponse>(
        timer, rpc::ToGrpcStatus(opened.status()));
  }
  return new DownloadReactor(timer, deps_.files, std::move(opened->first),
                             std::move(opened->second));
}

grpc::ServerUnaryReactor* JobServiceHandler::ListWorkers(grpc::CallbackServerContext* context,
                                                         const grpc::ByteBuffer* bytes,
                                                         v1::ListWorkersResponse* response) {
  return Unary<v1::ListWorkersRequest>(
      deps_, context, "JobService/ListWorkers", kUserOnly, bytes,
      [&](const Caller&, const v1::ListWorkersRequest&) -> absl::Status {
        *response = deps_.core->ListWorkers();
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* JobServiceHandler::PauseJob(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* bytes,
                                                      v1::Job* response) {
  return Unary<v1::PauseJobRequest>(
      deps_, context, "JobService/PauseJob", kUserOnly, bytes,
      [&](const Caller& caller, const v1::PauseJobRequest& request) -> absl::Status {
        RETURN_IF_ERROR(CheckRequest(request));
        ASSIGN_OR_RETURN(*response, deps_.core->PauseJob(caller, request));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* JobServiceHandler::ResumeJob(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* bytes,
                                                       v1::Job* response) {
  return Unary<v1::ResumeJobRequest>(
      deps_, context, "JobService/ResumeJob", kUserOnly, bytes,
      [&](const Caller& caller, const v1::ResumeJobRequest& request) -> absl::Status {
        RETURN_IF_ERROR(CheckRequest(request));
        ASSIGN_OR_RETURN(*response, deps_.core->ResumeJob(caller, request));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* JobServiceHandler::CordonWorker(grpc::CallbackServerContext* context,
                                                          const grpc::ByteBuffer* bytes,
                                                          v1::Worker* response) {
  return Unary<v1::CordonWorkerRequest>(
      deps_, context, "JobService/CordonWorker", kAdminOnly, bytes,
      [&](const Caller& caller, const v1::CordonWorkerRequest& request) -> absl::Status {
        RETURN_IF_ERROR(CheckRequest(request));
        ASSIGN_OR_RETURN(*response, deps_.core->CordonWorker(caller, request));
        return absl::OkStatus();
      });
}

// ---- WorkerService ----------------------------------------------------------------------------

WorkerServiceHandler::WorkerServiceHandler(HandlerDeps deps) : deps_(deps) {
  using Self = WorkerServiceHandler;
  auto unary = [this](auto method) {
    return [this, method](grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
                          auto* response) { return (this->*method)(context, bytes, response); };
  };
  ServeUnary<v1::RegisterResponse>("Register", unary(&Self::Register));
  ServeUnary<v1::HeartbeatResponse>("Heartbeat", unary(&Self::Heartbeat));
  ServeServerStream<v1::WorkerCommand>(
      "StreamCommands",
      [this](grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes) {
        return StreamCommands(context, bytes);
      });
  ServeUnary<v1::ReportEventsResponse>("ReportEvents", unary(&Self::ReportEvents));
  ServeClientStream<v1::UploadCheckpointResponse>(
      "UploadCheckpoint",
      [this](grpc::CallbackServerContext* context, v1::UploadCheckpointResponse* response) {
        return UploadCheckpoint(context, response);
      });
  CheckAllServed();
}

grpc::ServerUnaryReactor* WorkerServiceHandler::Register(grpc::CallbackServerContext* context,
                                                         const grpc::ByteBuffer* bytes,
                                                         v1::RegisterResponse* response) {
  return Unary<v1::RegisterRequest>(
      deps_, context, "WorkerService/Register", kWorkerOnly, bytes,
      [&](const Caller& caller, const v1::RegisterRequest& request) -> absl::Status {
        RETURN_IF_ERROR(CheckRequest(request));
        RETURN_IF_ERROR(deps_.auth->CheckWorkerName(caller, request.name()));
        ASSIGN_OR_RETURN(*response, deps_.core->Register(request));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* WorkerServiceHandler::Heartbeat(grpc::CallbackServerContext* context,
                                                          const grpc::ByteBuffer* bytes,
                                                          v1::HeartbeatResponse* response) {
  return Unary<v1::HeartbeatRequest>(
      deps_, context, "WorkerService/Heartbeat", kWorkerOnly, bytes,
      [&](const Caller& caller, const v1::HeartbeatRequest& request) -> absl::Status {
        RETURN_IF_ERROR(CheckRequest(request));
        RETURN_IF_ERROR(deps_.auth->CheckWorkerName(caller, request.name()));
        ASSIGN_OR_RETURN(*response, deps_.core->Heartbeat(request));
        return absl::OkStatus();
      });
}

grpc::ServerWriteReactor<v1::WorkerCommand>* WorkerServiceHandler::StreamCommands(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes) {
  RpcTimer timer(deps_.metrics, "WorkerService/StreamCommands");
  absl::StatusOr<std::unique_ptr<CommandStream>> stream =
      [&]() -> absl::StatusOr<std::unique_ptr<CommandStream>> {
    ASSIGN_OR_RETURN(Caller caller,
                     deps_.auth->Authenticate(AuthorizationOf(context), kWorkerOnly));
    v1::StreamCommandsRequest request;
    RETURN_IF_ERROR(ParseRequest(*bytes, "WorkerService/StreamCommands", &request));
    RETURN_IF_ERROR(CheckRequest(request));
    RETURN_IF_ERROR(deps_.auth->CheckWorkerName(caller, request.name()));
    return deps_.core->StreamCommands(request);
  }();
  if (!stream.ok()) {
    return new FailedWriteReactor<v1::WorkerCommand>(timer, rpc::ToGrpcStatus(stream.status()));
  }
  auto* reactor = new PullWriteReactor<v1::WorkerCommand>(
      std::make_unique<CorePullSource<v1::WorkerCommand, CommandStream>>(std::move(*stream)),
      deps_.pump, EndStatus(deps_.core, "register again when it is back"), timer,
      OpenStream(deps_.metrics, RpcMetrics::StreamKind::kCommands));
  reactor->Start();
  return reactor;
}

grpc::ServerUnaryReactor* WorkerServiceHandler::ReportEvents(grpc::CallbackServerContext* context,
                                                             const grpc::ByteBuffer* bytes,
                                                             v1::ReportEventsResponse* response) {
  return Unary<v1::ReportEventsRequest>(
      deps_, context, "WorkerService/ReportEvents", kWorkerOnly, bytes,
      [&](const Caller& caller, const v1::ReportEventsRequest& request) -> absl::Status {
        RETURN_IF_ERROR(CheckRequest(request));
        RETURN_IF_ERROR(deps_.auth->CheckWorkerName(caller, request.worker()));
        ASSIGN_OR_RETURN(*response, deps_.core->ReportEvents(request));
        return absl::OkStatus();
      });
}

grpc::ServerReadReactor<grpc::ByteBuffer>* WorkerServiceHandler::UploadCheckpoint(
    grpc::CallbackServerContext* context, v1::UploadCheckpointResponse* response) {
  RpcTimer timer(deps_.metrics, "WorkerService/UploadCheckpoint");
  absl::StatusOr<Caller> caller = deps_.auth->Authenticate(AuthorizationOf(context), kWorkerOnly);
  if (!caller.ok()) return new FailedReadReactor(timer, rpc::ToGrpcStatus(caller.status()));
  return new UploadReactor(deps_, timer, std::move(*caller), context, response);
}

}  // namespace loratrf::server
