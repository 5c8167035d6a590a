#include "worker/engine/tokenizer/pre_tokenizers.h"

#include <functional>

#include "common/status_macros.h"
#include "worker/engine/tokenizer/byte_level.h"
#include "worker/engine/tokenizer/normalizers.h"
#include "worker/engine/tokenizer/regex.h"
#include "worker/engine/tokenizer/unicode_text.h"

namespace loratrf::engine::tokenizer {
namespace {

using Ranges = std::vector<std::pair<size_t, size_t>>;

// GPT-2's pattern, which ByteLevel applies when use_regex is true.
constexpr absl::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Every code point for which `predicate` holds is a match of its own.
Ranges MatchCharacters(absl::string_view text, const std::function<bool(char32_t)>& predicate) {
  Ranges matches;
  for (const CodePoint& point : DecodeUtf8(text)) {
    if (predicate(point.value)) matches.emplace_back(point.offset, point.offset + point.length);
  }
  return matches;
}

// Splits every word with `find` + `behavior`; the first piece keeps the word's start flag.
absl::Status SplitWords(std::vector<Word>& words,
                        const std::function<absl::StatusOr<Ranges>(absl::string_view)>& find,
                        SplitBehavior behavior, bool invert) {
  std::vector<Word> out;
  out.reserve(words.size() * 2);
  for (Word& word : words) {
    ASSIGN_OR_RETURN(Ranges matches, find(word.text));
    for (const auto& [begin, end] : SplitByMatches(word.text.size(), matches, behavior, invert)) {
      out.push_back({word.text.substr(begin, end - begin), word.at_input_start && begin == 0});
    }
  }
  words = std::move(out);
  return absl::OkStatus();
}

absl::StatusOr<SplitBehavior> ParseBehavior(const Json& json, absl::string_view path) {
  ASSIGN_OR_RETURN(std::string name, StringField(json, path, "behavior"));
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return FieldError(absl::StrCat(path, ".behavior"),
                    absl::StrCat("\"", Excerpt(name), "\" is not one of Removed, Isolated, "
                                 "MergedWithPrevious, MergedWithNext, Contiguous"));
}

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::optional<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}

  absl::Status PreTokenize(std::vector<Word>& words) const override {
    if (add_prefix_space_) {
      for (Word& word : words) {
        if (word.text.empty() || word.text[0] != ' ') word.text.insert(0, " ");
      }
    }
    if (regex_.has_value()) {
      RETURN_IF_ERROR(SplitWords(
          words, [this](absl::string_view text) { return regex_->FindAll(text); },
          SplitBehavior::kIsolated, false));
    }
    for (Word& word : words) word.text = BytesToByteLevelChars(word.text);
    return absl::OkStatus();
  }

 private:
  bool add_prefix_space_;
  std::optional<Regex> regex_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Regex pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}

  absl::Status PreTokenize(std::vector<Word>& words) const override {
    return SplitWords(
        words, [this](absl::string_view text) { return pattern_.FindAll(text); }, behavior_,
        invert_);
  }

 private:
  Regex pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

// Splits with a per-character test (whitespace, punctuation, digits, a delimiter).
class CharacterSplitPreTokenizer : public PreTokenizer {
 public:
  CharacterSplitPreTokenizer(std::function<bool(char32_t)> predicate, SplitBehavior behavior)
      : predicate_(std::move(predicate)), behavior_(behavior) {}

  absl::Status PreTokenize(std::vector<Word>& words) const override {
    return SplitWords(
        words,
        [this](absl::string_view text) -> absl::StatusOr<Ranges> {
          return MatchCharacters(text, predicate_);
        },
        behavior_, false);
  }

 private:
  std::function<bool(char32_t)> predicate_;
  SplitBehavior behavior_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}

  absl::Status PreTokenize(std::vector<Word>& words) const override {
    for (Word& word : words) {
      std::string replaced;
      replaced.reserve(word.text.size() + replacement_.size());
      for (char c : word.text) {
        if (c == ' ') {
          replaced += replacement_;
        } else {
          replaced.push_back(c);
        }
      }
      bool prepend = scheme_ == PrependScheme::kAlways ||
                     (scheme_ == PrependScheme::kFirst && word.at_input_start);
      if (prepend && replaced.compare(0, replacement_.size(), replacement_) != 0) {
        replaced.insert(0, replacement_);
      }
      word.text = std::move(replaced);
    }
    if (!split_) return absl::OkStatus();
    return SplitWords(
        words,
        [this](absl::string_view text) -> absl::StatusOr<Ranges> {
          Ranges matches;
          for (size_t at = text.find(replacement_); at != absl::string_view::npos;
               at = text.find(replacement_, at + replacement_.size())) {
            matches.emplace_back(at, at + replacement_.size());
          }
          return matches;
        },
        SplitBehavior::kMergedWithNext, false);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  absl::Status PreTokenize(std::vector<Word>& words) const override {
    for (const auto& step : steps_) RETURN_IF_ERROR(step->PreTokenize(words));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParseMetaspace(const Json& json,
                                                             absl::string_view path) {
  ASSIGN_OR_RETURN(std::string replacement, StringField(json, path, "replacement"));
  if (CountCodePoints(replacement) != 1) {
    return FieldError(absl::StrCat(path, ".replacement"), "must be one character");
  }
  PrependScheme scheme = PrependScheme::kAlways;
  ASSIGN_OR_RETURN(std::optional<std::string> scheme_name,
                   OptionalStringField(json, path, "prepend_scheme"));
  if (scheme_name.has_value()) {
    if (*scheme_name == "always") {
      scheme = PrependScheme::kAlways;
    } else if (*scheme_name == "first") {
      scheme = PrependScheme::kFirst;
    } else if (*scheme_name == "never") {
      scheme = PrependScheme::kNever;
    } else {
      return FieldError(absl::StrCat(path, ".prepend_scheme"),
                        absl::StrCat("\"", Excerpt(*scheme_name), "\" is not always, first or never"));
    }
  } else {
    // Files written before prepend_scheme existed say add_prefix_space instead.
    ASSIGN_OR_RETURN(bool add_prefix_space, BoolField(json, path, "add_prefix_space", true));
    scheme = add_prefix_space ? PrependScheme::kAlways : PrependScheme::kNever;
  }
  ASSIGN_OR_RETURN(bool split, BoolField(json, path, "split", true));
  return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), scheme, split);
}

}  // namespace

Ranges SplitByMatches(size_t text_size, const Ranges& matches, SplitBehavior behavior,
                      bool invert) {
  // Every byte of the text, as alternating (range, is_match) pieces.
  std::vector<std::pair<std::pair<size_t, size_t>, bool>> pieces;
  size_t last = 0;
  for (const auto& [begin, end] : matches) {
    if (begin > last) pieces.push_back({{last, begin}, invert});
    pieces.push_back({{begin, end}, !invert});
    last = end;
  }
  if (last < text_size) pieces.push_back({{last, text_size}, invert});

  Ranges out;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const auto& [range, is_match] : pieces) {
        if (!is_match) out.push_back(range);
      }
      break;
    case SplitBehavior::kIsolated:
      for (const auto& piece : pieces) out.push_back(piece.first);
      break;
    case SplitBehavior::kMergedWithPrevious: {
      // A match joins the piece before it, unless that piece was a match too.
      bool previous_match = false;
      for (const auto& [range, is_match] : pieces) {
        if (is_match && !previous_match && !out.empty()) {
          out.back().second = range.second;
        } else {
          out.push_back(range);
        }
        previous_match = is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      // Mirror image: walk backwards, a match joins the piece after it.
      bool next_match = false;
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
        const auto& [range, is_match] = *it;
        if (is_match && !next_match && !out.empty()) {
          out.back().first = range.first;
        } else {
          out.push_back(range);
        }
        next_match = is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      // Runs of matches (and runs of non-matches) become one piece each.
      bool previous_match = false;
      for (const auto& [range, is_match] : pieces) {
        if (is_match == previous_match && !out.empty()) {
          out.back().second = range.second;
        } else {
          out.push_back(range);
        }
        previous_match = is_match;
      }
      break;
    }
  }
  Ranges non_empty;
  for (const auto& range : out) {
    if (range.second > range.first) non_empty.push_back(range);
  }
  return non_empty;
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const Json& json,
                                                                absl::string_view path) {
  ASSIGN_OR_RETURN(std::string type, TypeOf(json, path));
  if (type == "ByteLevel") {
    ASSIGN_OR_RETURN(bool add_prefix_space, BoolField(json, path, "add_prefix_space", true));
    ASSIGN_OR_RETURN(bool use_regex, BoolField(json, path, "use_regex", true));
    std::optional<Regex> regex;
    if (use_regex) {
      ASSIGN_OR_RETURN(Regex compiled, Regex::Compile(kGpt2Pattern));
      regex = std::move(compiled);
    }
    return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, std::move(regex));
  }
  if (type == "Split") {
    ASSIGN_OR_RETURN(Regex pattern, ParsePattern(json, path));
    ASSIGN_OR_RETURN(SplitBehavior behavior, ParseBehavior(json, path));
    ASSIGN_OR_RETURN(bool invert, BoolField(json, path, "invert", false));
    return std::make_unique<SplitPreTokenizer>(std::move(pattern), behavior, invert);
  }
  if (type == "Metaspace") return ParseMetaspace(json, path);
  if (type == "Whitespace") {
    // Hugging Face: the matches of \w+|[^\w\s]+ are the words; everything else is dropped.
    ASSIGN_OR_RETURN(Regex words, Regex::Compile(R"(\w+|[^\w\s]+)"));
    return std::make_unique<SplitPreTokenizer>(std::move(words), SplitBehavior::kRemoved, true);
  }
  if (type == "WhitespaceSplit") {
    return std::make_unique<CharacterSplitPreTokenizer>(IsWhitespace, SplitBehavior::kRemoved);
  }
  if (type == "BertPreTokenizer") {
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    steps.push_back(
        std::make_unique<CharacterSplitPreTokenizer>(IsWhitespace, SplitBehavior::kRemoved));
    steps.push_back(std::make_unique<CharacterSplitPreTokenizer>(IsBertPunctuation,
                                                                 SplitBehavior::kIsolated));
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  if (type == "Punctuation") {
    SplitBehavior behavior = SplitBehavior::kIsolated;
    if (json.contains("behavior")) {
      ASSIGN_OR_RETURN(behavior, ParseBehavior(json, path));
    }
    return std::make_unique<CharacterSplitPreTokenizer>(IsBertPunctuation, behavior);
  }
  if (type == "Digits") {
    ASSIGN_OR_RETURN(bool individual, BoolField(json, path, "individual_digits", false));
    return std::make_unique<CharacterSplitPreTokenizer>(
        IsNumeric, individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous);
  }
  if (type == "CharDelimiterSplit") {
    ASSIGN_OR_RETURN(std::string delimiter, StringField(json, path, "delimiter"));
    std::vector<CodePoint> points = DecodeUtf8(delimiter);
    if (points.size() != 1) {
      return FieldError(absl::StrCat(path, ".delimiter"), "must be one character");
    }
    char32_t c = points[0].value;
    return std::make_unique<CharacterSplitPreTokenizer>([c](char32_t x) { return x == c; },
                                                        SplitBehavior::kRemoved);
  }
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(std::vector<std::unique_ptr<PreTokenizer>> steps,
                     ParseComponentList<PreTokenizer>(json, path, "pretokenizers",
                                                      ParsePreTokenizer));
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  return Unsupported(path, "pre-tokenizer", type,
                     "ByteLevel, Split, Metaspace, Whitespace, WhitespaceSplit, "
                     "BertPreTokenizer, Punctuation, Digits, CharDelimiterSplit, Sequence");
}

}  // namespace loratrf::engine::tokenizer
