#include "worker/engine/tokenizer/models.h"

#include <queue>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "worker/engine/tokenizer/unicode_text.h"

namespace loratrf::engine::tokenizer {
namespace {

constexpr uint64_t kMaxVocab = 1u << 24;  // far above any real model; ids stay int32 (and the
                                          // same bound as HfTokenizer's kMaxTokenId)

absl::StatusOr<Vocab> ParseVocab(const Json& json, absl::string_view path) {
  ASSIGN_OR_RETURN(const Json* vocab_json, Member(json, path, "vocab"));
  std::string vocab_path = absl::StrCat(path, ".vocab");
  if (!vocab_json->is_object()) return FieldError(vocab_path, "must be an object {token: id}");
  if (vocab_json->size() > kMaxVocab) {
    return FieldError(vocab_path, absl::StrCat("has more than ", kMaxVocab, " tokens"));
  }
  Vocab vocab;
  vocab.reserve(vocab_json->size());
  for (auto it = vocab_json->begin(); it != vocab_json->end(); ++it) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 ||
        it->get<int64_t>() >= static_cast<int64_t>(kMaxVocab)) {
      return FieldError(vocab_path, absl::StrCat("token \"", Excerpt(it.key()), "\" has id ",
                                                 Excerpt(it->dump(-1, ' ', false, Json::error_handler_t::replace)),
                                                 ", not an integer in [0, ", kMaxVocab, ")"));
    }
    vocab.emplace(it.key(), static_cast<int32_t>(it->get<int64_t>()));
  }
  return vocab;
}

absl::StatusOr<std::optional<int32_t>> OptionalTokenId(const Vocab& vocab, const Json& json,
                                                       absl::string_view path, const char* key) {
  ASSIGN_OR_RETURN(std::optional<std::string> token, OptionalStringField(json, path, key));
  if (!token.has_value()) return std::optional<int32_t>();
  auto it = vocab.find(*token);
  if (it == vocab.end()) {
    return FieldError(absl::StrCat(path, ".", key),
                      absl::StrCat("token \"", *token, "\" is not in the vocab"));
  }
  return std::optional<int32_t>(it->second);
}

// Byte-pair encoding as Hugging Face applies it: start from characters, repeatedly merge the
// adjacent pair with the lowest merge rank (leftmost first on ties) until none applies.
class BpeModel : public Model {
 public:
  struct Merge {
    uint32_t rank;
    int32_t result;
  };

  static absl::StatusOr<std::unique_ptr<BpeModel>> Parse(const Json& json, absl::string_view path);

  absl::Status Tokenize(absl::string_view word, std::vector<int32_t>& ids) const override {
    if (ignore_merges_) {
      if (auto it = vocab_.find(word); it != vocab_.end()) {
        ids.push_back(it->second);
        return absl::OkStatus();
      }
    }
    // Words repeat a lot in text; remembering their ids makes BPE cheap. Long words (a
    // SentencePiece-style tokenizer sees whole lines) are rarely repeated and not cached.
    bool cacheable = word.size() <= kMaxCachedWordBytes;
    if (cacheable) {
      absl::ReaderMutexLock lock(&cache_mutex_);
      if (auto it = cache_.find(word); it != cache_.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return absl::OkStatus();
      }
    }
    std::vector<int32_t> word_ids = MergeWord(word);
    ids.insert(ids.end(), word_ids.begin(), word_ids.end());
    if (cacheable) {
      absl::MutexLock lock(&cache_mutex_);
      if (cache_.size() < kCacheCapacity) cache_.emplace(std::string(word), std::move(word_ids));
    }
    return absl::OkStatus();
  }

 private:
  static constexpr size_t kMaxCachedWordBytes = 256;
  static constexpr size_t kCacheCapacity = 100000;

  struct Symbol {
    int32_t id;
    int32_t prev;  // index of the previous live symbol, -1 at the start
    int32_t next;  // index of the next live symbol, -1 at the end
    bool live;
  };

  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }

  // The initial symbols: one per character (with the subword prefix / word suffix where the
  // vocab uses them), bytes for unknown characters with byte fallback, else the unknown token.
  std::vector<int32_t> InitialSymbols(absl::string_view word) const {
    std::vector<int32_t> symbols;
    std::vector<CodePoint> points = DecodeUtf8(word);
    bool previous_unknown = false;
    std::string piece;
    for (size_t i = 0; i < points.size(); ++i) {
      absl::string_view character = word.substr(points[i].offset, points[i].length);
      piece.clear();
      if (i > 0 && prefix_.has_value()) piece += *prefix_;
      piece.append(character.data(), character.size());
      if (i + 1 == points.size() && suffix_.has_value()) piece += *suffix_;
      if (auto it = vocab_.find(piece); it != vocab_.end()) {
        symbols.push_back(it->second);
        previous_unknown = false;
        continue;
      }
      if (byte_fallback_) {
        std::vector<int32_t> bytes;
        // Hugging Face falls back on the bytes of the prefixed piece, not the bare character.
        for (char byte : piece) {
          auto it = vocab_.find(absl::StrFormat("<0x%02X>", static_cast<uint8_t>(byte)));
          if (it == vocab_.end()) break;
          bytes.push_back(it->second);
        }
        if (bytes.size() == piece.size()) {
          symbols.insert(symbols.end(), bytes.begin(), bytes.end());
          previous_unknown = false;
          continue;
        }
      }
      if (unk_id_.has_value()) {
        // Hugging Face drops characters it cannot represent when there is no unknown token.
        if (!(fuse_unk_ && previous_unknown)) symbols.push_back(*unk_id_);
        previous_unknown = true;
      }
    }
    return symbols;
  }

  std::vector<int32_t> MergeWord(absl::string_view word) const {
    std::vector<int32_t> initial = InitialSymbols(word);
    if (initial.size() < 2) return initial;
    std::vector<Symbol> symbols(initial.size());
    for (size_t i = 0; i < initial.size(); ++i) {
      symbols[i] = {initial[i], static_cast<int32_t>(i) - 1,
                    i + 1 < initial.size() ? static_cast<int32_t>(i + 1) : -1, true};
    }
    // Candidates ordered by (rank, position); stale entries are skipped when popped.
    using Candidate = std::pair<uint32_t, int32_t>;
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
    auto push = [&](int32_t left) {
      if (left < 0) return;
      int32_t right = symbols[left].next;
      if (right < 0) return;
      auto it = merges_.find(PairKey(symbols[left].id, symbols[right].id));
      if (it != merges_.end()) queue.push({it->second.rank, left});
    };
    for (size_t i = 0; i + 1 < symbols.size(); ++i) push(static_cast<int32_t>(i));
    while (!queue.empty()) {
      auto [rank, left] = queue.top();
      queue.pop();
      Symbol& first = symbols[left];
      if (!first.live || first.next < 0) continue;
      Symbol& second = symbols[first.next];
      auto it = merges_.find(PairKey(first.id, second.id));
      if (it == merges_.end() || it->second.rank != rank) continue;  // pair changed since
      first.id = it->second.result;
      second.live = false;
      first.next = second.next;
      if (second.next >= 0) symbols[second.next].prev = left;
      push(first.prev);
      push(left);
    }
    std::vector<int32_t> ids;
    for (int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
    return ids;
  }

  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::optional<int32_t> unk_id_;
  std::optional<std::string> prefix_;
  std::optional<std::string> suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;

  mutable absl::Mutex cache_mutex_;
  // word → its ids; grows to kCacheCapacity then stays (like Hugging Face's cache).
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_
      ABSL_GUARDED_BY(cache_mutex_);
};

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Parse(const Json& json,
                                                          absl::string_view path) {
  auto model = std::make_unique<BpeModel>();
  ASSIGN_OR_RETURN(model->vocab_, ParseVocab(json, path));
  if (auto dropout = json.find("dropout"); dropout != json.end() && !dropout->is_null()) {
    if (!dropout->is_number() || dropout->get<double>() != 0.0) {
      return FieldError(absl::StrCat(path, ".dropout"),
                        "BPE dropout is not supported (it makes ids random; set it to null)");
    }
  }
  ASSIGN_OR_RETURN(model->unk_id_, OptionalTokenId(model->vocab_, json, path, "unk_token"));
  ASSIGN_OR_RETURN(model->prefix_, OptionalStringField(json, path, "continuing_subword_prefix"));
  ASSIGN_OR_RETURN(model->suffix_, OptionalStringField(json, path, "end_of_word_suffix"));
  if (model->prefix_.has_value() && model->prefix_->empty()) model->prefix_.reset();
  if (model->suffix_.has_value() && model->suffix_->empty()) model->suffix_.reset();
  ASSIGN_OR_RETURN(model->fuse_unk_, BoolField(json, path, "fuse_unk", false));
  ASSIGN_OR_RETURN(model->byte_fallback_, BoolField(json, path, "byte_fallback", false));
  ASSIGN_OR_RETURN(model->ignore_merges_, BoolField(json, path, "ignore_merges", false));

  ASSIGN_OR_RETURN(const Json* merges, Member(json, path, "merges"));
  std::string merges_path = absl::StrCat(path, ".merges");
  if (!merges->is_array()) return FieldError(merges_path, "must be a list");
  model->merges_.reserve(merges->size());
  std::string left, right;
  for (size_t i = 0; i < merges->size(); ++i) {
    const Json& merge = (*merges)[i];
    std::string merge_path = absl::StrCat(merges_path, "[", i, "]");
    // Two spellings: "a b" (tokenizers < 0.20) and ["a", "b"] (newer files).
    if (merge.is_string()) {
      const std::string& text = merge.get_ref<const std::string&>();
      size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
        return FieldError(merge_path, absl::StrCat("\"", Excerpt(text), "\" is not two tokens"));
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      return FieldError(merge_path, "must be \"a b\" or [\"a\", \"b\"]");
    }
    std::string merged = left;
    // The result drops the right side's subword prefix, as in Hugging Face.
    if (model->prefix_.has_value() && right.rfind(*model->prefix_, 0) == 0) {
      merged += right.substr(model->prefix_->size());
    } else {
      merged += right;
    }
    auto left_id = model->vocab_.find(left);
    auto right_id = model->vocab_.find(right);
    auto merged_id = model->vocab_.find(merged);
    if (left_id == model->vocab_.end() || right_id == model->vocab_.end() ||
        merged_id == model->vocab_.end()) {
      const std::string& missing = left_id == model->vocab_.end()    ? left
                                   : right_id == model->vocab_.end() ? right
                                                                     : merged;
      return FieldError(merge_path, absl::StrCat("token \"", missing, "\" is not in the vocab"));
    }
    // A repeated pair takes its last rank, as when Hugging Face collects its merge map.
    model->merges_.insert_or_assign(PairKey(left_id->second, right_id->second),
                                    Merge{static_cast<uint32_t>(i), merged_id->second});
  }
  return model;
}

// WordPiece: the longest vocab prefix, then the longest "##"-prefixed continuation, and so on;
// a word with any piece missing becomes the unknown token as a whole.
class WordPieceModel : public Model {
 public:
  static absl::StatusOr<std::unique_ptr<WordPieceModel>> Parse(const Json& json,
                                                               absl::string_view path) {
    auto model = std::make_unique<WordPieceModel>();
    ASSIGN_OR_RETURN(model->vocab_, ParseVocab(json, path));
    ASSIGN_OR_RETURN(std::string unk, StringField(json, path, "unk_token"));
    auto unk_it = model->vocab_.find(unk);
    if (unk_it == model->vocab_.end()) {
      return FieldError(absl::StrCat(path, ".unk_token"),
                        absl::StrCat("token \"", unk, "\" is not in the vocab"));
    }
    model->unk_id_ = unk_it->second;
    ASSIGN_OR_RETURN(std::optional<std::string> prefix,
                     OptionalStringField(json, path, "continuing_subword_prefix"));
    model->prefix_ = prefix.value_or("##");
    ASSIGN_OR_RETURN(model->max_chars_,
                     UintField(json, path, "max_input_chars_per_word", 100, 1u << 30));
    return model;
  }

  absl::Status Tokenize(absl::string_view word, std::vector<int32_t>& ids) const override {
    if (CountCodePoints(word) > max_chars_) {
      ids.push_back(unk_id_);
      return absl::OkStatus();
    }
    std::vector<int32_t> pieces;
    std::string candidate;
    size_t start = 0;
    while (start < word.size()) {
      size_t end = word.size();
      std::optional<int32_t> found;
      while (start < end) {
        candidate.clear();
        if (start > 0) candidate += prefix_;
        candidate.append(word.data() + start, end - start);
        if (auto it = vocab_.find(candidate); it != vocab_.end()) {
          found = it->second;
          break;
        }
        // Shrink by one whole code point.
        do {
          --end;
        } while (end > start && (static_cast<uint8_t>(word[end]) & 0xC0) == 0x80);
      }
      if (!found.has_value()) {
        ids.push_back(unk_id_);
        return absl::OkStatus();
      }
      pieces.push_back(*found);
      start = end;
    }
    ids.insert(ids.end(), pieces.begin(), pieces.end());
    return absl::OkStatus();
  }

 private:
  int32_t unk_id_ = 0;
  std::string prefix_;
  uint64_t max_chars_ = 100;
};

class WordLevelModel : public Model {
 public:
  static absl::StatusOr<std::unique_ptr<WordLevelModel>> Parse(const Json& json,
                                                               absl::string_view path) {
    auto model = std::make_unique<WordLevelModel>();
    ASSIGN_OR_RETURN(model->vocab_, ParseVocab(json, path));
    ASSIGN_OR_RETURN(model->unk_id_, OptionalTokenId(model->vocab_, json, path, "unk_token"));
    return model;
  }

  absl::Status Tokenize(absl::string_view word, std::vector<int32_t>& ids) const override {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      ids.push_back(it->second);
    } else if (unk_id_.has_value()) {
      ids.push_back(*unk_id_);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("word \"", word, "\" is not in the WordLevel vocab, which has no unk_token"));
    }
    return absl::OkStatus();
  }

 private:
  std::optional<int32_t> unk_id_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> ParseModel(const Json& json, absl::string_view path) {
  // Files written by old versions may omit the model type; the fields then tell BPE apart.
  std::string type;
  if (json.is_object() && json.contains("type")) {
    ASSIGN_OR_RETURN(type, TypeOf(json, path));
  } else if (json.is_object() && json.contains("merges")) {
    type = "BPE";
  } else {
    return FieldError(path, "has no \"type\"");
  }
  if (type == "BPE") return BpeModel::Parse(json, path);
  if (type == "WordPiece") return WordPieceModel::Parse(json, path);
  if (type == "WordLevel") return WordLevelModel::Parse(json, path);
  return Unsupported(path, "model", type, "BPE, WordPiece, WordLevel");
}

}  // namespace loratrf::engine::tokenizer
