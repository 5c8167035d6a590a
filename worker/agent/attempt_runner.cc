#include "worker/agent/attempt_runner.h"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "worker/agent/checkpoint_transfer.h"
#include "worker/agent/line_tail.h"
#include "worker/agent/metrics_tail.h"
#include "worker/agent/rank_process.h"
#include "common/atomic_file.h"
#include "common/disk_space.h"
#include "common/status_macros.h"
#include "common/logging.h"
#include "common/text.h"
#include "proto/contract/limits.h"
#include "proto/contract/metrics_jsonl.h"
#include "proto/contract/run_output.h"
#include "proto/rpc/status.h"
#include "proto/spec/job_spec.h"

namespace loratrf::worker::agent {
namespace {

namespace fs = std::filesystem;

constexpr size_t kLogTailLines = 20;
// Less free space than this where the attempt writes counts as a full disk when a rank fails
// (a checkpoint or a log line no longer fits).
constexpr uint64_t kFullDiskBytes = 1 << 20;

v1::JobEvent StateEvent(v1::JobState to, const std::string& reason, bool preempted = false) {
  v1::JobEvent event;
  event.mutable_state_change()->set_to(to);
  event.mutable_state_change()->set_reason(SanitizeText(reason, limits::kMaxReasonBytes));
  if (preempted) event.mutable_state_change()->set_preempted(true);
  return event;
}

// A rank that finished its step, committed a checkpoint and exited as asked.
bool StoppedAfterCheckpoint(const RankProcess& rank) {
  return !rank.running() && !rank.signaled() && rank.exit_code() == contract::kRunExitStopped;
}

v1::JobEvent LogEvent(v1::LogLine::Level level, int rank, const std::string& text) {
  v1::JobEvent event;
  event.mutable_log()->set_level(level);
  event.mutable_log()->set_rank(rank);
  event.mutable_log()->set_text(SanitizeText(text, limits::kMaxLogLineBytes));
  return event;
}

bool Retryable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded ||
         code == absl::StatusCode::kResourceExhausted || code == absl::StatusCode::kAborted ||
         code == absl::StatusCode::kInternal || code == absl::StatusCode::kUnknown ||
         code == absl::StatusCode::kDataLoss;
}

const char* OutcomeName(v1::JobState state) {
  switch (state) {
    case v1::JOB_STATE_SUCCEEDED: return "succeeded";
    case v1::JOB_STATE_FAILED: return "failed";
    default: return "restarting";
  }
}

// The rank's last line without the binary's "loratrf-worker: " prefix.
std::string WithoutProgramPrefix(std::string line) {
  constexpr absl::string_view kPrefix = "loratrf-worker: ";
  if (absl::string_view(line).substr(0, kPrefix.size()) == kPrefix) line.erase(0, kPrefix.size());
  return line;
}

}  // namespace

AttemptRunner::AttemptRunner(AttemptEnvironment env, v1::Assignment assignment)
    : env_(std::move(env)), assignment_(std::move(assignment)),
      job_dir_(env_.work_dir + "/jobs/" + assignment_.job_id()),
      attempt_dir_(job_dir_ + "/attempt-" + std::to_string(assignment_.attempt())),
      output_dir_(job_dir_ + "/output") {
  reporter_ = std::make_unique<EventsReporter>(
      [this](uint64_t first, const std::vector<v1::JobEvent>& events) {
        return SendReport(first, events);
      },
      [this](const absl::Status& why) {
        LOG_WARN("job {} attempt {} is stale ({}); stopping its ranks", job_id(), attempt(),
                 why.message());
        RequestStop(kStale);
      },
      env_.metrics);
}

std::string AttemptRunner::CheckpointsDir() const {
  return absl::StrCat(output_dir_, "/", contract::kCheckpointsDirName);
}

std::string AttemptRunner::FinalDir() const {
  return absl::StrCat(output_dir_, "/", contract::kFinalDirName);
}

AttemptRunner::~AttemptRunner() {
  Shutdown();
  Join();
  reporter_->Stop();
}

void AttemptRunner::Start() {
  thread_ = std::thread([this] { Run(); });
}

void AttemptRunner::Cancel(const std::string& reason) {
  LOG_INFO("job {} attempt {} cancelled{}{}", job_id(), attempt(), reason.empty() ? "" : ": ",
           reason);
  RequestStop(kCancelled);
}

void AttemptRunner::Shutdown() { RequestStop(kShutdown); }

void AttemptRunner::Drain(const std::string& reason, absl::Duration timeout) {
  {
    std::lock_guard<std::mutex> lock(drain_mu_);
    if (drain_.load()) return;
    drain_reason_ = reason;
    drain_timeout_ = timeout;
    drain_ = true;
  }
  LOG_INFO("job {} attempt {}: stopping after a checkpoint ({}; up to {})", job_id(), attempt(),
           reason, absl::FormatDuration(timeout));
}

absl::Duration AttemptRunner::DrainTimeout() const {
  std::lock_guard<std::mutex> lock(drain_mu_);
  return drain_timeout_;
}

std::string AttemptRunner::DrainReason() const {
  std::lock_guard<std::mutex> lock(drain_mu_);
  return drain_reason_;
}

void AttemptRunner::Join() {
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void AttemptRunner::SleepUnlessStopped(absl::Duration duration) {
  const absl::Time until = absl::Now() + duration;
  while (!stopping() && absl::Now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void AttemptRunner::RequestStop(Stop why) {
  int expected = kNone;
  stop_.compare_exchange_strong(expected, why);
  transfers_.Cancel();
}

absl::StatusOr<uint64_t> AttemptRunner::SendReport(uint64_t first,
                                                   const std::vector<v1::JobEvent>& events) {
  CoordinatorLink& link = *env_.link;
  for (int tries = 0;; ++tries) {
    const uint64_t lease = link.lease_id();
    v1::ReportEventsRequest request;
    request.set_worker(link.worker_name());
    request.set_lease_id(lease);
    request.set_job_id(job_id());
    request.set_attempt(attempt());
    request.set_first_report_index(first);
    for (const v1::JobEvent& event : events) *request.add_events() = event;
    v1::ReportEventsResponse response;
    std::unique_ptr<grpc::ClientContext> context = link.NewContext(absl::Seconds(10));
    grpc::Status status = link.workers().ReportEvents(context.get(), request, &response);
    if (status.ok()) return response.next_report_index();
    if (status.error_code() != grpc::StatusCode::FAILED_PRECONDITION || tries > 0) {
      return rpc::FromGrpcStatus(status);
    }
    // Refused: a lapsed lease (register again and retry) or a stale attempt.
    ASSIGN_OR_RETURN(bool renewed, link.RecoverLease(lease));
    if (!renewed) return rpc::FromGrpcStatus(status);
  }
}

void AttemptRunner::Run() {
  Outcome outcome = Execute();
  series_.reset();  // the attempt's series go with its ranks
  ranks_gone_ = true;  // every path out of Execute has stopped the ranks it started
  const Stop stop = static_cast<Stop>(stop_.load());
  absl::Duration flush_timeout = env_.final_report_timeout;
  std::string outcome_name;
  if (outcome.state == v1::JOB_STATE_UNSPECIFIED || stop != kNone) {
    switch (stop) {
      case kCancelled:
        outcome_name = "cancelled";
        reporter_->Add(LogEvent(v1::LogLine::LEVEL_INFO, -1,
                                absl::StrCat("ranks on ", env_.link->worker_name(), " stopped")));
        flush_timeout = absl::Seconds(3);
        break;
      case kStale:
        outcome_name = "stale";
        flush_timeout = absl::ZeroDuration();
        break;
      default:
        outcome_name = "stopped";
        reporter_->Add(StateEvent(v1::JOB_STATE_RESTARTING,
                                  absl::StrCat("the worker agent on ", env_.link->worker_name(),
                                               " stopped")));
        flush_timeout = absl::Seconds(3);
        break;
    }
  } else {
    outcome_name = outcome.preempted ? "preempted" : OutcomeName(outcome.state);
    reporter_->Add(StateEvent(outcome.state, outcome.reason, outcome.preempted));
  }
  LOG_INFO("job {} attempt {} {}{}{}", job_id(), attempt(), outcome_name,
           outcome.reason.empty() ? "" : ": ", outcome.reason);
  // Deliver everything; a Cancellation or the agent stopping cuts the wait short.
  const absl::Time deadline = absl::Now() + flush_timeout;
  while (true) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    absl::Status flushed = reporter_->Flush(std::min(left, absl::Milliseconds(500)));
    if (flushed.ok()) {
      if (outcome.state != v1::JOB_STATE_UNSPECIFIED && stop == kNone) {
        reported_end_ = true;
        // The final checkpoint is uploaded and the coordinator took the result.
        if (outcome.state == v1::JOB_STATE_SUCCEEDED) disposable_ = true;
      }
      break;
    }
    if (flushed.code() != absl::StatusCode::kDeadlineExceeded) break;
    if (static_cast<Stop>(stop_.load()) != stop) break;  // stopped while delivering
  }
  reporter_->Stop();
  if (stop == kCancelled) disposable_ = true;
  env_.metrics->AttemptFinished(outcome_name);
  done_ = true;
}

AttemptRunner::Outcome AttemptRunner::Execute() {
  if (!env_.setup_error.empty()) return {v1::JOB_STATE_RESTARTING, env_.setup_error};
  // Asked to stop after a checkpoint before any rank ran: nothing to save, nothing lost.
  auto drained_before_start = [&]() -> Outcome {
    return {v1::JOB_STATE_RESTARTING,
            absl::StrCat(DrainReason(), " before its ranks started on ", env_.link->worker_name()),
            /*preempted=*/true};
  };
  if (drain_requested()) return drained_before_start();
  rank_env_ = env_.rank_env;
  if (env_.acquire) {
    absl::StatusOr<std::vector<std::string>> acquired = env_.acquire(*this);
    if (stopping()) return {};
    if (!acquired.ok()) {
      return {v1::JOB_STATE_RESTARTING, std::string(acquired.status().message())};
    }
    rank_env_.insert(rank_env_.end(), acquired->begin(), acquired->end());
  }
  if (drain_requested()) return drained_before_start();
  absl::StatusOr<uint64_t> resume = Prepare();
  if (stopping()) return {};
  if (!resume.ok()) {
    const bool user_error = resume.status().code() == absl::StatusCode::kInvalidArgument;
    return {user_error ? v1::JOB_STATE_FAILED : v1::JOB_STATE_RESTARTING,
            std::string(resume.status().message())};
  }
  if (drain_requested()) return drained_before_start();
  resume_step_ = *resume;
  const bool node0 = assignment_.node_rank() == 0;
  series_ = env_.metrics->StartAttempt(job_id(), attempt());

  // Start the ranks.
  const int local = static_cast<int>(assignment_.local_world_size());
  const std::vector<std::string> env = EnvironmentWith(rank_env_);
  std::vector<RankProcess> ranks;
  for (int i = 0; i < local; ++i) {
    const int rank = static_cast<int>(assignment_.node_rank()) * local + i;
    std::vector<std::string> argv = {env_.executable, "run", "--spec", attempt_dir_ + "/job.json",
                                     "--output", output_dir_, "--rank", std::to_string(rank),
                                     "--world-size", std::to_string(assignment_.world_size())};
    if (!assignment_.master_addr().empty()) {
      argv.insert(argv.end(), {"--master-addr", assignment_.master_addr()});
    }
    if (assignment_.master_port() != 0) {
      argv.insert(argv.end(), {"--master-port", std::to_string(assignment_.master_port())});
    }
    if (env_.collective_timeout > absl::ZeroDuration()) {
      argv.insert(argv.end(), {"--collective-timeout",
                               absl::StrCat(absl::ToInt64Seconds(env_.collective_timeout))});
    }
    const std::string log = attempt_dir_ + "/rank-" + std::to_string(rank);
    absl::StatusOr<RankProcess> process =
        RankProcess::Start(rank, argv, env, log + ".stdout.log", log + ".stderr.log");
    if (!process.ok()) {
      StopRanks(ranks, env_.kill_grace);
      return {v1::JOB_STATE_RESTARTING,
              absl::StrCat("cannot start rank ", rank, ": ", process.status().message())};
    }
    ranks.push_back(*std::move(process));
  }
  env_.metrics->RanksRunning(local);
  reporter_->Add(StateEvent(v1::JOB_STATE_RUNNING,
                            absl::StrCat(local, " rank(s) started on ", env_.link->worker_name())));

  // Watch them: their exits, node 0's metrics.jsonl (relayed as events) and every local rank's
  // telemetry (exported as this attempt's series).
  MetricsTail tail(absl::StrCat(output_dir_, "/", contract::kMetricsFileName), resume_step_);
  std::vector<std::pair<int, LineTail>> telemetry;
  for (const RankProcess& rank : ranks) {
    telemetry.emplace_back(
        rank.rank(), LineTail(absl::StrCat(output_dir_, "/", contract::kRankTelemetryDirName, "/",
                                           rank.rank(), ".jsonl"),
                              limits::kMaxMetricsLineBytes));
  }
  auto relay_telemetry = [&] {
    for (auto& [rank, lines] : telemetry) {
      for (const std::string& line : lines.Poll()) {
        if (std::optional<contract::RankRow> row = contract::ParseRankLine(line)) {
          series_->Observe(rank, *row);
        }
      }
    }
  };
  const RankProcess* failed = nullptr;
  bool drain_sent = false;        // the ranks were asked (SIGTERM) to stop after a checkpoint
  bool drain_timed_out = false;   // and did not all exit in time
  absl::Time drain_deadline = absl::InfiniteFuture();
  while (true) {
    if (stopping()) break;
    if (!drain_sent && drain_requested()) {
      drain_sent = true;
      drain_deadline = absl::Now() + DrainTimeout();
      for (RankProcess& rank : ranks) {
        if (!rank.Poll()) rank.Terminate();
      }
    }
    int running = 0;
    for (RankProcess& rank : ranks) {
      if (!rank.Poll()) {
        ++running;
      } else if (rank.exit_code() != 0 && !StoppedAfterCheckpoint(rank) && failed == nullptr) {
        failed = &rank;
      }
    }
    relay_telemetry();
    if (node0) {
      for (v1::JobEvent& event : tail.Poll()) reporter_->Add(std::move(event));
      UploadNewCheckpoints();
    }
    if (failed != nullptr || running == 0) break;
    if (absl::Now() >= drain_deadline) {
      drain_timed_out = true;
      LOG_WARN("job {} attempt {}: {} rank(s) still running {} after they were asked to stop; "
               "killing them", job_id(), attempt(), running, absl::FormatDuration(DrainTimeout()));
      break;
    }
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(env_.poll_interval));
  }
  if (failed != nullptr) {
    // The others usually follow within moments (a lost peer, or the same bad data): let them
    // say so themselves, since a user error on any rank decides the outcome.
    const auto settle = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (std::chrono::steady_clock::now() < settle && !stopping()) {
      bool any = false;
      for (RankProcess& rank : ranks) any |= !rank.Poll();
      if (!any) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  StopRanks(ranks, drain_timed_out ? absl::ZeroDuration() : env_.kill_grace);
  env_.metrics->RanksRunning(-local);
  relay_telemetry();
  if (stopping()) return {};
  if (node0) {
    for (v1::JobEvent& event : tail.Poll()) reporter_->Add(std::move(event));
  }

  size_t stopped_ranks = 0;
  for (const RankProcess& rank : ranks) stopped_ranks += StoppedAfterCheckpoint(rank) ? 1 : 0;
  if (failed == nullptr && (drain_timed_out || stopped_ranks > 0)) {
    // Stopped for a drain (or a peer's): what the ranks committed goes up before the report,
    // so that the next attempt resumes from it.
    if (node0) {
      UploadPendingCheckpoints(env_.drain_upload_timeout);
    } else {
      // Node 0 uploads the checkpoint and reports; the coordinator then cancels this part.
      // Reporting first could restart the job before that upload and lose the steps since
      // the previous checkpoint, so this report only covers a node 0 that never reports.
      SleepUnlessStopped(env_.drain_upload_timeout);
    }
    if (stopping()) return {};
    uint64_t latest = resume_step_;
    for (uint64_t step : uploaded_) latest = std::max(latest, step);
    const std::string why = drain_sent ? DrainReason() : "a peer rank was asked to stop";
    if (drain_timed_out || stopped_ranks < ranks.size()) {
      return {v1::JOB_STATE_RESTARTING,
              absl::StrCat(why, ": the ranks on ", env_.link->worker_name(),
                           " did not all stop after a checkpoint within ",
                           absl::FormatDuration(DrainTimeout()))};
    }
    if (node0 && !PendingCheckpoints().empty()) {
      return {v1::JOB_STATE_RESTARTING,
              absl::StrCat(why, ": the ranks on ", env_.link->worker_name(),
                           " stopped after a checkpoint, but it could not be uploaded")};
    }
    return {v1::JOB_STATE_RESTARTING,
            absl::StrCat(why, ": stopped on ", env_.link->worker_name(), " after a checkpoint",
                         node0 ? absl::StrCat(" (latest step ", latest, ")") : std::string()),
            /*preempted=*/true};
  }

  if (failed == nullptr) {
    if (!node0) return {v1::JOB_STATE_SUCCEEDED, ""};
    next_upload_try_ = absl::InfinitePast();
    UploadNewCheckpoints();
    absl::Status uploaded = UploadFinal();
    if (stopping()) return {};
    if (!uploaded.ok()) {
      return {v1::JOB_STATE_RESTARTING,
              absl::StrCat("cannot upload the final checkpoint: ", uploaded.message())};
    }
    return {v1::JOB_STATE_SUCCEEDED, ""};
  }

  // A user error (exit 2) on any rank decides; else the first rank that died.
  for (const RankProcess& rank : ranks) {
    if (!rank.signaled() && rank.exit_code() == 2) {
      failed = &rank;
      break;
    }
  }
  for (const std::string& line : failed->StderrTail(kLogTailLines)) {
    reporter_->Add(LogEvent(v1::LogLine::LEVEL_ERROR, failed->rank(), line));
  }
  const std::string last = WithoutProgramPrefix(failed->LastStderrLine());
  if (!failed->signaled() && failed->exit_code() == 2) {
    return {v1::JOB_STATE_FAILED,
            absl::StrCat("rank ", failed->rank(), ": ", last.empty() ? "bad input" : last)};
  }
  std::string how = failed->signaled()
                        ? absl::StrCat("was killed by signal ", failed->exit_code() - 128)
                        : absl::StrCat("exited with status ", failed->exit_code());
  // A full work dir also swallows the rank's own error (its stderr log is there): say so.
  std::string full;
  if (absl::StatusOr<DiskSpace> space = ReadDiskSpace(job_dir_);
      space.ok() && space->available_bytes < kFullDiskBytes) {
    full = absl::StrCat("; this node's work dir is full (No space left on device, ",
                        space->available_bytes, " bytes free)");
  }
  return {v1::JOB_STATE_RESTARTING,
          absl::StrCat("rank ", failed->rank(), " on ", env_.link->worker_name(), " ", how,
                       last.empty() ? "" : ": ", last, full)};
}

absl::StatusOr<uint64_t> AttemptRunner::Prepare() {
  const v1::Assignment& a = assignment_;
  // Ranks are ints further on: bound the world first (a job spec allows 256 x 64 ranks).
  if (a.local_world_size() < 1 || a.local_world_size() > limits::kMaxLocalRanks ||
      a.world_size() > limits::kMaxWorldSize ||
      a.world_size() < (uint64_t{a.node_rank()} + 1) * a.local_world_size() ||
      a.master_port() > 65535 || (a.world_size() > 1 && a.master_port() == 0)) {
    return absl::InternalError(absl::StrCat(
        "bad assignment: node_rank ", a.node_rank(), ", world_size ", a.world_size(),
        ", local_world_size ", a.local_world_size(), ", master_port ", a.master_port()));
  }
  RETURN_IF_ERROR(spec::ValidateJobSpec(a.spec()));
  // Before anything of them is opened; the ranks then open the paths as checked (resolved),
  // not the links a spec may name (path_policy.h says what this does not cover).
  v1::JobSpec spec = a.spec();
  ASSIGN_OR_RETURN(*spec.mutable_model()->mutable_path(),
                   env_.paths.CheckDirectory("model.path", spec.model().path(), attempt_dir_));
  ASSIGN_OR_RETURN(*spec.mutable_data()->mutable_train(),
                   env_.paths.CheckFile("data.train", spec.data().train(), attempt_dir_));
  if (!spec.data().eval().empty()) {
    ASSIGN_OR_RETURN(*spec.mutable_data()->mutable_eval(),
                     env_.paths.CheckFile("data.eval", spec.data().eval(), attempt_dir_));
  }
  std::error_code ec;
  fs::create_directories(attempt_dir_, ec);
  if (!ec) fs::create_directories(output_dir_, ec);
  if (ec) return absl::InternalError(absl::StrCat(attempt_dir_, ": ", ec.message()));
  RETURN_IF_ERROR(WriteFileAtomically(attempt_dir_ + "/job.json", spec::JobSpecToJson(spec)));

  uint64_t resume_step = 0;
  const std::string download_dir = output_dir_ + "/.download-" + std::to_string(a.attempt());
  if (!a.resume_checkpoint_id().empty()) {
    absl::StatusOr<v1::Checkpoint> checkpoint;
    absl::Duration backoff = absl::Milliseconds(500);
    for (int tries = 0; tries < 6 && !stopping(); ++tries) {
      checkpoint = DownloadCheckpoint(*env_.link, a.job_id(), a.resume_checkpoint_id(),
                                      download_dir, transfers_, *env_.metrics);
      if (checkpoint.ok() || !Retryable(checkpoint.status().code())) break;
      LOG_WARN("job {}: {}; retrying", a.job_id(), checkpoint.status().message());
      SleepUnlessStopped(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(10));
    }
    if (stopping()) return absl::CancelledError("stopped");
    if (!checkpoint.ok()) {
      fs::remove_all(download_dir, ec);
      return absl::UnavailableError(absl::StrCat("cannot download checkpoint ",
                                                 a.resume_checkpoint_id(), ": ",
                                                 checkpoint.status().message()));
    }
    resume_step = checkpoint->step();
    if (checkpoint->final() || resume_step == 0) {
      fs::remove_all(download_dir, ec);
      return absl::InternalError(absl::StrCat("checkpoint ", a.resume_checkpoint_id(),
                                              " cannot be resumed from (final or step 0)"));
    }
    RETURN_IF_ERROR(ClearLocalState(resume_step));
    const std::string checkpoints = CheckpointsDir();
    fs::create_directories(checkpoints, ec);
    const std::string target = checkpoints + "/" + std::to_string(resume_step);
    fs::remove_all(target, ec);
    if (::rename(download_dir.c_str(), target.c_str()) != 0) {
      return absl::InternalError(absl::StrCat(target, ": cannot move the download into place"));
    }
    RETURN_IF_ERROR(FsyncDirectory(checkpoints));
  } else {
    RETURN_IF_ERROR(ClearLocalState(0));
  }
  // Everything up to the resume step was uploaded by an earlier attempt.
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator(CheckpointsDir(), ignored)) {
    const std::string name = entry.path().filename().string();
    if (contract::IsCheckpointStepDirName(name)) uploaded_.insert(std::stoull(name));
  }
  return resume_step;
}

absl::Status AttemptRunner::ClearLocalState(uint64_t resume_step) {
  std::error_code ec;
  fs::remove_all(FinalDir(), ec);
  if (ec) return absl::InternalError(absl::StrCat(FinalDir(), ": ", ec.message()));
  for (const auto& entry : fs::directory_iterator(output_dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(".download-", 0) == 0 &&
        name != ".download-" + std::to_string(assignment_.attempt())) {
      fs::remove_all(entry.path(), ec);
    }
  }
  for (const auto& entry : fs::directory_iterator(CheckpointsDir(), ec)) {
    const std::string name = entry.path().filename().string();
    if (contract::IsCheckpointStepDirName(name) && (resume_step == 0 || std::stoull(name) >= resume_step)) {
      std::error_code removed;
      fs::remove_all(entry.path(), removed);
      if (removed) return absl::InternalError(absl::StrCat(entry.path().string(), ": ", removed.message()));
    }
  }
  // Rank telemetry belongs to the attempt that wrote it: each attempt's series start empty.
  fs::remove_all(absl::StrCat(output_dir_, "/", contract::kRankTelemetryDirName), ec);
  // metrics.jsonl keeps the rows up to the resume step (the trainer does the same).
  const std::string metrics = absl::StrCat(output_dir_, "/", contract::kMetricsFileName);
  if (resume_step == 0) {
    fs::remove(metrics, ec);
    return absl::OkStatus();
  }
  std::ifstream in(metrics);
  if (!in) return absl::OkStatus();
  std::string kept, line;
  while (std::getline(in, line)) {
    std::optional<uint64_t> step = contract::MetricsLineStep(line);
    if (step && *step <= resume_step) kept += line + "\n";
  }
  return WriteFileAtomically(metrics, kept);
}

absl::Status AttemptRunner::TimedUpload(const LocalCheckpoint& checkpoint) {
  const absl::Time started = absl::Now();
  absl::Status status =
      UploadCheckpoint(*env_.link, job_id(), attempt(), checkpoint, transfers_, *env_.metrics)
          .status();
  if (status.ok()) {
    if (series_) series_->CheckpointUploaded(absl::ToDoubleSeconds(absl::Now() - started));
  } else if (status.code() != absl::StatusCode::kAlreadyExists && !stopping()) {
    env_.metrics->CheckpointUploadFailed();
  }
  return status;
}

std::vector<uint64_t> AttemptRunner::PendingCheckpoints() {
  std::vector<uint64_t> steps;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(CheckpointsDir(), ec)) {
    const std::string name = entry.path().filename().string();
    if (!contract::IsCheckpointStepDirName(name)) continue;
    const uint64_t step = std::stoull(name);
    if (step > resume_step_ && !uploaded_.count(step) &&
        fs::exists(entry.path() / contract::kManifestFileName)) {
      steps.push_back(step);
    }
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

void AttemptRunner::UploadPendingCheckpoints(absl::Duration budget) {
  const absl::Time until = absl::Now() + budget;
  while (true) {
    next_upload_try_ = absl::InfinitePast();
    UploadNewCheckpoints();
    if (stopping() || PendingCheckpoints().empty()) return;
    const absl::Duration left = until - absl::Now();
    if (left <= absl::ZeroDuration()) return;
    SleepUnlessStopped(std::min(left, absl::Seconds(1)));
  }
}

void AttemptRunner::UploadNewCheckpoints() {
  if (absl::Now() < next_upload_try_) return;
  const std::vector<uint64_t> steps = PendingCheckpoints();
  for (uint64_t step : steps) {
    if (stopping()) return;
    const std::string dir = absl::StrCat(CheckpointsDir(), "/", step);
    absl::StatusOr<LocalCheckpoint> checkpoint = ReadLocalCheckpoint(dir);
    absl::Status status = checkpoint.status();
    if (checkpoint.ok()) status = TimedUpload(*checkpoint);
    if (status.code() == absl::StatusCode::kAlreadyExists) {
      // A retried upload whose first reply was lost: the coordinator already recorded it.
      LOG_INFO("job {}: checkpoint {} was already recorded by the coordinator", job_id(), step);
      status = absl::OkStatus();
    }
    if (status.ok()) {
      uploaded_.insert(step);
      continue;
    }
    if (stopping()) return;
    if (status.code() == absl::StatusCode::kFailedPrecondition) {
      RequestStop(kStale);
      return;
    }
    if (!fs::exists(dir) || status.code() == absl::StatusCode::kNotFound ||
        status.code() == absl::StatusCode::kDataLoss ||
        status.code() == absl::StatusCode::kInvalidArgument) {
      // Pruned while it was read, or refused for good: a later checkpoint will do.
      LOG_WARN("job {}: checkpoint {} not uploaded: {}", job_id(), step, status.message());
      uploaded_.insert(step);
      continue;
    }
    LOG_WARN("job {}: checkpoint {} upload failed ({}); will retry", job_id(), step,
             status.message());
    next_upload_try_ = absl::Now() + absl::Seconds(2);
    return;
  }
}

absl::Status AttemptRunner::UploadFinal() {
  absl::Duration backoff = absl::Milliseconds(500);
  absl::Status status;
  for (int tries = 0; tries < 8 && !stopping(); ++tries) {
    absl::StatusOr<LocalCheckpoint> checkpoint = ReadLocalCheckpoint(FinalDir());
    if (!checkpoint.ok()) return checkpoint.status();
    status = TimedUpload(*checkpoint);
    if (status.ok()) return status;
    if (status.code() == absl::StatusCode::kAlreadyExists) {
      // A retried upload whose first reply was lost: the coordinator already recorded it.
      LOG_INFO("job {}: the final checkpoint was already recorded by the coordinator", job_id());
      return absl::OkStatus();
    }
    if (status.code() == absl::StatusCode::kFailedPrecondition) {
      RequestStop(kStale);
      return status;
    }
    if (!Retryable(status.code())) return status;
    LOG_WARN("job {}: final checkpoint upload failed ({}); retrying", job_id(), status.message());
    SleepUnlessStopped(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(30));
  }
  return status;
}

}  // namespace loratrf::worker::agent
