#include "server/core/core_state.h"

#include "google/protobuf/util/time_util.h"

namespace loratrf::server {
namespace core_internal {
namespace {

// The StoreSync of the core this thread last wrote through, until RunWakeups has waited for
// it. Per thread, because every entry point runs on its caller's thread from the lock to the
// reply; weak, because a write outside any entry point (a failed recovery) may leave it set
// after its core is gone; not a count, because the wait covers everything written so far.
thread_local std::weak_ptr<StoreSync> pending_sync;

}  // namespace

void NoteStoreWrite(CoreState& core) {
  core.sync->Wrote();
  pending_sync = core.sync;
}

void RunWakeups(Wakeups& wakeups) {
  if (std::shared_ptr<StoreSync> sync = pending_sync.lock()) {
    pending_sync.reset();
    sync->WaitFor(sync->written());
  }
  for (auto& wake : wakeups) wake();
  wakeups.clear();
}

void AwaitDurable(CoreState& core) { core.sync->WaitFor(core.sync->written()); }

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
