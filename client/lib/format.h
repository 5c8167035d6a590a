// What the `loratrf` CLI prints: the live progress line, event lines, tables, durations, sizes
// and times. Pure functions of their arguments (no clock, no terminal, no gRPC), so that tests
// pin every format down. (What the server sends is checked by the contract: proto/contract/.)
// client/README.md documents these formats; keep the two in step.
//
// Threading: free functions without shared state; safe to call from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/timestamp.pb.h"
#include "proto/contract/metrics_jsonl.h"
#include "proto/loratrf/v1/job.pb.h"
#include "proto/loratrf/v1/worker.pb.h"

namespace loratrf::client {

// ---- names ----------------------------------------------------------------------------------

// "running" for JOB_STATE_RUNNING, "unspecified" for 0, the number for unknown values.
std::string JobStateName(v1::JobState state);
// Accepts "running", "RUNNING" and "JOB_STATE_RUNNING"; not "unspecified".
absl::StatusOr<v1::JobState> ParseJobStateName(absl::string_view name);
bool IsFinalState(v1::JobState state);
std::string WorkerStateName(v1::WorkerState state);  // "ready", "draining", "lost"
std::string DeviceName(v1::Device device);           // "cpu", "cuda"
// "waiting_for_slots" for QUEUE_REASON_WAITING_FOR_SLOTS.
std::string QueueReasonName(v1::QueueReason reason);

// ---- numbers, sizes, durations, times -------------------------------------------------------

// "0 B", "512 B", "1.50 KiB", "12.0 MiB", "345 GiB" (3 significant digits from 1 KiB on).
std::string FormatBytes(uint64_t bytes);
// "45s", "2m05s", "1h02m", "3d04h"; negative or NaN → "?".
std::string FormatDuration(double seconds);
// RFC 3339 in UTC to the second ("2024-05-01T12:00:00Z"); "-" for an unset timestamp.
std::string FormatTimestamp(const google::protobuf::Timestamp& time);
// How long ago `time` was at `now_unix_seconds`: "3s ago", "2m05s ago"; "-" when unset; "now"
// for a time in the future (clock skew).
std::string FormatAge(const google::protobuf::Timestamp& time, double now_unix_seconds);
// A metric: "0.6931", "12.35", "1234", "1.2e-05": 4 significant digits, no trailing zeros.
std::string FormatMetric(double value);
// "91.2%": a fraction as a percentage with one decimal.
std::string FormatPercent(double fraction);

// ---- loss trend -----------------------------------------------------------------------------

// How many recent training losses the live line's sparkline shows.
inline constexpr size_t kTrendValues = 20;

// One character per value, in order: the blocks ▁▂▃▄▅▆▇█ scaled to the min..max of the finite
// values, so that the shape shows however small the changes are; '!' for NaN or an infinity
// (a diverged step must stand out, not vanish into the scale); a flat series is all ▄. UTF-8;
// "" for no values.
std::string FormatSparkline(const std::vector<double>& values);

// Whether a terminal under this locale environment shows UTF-8: the first of LC_ALL, LC_CTYPE
// and LANG that is set and not empty names the UTF-8 codeset ("en_US.UTF-8", "C.utf8"). Null
// or empty arguments count as unset; no locale at all is plain ASCII.
bool LocaleIsUtf8(const char* lc_all, const char* lc_ctype, const char* lang);

// ---- progress -------------------------------------------------------------------------------

// What the live progress line shows; `watch` folds events into it.
struct ProgressView {
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
  uint32_t attempt = 0;
  uint64_t step = 0;
  uint64_t total_steps = 0;  // 0: unknown
  std::optional<double> loss;
  std::optional<double> eval_accuracy;
  std::optional<double> tokens_per_second;
  std::optional<double> server_eta_seconds;  // JobProgress.eta when the coordinator set it
  std::optional<double> step_seconds;        // the latest TrainMetrics.step_seconds
  // Observed rate: steps done between the first and the latest train event of this attempt,
  // and the seconds between them (event times).
  uint64_t observed_steps = 0;
  double observed_seconds = 0;
  // The last kTrendValues training losses, oldest first (kept across restarts: a resumed
  // attempt continues the same curve).
  std::vector<double> recent_losses;
};

// Seconds left: the coordinator's ETA when it gave one; else the remaining steps times the
// observed seconds per step (or, before two train events, the latest step_seconds). Empty when
// the job is not running or the total is unknown.
std::optional<double> EstimateEtaSeconds(const ProgressView& view);

// One line, at most `width` characters (0: no limit), e.g.
//   running  step 120/300 [#######.........] 40%  loss 0.4123  eval acc 91.2%  312 tok/s  ETA 2m05s
// With `utf8` (the terminal shows UTF-8), the loss is followed by the sparkline of
// view.recent_losses: `loss 0.4123 █▆▅▄▃▃▂▁`; without it the line is plain ASCII. Fields that
// are unknown are left out; when the line is too wide the bar is dropped first, then the
// sparkline, then the line is cut (never inside a character).
std::string FormatProgressLine(const ProgressView& view, size_t width, bool utf8 = false);

// Updates `view` with one event (train, eval, state change); `first_train` keeps the first train
// event of the current attempt for the observed rate. Returns true when the view changed.
bool ApplyEvent(const v1::JobEvent& event, ProgressView& view,
                std::optional<v1::JobEvent>& first_train);
// The view of a job as GetJob returns it.
ProgressView ViewOfJob(const v1::Job& job);

// One line per event (watch on a pipe), without a trailing newline, e.g.
//   #4 state scheduled -> running (attempt 1)
//   #5 train step 10/300 epoch 0.1 loss 0.6931 lr 0.0003 grad_norm 1.2 tok/s 1234
//   #6 eval step 10 loss 0.51 accuracy 81.2% examples 64
//   #7 checkpoint ckpt-7 step 10 final no files 3 size 1.50 MiB
//   #8 log rank 0 error: CUDA out of memory
std::string FormatEventLine(const v1::JobEvent& event, uint64_t total_steps);

// ---- tables and records ---------------------------------------------------------------------

// Left-aligned columns separated by two spaces, a header row in the given spelling, no
// trailing spaces, '\n' after every row. Control characters in cells become '?'.
std::string FormatTable(const std::vector<std::string>& headers,
                        const std::vector<std::vector<std::string>>& rows);

// `get`: "key: value" lines (see client/README.md).
std::string FormatJobDetails(const v1::Job& job);
// "step 120/300 (40%)", "step 120", "-".
std::string FormatStepProgress(uint64_t step, uint64_t total_steps);

std::vector<std::string> JobTableHeaders();
std::vector<std::string> JobTableRow(const v1::Job& job);
// `list -o wide`: the table above plus PRIORITY, WORKERS, QUEUE ("#3 waiting_for_slots" for a
// queued job) and ETA (a queued job's wait, a running job's time left).
std::vector<std::string> JobWideTableHeaders();
std::vector<std::string> JobWideTableRow(const v1::Job& job);
std::vector<std::string> CheckpointTableHeaders();
std::vector<std::string> CheckpointTableRow(const v1::Checkpoint& checkpoint);
std::vector<std::string> WorkerTableHeaders();
std::vector<std::string> WorkerTableRow(const v1::Worker& worker, double now_unix_seconds);

// ---- metrics history (`loratrf metrics`) ----------------------------------------------------

// The train and eval reports of a job, as rows of metrics.jsonl (proto/contract/ owns the
// schema), from its events in seq order; other events are skipped. When a later attempt
// resumes from a checkpoint, the rows of earlier attempts from its first reported step on are
// dropped: they were trained again, and the history then reads like the metrics.jsonl of an
// uninterrupted run (one row per step and type).
std::vector<contract::MetricsRow> MetricsHistory(const std::vector<v1::JobEvent>& events);

// The table: TYPE STEP EPOCH LOSS LR GRAD_NORM TOK/S EVAL_LOSS EVAL_ACC, "-" where a row has no
// value (eval columns of a train row, and the reverse; grad_norm and tok/s when not measured).
std::vector<std::string> MetricsTableHeaders();
std::vector<std::string> MetricsTableRow(const contract::MetricsRow& row);
// `-o json`: one JSON array on one line, each row an object with the metrics.jsonl keys (what
// the contract's ToJsonLine writes; NaN and infinities are null, as JSON has no such numbers).
std::string FormatMetricsJson(const std::vector<contract::MetricsRow>& rows);
// `-o csv`: a header of every metrics.jsonl key, type first, then one line per row; a cell is
// empty where the row has no such key; numbers in their shortest exact form ("0.0003", "nan").
std::string FormatMetricsCsv(const std::vector<contract::MetricsRow>& rows);

}  // namespace loratrf::client
