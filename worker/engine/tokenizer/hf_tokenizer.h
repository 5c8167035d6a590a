// A Hugging Face tokenizer.json, loaded and applied as the tokenizers library applies it:
//
//   text ─▶ added tokens (raw) ─▶ normalizer ─▶ added tokens (normalized) ─▶ pre-tokenizer
//        ─▶ model (BPE / WordPiece / WordLevel) ─▶ post-processor (with add_special_tokens)
//
// and back: ids ─▶ token strings ─▶ decoder ─▶ text. Any component this code does not
// implement is an error naming it at load time, never a silent approximation: a wrong id
// would train the model on garbage.
//
// Threading: immutable after Load (the BPE model's word cache has its own mutex); Encode,
// EncodePair and Decode may run on many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/engine/data/tokenizer.h"

namespace loratrf::engine::tokenizer {

class AddedTokens;
class Decoder;
class Model;
class Normalizer;
class PostProcessor;
class PreTokenizer;

inline constexpr uint64_t kMaxTokenizerJsonBytes = 512ull << 20;
inline constexpr uint64_t kMaxTokenId = (1u << 24) - 1;  // far above any real vocab

class HfTokenizer : public Tokenizer {
 public:
  // `path` is a tokenizer.json file or a directory holding one. From a directory, the EOS
  // token comes from tokenizer_config.json ("eos_token"), else config.json ("eos_token_id").
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> Load(const std::string& path);
  // `json_text` is the contents of a tokenizer.json; errors start with `source`.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> Parse(absl::string_view json_text,
                                                            absl::string_view source);
  ~HfTokenizer() override;

  absl::StatusOr<std::vector<int64_t>> Encode(absl::string_view text,
                                              bool add_special_tokens) const override;
  absl::StatusOr<std::vector<int64_t>> EncodePair(absl::string_view text,
                                                  absl::string_view text_pair) const override;
  int64_t pad_id() const override;
  std::optional<int64_t> eos_id() const override { return eos_id_; }

  // Text for `ids`; special added tokens are dropped when `skip_special_tokens`. An id the
  // tokenizer does not know is an InvalidArgument naming it.
  absl::StatusOr<std::string> Decode(const std::vector<int64_t>& ids,
                                     bool skip_special_tokens) const;
  // The id of a token string (vocab or added token).
  std::optional<int64_t> TokenToId(absl::string_view token) const;
  // One past the largest id (vocab and added tokens).
  int64_t id_limit() const { return static_cast<int64_t>(id_to_token_.size()); }

 private:
  HfTokenizer();
  absl::StatusOr<std::vector<int32_t>> EncodeText(absl::string_view text) const;
  absl::Status EncodeNormalizedPiece(std::string text, bool at_input_start,
                                     std::vector<int32_t>& ids) const;

  std::unique_ptr<Normalizer> normalizer_;        // null: none
  std::unique_ptr<PreTokenizer> pre_tokenizer_;   // null: the whole piece is one word
  std::unique_ptr<Model> model_;
  std::unique_ptr<PostProcessor> post_processor_; // null: adds nothing
  std::unique_ptr<Decoder> decoder_;              // null: tokens joined by spaces
  std::unique_ptr<AddedTokens> raw_added_;        // matched before normalization
  std::unique_ptr<AddedTokens> normalized_added_; // matched in normalized text
  std::vector<std::string> id_to_token_;          // by id ("" where nothing is)
  std::vector<bool> has_token_;                   // by id: a vocab or added token has it
  std::vector<bool> is_special_;                  // by id: special added tokens
  std::optional<int64_t> pad_id_;
  std::optional<int64_t> eos_id_;
};

}  // namespace loratrf::engine::tokenizer
