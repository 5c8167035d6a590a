#include "client/lib/format.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <variant>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace loratrf::client {
namespace {

// Whatever the server sends is printed to a terminal: no escape sequences, no extra lines.
std::string Clean(absl::string_view text) {
  std::string out(text);
  for (char& c : out) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  return out;
}

std::string Printf(const char* format, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, value);
  return buffer;
}

std::string EnumSuffix(const std::string& full, absl::string_view prefix, int number) {
  if (full.empty()) return absl::StrCat(number);
  std::string name = absl::StartsWith(full, prefix) ? full.substr(prefix.size()) : full;
  return absl::AsciiStrToLower(name);
}

double DurationSeconds(const google::protobuf::Duration& d) {
  return static_cast<double>(d.seconds()) + d.nanos() / 1e9;
}

double TimestampSeconds(const google::protobuf::Timestamp& t) {
  return static_cast<double>(t.seconds()) + t.nanos() / 1e9;
}

bool IsSet(const google::protobuf::Timestamp& t) { return t.seconds() != 0 || t.nanos() != 0; }

std::string TrainText(const v1::TrainMetrics& t, uint64_t total_steps) {
  std::string out = absl::StrCat("step ", t.step());
  if (total_steps > 0) absl::StrAppend(&out, "/", total_steps);
  absl::StrAppend(&out, " epoch ", FormatMetric(t.epoch()), " loss ", FormatMetric(t.loss()),
                  " lr ", FormatMetric(t.learning_rate()));
  if (t.grad_norm() > 0) absl::StrAppend(&out, " grad_norm ", FormatMetric(t.grad_norm()));
  if (t.tokens_per_second() > 0) {
    absl::StrAppend(&out, " tok/s ", FormatMetric(t.tokens_per_second()));
  }
  return out;
}

std::string EvalText(const v1::EvalMetrics& e) {
  return absl::StrCat("step ", e.step(), " loss ", FormatMetric(e.loss()), " accuracy ",
                      FormatPercent(e.accuracy()), " examples ", e.examples());
}

// Characters as a terminal counts them: UTF-8 sequences count once.
size_t DisplayWidth(absl::string_view text) {
  size_t width = 0;
  for (char c : text) width += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return width;
}

// The first `width` characters of `text`, never cutting a UTF-8 sequence.
std::string CutToWidth(const std::string& text, size_t width) {
  size_t seen = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;
    if (seen == width) return text.substr(0, i);
    ++seen;
  }
  return text;
}

bool NamesUtf8(absl::string_view locale) {
  std::string lower = absl::AsciiStrToLower(locale);
  return absl::StrContains(lower, "utf-8") || absl::StrContains(lower, "utf8");
}

// The shortest text that reads back as exactly `value`, in %g style ("0.0003", "1e-05",
// "1234.5", "nan", "-inf"): plotting tools read it, and nothing is rounded away.
std::string ExactNumber(double value) {
  if (std::isnan(value)) return "nan";
  char buffer[64];
  auto [end, error] =
      std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::general);
  if (error != std::errc()) return Printf("%.17g", value);
  return std::string(buffer, end);
}

contract::TrainRow TrainRowOf(const v1::TrainMetrics& t) {
  contract::TrainRow row;
  row.step = t.step();
  row.epoch = t.epoch();
  row.loss = t.loss();
  row.learning_rate = t.learning_rate();
  row.grad_norm = t.grad_norm();
  row.tokens_per_second = t.tokens_per_second();
  row.samples_per_second = t.samples_per_second();
  row.step_seconds = t.step_seconds();
  return row;
}

contract::EvalRow EvalRowOf(const v1::EvalMetrics& e) {
  contract::EvalRow row;
  row.step = e.step();
  row.loss = e.loss();
  row.accuracy = e.accuracy();
  row.examples = e.examples();
  return row;
}

uint64_t RowStep(const contract::MetricsRow& row) {
  return std::visit([](const auto& r) { return r.step; }, row);
}

uint64_t CheckpointBytes(const v1::Checkpoint& checkpoint) {
  uint64_t total = 0;
  for (const v1::CheckpointFile& f : checkpoint.files()) total += f.size_bytes();
  return total;
}

}  // namespace

// ---- names ----------------------------------------------------------------------------------

std::string JobStateName(v1::JobState state) {
  return EnumSuffix(v1::JobState_Name(state), "JOB_STATE_", static_cast<int>(state));
}

absl::StatusOr<v1::JobState> ParseJobStateName(absl::string_view name) {
  std::string upper = absl::AsciiStrToUpper(name);
  if (!absl::StartsWith(upper, "JOB_STATE_")) upper = "JOB_STATE_" + upper;
  v1::JobState state;
  if (v1::JobState_Parse(upper, &state) && state != v1::JOB_STATE_UNSPECIFIED) return state;
  std::vector<std::string> names;
  for (int i = 1; i < v1::JobState_descriptor()->value_count(); ++i) {
    names.push_back(
        JobStateName(static_cast<v1::JobState>(v1::JobState_descriptor()->value(i)->number())));
  }
  return absl::InvalidArgumentError(absl::StrCat("must be one of ", absl::StrJoin(names, " | "),
                                                 ", got '", Clean(name), "'"));
}

bool IsFinalState(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

std::string WorkerStateName(v1::WorkerState state) {
  return EnumSuffix(v1::WorkerState_Name(state), "WORKER_STATE_", static_cast<int>(state));
}

std::string DeviceName(v1::Device device) {
  return EnumSuffix(v1::Device_Name(device), "DEVICE_", static_cast<int>(device));
}

std::string QueueReasonName(v1::QueueReason reason) {
  return EnumSuffix(v1::QueueReason_Name(reason), "QUEUE_REASON_", static_cast<int>(reason));
}

// ---- numbers, sizes, durations, times -------------------------------------------------------

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  // Round first, so that 1023.9 KiB does not print as "1024 KiB" with three digits lost.
  const char* format = value < 9.995 ? "%.2f" : value < 99.95 ? "%.1f" : "%.0f";
  return absl::StrCat(Printf(format, value), " ", kUnits[unit]);
}

std::string FormatDuration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e12) return "?";
  uint64_t s = static_cast<uint64_t>(std::llround(seconds));
  char buffer[64];
  if (s < 60) {
    std::snprintf(buffer, sizeof(buffer), "%llus", static_cast<unsigned long long>(s));
  } else if (s < 3600) {
    std::snprintf(buffer, sizeof(buffer), "%llum%02llus", static_cast<unsigned long long>(s / 60),
                  static_cast<unsigned long long>(s % 60));
  } else if (s < 86400) {
    std::snprintf(buffer, sizeof(buffer), "%lluh%02llum",
                  static_cast<unsigned long long>(s / 3600),
                  static_cast<unsigned long long>(s % 3600 / 60));
  } else {
    std::snprintf(buffer, sizeof(buffer), "%llud%02lluh",
                  static_cast<unsigned long long>(s / 86400),
                  static_cast<unsigned long long>(s % 86400 / 3600));
  }
  return buffer;
}

std::string FormatTimestamp(const google::protobuf::Timestamp& time) {
  if (!IsSet(time)) return "-";
  std::time_t seconds = static_cast<std::time_t>(time.seconds());
  std::tm tm{};
  if (gmtime_r(&seconds, &tm) == nullptr) return "?";
  char buffer[64];
  if (std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) return "?";
  return buffer;
}

std::string FormatAge(const google::protobuf::Timestamp& time, double now_unix_seconds) {
  if (!IsSet(time)) return "-";
  double age = now_unix_seconds - TimestampSeconds(time);
  if (age < 0.5) return "now";
  return FormatDuration(age) + " ago";
}

std::string FormatMetric(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (std::fabs(value) >= 1000 && std::fabs(value) < 1e15) return Printf("%.0f", value);
  return Printf("%.4g", value);
}

std::string FormatPercent(double fraction) {
  if (!std::isfinite(fraction)) return "?";
  return Printf("%.1f", fraction * 100) + "%";
}

// ---- loss trend -----------------------------------------------------------------------------

std::string FormatSparkline(const std::vector<double>& values) {
  static const char* const kBlocks[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  constexpr int kLevels = static_cast<int>(std::size(kBlocks));
  double low = INFINITY;
  double high = -INFINITY;
  for (double v : values) {
    if (!std::isfinite(v)) continue;
    low = std::min(low, v);
    high = std::max(high, v);
  }
  std::string out;
  for (double v : values) {
    if (!std::isfinite(v)) {
      out += '!';
    } else if (!(high > low)) {
      out += kBlocks[kLevels / 2 - 1];  // flat: the middle, so that it reads as "no change"
    } else {
      // Halved first: high - low overflows for huge values of opposite signs.
      double fraction = (v / 2 - low / 2) / (high / 2 - low / 2);
      int level = static_cast<int>(std::lround(fraction * (kLevels - 1)));
      out += kBlocks[std::clamp(level, 0, kLevels - 1)];
    }
  }
  return out;
}

bool LocaleIsUtf8(const char* lc_all, const char* lc_ctype, const char* lang) {
  for (const char* value : {lc_all, lc_ctype, lang}) {
    if (value != nullptr && *value != '\0') return NamesUtf8(value);
  }
  return false;
}

// ---- progress -------------------------------------------------------------------------------

std::optional<double> EstimateEtaSeconds(const ProgressView& view) {
  if (view.state != v1::JOB_STATE_RUNNING) return std::nullopt;
  if (view.server_eta_seconds) return *view.server_eta_seconds;
  if (view.total_steps == 0) return std::nullopt;
  if (view.step >= view.total_steps) return 0.0;
  double remaining = static_cast<double>(view.total_steps - view.step);
  if (view.observed_steps > 0 && view.observed_seconds > 0) {
    return remaining * view.observed_seconds / static_cast<double>(view.observed_steps);
  }
  if (view.step_seconds && *view.step_seconds > 0) return remaining * *view.step_seconds;
  return std::nullopt;
}

std::string FormatProgressLine(const ProgressView& view, size_t width, bool utf8) {
  std::vector<std::string> head;  // before the bar
  std::vector<std::string> tail;  // after the bar
  std::string state = JobStateName(view.state);
  if (view.attempt > 1) absl::StrAppend(&state, " (attempt ", view.attempt, ")");
  head.push_back(state);
  std::string bar;
  if (view.total_steps > 0) {
    head.push_back(absl::StrCat("step ", view.step, "/", view.total_steps));
    constexpr int kBarWidth = 20;
    double fraction = std::min(1.0, static_cast<double>(view.step) /
                                        static_cast<double>(view.total_steps));
    int filled = static_cast<int>(fraction * kBarWidth);
    bar = absl::StrCat("[", std::string(filled, '#'), std::string(kBarWidth - filled, '.'), "] ",
                       static_cast<int>(fraction * 100), "%");
  } else if (view.step > 0) {
    head.push_back(absl::StrCat("step ", view.step));
  }
  if (view.loss) tail.push_back("loss " + FormatMetric(*view.loss));
  std::string trend;  // goes right after the loss
  if (utf8 && view.loss && !view.recent_losses.empty()) {
    trend = FormatSparkline(view.recent_losses);
  }
  if (view.eval_accuracy) tail.push_back("eval acc " + FormatPercent(*view.eval_accuracy));
  if (view.tokens_per_second) tail.push_back(FormatMetric(*view.tokens_per_second) + " tok/s");
  if (std::optional<double> eta = EstimateEtaSeconds(view)) {
    tail.push_back("ETA " + FormatDuration(*eta));
  }
  auto join = [&](bool with_bar, bool with_trend) {
    std::string line = absl::StrJoin(head, "  ");
    if (with_bar && !bar.empty()) absl::StrAppend(&line, " ", bar);
    for (size_t i = 0; i < tail.size(); ++i) {
      absl::StrAppend(&line, "  ", tail[i]);
      if (i == 0 && view.loss && with_trend && !trend.empty()) absl::StrAppend(&line, " ", trend);
    }
    return line;
  };
  std::string line = join(true, true);
  if (width > 0 && DisplayWidth(line) > width) line = join(false, true);
  if (width > 0 && DisplayWidth(line) > width) line = join(false, false);
  if (width > 0 && DisplayWidth(line) > width) line = CutToWidth(line, width);
  return line;
}

bool ApplyEvent(const v1::JobEvent& event, ProgressView& view,
                std::optional<v1::JobEvent>& first_train) {
  if (event.attempt() != 0 && event.attempt() != view.attempt) {
    view.attempt = event.attempt();
    first_train.reset();
    view.observed_steps = 0;
    view.observed_seconds = 0;
  }
  switch (event.kind_case()) {
    case v1::JobEvent::kStateChange:
      view.state = event.state_change().to();
      if (view.state != v1::JOB_STATE_RUNNING) view.server_eta_seconds.reset();
      return true;
    case v1::JobEvent::kTrain: {
      const v1::TrainMetrics& t = event.train();
      view.step = t.step();
      view.loss = t.loss();
      view.recent_losses.push_back(t.loss());
      if (view.recent_losses.size() > kTrendValues) {
        view.recent_losses.erase(view.recent_losses.begin(),
                                 view.recent_losses.end() - kTrendValues);
      }
      if (t.tokens_per_second() > 0) view.tokens_per_second = t.tokens_per_second();
      if (t.step_seconds() > 0) view.step_seconds = t.step_seconds();
      view.server_eta_seconds.reset();  // the coordinator's estimate is older than this step
      if (!first_train || first_train->train().step() > t.step()) {
        first_train = event;
        view.observed_steps = 0;
        view.observed_seconds = 0;
      } else {
        view.observed_steps = t.step() - first_train->train().step();
        view.observed_seconds = TimestampSeconds(event.time()) - TimestampSeconds(first_train->time());
      }
      return true;
    }
    case v1::JobEvent::kEval:
      view.eval_accuracy = event.eval().accuracy();
      return true;
    default:
      return false;
  }
}

ProgressView ViewOfJob(const v1::Job& job) {
  ProgressView view;
  view.state = job.state();
  view.attempt = job.attempt();
  view.step = job.progress().step();
  view.total_steps = job.progress().total_steps();
  if (job.has_latest_train()) {
    view.loss = job.latest_train().loss();
    if (job.latest_train().tokens_per_second() > 0) {
      view.tokens_per_second = job.latest_train().tokens_per_second();
    }
    if (job.latest_train().step_seconds() > 0) view.step_seconds = job.latest_train().step_seconds();
  }
  if (job.has_latest_eval()) view.eval_accuracy = job.latest_eval().accuracy();
  if (job.progress().has_eta()) {
    double eta = DurationSeconds(job.progress().eta());
    if (eta > 0) view.server_eta_seconds = eta;
  }
  return view;
}

std::string FormatEventLine(const v1::JobEvent& event, uint64_t total_steps) {
  std::string line = absl::StrCat("#", event.seq(), " ");
  switch (event.kind_case()) {
    case v1::JobEvent::kStateChange: {
      const v1::StateChange& s = event.state_change();
      absl::StrAppend(&line, "state ", JobStateName(s.from()), " -> ", JobStateName(s.to()),
                      " (attempt ", event.attempt(), ")");
      if (!s.reason().empty()) absl::StrAppend(&line, ": ", Clean(s.reason()));
      break;
    }
    case v1::JobEvent::kTrain:
      absl::StrAppend(&line, "train ", TrainText(event.train(), total_steps));
      break;
    case v1::JobEvent::kEval:
      absl::StrAppend(&line, "eval ", EvalText(event.eval()));
      break;
    case v1::JobEvent::kCheckpoint: {
      const v1::Checkpoint& c = event.checkpoint();
      absl::StrAppend(&line, "checkpoint ", Clean(c.id()), " step ", c.step(), " final ",
                      c.final() ? "yes" : "no", " files ", c.files_size(), " size ",
                      FormatBytes(CheckpointBytes(c)));
      break;
    }
    case v1::JobEvent::kLog: {
      const v1::LogLine& l = event.log();
      std::string level = EnumSuffix(v1::LogLine::Level_Name(l.level()), "LEVEL_",
                                     static_cast<int>(l.level()));
      absl::StrAppend(&line, "log ", l.rank() < 0 ? "agent" : absl::StrCat("rank ", l.rank()),
                      " ", level, ": ", Clean(l.text()));
      break;
    }
    default:
      absl::StrAppend(&line, "event (unknown kind)");
  }
  return line;
}

// ---- tables and records ---------------------------------------------------------------------

std::string FormatTable(const std::vector<std::string>& headers,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(headers.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  };
  measure(headers);
  for (const auto& row : rows) measure(row);
  std::string out;
  auto emit = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < widths.size(); ++i) {
      std::string cell = i < row.size() ? Clean(row[i]) : "";
      if (i + 1 < widths.size()) cell.resize(widths[i], ' ');
      absl::StrAppend(&line, i == 0 ? "" : "  ", cell);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    absl::StrAppend(&out, line, "\n");
  };
  emit(headers);
  for (const auto& row : rows) emit(row);
  return out;
}

std::string FormatStepProgress(uint64_t step, uint64_t total_steps) {
  if (total_steps > 0) {
    int percent = static_cast<int>(
        std::min(1.0, static_cast<double>(step) / static_cast<double>(total_steps)) * 100);
    return absl::StrCat("step ", step, "/", total_steps, " (", percent, "%)");
  }
  if (step > 0) return absl::StrCat("step ", step);
  return "-";
}

std::string FormatJobDetails(const v1::Job& job) {
  std::vector<std::pair<std::string, std::string>> fields;
  fields.emplace_back("id", job.id());
  fields.emplace_back("name", job.name());
  fields.emplace_back("owner", job.owner().empty() ? "-" : job.owner());
  fields.emplace_back("state", JobStateName(job.state()));
  fields.emplace_back("reason", job.state_reason().empty() ? "-" : job.state_reason());
  if (job.state() == v1::JOB_STATE_QUEUED) {
    // The coordinator's live view of the queue (rewritten by its scheduling passes).
    if (job.has_queue() && job.queue().reason() != v1::QUEUE_REASON_UNSPECIFIED) {
      const v1::QueueStatus& queue = job.queue();
      fields.emplace_back(
          "queue", absl::StrCat("#", queue.position(), " ", QueueReasonName(queue.reason()),
                                ": ", queue.message(), "; ETA ",
                                queue.has_eta() ? FormatDuration(static_cast<double>(
                                                      queue.eta().seconds()))
                                                : "unknown"));
    } else {
      fields.emplace_back("queue", "not yet placed in the queue's order");
    }
  }
  if (job.paused()) fields.emplace_back("paused", "yes (loratrf resume ID)");
  fields.emplace_back("attempt", absl::StrCat(job.attempt()));
  fields.emplace_back("workers",
                      job.workers().empty() ? "-" : absl::StrJoin(job.workers(), ", "));
  std::string progress = FormatStepProgress(job.progress().step(), job.progress().total_steps());
  if (job.progress().epoch() > 0) {
    absl::StrAppend(&progress, ", epoch ", FormatMetric(job.progress().epoch()));
  }
  if (job.progress().tokens_seen() > 0) {
    absl::StrAppend(&progress, ", ", job.progress().tokens_seen(), " tokens");
  }
  if (std::optional<double> eta = EstimateEtaSeconds(ViewOfJob(job))) {
    absl::StrAppend(&progress, ", ETA ", FormatDuration(*eta));
  }
  fields.emplace_back("progress", progress);
  fields.emplace_back("train", job.has_latest_train()
                                   ? TrainText(job.latest_train(), job.progress().total_steps())
                                   : "-");
  fields.emplace_back("eval", job.has_latest_eval() ? EvalText(job.latest_eval()) : "-");
  if (!job.sweep_id().empty()) fields.emplace_back("sweep", job.sweep_id());
  if (job.spec().labels_size() > 0) {
    std::map<std::string, std::string> sorted(job.spec().labels().begin(),
                                              job.spec().labels().end());
    std::vector<std::string> labels;
    for (const auto& [key, value] : sorted) labels.push_back(absl::StrCat(key, "=", value));
    fields.emplace_back("labels", absl::StrJoin(labels, ", "));
  }
  fields.emplace_back("created", FormatTimestamp(job.created_at()));
  fields.emplace_back("started", FormatTimestamp(job.started_at()));
  fields.emplace_back("finished", FormatTimestamp(job.finished_at()));
  std::string out;
  for (const auto& [key, value] : fields) {
    std::string label = key + ":";
    label.resize(10, ' ');
    absl::StrAppend(&out, label, Clean(value), "\n");
  }
  return out;
}

std::vector<std::string> JobTableHeaders() {
  return {"ID", "NAME", "STATE", "OWNER", "ATTEMPT", "STEP", "CREATED"};
}

std::vector<std::string> JobTableRow(const v1::Job& job) {
  std::string step = job.progress().total_steps() > 0
                         ? absl::StrCat(job.progress().step(), "/", job.progress().total_steps())
                     : job.progress().step() > 0 ? absl::StrCat(job.progress().step())
                                                 : "-";
  return {job.id(),
          job.name(),
          JobStateName(job.state()),
          job.owner().empty() ? "-" : job.owner(),
          absl::StrCat(job.attempt()),
          step,
          FormatTimestamp(job.created_at())};
}

std::vector<std::string> JobWideTableHeaders() {
  return {"ID",     "NAME",  "STATE", "OWNER", "PRIORITY", "ATTEMPT",
          "WORKERS", "QUEUE", "ETA",   "STEP",  "CREATED"};
}

std::vector<std::string> JobWideTableRow(const v1::Job& job) {
  std::vector<std::string> row = JobTableRow(job);  // ID NAME STATE OWNER ATTEMPT STEP CREATED
  std::string queue = "-", eta = "-";
  if (job.state() == v1::JOB_STATE_QUEUED && job.has_queue() &&
      job.queue().reason() != v1::QUEUE_REASON_UNSPECIFIED) {
    queue = absl::StrCat("#", job.queue().position(), " ", QueueReasonName(job.queue().reason()));
    if (job.queue().has_eta()) eta = FormatDuration(static_cast<double>(job.queue().eta().seconds()));
  } else if (std::optional<double> left = EstimateEtaSeconds(ViewOfJob(job))) {
    eta = FormatDuration(*left);
  }
  return {row[0],
          row[1],
          row[2],
          row[3],
          absl::StrCat(job.spec().priority()),
          row[4],
          job.workers().empty() ? "-" : absl::StrJoin(job.workers(), ","),
          queue,
          eta,
          row[5],
          row[6]};
}

std::vector<std::string> CheckpointTableHeaders() {
  return {"ID", "STEP", "ATTEMPT", "FINAL", "EVAL_ACC", "FILES", "SIZE"};
}

std::vector<std::string> CheckpointTableRow(const v1::Checkpoint& checkpoint) {
  return {checkpoint.id(),
          absl::StrCat(checkpoint.step()),
          absl::StrCat(checkpoint.attempt()),
          checkpoint.final() ? "yes" : "no",
          checkpoint.has_eval() ? FormatPercent(checkpoint.eval().accuracy()) : "-",
          absl::StrCat(checkpoint.files_size()),
          FormatBytes(CheckpointBytes(checkpoint))};
}

std::vector<std::string> WorkerTableHeaders() {
  return {"NAME", "STATE", "SLOTS_FREE", "DEVICE", "RUNNING", "LAST_HEARTBEAT"};
}

std::vector<std::string> WorkerTableRow(const v1::Worker& worker, double now_unix_seconds) {
  return {worker.name(),
          worker.cordoned() ? WorkerStateName(worker.state()) + ",cordoned"
                            : WorkerStateName(worker.state()),
          absl::StrCat(worker.free_slots(), "/", worker.slots()),
          DeviceName(worker.device()),
          worker.running_jobs().empty() ? "-" : absl::StrJoin(worker.running_jobs(), ","),
          FormatAge(worker.last_heartbeat_at(), now_unix_seconds)};
}

// ---- metrics history ------------------------------------------------------------------------

std::vector<contract::MetricsRow> MetricsHistory(const std::vector<v1::JobEvent>& events) {
  std::vector<contract::MetricsRow> rows;
  uint32_t attempt = 0;  // of the latest row
  for (const v1::JobEvent& event : events) {
    std::optional<contract::MetricsRow> row;
    if (event.has_train()) row = TrainRowOf(event.train());
    if (event.has_eval()) row = EvalRowOf(event.eval());
    if (!row) continue;
    if (event.attempt() > attempt) {
      if (attempt != 0) {
        const uint64_t resumed_at = RowStep(*row);
        rows.erase(std::remove_if(rows.begin(), rows.end(),
                                  [&](const contract::MetricsRow& r) {
                                    return RowStep(r) >= resumed_at;
                                  }),
                   rows.end());
      }
      attempt = event.attempt();
    }
    rows.push_back(*std::move(row));
  }
  return rows;
}

std::vector<std::string> MetricsTableHeaders() {
  return {"TYPE", "STEP", "EPOCH", "LOSS", "LR", "GRAD_NORM", "TOK/S", "EVAL_LOSS", "EVAL_ACC"};
}

std::vector<std::string> MetricsTableRow(const contract::MetricsRow& row) {
  auto measured = [](double v) { return v != 0 ? FormatMetric(v) : std::string("-"); };
  if (const auto* t = std::get_if<contract::TrainRow>(&row)) {
    return {contract::metrics_keys::kTrainType,
            absl::StrCat(t->step),
            FormatMetric(t->epoch),
            FormatMetric(t->loss),
            FormatMetric(t->learning_rate),
            measured(t->grad_norm),
            measured(t->tokens_per_second),
            "-",
            "-"};
  }
  const auto& e = std::get<contract::EvalRow>(row);
  return {contract::metrics_keys::kEvalType,
          absl::StrCat(e.step),
          "-",
          "-",
          "-",
          "-",
          "-",
          FormatMetric(e.loss),
          FormatPercent(e.accuracy)};
}

std::string FormatMetricsJson(const std::vector<contract::MetricsRow>& rows) {
  std::vector<std::string> objects;
  objects.reserve(rows.size());
  for (const contract::MetricsRow& row : rows) {
    objects.push_back(std::visit([](const auto& r) { return contract::ToJsonLine(r); }, row));
  }
  return absl::StrCat("[", absl::StrJoin(objects, ","), "]\n");
}

std::string FormatMetricsCsv(const std::vector<contract::MetricsRow>& rows) {
  namespace keys = contract::metrics_keys;
  const std::vector<std::string> columns = {
      keys::kType,         keys::kStep,         keys::kEpoch,           keys::kLoss,
      keys::kLearningRate, keys::kGradNorm,     keys::kTokensPerSecond, keys::kSamplesPerSecond,
      keys::kStepSeconds,  keys::kEvalLoss,     keys::kEvalAccuracy,    keys::kEvalExamples};
  std::string out = absl::StrCat(absl::StrJoin(columns, ","), "\n");
  for (const contract::MetricsRow& row : rows) {
    std::vector<std::string> cells(columns.size());
    if (const auto* t = std::get_if<contract::TrainRow>(&row)) {
      cells = {keys::kTrainType,
               absl::StrCat(t->step),
               ExactNumber(t->epoch),
               ExactNumber(t->loss),
               ExactNumber(t->learning_rate),
               ExactNumber(t->grad_norm),
               ExactNumber(t->tokens_per_second),
               ExactNumber(t->samples_per_second),
               ExactNumber(t->step_seconds),
               "",
               "",
               ""};
    } else {
      const auto& e = std::get<contract::EvalRow>(row);
      cells = {keys::kEvalType, absl::StrCat(e.step), "", "", "", "", "", "", "",
               ExactNumber(e.loss), ExactNumber(e.accuracy), absl::StrCat(e.examples)};
    }
    absl::StrAppend(&out, absl::StrJoin(cells, ","), "\n");
  }
  return out;
}

}  // namespace loratrf::client
