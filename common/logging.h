// Logging for the long-running binaries (coordinator, agent): one library (spdlog), levels, and
// JSON lines for Kubernetes log collectors. Everything goes to stderr.
//
//   loratrf::logging::Init({.program = "loratrf-coordinator", .level = "info", .json = true});
//   LOG_INFO("job {} queued", id);
//   LogIfError(store->UpsertWorker(w), "persisting the heartbeat of worker " + name);
//
// Text lines:  2026-12-03T07:52:17.123Z INFO  loratrf-coordinator: job j-1 queued
// JSON lines:  {"ts":"2026-12-03T07:52:17.123Z","level":"info","program":"loratrf-coordinator",
//               "msg":"job j-1 queued"}
//
// Never log a secret: bearer tokens, TLS keys and the contents of token files stay out of every
// message (callers are named by their token's name, never by the token).
//
// Threading: every function is safe to call from any thread; Init is called once, first, by main.
#pragma once

#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace loratrf::logging {

struct Options {
  std::string program;         // the binary, on every line
  std::string level = "info";  // debug | info | warn | error
  bool json = false;           // one JSON object per line instead of text
};

// Checks a --log-level value.
absl::StatusOr<spdlog::level::level_enum> ParseLevel(std::string_view level);
// Checks a --log-format value ("text" or "json") and returns whether it is JSON.
absl::StatusOr<bool> ParseFormat(std::string_view format);

// Installs the stderr logger with these options. InvalidArgument names a bad level.
absl::Status Init(const Options& options);

// The pieces of one JSON line, exposed for tests: escapes per RFC 8259 (control characters as
// \u00XX, invalid UTF-8 bytes replaced by U+FFFD so the line stays valid JSON).
std::string JsonLine(std::string_view timestamp, std::string_view level, std::string_view program,
                     std::string_view message);

}  // namespace loratrf::logging

#define LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)

namespace loratrf {

// For a status the caller cannot act on (best-effort persistence, clean-up): logs it as a
// warning with what was being done, instead of dropping it. Returns whether it was OK.
inline bool LogIfError(const absl::Status& status, std::string_view doing) {
  if (status.ok()) return true;
  LOG_WARN("{} failed: {}", doing, status.ToString());
  return false;
}

}  // namespace loratrf
