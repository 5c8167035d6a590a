#include "common/text.h"

#include <algorithm>
#include <cstdint>

namespace loratrf {

namespace {

// The length of the UTF-8 character at text[i] (its code point in *code_point), 0 when the
// bytes there are not valid UTF-8; control characters count as characters here.
size_t Utf8CharacterAt(absl::string_view text, size_t i, uint32_t* code_point) {
  const unsigned char c = static_cast<unsigned char>(text[i]);
  size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (length == 0 || i + length > text.size()) return 0;
  for (size_t k = 1; k < length; ++k) {
    if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return 0;
  }
  uint32_t cp = length == 1 ? c : c & (0xFF >> (length + 1));
  for (size_t k = 1; k < length; ++k) {
    cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
  }
  // Overlong forms, surrogates and code points beyond U+10FFFF are not UTF-8.
  const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min[length] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  *code_point = cp;
  return length;
}

// Characters that change how the rest of a line is shown: C0 and C1 controls, DEL, and the
// bidirectional embeddings, overrides and isolates.
bool IsControl(uint32_t cp) {
  return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) || (cp >= 0x202A && cp <= 0x202E) ||
         (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200E || cp == 0x200F;
}

}  // namespace

std::string Excerpt(absl::string_view content, size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  size_t i = 0;
  while (i < content.size()) {
    uint32_t cp = 0;
    size_t length = Utf8CharacterAt(content, i, &cp);
    const bool escape = length == 0 || IsControl(cp);
    if (escape && length == 0) length = 1;
    const size_t shown = escape ? 4 * length : length;
    if (out.size() + shown > max_bytes) {
      out += "...";
      break;
    }
    for (size_t k = 0; k < length; ++k) {
      const unsigned char c = static_cast<unsigned char>(content[i + k]);
      if (escape) {
        out += "\\x";
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 0xF]);
      } else {
        out.push_back(static_cast<char>(c));
      }
    }
    i += length;
  }
  return out;
}

std::string WithoutJsonExceptionTag(std::string message) {
  if (size_t bracket = message.find("] "); bracket != std::string::npos) {
    message = message.substr(bracket + 2);
  }
  static constexpr char kLastRead[] = "last read: ";
  if (size_t at = message.find(kLastRead); at != std::string::npos) {
    at += sizeof(kLastRead) - 1;
    message = message.substr(0, at) + Excerpt(absl::string_view(message).substr(at));
  }
  return Excerpt(message, 512);
}

std::string SanitizeText(absl::string_view text, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes));
  size_t i = 0;
  while (i < text.size()) {
    uint32_t cp = 0;
    size_t length = Utf8CharacterAt(text, i, &cp);
    const bool valid = length > 0 && !((cp < 0x20 && cp != '\t') || cp == 0x7F);
    if (!valid) length = 1;  // one '?' for each byte that is not part of a kept character
    if (out.size() + length > max_bytes) break;
    if (valid) {
      out.append(text.data() + i, length);
    } else {
      out.push_back('?');
    }
    i += length;
  }
  return out;
}

}  // namespace loratrf
