// The schema of a checkpoint's MANIFEST.json (run_output.h says where it lives). The engine
// writes it last, when it commits a checkpoint; the engine (on resume) and the agent (before an
// upload) read it back:
//
//   {"format": "loratrf-checkpoint-v1", "step": N, "final": false,
//    "files": [{"path": "adapter_model.safetensors", "size_bytes": 123, "sha256": "..."}, ...],
//    "metrics": {"eval_loss": 0.41, "eval_accuracy": 0.9, "eval_examples": 872}}
//
// Checkpoint directories are flat: every listed path is one plain file name that passes the
// checkpoint file-path rule (checkpoint_files.h), never MANIFEST.json itself, each listed once.
//
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/contract/checkpoint_files.h"
#include "proto/contract/metrics_jsonl.h"

namespace loratrf::contract {

inline constexpr char kManifestFormat[] = "loratrf-checkpoint-v1";

struct Manifest {
  uint64_t step = 0;
  bool final = false;
  std::vector<FileEntry> files;
  std::map<std::string, double> metrics;  // keyed by metrics_keys (kEvalLoss, ...)
};

// The manifest as text (pretty-printed JSON and a newline).
std::string SerializeManifest(const Manifest& manifest);

// DataLoss naming what is wrong for text that is not a manifest by the rules above (including
// text longer than limits::kMaxManifestBytes). Callers add the file's path.
absl::StatusOr<Manifest> ParseManifest(absl::string_view text);

// The evaluation a checkpoint recorded (its metrics hold an eval_loss), as an EvalRow at the
// checkpoint's step; nullopt without one.
std::optional<EvalRow> ManifestEval(const Manifest& manifest);
// The metrics map for an evaluation.
std::map<std::string, double> ManifestMetrics(const EvalRow& eval);

}  // namespace loratrf::contract
