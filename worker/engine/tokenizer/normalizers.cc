#include "worker/engine/tokenizer/normalizers.h"

#include <utility>
#include <vector>

#include "common/status_macros.h"
#include "worker/engine/tokenizer/byte_level.h"
#include "worker/engine/tokenizer/regex.h"
#include "worker/engine/tokenizer/unicode_text.h"

namespace loratrf::engine::tokenizer {
namespace {

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormalizationForm form) : form_(form) {}
  absl::Status Normalize(std::string& text, bool& keeps_start) const override {
    std::string out;
    RETURN_IF_ERROR(tokenizer::Normalize(form_, text, out));
    (void)keeps_start;  // composition keeps the first character's place
    text = std::move(out);
    return absl::OkStatus();
  }

 private:
  NormalizationForm form_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  absl::Status Normalize(std::string& text, bool& keeps_start) const override {
    text = Lowercase(text);
    return absl::OkStatus();
  }
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  absl::Status Normalize(std::string& text, bool& keeps_start) const override {
    std::vector<CodePoint> points = DecodeUtf8(text);
    size_t begin = 0, end = points.size();
    if (left_) {
      while (begin < end && IsWhitespace(points[begin].value)) ++begin;
      if (begin > 0) keeps_start = false;
    }
    if (right_) {
      while (end > begin && IsWhitespace(points[end - 1].value)) --end;
    }
    if (begin == end) {
      text.clear();
    } else {
      size_t first = points[begin].offset;
      size_t last = points[end - 1].offset + points[end - 1].length;
      text = text.substr(first, last - first);
    }
    return absl::OkStatus();
  }

 private:
  bool left_, right_;
};

// `text` without the code points `is_mark` selects; clears `keeps_start` if the first goes.
std::string WithoutMarks(absl::string_view text, bool (*is_mark)(char32_t), bool& keeps_start) {
  std::string out;
  out.reserve(text.size());
  for (const CodePoint& point : DecodeUtf8(text)) {
    if (!is_mark(point.value)) {
      out.append(text.data() + point.offset, point.length);
    } else if (point.offset == 0) {
      keeps_start = false;
    }
  }
  return out;
}

class StripAccentsNormalizer : public Normalizer {
 public:
  // Like Hugging Face's, it removes marks only; the file pairs it with NFD when accents are
  // meant to go (a precomposed é has no mark to remove).
  absl::Status Normalize(std::string& text, bool& keeps_start) const override {
    text = WithoutMarks(text, IsCombiningMark, keeps_start);
    return absl::OkStatus();
  }
};

// A text may not grow past this through normalization: a chain of Replace steps can multiply
// its length at every step, and no real tokenizer needs more.
constexpr size_t kMaxNormalizedBytes = 64u << 20;

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(Regex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status Normalize(std::string& text, bool& keeps_start) const override {
    bool at_start = false;
    ASSIGN_OR_RETURN(text, pattern_.ReplaceAll(text, content_, kMaxNormalizedBytes, &at_start));
    if (at_start && content_.empty()) keeps_start = false;  // the first character went
    return absl::OkStatus();
  }

 private:
  Regex pattern_;
  std::string content_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  absl::Status Normalize(std::string& text, bool& keeps_start) const override {
    if (!text.empty()) text.insert(0, prefix_);  // as Hugging Face: never onto empty text
    return absl::OkStatus();
  }

 private:
  std::string prefix_;
};

// BERT's own normalization, in Google's order: clean, space out CJK, strip accents, lowercase.
class BertNormalizer : public Normalizer {
 public:
  BertNormalizer(bool clean_text, bool chinese_chars, bool strip_accents, bool lowercase)
      : clean_text_(clean_text),
        chinese_chars_(chinese_chars),
        strip_accents_(strip_accents),
        lowercase_(lowercase) {}

  absl::Status Normalize(std::string& text, bool& keeps_start) const override {
    std::string out;
    out.reserve(text.size());
    for (const CodePoint& point : DecodeUtf8(text)) {
      char32_t c = point.value;
      bool tab_or_newline = c == '\t' || c == '\n' || c == '\r';
      if (clean_text_) {
        // NUL, U+FFFD and the Other categories go; every kind of whitespace becomes ' '.
        if (c == 0 || c == 0xFFFD || (!tab_or_newline && IsOtherCategory(c))) {
          if (point.offset == 0) keeps_start = false;
          continue;
        }
        if (tab_or_newline || IsWhitespace(c)) {
          out.push_back(' ');
          continue;
        }
      }
      if (chinese_chars_ && IsChineseCharacter(c)) {
        out.push_back(' ');
        out.append(text, point.offset, point.length);
        out.push_back(' ');
        continue;
      }
      out.append(text, point.offset, point.length);
    }
    if (strip_accents_) {
      std::string decomposed;
      RETURN_IF_ERROR(tokenizer::Normalize(NormalizationForm::kNfd, out, decomposed));
      // BERT removes nonspacing marks (Mn) only: Devanagari's spacing vowel signs (Mc) stay.
      out = WithoutMarks(decomposed, IsNonspacingMark, keeps_start);
    }
    if (lowercase_) out = Lowercase(out);
    text = std::move(out);
    return absl::OkStatus();
  }

 private:
  bool clean_text_, chinese_chars_, strip_accents_, lowercase_;
};

class ByteLevelNormalizer : public Normalizer {
 public:
  absl::Status Normalize(std::string& text, bool& keeps_start) const override {
    text = BytesToByteLevelChars(text);
    return absl::OkStatus();
  }
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  absl::Status Normalize(std::string& text, bool& keeps_start) const override {
    for (const auto& step : steps_) RETURN_IF_ERROR(step->Normalize(text, keeps_start));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

absl::StatusOr<Regex> ParsePattern(const Json& parent, absl::string_view path) {
  ASSIGN_OR_RETURN(const Json* pattern, Member(parent, path, "pattern"));
  std::string pattern_path = absl::StrCat(path, ".pattern");
  if (pattern->is_object() && pattern->size() == 1) {
    if (auto it = pattern->find("String"); it != pattern->end() && it->is_string()) {
      return Regex::Literal(it->get<std::string>());
    }
    if (auto it = pattern->find("Regex"); it != pattern->end() && it->is_string()) {
      absl::StatusOr<Regex> regex = Regex::Compile(it->get<std::string>());
      if (!regex.ok()) return FieldError(pattern_path, regex.status().message());
      return regex;
    }
  }
  return FieldError(pattern_path, "must be {\"String\": ...} or {\"Regex\": ...}");
}

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const Json& json,
                                                            absl::string_view path) {
  ASSIGN_OR_RETURN(std::string type, TypeOf(json, path));
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(NormalizationForm::kNfc);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(NormalizationForm::kNfd);
  if (type == "NFKC") return std::make_unique<UnicodeNormalizer>(NormalizationForm::kNfkc);
  if (type == "NFKD") return std::make_unique<UnicodeNormalizer>(NormalizationForm::kNfkd);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
  if (type == "ByteLevel") return std::make_unique<ByteLevelNormalizer>();
  if (type == "Strip") {
    ASSIGN_OR_RETURN(bool left, BoolField(json, path, "strip_left", true));
    ASSIGN_OR_RETURN(bool right, BoolField(json, path, "strip_right", true));
    return std::make_unique<StripNormalizer>(left, right);
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(Regex pattern, ParsePattern(json, path));
    ASSIGN_OR_RETURN(std::string content, StringField(json, path, "content"));
    return std::make_unique<ReplaceNormalizer>(std::move(pattern), std::move(content));
  }
  if (type == "Prepend") {
    ASSIGN_OR_RETURN(std::string prefix, StringField(json, path, "prepend"));
    return std::make_unique<PrependNormalizer>(std::move(prefix));
  }
  if (type == "BertNormalizer") {
    ASSIGN_OR_RETURN(bool clean_text, BoolField(json, path, "clean_text", true));
    ASSIGN_OR_RETURN(bool chinese, BoolField(json, path, "handle_chinese_chars", true));
    ASSIGN_OR_RETURN(bool lowercase, BoolField(json, path, "lowercase", true));
    // strip_accents: null means "follow lowercase", as in BERT's uncased models.
    ASSIGN_OR_RETURN(bool strip_accents, BoolField(json, path, "strip_accents", lowercase));
    return std::make_unique<BertNormalizer>(clean_text, chinese, strip_accents, lowercase);
  }
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(std::vector<std::unique_ptr<Normalizer>> steps,
                     ParseComponentList<Normalizer>(json, path, "normalizers",
                                                    ParseNormalizer));
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  return Unsupported(path, "normalizer", type,
                     "NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, Replace, Prepend, "
                     "BertNormalizer, ByteLevel, Sequence");
}

}  // namespace loratrf::engine::tokenizer
