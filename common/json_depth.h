// A guard for JSON parsers that recurse once per nesting level (nlohmann's does): refuse deep
// input before parsing it, so that hostile text cannot exhaust the stack.
#pragma once

#include "absl/strings/string_view.h"

namespace loratrf {

// True when `text` opens more than `max_depth` nested arrays/objects (strings are skipped).
inline bool JsonNestedDeeperThan(absl::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return true;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return false;
}

}  // namespace loratrf
