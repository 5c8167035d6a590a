// watch: follows a job's events until it is final. On a terminal, one progress line redrawn in
// place (state changes, checkpoints and logs scroll above it); on a pipe, one line per event;
// with -o json, one JobEvent per line. The progress line carries a sparkline of the recent
// losses when the locale says the terminal shows UTF-8; otherwise it stays plain ASCII. Reconnects from the last seq + 1 when the coordinator
// goes away, for up to kGiveUpSeconds.
#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/commands/commands.h"
#include "client/lib/format.h"

namespace loratrf::client {
namespace {

using Clock = std::chrono::steady_clock;

constexpr double kGiveUpSeconds = 30;
constexpr double kRefreshSeconds = 5;  // how often GetJob refreshes total steps and the ETA

size_t TerminalWidth() {
  struct winsize size {};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 1) return size.ws_col - 1;
  return 79;
}

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

class Watcher {
 public:
  Watcher(Connection& connection, std::string id, bool json, bool tty, bool utf8)
      : connection_(connection), id_(std::move(id)), json_(json), tty_(tty), utf8_(utf8) {}

  int Run() {
    v1::Job job;
    grpc::Status status = GetJob(job);
    if (!status.ok()) return FailRpc(status, connection_);
    view_ = ViewOfJob(job);
    last_refresh_ = Clock::now();

    bool lost = false;                // the coordinator is away since lost_since
    Clock::time_point lost_since = Clock::now();
    double backoff = 0.25;
    while (true) {
      status = Follow();
      if (status.ok() && final_state_) break;
      if (status.ok()) {
        // The stream ended without a final state (a draining coordinator): ask, then resume.
        status = GetJob(job);
        if (status.ok() && IsFinalState(job.state()) && job.last_event_seq() <= last_seq_) {
          final_state_ = job.state();
          final_reason_ = job.state_reason();
          break;
        }
        if (status.ok()) {
          if (got_event_) backoff = 0.25;
          got_event_ = false;
          lost = false;
          std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
          backoff = std::min(backoff * 2, 4.0);
          continue;
        }
      }
      if (status.error_code() != grpc::StatusCode::UNAVAILABLE) {
        EndLine();
        return FailRpc(status, connection_);
      }
      if (got_event_) {  // progress since the last failure: start counting afresh
        lost = false;
        backoff = 0.25;
        got_event_ = false;
      }
      if (!lost) {
        lost = true;
        lost_since = Clock::now();
        EndLine();
        std::cerr << "loratrf: lost the coordinator at " << connection_.address()
                  << "; reconnecting from event " << last_seq_ + 1 << "\n";
      } else if (SecondsSince(lost_since) > kGiveUpSeconds) {
        RpcFailure failure = DescribeRpcError(status, connection_.address());
        return Fail(kExitFailure, absl::StrCat(failure.message, " (gave up after ",
                                               static_cast<int>(kGiveUpSeconds), " s)"));
      }
      std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
      backoff = std::min(backoff * 2, 4.0);
    }
    EndLine();
    if (*final_state_ == v1::JOB_STATE_SUCCEEDED) return kExitOk;
    std::string message = absl::StrCat("job ", id_, " ", JobStateName(*final_state_));
    if (!final_reason_.empty()) absl::StrAppend(&message, ": ", final_reason_);
    return Fail(kExitFailure, message);
  }

 private:
  grpc::Status GetJob(v1::Job& job) {
    v1::GetJobRequest request;
    request.set_id(id_);
    return connection_.jobs().GetJob(connection_.UnaryContext().get(), request, &job);
  }

  // One WatchJob stream from last_seq_ + 1 until it ends.
  grpc::Status Follow() {
    v1::WatchJobRequest request;
    request.set_id(id_);
    request.set_from_seq(last_seq_ + 1);
    std::unique_ptr<grpc::ClientContext> context = connection_.StreamContext();
    auto reader = connection_.jobs().WatchJob(context.get(), request);
    v1::JobEvent event;
    while (reader->Read(&event)) {
      if (event.seq() <= last_seq_) continue;  // a replay overlapping what we showed
      last_seq_ = event.seq();
      got_event_ = true;
      Show(event);
      if (event.has_state_change() && IsFinalState(event.state_change().to())) {
        final_state_ = event.state_change().to();
        final_reason_ = event.state_change().reason();
      }
    }
    return reader->Finish();
  }

  void Show(const v1::JobEvent& event) {
    bool changed = ApplyEvent(event, view_, first_train_);
    if (event.has_train()) MaybeRefresh();
    if (json_) {
      Print(ToJson(event) + "\n");
      return;
    }
    if (!tty_) {
      Print(FormatEventLine(event, view_.total_steps) + "\n");
      return;
    }
    if (!event.has_train() && !event.has_eval()) {
      // Lasting news scrolls above the progress line.
      Print("\r\x1b[K" + FormatEventLine(event, view_.total_steps) + "\n");
      line_shown_ = false;
    }
    if (changed || !line_shown_) {
      Print("\r\x1b[K" + FormatProgressLine(view_, TerminalWidth(), utf8_));
      line_shown_ = true;
    }
  }

  // Total steps and the coordinator's ETA are not in the events: ask for the job now and then.
  void MaybeRefresh() {
    if (SecondsSince(last_refresh_) < kRefreshSeconds) return;
    last_refresh_ = Clock::now();
    v1::Job job;
    if (!GetJob(job).ok()) return;
    if (job.progress().total_steps() > 0) view_.total_steps = job.progress().total_steps();
    ProgressView fresh = ViewOfJob(job);
    if (fresh.server_eta_seconds && job.progress().step() >= view_.step) {
      view_.server_eta_seconds = fresh.server_eta_seconds;
    }
  }

  void EndLine() {
    if (tty_ && line_shown_) Print("\n");
    line_shown_ = false;
  }

  Connection& connection_;
  const std::string id_;
  const bool json_;
  const bool tty_;
  const bool utf8_;  // the progress line may use UTF-8 (the loss sparkline)
  ProgressView view_;
  std::optional<v1::JobEvent> first_train_;
  uint64_t last_seq_ = 0;
  bool got_event_ = false;
  bool line_shown_ = false;
  std::optional<v1::JobState> final_state_;
  std::string final_reason_;
  Clock::time_point last_refresh_;
};

}  // namespace

int RunWatch(const GlobalOptions& global, const std::vector<std::string>& args) {
  auto command = ParseJobCommand(args, {}, "watch takes one job id: loratrf watch ID");
  if (!command.ok()) return Fail(kExitUsage, command.status().message());
  auto connection = Connect(global, command->flags);
  if (!connection.ok()) return Fail(kExitUsage, connection.status().message());
  bool tty = !command->json && ::isatty(STDOUT_FILENO) == 1;
  bool utf8 = LocaleIsUtf8(std::getenv("LC_ALL"), std::getenv("LC_CTYPE"), std::getenv("LANG"));
  return Watcher(**connection, command->id, command->json, tty, utf8).Run();
}

}  // namespace loratrf::client
