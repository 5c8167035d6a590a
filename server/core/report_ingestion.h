// Report ingestion: ReportEvents from the workers' agents — deduplication by report index and
// by step, train/eval metrics and the progress estimate, RUNNING, and the end an attempt asks
// for (SUCCEEDED from node 0 once its final checkpoint is committed, FAILED, RESTARTING).
//
// Owns: the report fields of ActiveJob records (next_report_index, finished_nodes) and the
// metrics fields of the cached job (latest_train, latest_eval, progress). Accepted events are
// persisted through job_lifecycle's CommitJob; an end is written by FinishJob or RestartJob.
// The report index moves only once everything the report asked for is persisted, so a failed
// call is retried whole.
//
// Threading: called with CoreState::mu held; wake-ups are queued in `wakeups` (run after mu is
// released).
#pragma once

#include "absl/status/statusor.h"
#include "proto/loratrf/v1/worker_service.pb.h"
#include "server/core/core_state.h"

namespace loratrf::server::core_internal {

absl::StatusOr<v1::ReportEventsResponse> IngestReport(CoreState& core,
                                                      const v1::ReportEventsRequest& request,
                                                      Wakeups& wakeups);

}  // namespace loratrf::server::core_internal
