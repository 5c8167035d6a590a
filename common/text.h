// Small text helpers shared by every module: checking a file name that came from a file or a
// request, making text safe to store and show, and trimming library error messages to the one
// line a user should see.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace loratrf {

// A single path component: not empty, not "." or "..", no '/' or NUL, at most 255 bytes.
// Anything else from a file (an index, a manifest) must not be joined to a directory.
inline bool IsPlainFileName(absl::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.size() <= 255 &&
         name.find('/') == absl::string_view::npos && name.find('\0') == absl::string_view::npos;
}

// `text` as valid UTF-8 without control characters (tabs stay), at most `max_bytes` long and cut
// at a character boundary: "a rank said \xff" → "a rank said ?" ('?' for each byte that is not
// part of a valid sequence). For text that is stored in a proto string field and shown to users.
std::string SanitizeText(absl::string_view text, size_t max_bytes);

// How much of a file's content one error message repeats (Excerpt's default).
inline constexpr size_t kMaxExcerptBytes = 64;

// A piece of a file's (or any untrusted input's) content to quote in an error message: the
// one helper every reader uses for that, so that a message never carries more than a few bytes
// of what was read (the file may be another tenant's, or a secret) and always stays one line.
// Valid UTF-8 and printable ASCII are kept; every other byte (control characters, newlines,
// tabs, DEL, invalid UTF-8) and the C1 and bidirectional control characters are written as
// \xNN; the result is at most `max_bytes` long plus "..." when cut (never inside an escape
// or a character): the bytes a, newline, b, 0xFF come out as the 10 characters a\x0ab\xff.
std::string Excerpt(absl::string_view content, size_t max_bytes = kMaxExcerptBytes);

// The first line of a message: c10::Error's what() carries a C++ backtrace after it.
inline std::string FirstLine(std::string message) {
  if (size_t newline = message.find('\n'); newline != std::string::npos) message.resize(newline);
  return message;
}

// nlohmann's "[json.exception.parse_error.101] parse error at line 1, ..." without the tag,
// and with the input it quotes ("...; last read: 'TEXT'...") cut to an Excerpt.
std::string WithoutJsonExceptionTag(std::string message);

}  // namespace loratrf
