// From the job spec (proto) to the engine's own types. The engine never sees the proto.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "adapters/adapter_settings.h"
#include "loratrf/v1/job.pb.h"

namespace loratrf::worker {

engine::AdapterSettings ToAdapterSettings(const v1::AdapterSpec& adapter);

// A path from a spec, relative to the spec file's directory unless absolute.
std::string ResolveSpecPath(const std::string& spec_path, const std::string& path);

// The number of classes in a classification JSONL file: max + 1 for integer labels, the number
// of distinct names for string labels. (The trainer's data reader, issue 4, supersedes this.)
absl::StatusOr<int64_t> CountLabels(const std::string& jsonl_path);

}  // namespace loratrf::worker
