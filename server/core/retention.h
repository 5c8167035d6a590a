// Checkpoint retention as a pure function: which of a job's committed checkpoints may go once a
// newer one commits (docs/operations.md, "Retention and garbage collection").
//
// Threading: a pure function; call it from anywhere.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "proto/loratrf/v1/job.pb.h"

namespace loratrf::server {

// The ids of `checkpoints` (one job's, any order) that retention deletes: every one except
//   - the final ones (Checkpoint.final),
//   - the best one by eval (highest accuracy, ties: lower loss, then the later step; only
//     checkpoints with an eval compete),
//   - the last `keep_last` by step (ties: the later in the list counts as newer),
//   - those in `pinned` (an attempt resumes from it).
// keep_last 0 keeps everything (a spec from before keep_checkpoints was validated).
// The result keeps the order of `checkpoints`.
std::vector<std::string> CheckpointsToDelete(const std::vector<v1::Checkpoint>& checkpoints,
                                             uint32_t keep_last,
                                             const std::set<std::string>& pinned);

}  // namespace loratrf::server
