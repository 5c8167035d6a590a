#include "worker/engine/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cctype>

#include "absl/strings/str_cat.h"

namespace loratrf::engine::tokenizer {
namespace {

// Oniguruma (Unicode mode): \s is 0009-000D, 0085 and the separators Zs/Zl/Zp; \w is UTS #18's
// word class (Alphabetic, marks, decimal digits, connector punctuation and the zero-width
// joiners, which is why "👨‍👩" splits around its U+200D); \d is decimal digits.
constexpr absl::string_view kSpaceMembers = "\\t\\n\\x{0B}\\f\\r\\x{85}\\p{Z}";
constexpr absl::string_view kWordMembers =
    "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}";
constexpr absl::string_view kDigitMembers = "\\p{Nd}";

std::string Pcre2Message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

struct Regex::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Compiled() { pcre2_code_free(code); }
};

std::string TranslateOnigurumaClasses(absl::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 32);
  int class_depth = 0;  // inside [...] (POSIX-style nesting is not used by tokenizer files)
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      char next = pattern[i + 1];
      absl::string_view members;
      bool negated = false;
      switch (next) {
        case 's': members = kSpaceMembers; break;
        case 'S': members = kSpaceMembers; negated = true; break;
        case 'w': members = kWordMembers; break;
        case 'W': members = kWordMembers; negated = true; break;
        case 'd': members = kDigitMembers; break;
        case 'D': members = kDigitMembers; negated = true; break;
        default: break;
      }
      if (members.empty()) {
        out.push_back(c);
        out.push_back(next);
      } else if (class_depth == 0) {
        absl::StrAppend(&out, negated ? "[^" : "[", members, "]");
      } else if (!negated) {
        out.append(members.data(), members.size());
      } else {
        // A negated class inside a class ([^\S] style) has no flat spelling; keep PCRE2's own,
        // which differs only in the rare characters listed above.
        out.push_back(c);
        out.push_back(next);
      }
      ++i;
      continue;
    }
    if (c == '[') {
      ++class_depth;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out.push_back(pattern[++i]);
      continue;
    }
    if (c == ']' && class_depth > 0) --class_depth;
    out.push_back(c);
  }
  return out;
}

absl::StatusOr<Regex> Regex::Compile(absl::string_view pattern) {
  return CompilePcre2(TranslateOnigurumaClasses(pattern), pattern);
}

absl::StatusOr<Regex> Regex::Literal(absl::string_view literal) {
  // Every character stands for itself: ASCII punctuation is escaped (always legal in PCRE2),
  // and no class translation runs, so a literal "\s" stays a backslash and an s.
  std::string quoted;
  quoted.reserve(literal.size() * 2);
  for (char c : literal) {
    if (std::ispunct(static_cast<unsigned char>(c))) quoted.push_back('\\');
    quoted.push_back(c);
  }
  return CompilePcre2(quoted, literal);
}

absl::StatusOr<Regex> Regex::CompilePcre2(const std::string& pcre2_pattern,
                                          absl::string_view pattern) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre2_pattern.data()),
                                   pcre2_pattern.size(), PCRE2_UTF | PCRE2_UCP, &error_code,
                                   &error_offset, nullptr);
  if (code == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("regex \"", pattern, "\" does not compile: ",
                                                   Pcre2Message(error_code), " at offset ",
                                                   error_offset));
  }
  auto compiled = std::make_shared<Compiled>();
  compiled->code = code;
  // JIT makes matching several times faster; without it (e.g. no executable memory) the
  // interpreter gives the same results.
  compiled->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return Regex(std::string(pattern), std::move(compiled));
}

absl::StatusOr<std::vector<std::pair<size_t, size_t>>> Regex::FindAll(
    absl::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  pcre2_match_data* data = pcre2_match_data_create_from_pattern(compiled_->code, nullptr);
  if (data == nullptr) return absl::ResourceExhaustedError("out of memory for regex match data");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  absl::Status status;
  while (start <= text.size()) {
    // NO_UTF_CHECK: callers pass validated UTF-8, and checking the whole subject on every
    // call would make matching quadratic in the text length.
    int rc = compiled_->jit
                 ? pcre2_jit_match(compiled_->code, subject, text.size(), start,
                                   PCRE2_NO_UTF_CHECK, data, nullptr)
                 : pcre2_match(compiled_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK,
                               data, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      // The JIT's default stack is small; the interpreter uses the heap instead.
      rc = pcre2_match(compiled_->code, subject, text.size(), start,
                       PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, data, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
    }
    if (rc < 0) {
      status = absl::ResourceExhaustedError(absl::StrCat(
          "regex \"", pattern_, "\" failed on a text of ", text.size(), " bytes: ",
          Pcre2Message(rc)));
      break;
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    size_t begin = ovector[0];
    size_t end = ovector[1];
    if (end > begin) {
      matches.emplace_back(begin, end);
      start = end;
    } else {
      // An empty match: step over one whole code point so the next search starts on a
      // character boundary.
      if (begin >= text.size()) break;
      start = begin + 1;
      while (start < text.size() && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) ++start;
    }
  }
  pcre2_match_data_free(data);
  if (!status.ok()) return status;
  return matches;
}

absl::StatusOr<std::string> Regex::ReplaceAll(absl::string_view text, absl::string_view content,
                                             size_t max_bytes, bool* first_match_at_start) const {
  absl::StatusOr<std::vector<std::pair<size_t, size_t>>> matches = FindAll(text);
  if (!matches.ok()) return matches.status();
  if (first_match_at_start != nullptr) {
    *first_match_at_start = !matches->empty() && matches->front().first == 0;
  }
  std::string out;
  size_t last = 0;
  for (const auto& [begin, end] : *matches) {
    out.append(text.data() + last, begin - last);
    out.append(content.data(), content.size());
    last = end;
    if (out.size() > max_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat("replacing \"", pattern_, "\": the text grew past ",
                                                       max_bytes, " bytes"));
    }
  }
  out.append(text.data() + last, text.size() - last);
  return out;
}

}  // namespace loratrf::engine::tokenizer
