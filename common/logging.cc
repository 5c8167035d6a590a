#include "common/logging.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>

#include <spdlog/formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace loratrf::logging {
namespace {

std::string Timestamp(std::chrono::system_clock::time_point time) {
  auto since_epoch = time.time_since_epoch();
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds);
  std::time_t t = static_cast<std::time_t>(seconds.count());
  std::tm utc{};
  gmtime_r(&t, &utc);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S", &utc);
  return absl::StrFormat("%s.%03dZ", buffer, static_cast<int>(millis.count()));
}

absl::string_view LevelName(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "off";
  }
}

// Length of the valid UTF-8 sequence at s[i], or 0 when the bytes there are not one.
size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (length == 0 || i + length > s.size()) return 0;
  for (size_t k = 1; k < length; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return 0;
  }
  if (length == 2 && c < 0xC2) return 0;  // overlong
  return length;
}

void AppendJsonString(std::string& out, absl::string_view s) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c == '\n') {
      out += "\\n", ++i;
    } else if (c == '\t') {
      out += "\\t", ++i;
    } else if (c < 0x20 || c == 0x7F) {
      out += absl::StrFormat("\\u%04x", c), ++i;
    } else if (size_t length = Utf8SequenceLength(s, i); length > 0) {
      out.append(s.data() + i, length);
      i += length;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD for a byte that is not valid UTF-8
      ++i;
    }
  }
  out += '"';
}

// One line per message: text for people, JSON for log collectors.
class LineFormatter final : public spdlog::formatter {
 public:
  LineFormatter(std::string program, bool json) : program_(std::move(program)), json_(json) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    absl::string_view message(msg.payload.data(), msg.payload.size());
    std::string line;
    if (json_) {
      line = JsonLine(Timestamp(msg.time), LevelName(msg.level), program_, message);
    } else {
      std::string level(LevelName(msg.level));
      for (char& ch : level) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      line = absl::StrFormat("%s %-5s %s: %s", Timestamp(msg.time), level, program_, message);
    }
    line += '\n';
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<LineFormatter>(program_, json_);
  }

 private:
  std::string program_;
  bool json_;
};

}  // namespace

std::string JsonLine(absl::string_view timestamp, absl::string_view level, absl::string_view program,
                     absl::string_view message) {
  std::string line = "{\"ts\":";
  AppendJsonString(line, timestamp);
  line += ",\"level\":";
  AppendJsonString(line, level);
  line += ",\"program\":";
  AppendJsonString(line, program);
  line += ",\"msg\":";
  AppendJsonString(line, message);
  line += '}';
  return line;
}

absl::StatusOr<spdlog::level::level_enum> ParseLevel(absl::string_view level) {
  if (level == "debug") return spdlog::level::debug;
  if (level == "info") return spdlog::level::info;
  if (level == "warn") return spdlog::level::warn;
  if (level == "error") return spdlog::level::err;
  return absl::InvalidArgumentError(
      absl::StrCat("--log-level: must be debug, info, warn or error, got '", level,
                   "'"));
}

absl::StatusOr<bool> ParseFormat(absl::string_view format) {
  if (format == "text") return false;
  if (format == "json") return true;
  return absl::InvalidArgumentError(
      absl::StrCat("--log-format: must be text or json, got '", format, "'"));
}

absl::Status Init(const Options& options) {
  absl::StatusOr<spdlog::level::level_enum> level = ParseLevel(options.level);
  if (!level.ok()) return level.status();
  auto logger = std::make_shared<spdlog::logger>(
      options.program, std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_formatter(std::make_unique<LineFormatter>(options.program, options.json));
  logger->set_level(*level);
  // A warning or worse reaches the collector at once, even if the process dies right after.
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
  return absl::OkStatus();
}

}  // namespace loratrf::logging
