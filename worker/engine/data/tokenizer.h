// Tokenizer: text → token ids, the one thing the data layer needs from a tokenizer. The
// implementations (tokenizer.json: BPE, WordPiece, Unigram) live elsewhere; the data layer and
// its tests only see this interface, and data given as token ids needs no tokenizer at all.
//
// Threading: implementations must allow concurrent const calls (Encode may be called from
// several threads at once); nothing here mutates a tokenizer.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace loratrf::engine {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Encodes one text. With `add_special_tokens`, applies the tokenizer's single-sequence
  // template (e.g. BOS for Llama, [CLS] … [SEP] for BERT); without, only the text's own tokens.
  // An error means the text cannot be encoded (e.g. invalid UTF-8), never a truncation.
  virtual absl::StatusOr<std::vector<int64_t>> Encode(absl::string_view text,
                                                      bool add_special_tokens) const = 0;

  // Encodes a sentence pair with the tokenizer's pair template (BERT: [CLS] a [SEP] b [SEP]),
  // as transformers does for `tokenizer(text, text_pair)`. Special tokens are always added.
  virtual absl::StatusOr<std::vector<int64_t>> EncodePair(absl::string_view text,
                                                          absl::string_view text_pair) const = 0;

  // The id used to right-pad a batch (tokenizer.json's padding token, else EOS, else 0):
  // padded positions are masked out, so its value only has to be a valid embedding row.
  virtual int64_t pad_id() const = 0;

  // End of sequence; appended after a causal_lm completion so that the model learns to stop.
  virtual std::optional<int64_t> eos_id() const = 0;
};

}  // namespace loratrf::engine
