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

#include <spdlog/spdlog.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace loratrf::logging {

struct Options {
  std::string program;         // the binary, on every line
  std::string level = "info";  // debug | info | warn | error
  bool json = false;           // one JSON object per line instead of text
};

// Checks a --log-level value.
absl::StatusOr<spdlog::level::level_enum> ParseLevel(absl::string_view level);
// Checks a --log-format value ("text" or "json") and returns whether it is JSON.
absl::StatusOr<bool> ParseFormat(absl::string_view format);

// Installs the stderr logger with these options. InvalidArgument names a bad level.
absl::Status Init(const Options& options);

// The pieces of one JSON line, exposed for tests: escapes per RFC 8259 (control characters as
// \u00XX, invalid UTF-8 bytes replaced by U+FFFD so the line stays valid JSON).
std::string JsonLine(absl::string_view timestamp, absl::string_view level, absl::string_view program,
                     absl::string_view message);

}  // namespace loratrf::logging

// absl::string_view (what absl::Status::message() returns) formats like any string.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename FormatContext>
  auto format(absl::string_view text, FormatContext& context) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(text.data(), text.size()),
                                                    context);
  }
};

#define LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)

namespace loratrf {

// For a status the caller cannot act on (best-effort persistence, clean-up): logs it as a
// warning with what was being done, instead of dropping it. Returns whether it was OK.
inline bool LogIfError(const absl::Status& status, absl::string_view doing) {
  if (status.ok()) return true;
  LOG_WARN("{} failed: {}", doing, status.ToString());
  return false;
}

}  // namespace loratrf
