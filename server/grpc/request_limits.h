// Request limits the gRPC layer checks before the core sees a request (docs/control-plane.md):
// a cap on every message's size, on string lengths and on list sizes, so that one caller cannot
// make the coordinator hold or persist unbounded data. The spec's own limits (proto/spec/
// limits.h) are the core's business (spec::ValidateJobSpec). Errors are InvalidArgument naming
// the field and the limit.
//
// Threading: pure functions.
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "proto/loratrf/v1/job_service.pb.h"
#include "proto/loratrf/v1/worker_service.pb.h"

namespace loratrf::server {

// The largest message the server accepts: a 1 MiB checkpoint chunk fits with room to spare, as
// does an upload header listing 256 files.
inline constexpr int kMaxRequestBytes = 4 << 20;

inline constexpr size_t kMaxIdBytes = 128;           // job and checkpoint ids
inline constexpr size_t kMaxReasonBytes = 4096;      // a cancel reason, a state change reason
inline constexpr size_t kMaxPageTokenBytes = 256;
inline constexpr size_t kMaxNameBytes = 63;          // owners, name prefixes, worker names
inline constexpr int kMaxStateFilters = 16;
inline constexpr int kMaxWorkerLabels = 32;
inline constexpr size_t kMaxLabelKeyBytes = 63;
inline constexpr size_t kMaxLabelValueBytes = 256;
inline constexpr size_t kMaxAddressBytes = 255;
inline constexpr size_t kMaxVersionBytes = 128;
inline constexpr int kMaxRunningAttempts = 1024;
inline constexpr int kMaxEventsPerReport = 1000;
inline constexpr size_t kMaxLogLineBytes = 16 << 10;
inline constexpr uint32_t kMaxWorkerSlots = 1024;

absl::Status CheckRequest(const v1::SubmitJobRequest& request);
absl::Status CheckRequest(const v1::GetJobRequest& request);
// Also caps page_size at the store's maximum (the proto says the server caps it).
absl::Status CheckRequest(v1::ListJobsRequest& request);
absl::Status CheckRequest(const v1::CancelJobRequest& request);
absl::Status CheckRequest(const v1::WatchJobRequest& request);
absl::Status CheckRequest(const v1::ListCheckpointsRequest& request);
absl::Status CheckRequest(const v1::DownloadCheckpointRequest& request);
absl::Status CheckRequest(const v1::RegisterRequest& request);
absl::Status CheckRequest(const v1::HeartbeatRequest& request);
absl::Status CheckRequest(const v1::StreamCommandsRequest& request);
absl::Status CheckRequest(const v1::ReportEventsRequest& request);
absl::Status CheckRequest(const v1::UploadCheckpointRequest::Header& header);

}  // namespace loratrf::server
