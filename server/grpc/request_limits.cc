#include "server/grpc/request_limits.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "proto/contract/limits.h"
#include "proto/contract/names.h"
#include "server/store/job_store.h"

namespace loratrf::server {
namespace {

absl::Status MaxBytes(absl::string_view field, const std::string& value, size_t limit) {
  if (value.size() <= limit) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", value.size(), " bytes, at most ", limit, " allowed"));
}

absl::Status MaxItems(absl::string_view field, int count, int limit) {
  if (count <= limit) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", count, " entries, at most ", limit, " allowed"));
}

using contract::CheckId;
using contract::CheckWorkerName;

template <typename Running>
absl::Status CheckRunning(const Running& running) {
  RETURN_IF_ERROR(MaxItems("running", running.size(), limits::kMaxRunningAttempts));
  for (int i = 0; i < running.size(); ++i) {
    RETURN_IF_ERROR(CheckId(absl::StrCat("running[", i, "].job_id"), running[i].job_id()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRequest(const v1::SubmitJobRequest& request) {
  if (!request.has_spec()) return absl::InvalidArgumentError("spec: required");
  if (request.idempotency_key().empty()) return absl::OkStatus();
  return contract::CheckIdempotencyKey("idempotency_key", request.idempotency_key());
}

absl::Status CheckRequest(const v1::GetJobRequest& request) { return CheckId("id", request.id()); }

absl::Status CheckRequest(v1::ListJobsRequest& request) {
  RETURN_IF_ERROR(MaxItems("states", request.states_size(), limits::kMaxStateFilters));
  RETURN_IF_ERROR(MaxBytes("owner", request.owner(), limits::kMaxOwnerBytes));
  RETURN_IF_ERROR(MaxBytes("name_prefix", request.name_prefix(), limits::kMaxOwnerBytes));
  RETURN_IF_ERROR(MaxBytes("page_token", request.page_token(), limits::kMaxPageTokenBytes));
  if (!request.sweep_id().empty()) RETURN_IF_ERROR(CheckId("sweep_id", request.sweep_id()));
  RETURN_IF_ERROR(MaxItems("labels", request.labels_size(), limits::kMaxJobLabels));
  for (const auto& [key, value] : request.labels()) {
    RETURN_IF_ERROR(contract::CheckJobLabel("labels", key, value));
  }
  if (request.page_size() > static_cast<uint32_t>(limits::kMaxJobPageSize)) {
    request.set_page_size(limits::kMaxJobPageSize);
  }
  return absl::OkStatus();
}

absl::Status CheckRequest(const v1::CancelJobRequest& request) {
  RETURN_IF_ERROR(CheckId("id", request.id()));
  return MaxBytes("reason", request.reason(), limits::kMaxReasonBytes);
}

absl::Status CheckRequest(const v1::DeleteJobRequest& request) {
  return CheckId("id", request.id());
}

absl::Status CheckRequest(const v1::WatchJobRequest& request) {
  return CheckId("id", request.id());
}

absl::Status CheckRequest(const v1::PauseJobRequest& request) {
  RETURN_IF_ERROR(CheckId("id", request.id()));
  return MaxBytes("reason", request.reason(), limits::kMaxReasonBytes);
}

absl::Status CheckRequest(const v1::ResumeJobRequest& request) {
  return CheckId("id", request.id());
}

absl::Status CheckRequest(const v1::CordonWorkerRequest& request) {
  // The name rule and the action are the core's (ValidateCordon); this caps what it reads.
  return MaxBytes("reason", request.reason(), limits::kMaxReasonBytes);
}

absl::Status CheckRequest(const v1::ListCheckpointsRequest& request) {
  return CheckId("job_id", request.job_id());
}

absl::Status CheckRequest(const v1::DownloadCheckpointRequest& request) {
  RETURN_IF_ERROR(CheckId("job_id", request.job_id()));
  return MaxBytes("checkpoint_id", request.checkpoint_id(), limits::kMaxIdBytes);
}

absl::Status CheckRequest(const v1::RegisterRequest& request) {
  RETURN_IF_ERROR(CheckWorkerName("name", request.name()));
  if (request.slots() > limits::kMaxWorkerSlots) {
    return absl::InvalidArgumentError(
        absl::StrCat("slots: ", request.slots(), ", at most ", limits::kMaxWorkerSlots, " allowed"));
  }
  RETURN_IF_ERROR(MaxItems("labels", request.labels_size(), limits::kMaxWorkerLabels));
  for (const auto& [key, value] : request.labels()) {
    RETURN_IF_ERROR(MaxBytes("labels (a key)", key, limits::kMaxLabelKeyBytes));
    RETURN_IF_ERROR(MaxBytes(absl::StrCat("labels[", key, "]"), value, limits::kMaxLabelValueBytes));
  }
  RETURN_IF_ERROR(MaxBytes("address", request.address(), limits::kMaxAddressBytes));
  RETURN_IF_ERROR(MaxBytes("version", request.version(), limits::kMaxVersionBytes));
  return CheckRunning(request.running());
}

absl::Status CheckRequest(const v1::HeartbeatRequest& request) {
  RETURN_IF_ERROR(CheckWorkerName("name", request.name()));
  return CheckRunning(request.running());
}

absl::Status CheckRequest(const v1::StreamCommandsRequest& request) {
  return CheckWorkerName("name", request.name());
}

absl::Status CheckRequest(const v1::ReportEventsRequest& request) {
  RETURN_IF_ERROR(CheckWorkerName("worker", request.worker()));
  RETURN_IF_ERROR(CheckId("job_id", request.job_id()));
  RETURN_IF_ERROR(MaxItems("events", request.events_size(), limits::kMaxEventsPerReport));
  for (int i = 0; i < request.events_size(); ++i) {
    const v1::JobEvent& event = request.events(i);
    if (event.has_log()) {
      RETURN_IF_ERROR(
          MaxBytes(absl::StrCat("events[", i, "].log.text"), event.log().text(), limits::kMaxLogLineBytes));
    }
    if (event.has_state_change()) {
      RETURN_IF_ERROR(MaxBytes(absl::StrCat("events[", i, "].state_change.reason"),
                               event.state_change().reason(), limits::kMaxReasonBytes));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckRequest(const v1::UploadCheckpointRequest::Header& header) {
  RETURN_IF_ERROR(CheckWorkerName("header.worker", header.worker()));
  RETURN_IF_ERROR(CheckId("header.job_id", header.job_id()));
  // Paths and sizes are checked by the artifact store; the count bounds the header here.
  return MaxItems("header.files", header.files_size(), limits::kMaxCheckpointFiles);
}

}  // namespace loratrf::server
