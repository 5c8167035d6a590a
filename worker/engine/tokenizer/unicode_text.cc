#include "worker/engine/tokenizer/unicode_text.h"

#include <memory>

#include <unicode/normalizer2.h>
#include <unicode/uniset.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/ustring.h>
#include <unicode/utf8.h>

#include "absl/strings/str_cat.h"

namespace loratrf::engine::tokenizer {
namespace {

// Decodes one code point at `i` and returns how many bytes it took (at least 1). Bytes that
// are not well-formed UTF-8 give U+FFFD and `valid` false, consuming the maximal ill-formed
// subpart as Unicode recommends (and Rust's from_utf8_lossy does). ICU's U8_NEXT rejects
// overlongs, surrogates and values past U+10FFFF.
size_t DecodeAt(absl::string_view text, size_t i, char32_t& out, bool& valid) {
  int32_t offset = static_cast<int32_t>(i);
  UChar32 c = 0;
  U8_NEXT(reinterpret_cast<const uint8_t*>(text.data()), offset,
          static_cast<int32_t>(text.size()), c);
  valid = c >= 0;
  out = valid ? static_cast<char32_t>(c) : 0xFFFD;
  return static_cast<size_t>(offset) > i ? static_cast<size_t>(offset) - i : 1;
}

bool HasCategory(char32_t c, uint32_t mask) {
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & mask) != 0;
}

// Assigned in Unicode `major`.`minor` or earlier. Hugging Face's Rust crates carry Unicode
// tables frozen at different versions; characters assigned later have no property there.
bool AssignedBy(char32_t c, uint8_t major, uint8_t minor) {
  UVersionInfo age;
  u_charAge(static_cast<UChar32>(c), age);
  if (age[0] == 0 && age[1] == 0) return false;  // unassigned
  return age[0] < major || (age[0] == major && age[1] <= minor);
}

}  // namespace

absl::Status ValidateUtf8(absl::string_view text) {
  if (text.size() > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError("text is larger than 2 GiB");
  }
  for (size_t i = 0; i < text.size();) {
    char32_t c;
    bool valid;
    size_t length = DecodeAt(text, i, c, valid);
    if (!valid) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid UTF-8 at byte ", i, " (byte 0x",
                       absl::Hex(static_cast<uint8_t>(text[i]), absl::kZeroPad2), ")"));
    }
    i += length;
  }
  return absl::OkStatus();
}

std::vector<CodePoint> DecodeUtf8(absl::string_view text) {
  std::vector<CodePoint> points;
  points.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    char32_t c;
    bool valid;
    size_t length = DecodeAt(text, i, c, valid);
    points.push_back({c, i, length});
    i += length;
  }
  return points;
}

void AppendUtf8(char32_t c, std::string& out) {
  uint8_t buffer[U8_MAX_LENGTH];
  int32_t length = 0;
  UBool error = false;
  U8_APPEND(buffer, length, U8_MAX_LENGTH, static_cast<UChar32>(c), error);
  if (error) return;
  out.append(reinterpret_cast<const char*>(buffer), static_cast<size_t>(length));
}

size_t CountCodePoints(absl::string_view text) {
  size_t count = 0;
  for (char byte : text) {
    // Every code point has exactly one byte that is not a continuation byte (10xxxxxx).
    if ((static_cast<uint8_t>(byte) & 0xC0) != 0x80) ++count;
  }
  return count;
}

bool IsWhitespace(char32_t c) { return u_isUWhiteSpace(static_cast<UChar32>(c)); }

bool IsNumeric(char32_t c) { return HasCategory(c, U_GC_ND_MASK | U_GC_NL_MASK | U_GC_NO_MASK); }

bool IsRegexWordCharacter(char32_t c) {
  UChar32 u = static_cast<UChar32>(c);
  return u_isUAlphabetic(u) || HasCategory(c, U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK) ||
         u_hasBinaryProperty(u, UCHAR_JOIN_CONTROL);
}


// The unicode_categories crate (BERT's normalizer and pre-tokenizer) has Unicode 8.0 tables;
// unicode-normalization-alignments' combining marks are Unicode 9.0. Both were measured
// against the reference library code point by code point (tests/integration).
bool IsBertPunctuation(char32_t c) {
  bool ascii_punctuation = (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) ||
                           (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
  return ascii_punctuation || (HasCategory(c, U_GC_P_MASK) && AssignedBy(c, 8, 0));
}

bool IsOtherCategory(char32_t c) {
  return HasCategory(c, U_GC_CC_MASK | U_GC_CF_MASK | U_GC_CO_MASK | U_GC_CS_MASK) &&
         AssignedBy(c, 8, 0);
}

// Unicode has changed the category of a few marks since those versions; ICU knows only the
// current one, so these keep the category the old tables give them.
bool IsCombiningMark(char32_t c) {
  if (c == 0x1CF2 || c == 0x1CF3) return true;  // Vedic signs: Mc in 9.0, Lo since 10.0
  if (c == 0x111C9) return false;               // Sharada sandhi mark: Po in 9.0, Mn since 11.0
  return HasCategory(c, U_GC_M_MASK) && AssignedBy(c, 9, 0);
}

bool IsNonspacingMark(char32_t c) {
  if (c == 0x1734) return true;                    // Hanunoo pamudpod: Mn in 8.0, Mc since 14.0
  if (c == 0x1885 || c == 0x1886) return false;    // Mongolian baludas: Lo in 8.0, Mn since 9.0
  if (c == 0xA9BD) return false;                   // Javanese keret: Mc in 8.0, Mn since 12.0
  if (c == 0x111C9) return false;                  // Sharada sandhi mark: Po in 8.0, Mn since 11.0
  return HasCategory(c, U_GC_MN_MASK) && AssignedBy(c, 8, 0);
}

bool IsChineseCharacter(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

namespace {

// Characters Hugging Face's normalization tables know: its Rust crate
// (unicode-normalization-alignments) froze at Unicode 11.0, so characters assigned later are
// left as they are (U+1F16C, for one, has an NFKC mapping since 12.0).
constexpr char kNormalizedRepertoire[] = "[:age=11.0:]";

// The four normalizers restricted to that repertoire, built once. nullptr if ICU fails.
const icu::Normalizer2* FilteredNormalizer(NormalizationForm form) {
  struct Normalizers {
    std::unique_ptr<icu::UnicodeSet> repertoire;
    std::unique_ptr<icu::FilteredNormalizer2> forms[4];
  };
  static const Normalizers* normalizers = [] {
    auto* built = new Normalizers();
    UErrorCode error = U_ZERO_ERROR;
    built->repertoire = std::make_unique<icu::UnicodeSet>(
        icu::UnicodeString(kNormalizedRepertoire, -1, US_INV), error);
    if (U_FAILURE(error)) return built;
    built->repertoire->freeze();
    const icu::Normalizer2* bases[4] = {
        icu::Normalizer2::getNFCInstance(error), icu::Normalizer2::getNFDInstance(error),
        icu::Normalizer2::getNFKCInstance(error), icu::Normalizer2::getNFKDInstance(error)};
    if (U_FAILURE(error)) return built;
    for (int i = 0; i < 4; ++i) {
      built->forms[i] = std::make_unique<icu::FilteredNormalizer2>(*bases[i], *built->repertoire);
    }
    return built;
  }();
  return normalizers->forms[static_cast<int>(form)].get();
}

}  // namespace

absl::Status Normalize(NormalizationForm form, absl::string_view text, std::string& out) {
  const icu::Normalizer2* normalizer = FilteredNormalizer(form);
  if (normalizer == nullptr) return absl::InternalError("ICU normalizers are unavailable");
  UErrorCode error = U_ZERO_ERROR;
  icu::UnicodeString input = icu::UnicodeString::fromUTF8(
      icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  // Already-normalized text (the common case) costs one quick check and no copy back.
  if (normalizer->isNormalized(input, error) && U_SUCCESS(error)) {
    out.assign(text.data(), text.size());
    return absl::OkStatus();
  }
  error = U_ZERO_ERROR;
  icu::UnicodeString normalized = normalizer->normalize(input, error);
  if (U_FAILURE(error)) {
    return absl::InternalError(absl::StrCat("ICU normalization failed: ", u_errorName(error)));
  }
  out.clear();
  normalized.toUTF8String(out);
  return absl::OkStatus();
}

std::string Lowercase(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const CodePoint& point : DecodeUtf8(text)) {
    char32_t c = point.value;
    if (c < 0x80) {
      out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c));
      continue;
    }
    // Full (not simple) case mapping of the code point alone, so no context such as a final
    // sigma applies: the same as Rust's char::to_lowercase.
    UChar buffer[8];
    UErrorCode error = U_ZERO_ERROR;
    UChar source[2];
    int32_t source_length = 0;
    U16_APPEND_UNSAFE(source, source_length, static_cast<UChar32>(c));
    int32_t length = u_strToLower(buffer, 8, source, source_length, "", &error);
    if (U_FAILURE(error) || length > 8) {
      AppendUtf8(c, out);
      continue;
    }
    for (int32_t i = 0; i < length;) {
      UChar32 lower;
      U16_NEXT(buffer, i, length, lower);
      AppendUtf8(static_cast<char32_t>(lower), out);
    }
  }
  return out;
}

}  // namespace loratrf::engine::tokenizer
