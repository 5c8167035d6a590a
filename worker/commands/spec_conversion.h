// From the job spec (proto) to the engine's own types. The engine never sees the proto.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/adapters/adapter_settings.h"
#include "worker/engine/train/trainer.h"
#include "proto/loratrf/v1/job.pb.h"

namespace loratrf::worker {

engine::AdapterSettings ToAdapterSettings(const v1::AdapterSpec& adapter);

// The engine's view of a job: paths resolved against the spec file's directory, the output
// directory, and for classification with integer labels the number of classes in the data.
absl::StatusOr<engine::TrainJob> ToTrainJob(const v1::JobSpec& spec, const std::string& spec_path,
                                            const std::string& output_dir);

// A path from a spec, relative to the spec file's directory unless absolute.
std::string ResolveSpecPath(const std::string& spec_path, const std::string& path);

}  // namespace loratrf::worker
