// Follows a rank-0 `metrics.jsonl` (its schema: proto/contract/metrics_jsonl.h) as training
// appends to it and turns each new row into a JobEvent: train rows → TrainMetrics, eval rows →
// EvalMetrics.
//
// The trainer replaces the file (atomically, a new inode) when a resumed run drops the rows
// after its checkpoint, so the tail reopens when the inode changes or the file shrinks, and
// sends a row only when its step is beyond the last one sent of its kind (which also makes the
// rows a resumed run replays disappear). Only complete lines count; a line longer than any row
// is skipped.
//
// Threading: single-threaded, called on the attempt's thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proto/loratrf/v1/job.pb.h"
#include "worker/agent/line_tail.h"

namespace loratrf::worker::agent {

class MetricsTail {
 public:
  // Rows at or before `after_step` are not sent (the checkpoint a resumed attempt starts from).
  MetricsTail(std::string path, uint64_t after_step);

  // The events for the rows appended since the last call, in file order.
  std::vector<v1::JobEvent> Poll();

  // A row of metrics.jsonl as an event; nullopt for anything else.
  static std::optional<v1::JobEvent> RowToEvent(const std::string& line);

 private:
  LineTail lines_;
  uint64_t last_train_step_;
  uint64_t last_eval_step_;
};

}  // namespace loratrf::worker::agent
