#include "worker/engine/tokenizer/hf_tokenizer.h"

#include <sys/stat.h>

#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_join.h"
#include "common/json_parse.h"
#include "common/read_file.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "worker/engine/tokenizer/decoders.h"
#include "worker/engine/tokenizer/json_fields.h"
#include "worker/engine/tokenizer/models.h"
#include "worker/engine/tokenizer/normalizers.h"
#include "worker/engine/tokenizer/post_processors.h"
#include "worker/engine/tokenizer/pre_tokenizers.h"
#include "worker/engine/tokenizer/unicode_text.h"

namespace loratrf::engine::tokenizer {

// Added tokens of one kind (raw or normalized), found by a byte trie with Hugging Face's
// rules: leftmost-longest, non-overlapping; single_word, lstrip and rstrip applied after.
class AddedTokens {
 public:
  struct Token {
    int32_t id;
    std::string pattern;  // the content, normalized for normalized tokens
    bool single_word, lstrip, rstrip;
  };
  // A run of the text: an added token (`token` set) or plain text, as [begin, end).
  struct Piece {
    size_t begin, end;
    const Token* token;
  };

  void Add(Token token) {
    if (token.pattern.empty()) return;
    int32_t node = 0;
    for (char c : token.pattern) {
      auto [it, inserted] = nodes_[node].next.try_emplace(static_cast<uint8_t>(c), 0);
      if (inserted) {
        it->second = static_cast<int32_t>(nodes_.size());
        nodes_.emplace_back();
      }
      node = it->second;
    }
    // The same pattern twice: the later token wins, as with a map keyed by content.
    tokens_.push_back(std::move(token));
    nodes_[node].token = static_cast<int32_t>(tokens_.size() - 1);
  }
  bool empty() const { return tokens_.empty(); }

  std::vector<Piece> Split(absl::string_view text) const {
    std::vector<Piece> pieces;
    size_t consumed = 0;  // end of the last token piece
    size_t at = 0;
    while (at < text.size()) {
      // The longest pattern starting at `at`.
      int32_t node = 0, match = -1;
      size_t match_end = at;
      for (size_t i = at; i < text.size(); ++i) {
        auto it = nodes_[node].next.find(static_cast<uint8_t>(text[i]));
        if (it == nodes_[node].next.end()) break;
        node = it->second;
        if (nodes_[node].token >= 0) {
          match = nodes_[node].token;
          match_end = i + 1;
        }
      }
      if (match < 0) {
        ++at;
        continue;
      }
      const Token& token = tokens_[match];
      size_t begin = at, end = match_end;
      at = match_end;
      if (token.single_word && !(IsWordBoundaryBefore(text, begin) && IsWordBoundaryAfter(text, end))) {
        continue;  // inside a word: the text stays plain
      }
      if (token.lstrip) {
        std::vector<CodePoint> before = DecodeUtf8(text.substr(consumed, begin - consumed));
        while (!before.empty() && IsWhitespace(before.back().value)) {
          begin = consumed + before.back().offset;
          before.pop_back();
        }
      }
      if (token.rstrip) {
        for (const CodePoint& point : DecodeUtf8(text.substr(end))) {
          if (!IsWhitespace(point.value)) break;
          end += point.length;
        }
        at = end;
      }
      if (begin > consumed) pieces.push_back({consumed, begin, nullptr});
      pieces.push_back({begin, end, &token});
      consumed = end;
    }
    if (consumed < text.size()) pieces.push_back({consumed, text.size(), nullptr});
    return pieces;
  }

 private:
  struct Node {
    absl::flat_hash_map<uint8_t, int32_t> next;
    int32_t token = -1;
  };

  // Hugging Face tests boundaries with a regex \w: letters (Alphabetic), marks, decimal
  // digits, connector punctuation and the zero-width joiners.
  static bool IsWordCharacter(char32_t c) { return IsRegexWordCharacter(c); }
  static bool IsWordBoundaryBefore(absl::string_view text, size_t at) {
    if (at == 0) return true;
    std::vector<CodePoint> points = DecodeUtf8(text.substr(at >= 4 ? at - 4 : 0, at >= 4 ? 4 : at));
    return points.empty() || !IsWordCharacter(points.back().value);
  }
  static bool IsWordBoundaryAfter(absl::string_view text, size_t at) {
    if (at >= text.size()) return true;
    std::vector<CodePoint> points = DecodeUtf8(text.substr(at, 4));
    return points.empty() || !IsWordCharacter(points.front().value);
  }

  std::vector<Node> nodes_ = std::vector<Node>(1);
  std::vector<Token> tokens_;
};

HfTokenizer::HfTokenizer()
    : raw_added_(std::make_unique<AddedTokens>()),
      normalized_added_(std::make_unique<AddedTokens>()) {}
HfTokenizer::~HfTokenizer() = default;

namespace {

// tokenizer.json and its neighbours come from Hugging Face's tools: duplicate keys are read as
// they are there (the last one wins).
constexpr JsonLimits kTokenizerJsonLimits{/*max_depth=*/64, /*allow_duplicate_keys=*/true};

// A small JSON object file beside tokenizer.json; nullopt when the file does not exist.
absl::StatusOr<std::optional<Json>> ReadOptionalJsonObject(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileWithLimit(path, 16u << 20);
  if (absl::IsNotFound(text.status())) return std::optional<Json>();
  if (!text.ok()) return text.status();
  JsonProblem problem;
  absl::StatusOr<Json> object = ParseJson(*text, kTokenizerJsonLimits, &problem);
  if (problem.kind == JsonProblem::Kind::kTooDeep) return FieldError(path, "nested too deeply");
  if (!object.ok() || !object->is_object()) return FieldError(path, "not a JSON object");
  return std::optional<Json>(*std::move(object));
}

absl::StatusOr<std::optional<int64_t>> EosFromTokenizerConfig(const HfTokenizer& tokenizer,
                                                              const std::string& path) {
  ASSIGN_OR_RETURN(std::optional<Json> config, ReadOptionalJsonObject(path));
  if (!config.has_value()) return std::optional<int64_t>();
  auto it = config->find("eos_token");
  if (it == config->end() || it->is_null()) return std::optional<int64_t>();
  std::string token;
  if (it->is_string()) {
    token = it->get<std::string>();
  } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    token = (*it)["content"].get<std::string>();  // the AddedToken form
  } else {
    return FieldError(absl::StrCat(path, ": eos_token"), "must be a string or {\"content\": ...}");
  }
  std::optional<int64_t> id = tokenizer.TokenToId(token);
  if (!id.has_value()) {
    return FieldError(absl::StrCat(path, ": eos_token"),
                      absl::StrCat("\"", Excerpt(token), "\" is not a token of tokenizer.json"));
  }
  return id;
}

absl::StatusOr<std::optional<int64_t>> EosFromModelConfig(const HfTokenizer& tokenizer,
                                                          const std::string& path) {
  ASSIGN_OR_RETURN(std::optional<Json> config, ReadOptionalJsonObject(path));
  if (!config.has_value()) return std::optional<int64_t>();
  auto it = config->find("eos_token_id");
  if (it == config->end() || it->is_null()) return std::optional<int64_t>();
  // A list (Llama 3 instruct: end_of_text and eot_id) means any of them; the first one ends
  // a completion.
  const Json& value = it->is_array() && !it->empty() ? (*it)[0] : *it;
  if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
      value.get<int64_t>() >= tokenizer.id_limit()) {
    return FieldError(absl::StrCat(path, ": eos_token_id"),
                      absl::StrCat("must be a token id below ", tokenizer.id_limit()));
  }
  return std::optional<int64_t>(value.get<int64_t>());
}

}  // namespace

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Load(const std::string& path) {
  struct stat info {};
  bool is_dir = ::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
  std::string dir = is_dir ? path : "";
  std::string file = is_dir ? path + "/tokenizer.json" : path;
  ASSIGN_OR_RETURN(std::string text, ReadFileWithLimit(file, kMaxTokenizerJsonBytes));
  ASSIGN_OR_RETURN(std::unique_ptr<HfTokenizer> tokenizer, Parse(text, file));
  if (is_dir) {
    ASSIGN_OR_RETURN(tokenizer->eos_id_,
                     EosFromTokenizerConfig(*tokenizer, dir + "/tokenizer_config.json"));
    if (!tokenizer->eos_id_.has_value()) {
      ASSIGN_OR_RETURN(tokenizer->eos_id_, EosFromModelConfig(*tokenizer, dir + "/config.json"));
    }
  }
  return tokenizer;
}

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Parse(absl::string_view json_text,
                                                                absl::string_view source) {
  auto fail = [&](const absl::Status& status) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", status.message()));
  };
  JsonProblem problem;
  absl::StatusOr<Json> parsed = ParseJson(json_text, kTokenizerJsonLimits, &problem);
  if (problem.kind == JsonProblem::Kind::kTooDeep) {
    return fail(absl::InvalidArgumentError("nested too deeply"));
  }
  if (!parsed.ok() || !parsed->is_object()) {
    return fail(absl::InvalidArgumentError("not a JSON object"));
  }
  Json json = *std::move(parsed);
  std::unique_ptr<HfTokenizer> tokenizer(new HfTokenizer());
  auto component = [&](const char* key) -> const Json* {
    auto it = json.find(key);
    return it == json.end() || it->is_null() ? nullptr : &*it;
  };
  absl::Status status = [&]() -> absl::Status {
    if (const Json* j = component("normalizer")) {
      ASSIGN_OR_RETURN(tokenizer->normalizer_, ParseNormalizer(*j, "normalizer"));
    }
    if (const Json* j = component("pre_tokenizer")) {
      ASSIGN_OR_RETURN(tokenizer->pre_tokenizer_, ParsePreTokenizer(*j, "pre_tokenizer"));
    }
    const Json* model = component("model");
    if (model == nullptr) return FieldError("model", "is missing");
    ASSIGN_OR_RETURN(tokenizer->model_, ParseModel(*model, "model"));
    if (const Json* j = component("post_processor")) {
      ASSIGN_OR_RETURN(tokenizer->post_processor_, ParsePostProcessor(*j, "post_processor"));
    }
    if (const Json* j = component("decoder")) {
      ASSIGN_OR_RETURN(tokenizer->decoder_, ParseDecoder(*j, "decoder"));
    }

    // id → token: the model's vocab, then added tokens (which take precedence, as in HF).
    int64_t limit = 0;
    for (const auto& [token, id] : tokenizer->model_->vocab()) limit = std::max<int64_t>(limit, id + 1);
    std::vector<std::pair<int32_t, std::string>> added;
    std::vector<AddedTokens::Token> raw, normalized;
    std::vector<bool> special_ids;
    if (const Json* list = component("added_tokens")) {
      if (!list->is_array()) return FieldError("added_tokens", "must be a list");
      for (size_t i = 0; i < list->size(); ++i) {
        const Json& item = (*list)[i];
        std::string path = absl::StrCat("added_tokens[", i, "]");
        // The same bound as vocab ids: an id sizes the id → token table.
        ASSIGN_OR_RETURN(uint64_t id, UintField(item, path, "id", UINT64_MAX, kMaxTokenId));
        if (id == UINT64_MAX) return FieldError(absl::StrCat(path, ".id"), "is missing");
        ASSIGN_OR_RETURN(std::string content, StringField(item, path, "content"));
        RETURN_IF_ERROR(ValidateUtf8(content));
        ASSIGN_OR_RETURN(bool single_word, BoolField(item, path, "single_word", false));
        ASSIGN_OR_RETURN(bool lstrip, BoolField(item, path, "lstrip", false));
        ASSIGN_OR_RETURN(bool rstrip, BoolField(item, path, "rstrip", false));
        ASSIGN_OR_RETURN(bool special, BoolField(item, path, "special", false));
        // Special tokens default to matching the raw text, others the normalized text.
        ASSIGN_OR_RETURN(bool is_normalized, BoolField(item, path, "normalized", !special));
        AddedTokens::Token token{static_cast<int32_t>(id), content, single_word, lstrip, rstrip};
        if (is_normalized) {
          if (tokenizer->normalizer_ != nullptr) {
            bool unused_keeps_start = true;
            RETURN_IF_ERROR(tokenizer->normalizer_->Normalize(token.pattern, unused_keeps_start));
          }
          normalized.push_back(std::move(token));
        } else {
          raw.push_back(std::move(token));
        }
        limit = std::max<int64_t>(limit, static_cast<int64_t>(id) + 1);
        added.emplace_back(static_cast<int32_t>(id), content);
        if (special) {
          if (special_ids.size() <= id) special_ids.resize(id + 1);
          special_ids[id] = true;
        }
      }
    }
    tokenizer->id_to_token_.assign(static_cast<size_t>(limit), "");
    tokenizer->has_token_.assign(static_cast<size_t>(limit), false);
    for (const auto& [token, id] : tokenizer->model_->vocab()) {
      tokenizer->id_to_token_[id] = token;
      tokenizer->has_token_[id] = true;
    }
    for (auto& [id, content] : added) {
      tokenizer->id_to_token_[id] = content;
      tokenizer->has_token_[id] = true;
    }
    // Every id a post-processor adds must be a token of this file (Decode, and the model's
    // embedding bounds, rely on it).
    if (tokenizer->post_processor_ != nullptr) {
      for (int32_t id : tokenizer->post_processor_->SpecialIds()) {
        if (id >= limit || !tokenizer->has_token_[static_cast<size_t>(id)]) {
          return FieldError("post_processor",
                            absl::StrCat("special token id ", id, " is not a token of the vocab "
                                         "or added_tokens"));
        }
      }
    }
    special_ids.resize(static_cast<size_t>(limit));
    tokenizer->is_special_ = std::move(special_ids);
    for (auto& token : raw) tokenizer->raw_added_->Add(std::move(token));
    for (auto& token : normalized) tokenizer->normalized_added_->Add(std::move(token));

    if (const Json* padding = component("padding")) {
      ASSIGN_OR_RETURN(uint64_t pad, UintField(*padding, "padding", "pad_id", 0, INT32_MAX));
      if (static_cast<int64_t>(pad) >= limit) {
        return FieldError("padding.pad_id", absl::StrCat("must be below ", limit));
      }
      tokenizer->pad_id_ = static_cast<int64_t>(pad);
    }
    return absl::OkStatus();
  }();
  if (!status.ok()) return fail(status);
  return tokenizer;
}

absl::Status HfTokenizer::EncodeNormalizedPiece(std::string text, bool at_input_start,
                                                std::vector<int32_t>& ids) const {
  if (normalizer_ != nullptr) RETURN_IF_ERROR(normalizer_->Normalize(text, at_input_start));
  for (const AddedTokens::Piece& piece : normalized_added_->Split(text)) {
    if (piece.token != nullptr) {
      ids.push_back(piece.token->id);
      continue;
    }
    std::vector<Word> words;
    words.push_back({text.substr(piece.begin, piece.end - piece.begin),
                     at_input_start && piece.begin == 0});
    if (pre_tokenizer_ != nullptr) RETURN_IF_ERROR(pre_tokenizer_->PreTokenize(words));
    for (const Word& word : words) {
      if (!word.text.empty()) RETURN_IF_ERROR(model_->Tokenize(word.text, ids));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> HfTokenizer::EncodeText(absl::string_view text) const {
  RETURN_IF_ERROR(ValidateUtf8(text));
  std::vector<int32_t> ids;
  for (const AddedTokens::Piece& piece : raw_added_->Split(text)) {
    if (piece.token != nullptr) {
      ids.push_back(piece.token->id);
      continue;
    }
    RETURN_IF_ERROR(EncodeNormalizedPiece(std::string(text.substr(piece.begin, piece.end - piece.begin)),
                                          piece.begin == 0, ids));
  }
  return ids;
}

namespace {
std::vector<int64_t> Widen(const std::vector<int32_t>& ids) {
  return std::vector<int64_t>(ids.begin(), ids.end());
}
}  // namespace

absl::StatusOr<std::vector<int64_t>> HfTokenizer::Encode(absl::string_view text,
                                                         bool add_special_tokens) const {
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, EncodeText(text));
  if (add_special_tokens && post_processor_ != nullptr) {
    return Widen(post_processor_->Process(ids, nullptr));
  }
  return Widen(ids);
}

absl::StatusOr<std::vector<int64_t>> HfTokenizer::EncodePair(absl::string_view text,
                                                             absl::string_view text_pair) const {
  ASSIGN_OR_RETURN(std::vector<int32_t> a, EncodeText(text));
  ASSIGN_OR_RETURN(std::vector<int32_t> b, EncodeText(text_pair));
  if (post_processor_ != nullptr) return Widen(post_processor_->Process(a, &b));
  a.insert(a.end(), b.begin(), b.end());
  return Widen(a);
}

int64_t HfTokenizer::pad_id() const {
  if (pad_id_.has_value()) return *pad_id_;
  return eos_id_.value_or(0);
}

std::optional<int64_t> HfTokenizer::TokenToId(absl::string_view token) const {
  // Added tokens are few; the vocab is a hash map.
  for (size_t id = 0; id < is_special_.size(); ++id) {
    if (is_special_[id] && id_to_token_[id] == token) return static_cast<int64_t>(id);
  }
  auto it = model_->vocab().find(token);
  if (it != model_->vocab().end()) return it->second;
  for (size_t id = 0; id < id_to_token_.size(); ++id) {
    if (has_token_[id] && id_to_token_[id] == token) return static_cast<int64_t>(id);
  }
  return std::nullopt;
}

absl::StatusOr<std::string> HfTokenizer::Decode(const std::vector<int64_t>& ids,
                                                bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) {
    if (id < 0 || id >= id_limit() || !has_token_[static_cast<size_t>(id)]) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is not in the tokenizer"));
    }
    if (skip_special_tokens && is_special_[static_cast<size_t>(id)]) continue;
    tokens.push_back(id_to_token_[static_cast<size_t>(id)]);
  }
  if (decoder_ == nullptr) return absl::StrJoin(tokens, " ");
  RETURN_IF_ERROR(decoder_->DecodeChain(tokens));
  return absl::StrJoin(tokens, "");
}

}  // namespace loratrf::engine::tokenizer
