// The layout of a training run's output directory (`loratrf-worker run --output DIR`), which the
// engine writes and the agent reads while the run goes on (docs/api.md, "Command-line contracts"):
//
//   DIR/metrics.jsonl                 one row per step and per evaluation (metrics_jsonl.h)
//   DIR/ranks/<rank>.jsonl            each rank's telemetry, for the agent (metrics_jsonl.h)
//   DIR/checkpoints/<step>/           committed checkpoints, each with MANIFEST.json (manifest.h)
//   DIR/checkpoints/.partial-<step>-<pid>/   being written; never read
//   DIR/final/                        the end of training, committed the same way
#pragma once

#include "absl/strings/string_view.h"

namespace loratrf::contract {

inline constexpr char kMetricsFileName[] = "metrics.jsonl";
inline constexpr char kRankTelemetryDirName[] = "ranks";
inline constexpr char kCheckpointsDirName[] = "checkpoints";
inline constexpr char kFinalDirName[] = "final";
inline constexpr char kManifestFileName[] = "MANIFEST.json";
inline constexpr char kPartialCheckpointPrefix[] = ".partial-";

// The exit status of `loratrf-worker run` (a rank, or the local launcher of several) that was
// asked to stop (SIGTERM or SIGINT) and did: every rank finished its step and the checkpoint at
// that step is committed (none when no step was done), so rerunning on the same output
// directory, or resuming from that checkpoint elsewhere, loses nothing. Distinct from 0 (done),
// 1 (the work failed), 2 (bad input) and 128 + N (killed by signal N); 75 is EX_TEMPFAIL.
inline constexpr int kRunExitStopped = 75;

// A committed checkpoint's directory name: the step in decimal, nothing else (at most 19
// digits, so that it fits a uint64).
inline bool IsCheckpointStepDirName(absl::string_view name) {
  if (name.empty() || name.size() > 19) return false;
  for (char c : name) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace loratrf::contract
