// tokenizer.json "normalizer": text → normalized text, before pre-tokenization. Supported:
// NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, Replace, Prepend, BertNormalizer,
// ByteLevel and Sequence; anything else is an error naming it.
//
// Threading: immutable after parsing; Normalize may run on many threads at once.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/tokenizer/json_fields.h"

namespace loratrf::engine::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Rewrites `text` (valid UTF-8) in place. Sets `keeps_start` to false when the input's first
  // character was removed (Hugging Face then no longer sees the text as starting at offset 0,
  // which Metaspace's prepend_scheme "first" depends on); never sets it to true.
  virtual absl::Status Normalize(std::string& text, bool& keeps_start) const = 0;
};

// Parses one normalizer object (`path` names it in errors).
absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const Json& json,
                                                            absl::string_view path);

// Replace's pattern or Split's: {"String": literal} or {"Regex": pattern}.
class Regex;
absl::StatusOr<Regex> ParsePattern(const Json& parent, absl::string_view path);

}  // namespace loratrf::engine::tokenizer
