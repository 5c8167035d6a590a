// The one way this project reads JSON text: nlohmann's SAX parser (iterative, one pass) feeding
// a DOM builder that enforces a nesting limit and refuses duplicate keys as it goes. Linear in
// the input apart from std::map's log n per object key, however wide or deep the text is.
//
// Why not json::parse with a callback: nlohmann's callback parser walks the whole enclosing
// object at every inner object's end (looking for discarded values), which is quadratic in the
// number of entries (a 40,000-entry safetensors header took 18 s). Why a depth limit: the DOM
// that comes back is recursive (copy, dump and compare recurse once per level), so depth must be
// bounded before anyone holds it. Why duplicate keys are refused by default: JSON allows them and
// nlohmann keeps the last, so two readers of one file could disagree.
//
// Threading: free functions without shared state; call from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace loratrf {

struct JsonLimits {
  // Containers (objects and arrays) nested deeper than this are refused; the root is level 1.
  int max_depth = 64;
  // When false, a key repeated in one object is an error; when true, the last one wins.
  bool allow_duplicate_keys = false;
};

// What went wrong, for callers that word their own message (the status message is generic).
struct JsonProblem {
  enum class Kind { kNone, kSyntax, kTooDeep, kDuplicateKey };
  Kind kind = Kind::kNone;
  // The keys leading from the root to the container where the problem is (an array position is
  // written "[i]"): for kDuplicateKey the object holding the key twice.
  std::vector<std::string> path;
  std::string key;  // kDuplicateKey: the repeated key
};

// Parses one JSON text. Errors are INVALID_ARGUMENT with a message of at most a few hundred
// bytes, valid UTF-8: "syntax error ... at line L, column C", "nested deeper than N levels (at
// a.b)", "duplicate key 'k' (at a.b)". `problem`, when given, is filled on failure.
absl::StatusOr<nlohmann::json> ParseJson(absl::string_view text, const JsonLimits& limits = {},
                                         JsonProblem* problem = nullptr);

// `path` for messages: {"a", "[0]", "b"} → "a[0].b"; each key cut to a bounded length and
// made valid UTF-8.
std::string JsonPathString(const std::vector<std::string>& path);

}  // namespace loratrf
