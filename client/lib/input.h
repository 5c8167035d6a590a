// What the CLI checks and rewrites in the user's input before anything is sent.
//
// Threading: free functions without shared state; safe to call from any thread.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/loratrf/v1/job.pb.h"

namespace loratrf::client {

// Makes model.path, data.train and data.eval absolute: a relative one is taken relative to
// `spec_dir` (the spec file's directory, itself made absolute against the working directory)
// and normalized lexically ("a/../b" → "b"; symlinks are not resolved). Absolute paths and
// empty ones are left as they are.
void ResolveSpecPaths(const std::string& spec_dir, v1::JobSpec& spec);

// A job id as a positional argument: an id by the contract (proto/contract/names.h) that does
// not start with '-' (which is a mistyped flag, not an id).
absl::Status CheckJobId(absl::string_view id);

// Pulls every `FLAG V` / `FLAG=V` out of `args` (before a "--"), splitting V at commas, so that
// a repeatable flag can coexist with CommandLine (which takes each flag once). An empty value or
// a missing one is an error naming the flag.
absl::StatusOr<std::vector<std::string>> ExtractRepeatedFlag(std::vector<std::string>& args,
                                                             absl::string_view flag);

}  // namespace loratrf::client
