// Request limits the gRPC layer checks before the core sees a request (docs/control-plane.md):
// a cap on every message's size, on string lengths and on list sizes, so that one caller cannot
// make the coordinator hold or persist unbounded data. Every limit and name rule comes from the
// contract (proto/contract/limits.h, names.h); the spec's own rules are the core's business
// (spec::ValidateJobSpec). Errors are InvalidArgument naming the field and the limit.
//
// Threading: pure functions.
#pragma once

#include "absl/status/status.h"
#include "proto/loratrf/v1/job_service.pb.h"
#include "proto/loratrf/v1/worker_service.pb.h"

namespace loratrf::server {

absl::Status CheckRequest(const v1::SubmitJobRequest& request);
absl::Status CheckRequest(const v1::GetJobRequest& request);
// Also caps page_size at the store's maximum (the proto says the server caps it).
absl::Status CheckRequest(v1::ListJobsRequest& request);
absl::Status CheckRequest(const v1::CancelJobRequest& request);
absl::Status CheckRequest(const v1::DeleteJobRequest& request);
absl::Status CheckRequest(const v1::WatchJobRequest& request);
absl::Status CheckRequest(const v1::PauseJobRequest& request);
absl::Status CheckRequest(const v1::ResumeJobRequest& request);
absl::Status CheckRequest(const v1::CordonWorkerRequest& request);
absl::Status CheckRequest(const v1::ListCheckpointsRequest& request);
absl::Status CheckRequest(const v1::DownloadCheckpointRequest& request);
absl::Status CheckRequest(const v1::RegisterRequest& request);
absl::Status CheckRequest(const v1::HeartbeatRequest& request);
absl::Status CheckRequest(const v1::StreamCommandsRequest& request);
absl::Status CheckRequest(const v1::ReportEventsRequest& request);
absl::Status CheckRequest(const v1::UploadCheckpointRequest::Header& header);

}  // namespace loratrf::server
