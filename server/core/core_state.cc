#include "server/core/core_state.h"

#include "google/protobuf/util/time_util.h"

namespace loratrf::server {
namespace core_internal {

void RunWakeups(Wakeups& wakeups) {
  for (auto& wake : wakeups) wake();
  wakeups.clear();
}

google::protobuf::Timestamp ToProto(absl::Time time) {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(time));
}

absl::Time FromProto(const google::protobuf::Timestamp& timestamp) {
  return absl::FromUnixNanos(google::protobuf::util::TimeUtil::TimestampToNanoseconds(timestamp));
}

bool IsFinal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

bool HoldsSlots(v1::JobState state) {
  return state == v1::JOB_STATE_SCHEDULED || state == v1::JOB_STATE_RUNNING;
}

void CountStoreWrite(CoreState& core, absl::Duration took, const absl::Status& status) {
  if (core.metrics == nullptr) return;
  core.metrics->StoreWriteDuration(took);
  if (status.ok() || absl::IsAlreadyExists(status)) return;
  core.metrics->StoreWriteFailed();
}

}  // namespace core_internal

absl::Status CoreState::CheckServing() const {
  if (draining) return absl::UnavailableError("the coordinator is draining");
  return absl::OkStatus();
}

void CoreState::MarkScheduleDirty(core_internal::Wakeups& wakeups) {
  if (!schedule_dirty && schedule_hook) wakeups.push_back(schedule_hook);
  schedule_dirty = true;
}

}  // namespace loratrf::server
