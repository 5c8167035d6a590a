// JobSpec parsing (YAML or JSON text → loratrf.v1.JobSpec), printing, and validation.
//
// The YAML/JSON a user writes is the proto JobSpec field by field (proto field names; enums as
// their lower-case suffix, TASK_CAUSAL_LM → `causal_lm`). Fields left out take the defaults of
// DefaultJobSpec(). Every error names the offending field and the rule it broke, e.g.
// `training.learning_rate: must be in (0, 1], got -1`.
//
// Threading: free functions without shared state; safe to call from any thread.
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/loratrf/v1/job.pb.h"

namespace loratrf::spec {

// Spec text and files are at most limits::kMaxSpecBytes (proto/contract/limits.h).

// The values a field takes when the spec leaves it out. The adapter's rank, alpha, dropout and
// filter defaults apply only to the methods that use them.
v1::JobSpec DefaultJobSpec();

// Parses YAML (which includes JSON written as YAML flow) and validates the result.
absl::StatusOr<v1::JobSpec> ParseJobSpecYaml(absl::string_view text);
// Parses strict JSON and validates the result.
absl::StatusOr<v1::JobSpec> ParseJobSpecJson(absl::string_view text);
// Reads a spec file: `.json` as JSON, anything else as YAML. Errors start with the path.
absl::StatusOr<v1::JobSpec> LoadJobSpecFile(const std::string& path);

// Checks every rule on a complete spec (as it arrives over RPC, where nothing is defaulted).
// Returns INVALID_ARGUMENT naming the first offending field.
absl::Status ValidateJobSpec(const v1::JobSpec& spec);

// A spec the coordinator is asked to store (SubmitJob): no fields this build does not know
// (unknown fields would be stored and echoed to every reader unchecked; INVALID_ARGUMENT names
// them by path and number), every rule of ValidateJobSpec, and at most limits::kMaxJobSpecBytes
// serialized.
absl::Status ValidateSubmittedJobSpec(const v1::JobSpec& spec);

// The spec as YAML / JSON in the user-facing form that the parsers read back unchanged.
std::string JobSpecToYaml(const v1::JobSpec& spec);
std::string JobSpecToJson(const v1::JobSpec& spec);

// "classification" for TASK_CLASSIFICATION: the user-facing name of an enum value.
std::string EnumValueName(const google::protobuf::EnumValueDescriptor& value);

// The shortest decimal text that reads back as the same double ("0.0003", "16", "1e-05").
std::string FormatNumber(double value);

}  // namespace loratrf::spec
