#include "server/core/report_ingestion.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status_macros.h"
#include "common/text.h"
#include "proto/contract/limits.h"
#include "google/protobuf/util/time_util.h"
#include "server/core/job_lifecycle.h"
#include "server/core/worker_registry.h"

namespace loratrf::server::core_internal {
namespace {

using google::protobuf::util::TimeUtil;

// Fills total_steps and the ETA from the latest train row: steps per epoch follow from the
// fractional epoch, capped by max_steps.
void UpdateProgress(v1::Job& job) {
  const v1::TrainMetrics& train = job.latest_train();
  v1::JobProgress& progress = *job.mutable_progress();
  progress.set_step(train.step());
  progress.set_epoch(std::isfinite(train.epoch()) ? train.epoch() : 0.0);
  // Doubles come from a worker: anything not finite and positive is ignored, and every
  // conversion to an integer is clamped first.
  constexpr double kMaxSteps = 1e15;
  uint64_t total = 0;
  if (train.epoch() > 1e-9 && std::isfinite(train.epoch()) && job.spec().training().epochs() > 0) {
    double estimate = static_cast<double>(train.step()) / train.epoch() *
                      job.spec().training().epochs();
    if (std::isfinite(estimate) && estimate < kMaxSteps) total = static_cast<uint64_t>(std::llround(estimate));
  }
  uint64_t max_steps = job.spec().training().max_steps();
  if (max_steps > 0 && (total == 0 || max_steps < total)) total = max_steps;
  if (total < train.step()) total = train.step();
  progress.set_total_steps(total);
  double step_seconds = train.step_seconds();
  double remaining = static_cast<double>(total - train.step()) *
                     (std::isfinite(step_seconds) && step_seconds > 0 ? step_seconds : 0.0);
  remaining = std::min(remaining, 1e9);  // ~30 years
  *progress.mutable_eta() = TimeUtil::NanosecondsToDuration(static_cast<int64_t>(remaining * 1e9));
  double tokens = train.tokens_per_second() * step_seconds;
  if (std::isfinite(tokens) && tokens > 0 && tokens < 1e15) {
    progress.set_tokens_seen(progress.tokens_seen() + static_cast<uint64_t>(tokens));
  }
}

}  // namespace

absl::StatusOr<v1::ReportEventsResponse> IngestReport(CoreState& core,
                                                      const v1::ReportEventsRequest& request,
                                                      Wakeups& wakeups) {
  v1::ReportEventsResponse response;
  RETURN_IF_ERROR(LeasedWorker(core, request.worker(), request.lease_id()).status());
  ASSIGN_OR_RETURN(ActiveJob * entry,
                   CurrentAttempt(core, request.job_id(), request.attempt(), request.worker()));
  // Events before the index this worker's reports reached were accepted already (a retry). The
  // index moves only once everything below is persisted, so a failed call is retried whole.
  const uint64_t expected = entry->next_report_index[request.worker()];
  const uint64_t first = request.first_report_index();
  const size_t skip = first < expected ? static_cast<size_t>(std::min<uint64_t>(
                                             expected - first, request.events_size()))
                                       : 0;
  const uint64_t next_index = std::max<uint64_t>(expected, first + request.events_size());

  v1::Job job = entry->job;
  const bool node0 = !job.workers().empty() && job.workers(0) == request.worker();
  std::vector<v1::JobEvent> accepted;
  struct Outcome {
    v1::JobState state;
    std::string reason;
    AttemptEnd end = AttemptEnd::kLost;
  };
  std::optional<Outcome> outcome;  // an end this report asks for
  for (int i = static_cast<int>(skip); i < request.events_size(); ++i) {
    v1::JobEvent event = request.events(i);
    event.set_seq(0);
    event.set_attempt(job.attempt());
    event.clear_time();  // the coordinator's clock orders events
    switch (event.kind_case()) {
      case v1::JobEvent::kTrain:
        // Metrics are keyed by step: a replayed step (a resumed attempt, a retried report
        // after a coordinator restart) adds nothing.
        if (!node0 || (job.has_latest_train() && event.train().step() <= job.latest_train().step())) {
          continue;
        }
        *job.mutable_latest_train() = event.train();
        UpdateProgress(job);
        break;
      case v1::JobEvent::kEval:
        if (!node0 || (job.has_latest_eval() && event.eval().step() <= job.latest_eval().step())) {
          continue;
        }
        *job.mutable_latest_eval() = event.eval();
        break;
      case v1::JobEvent::kLog:
        event.mutable_log()->set_text(SanitizeText(event.log().text(), limits::kMaxLogLineBytes));
        break;
      case v1::JobEvent::kStateChange: {
        v1::JobState to = event.state_change().to();
        std::string reason = SanitizeText(event.state_change().reason(), limits::kMaxReasonBytes);
        if (to == v1::JOB_STATE_RUNNING) {
          if (job.state() != v1::JOB_STATE_SCHEDULED) continue;  // already running
          event.mutable_state_change()->set_from(job.state());
          job.set_state(v1::JOB_STATE_RUNNING);
          job.set_state_reason("training");
          if (!job.has_started_at()) *job.mutable_started_at() = ToProto(core.Now());
          break;
        }
        if (to == v1::JOB_STATE_SUCCEEDED) {
          if (!node0) {
            entry->finished_nodes.insert(request.worker());  // its part is done
            continue;
          }
          if (!entry->final_checkpoint) {
            // Recorded by an earlier process, or under a retried upload? Ask the store.
            ASSIGN_OR_RETURN(std::vector<v1::Checkpoint> checkpoints,
                             core.store->ListCheckpoints(job.id()));
            for (const v1::Checkpoint& c : checkpoints) {
              if (c.final() && c.attempt() == job.attempt()) entry->final_checkpoint = true;
            }
          }
          if (!entry->final_checkpoint) {
            return absl::FailedPreconditionError(
                "SUCCEEDED before the final checkpoint was uploaded");
          }
          outcome = Outcome{to, "final adapter committed"};
        } else if (to == v1::JOB_STATE_FAILED || to == v1::JOB_STATE_RESTARTING) {
          // Once node 0 has committed the final adapter, another node's late failure (ranks
          // torn down at the end) does not undo the result.
          if (entry->final_checkpoint && !node0) continue;
          const bool preempted =
              to == v1::JOB_STATE_RESTARTING && event.state_change().preempted();
          outcome = Outcome{to, reason.empty() ? "a rank failed" : reason,
                            preempted ? AttemptEnd::kPreempted : AttemptEnd::kLost};
        }
        continue;  // end transitions are written by FinishJob/RestartJob below
      }
      case v1::JobEvent::kCheckpoint:
        continue;  // only UploadCheckpoint records checkpoints
      default:
        continue;
    }
    accepted.push_back(std::move(event));
  }
  const std::string job_id = request.job_id();
  if (!accepted.empty() || job.state() != entry->job.state()) {
    RETURN_IF_ERROR(CommitJob(core, job, std::move(accepted), wakeups));
  }
  if (outcome.has_value()) {
    auto it = core.active.find(job_id);
    if (it != core.active.end()) {
      if (outcome->state == v1::JOB_STATE_RESTARTING) {
        RETURN_IF_ERROR(RestartJob(core, it->second, outcome->reason, wakeups, outcome->end));
      } else {
        RETURN_IF_ERROR(FinishJob(core, it->second, outcome->state, outcome->reason, wakeups));
      }
    }
  }
  // Persisted: the index moves (the attempt may have ended; then there is nothing to keep).
  if (auto it = core.active.find(job_id);
      it != core.active.end() && it->second.job.attempt() == request.attempt()) {
    it->second.next_report_index[request.worker()] = next_index;
  }
  response.set_next_report_index(next_index);
  return response;
}

}  // namespace loratrf::server::core_internal
