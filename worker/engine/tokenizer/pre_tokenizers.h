// tokenizer.json "pre_tokenizer": normalized text → the words the model tokenizes one by one.
// Supported: ByteLevel, Split, Metaspace, Whitespace, WhitespaceSplit, BertPreTokenizer,
// Punctuation, Digits, CharDelimiterSplit and Sequence; anything else is an error naming it.
//
// Threading: immutable after parsing; PreTokenize may run on many threads at once.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/tokenizer/json_fields.h"

namespace loratrf::engine::tokenizer {

// One piece of text on its way to the model.
struct Word {
  std::string text;
  // The piece starts at the very beginning of the input (Metaspace's prepend_scheme "first"
  // adds its marker only there).
  bool at_input_start = false;
};

// How the pieces a pattern finds are kept (Hugging Face's SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Cuts `text` into pieces given the [begin, end) ranges that matched a pattern, which cover
// parts of `text` in order and do not overlap. Empty pieces are dropped.
std::vector<std::pair<size_t, size_t>> SplitByMatches(
    size_t text_size, const std::vector<std::pair<size_t, size_t>>& matches,
    SplitBehavior behavior, bool invert);

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces every word by the words it splits into, in order.
  virtual absl::Status PreTokenize(std::vector<Word>& words) const = 0;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const Json& json,
                                                                absl::string_view path);

}  // namespace loratrf::engine::tokenizer
