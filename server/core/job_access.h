// Who may see and act on which job (docs/control-plane.md, "Identity and auth"). The one place
// the rule lives: every job RPC of the core (get, list, watch, cancel, checkpoints, and the
// operator actions on a job) asks it before it shows or changes anything.
//
//   admin          every job, every action
//   user           their own jobs only (job.owner == caller.principal)
//   worker         checkpoints of any job (JobAccess::kResume: an attempt resumes from them)
//
// Threading: pure functions of their arguments; any thread, no lock.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/loratrf/v1/job.pb.h"
#include "server/core/job_service.h"

namespace loratrf::server {

enum class JobAccess {
  kOwner,   // see, watch, list checkpoints, cancel, pause, resume, delete: owner or admin
  kResume,  // read its checkpoints: owner, admin, or a worker (to resume an attempt)
};

// OK when `caller` may do `access` on `job`, else PermissionDenied naming the job's owner.
absl::Status CheckJobAccess(const Caller& caller, const v1::Job& job,
                            JobAccess access = JobAccess::kOwner);

// The owner a ListJobs may list for `caller`: an admin lists `requested` (empty: everyone's);
// a user lists their own jobs (empty or their own name), and PermissionDenied for another's.
absl::StatusOr<std::string> ListingOwner(const Caller& caller, const std::string& requested);

}  // namespace loratrf::server
