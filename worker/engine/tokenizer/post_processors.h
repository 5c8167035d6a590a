// tokenizer.json "post_processor": adds the special tokens of a single text or a pair (what
// `add_special_tokens` means). Supported: TemplateProcessing, BertProcessing,
// RobertaProcessing, ByteLevel (ids unchanged) and Sequence; anything else is an error.
//
// Threading: immutable after parsing.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/tokenizer/json_fields.h"

namespace loratrf::engine::tokenizer {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // `a` with the single template, or `a` and `*b` with the pair template.
  virtual std::vector<int32_t> Process(const std::vector<int32_t>& a,
                                       const std::vector<int32_t>* b) const = 0;
  // Every id it may add (checked against the vocab when the tokenizer loads).
  virtual std::vector<int32_t> SpecialIds() const = 0;
};


// Returns nullptr for post-processors that leave the ids alone (ByteLevel).
absl::StatusOr<std::unique_ptr<PostProcessor>> ParsePostProcessor(const Json& json,
                                                                  absl::string_view path);

}  // namespace loratrf::engine::tokenizer
