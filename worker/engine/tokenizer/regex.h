// A compiled Unicode regular expression (PCRE2 with JIT) that finds matches the way Hugging
// Face tokenizers' default engine (Oniguruma) does for the patterns tokenizer.json files use.
//
// Dialect: PCRE2 and Oniguruma agree on \p{..} classes, lookaround and (?i:..), but their
// Unicode \s and \w differ (Oniguruma's \s includes U+0085 NEL; its \w includes marks such as
// Devanagari vowel signs). Compile rewrites \s, \S, \w, \W and \d to the Unicode properties
// Oniguruma uses, so a pattern means the same in both.
//
// Threading: immutable after Compile; FindAll may be called from many threads at once (each
// call has its own match data).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace loratrf::engine::tokenizer {

class Regex {
 public:
  // `pattern` as written in tokenizer.json. InvalidArgument names the pattern and PCRE2's
  // message and offset when it does not compile.
  static absl::StatusOr<Regex> Compile(absl::string_view pattern);
  // A pattern that matches `literal` exactly (Split's {"String": ...} patterns).
  static absl::StatusOr<Regex> Literal(absl::string_view literal);

  // Non-overlapping, leftmost matches as [begin, end) byte ranges of `text` (valid UTF-8).
  // Empty matches are skipped. Errors only on a PCRE2 failure (e.g. a match limit).
  absl::StatusOr<std::vector<std::pair<size_t, size_t>>> FindAll(absl::string_view text) const;

  // `text` with every match replaced by `content` (Replace normalizers and decoders).
  // ResourceExhausted when the result would pass `max_bytes`. `first_match_at_start` (may be
  // null) tells whether a match began at offset 0.
  absl::StatusOr<std::string> ReplaceAll(absl::string_view text, absl::string_view content,
                                         size_t max_bytes, bool* first_match_at_start = nullptr) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Compiled;
  // Compiles `pcre2_pattern` as it is; `pattern` is what error messages and pattern() show.
  static absl::StatusOr<Regex> CompilePcre2(const std::string& pcre2_pattern,
                                            absl::string_view pattern);
  Regex(std::string pattern, std::shared_ptr<const Compiled> compiled)
      : pattern_(std::move(pattern)), compiled_(std::move(compiled)) {}

  std::string pattern_;
  std::shared_ptr<const Compiled> compiled_;
};

// Rewrites Oniguruma's Unicode \s \S \w \W \d (outside and inside character classes) into
// explicit PCRE2 property classes. Exposed for tests.
std::string TranslateOnigurumaClasses(absl::string_view pattern);

}  // namespace loratrf::engine::tokenizer
