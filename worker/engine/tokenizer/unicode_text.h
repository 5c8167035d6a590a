// UTF-8 text and the Unicode character properties the tokenizer pipeline needs, with the
// semantics of Rust's `char` methods (which Hugging Face tokenizers uses), computed by ICU.
// Nothing here hand-rolls a Unicode table: every property comes from ICU's character database.
//
// Threading: stateless functions, safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace loratrf::engine::tokenizer {

// A code point and where it starts in a UTF-8 string.
struct CodePoint {
  char32_t value;
  size_t offset;  // byte offset of the first byte
  size_t length;  // 1..4 bytes
};

// OK for well-formed UTF-8; else InvalidArgument naming the byte offset of the first bad
// sequence (overlong forms, surrogates and values past U+10FFFF are all rejected).
absl::Status ValidateUtf8(absl::string_view text);

// The code points of `text`. Ill-formed bytes come out as U+FFFD (callers that need valid
// text check it with ValidateUtf8 first).
std::vector<CodePoint> DecodeUtf8(absl::string_view text);
void AppendUtf8(char32_t c, std::string& out);
size_t CountCodePoints(absl::string_view text);

// Rust's char::is_whitespace: the Unicode White_Space property.
bool IsWhitespace(char32_t c);
// A regex \w character (UTS #18, as Rust's regex and Oniguruma define it): Alphabetic, a mark,
// a decimal digit (Nd), connector punctuation (Pc) or Join_Control.
bool IsRegexWordCharacter(char32_t c);
// Rust's char::is_numeric: general category Nd, Nl or No.
bool IsNumeric(char32_t c);
// The next four follow the Unicode version of the Rust table Hugging Face uses for them (noted
// per function): a character assigned later does not have the property there, nor here.
//
// Hugging Face's punctuation test (BERT, Punctuation pre-tokenizer): ASCII punctuation
// (which includes $ + < = > ^ ` | ~) or a Unicode punctuation category P* (Unicode 8.0).
bool IsBertPunctuation(char32_t c);
// Cc, Cf, Co or Cs, not unassigned (Unicode 8.0): what BERT's clean_text removes.
bool IsOtherCategory(char32_t c);
// General category Mark, Mn Mc Me (Unicode 9.0): what the StripAccents normalizer removes.
bool IsCombiningMark(char32_t c);
// General category Mn only (Unicode 8.0): what BERT's accent stripping removes after NFD.
bool IsNonspacingMark(char32_t c);
// The CJK ideograph blocks BERT surrounds with spaces (as in Google's original BERT code).
bool IsChineseCharacter(char32_t c);

enum class NormalizationForm { kNfc, kNfd, kNfkc, kNfkd };  // order matters (table index)
// Unicode normalization by ICU, limited to the characters Hugging Face's tables know (Unicode
// 11.0): newer characters pass unchanged, as they do there. `text` must be valid UTF-8.
absl::Status Normalize(NormalizationForm form, absl::string_view text, std::string& out);
// Rust's str::chars().flat_map(char::to_lowercase): full, context-free lowercase mapping of
// every code point (İ becomes i + U+0307; a lone Σ becomes σ, never ς).
std::string Lowercase(absl::string_view text);

}  // namespace loratrf::engine::tokenizer
