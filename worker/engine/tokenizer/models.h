// tokenizer.json "model": one pre-tokenized word → token ids. Supported: BPE (merges as
// strings or pairs, byte fallback, unk fusing, ignore_merges, subword prefix and word suffix),
// WordPiece and WordLevel. Unigram and BPE dropout are errors naming them.
//
// Threading: immutable after parsing except the BPE word cache, which has its own mutex;
// Tokenize may run on many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "worker/engine/tokenizer/json_fields.h"

namespace loratrf::engine::tokenizer {

using Vocab = absl::flat_hash_map<std::string, int32_t>;

class Model {
 public:
  virtual ~Model() = default;
  // Appends the ids of `word` (non-empty, valid UTF-8) to `ids`.
  virtual absl::Status Tokenize(absl::string_view word, std::vector<int32_t>& ids) const = 0;
  const Vocab& vocab() const { return vocab_; }

 protected:
  Vocab vocab_;
};

absl::StatusOr<std::unique_ptr<Model>> ParseModel(const Json& json, absl::string_view path);

}  // namespace loratrf::engine::tokenizer
