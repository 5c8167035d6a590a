#include "server/core/job_access.h"

#include "absl/strings/str_cat.h"

namespace loratrf::server {

absl::Status CheckJobAccess(const Caller& caller, const v1::Job& job, JobAccess access) {
  if (caller.admin || job.owner() == caller.principal) return absl::OkStatus();
  if (access == JobAccess::kResume && caller.may_work) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("job ", job.id(), " belongs to ", job.owner(), ", not to ", caller.principal));
}

absl::StatusOr<std::string> ListingOwner(const Caller& caller, const std::string& requested) {
  if (caller.admin) return requested;
  if (requested.empty() || requested == caller.principal) return caller.principal;
  return absl::PermissionDeniedError(absl::StrCat(
      "owner: ", caller.principal, " may list only their own jobs, not ", requested,
      "'s (listing another owner's jobs needs the admin role)"));
}

}  // namespace loratrf::server
