#include "common/text.h"

#include <algorithm>
#include <cstdint>

namespace loratrf {

std::string SanitizeText(absl::string_view text, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes));
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool valid = length > 0 && i + length <= text.size();
    for (size_t k = 1; valid && k < length; ++k) {
      valid = (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
    }
    if (valid && length == 1 && ((c < 0x20 && c != '\t') || c == 0x7F)) valid = false;
    if (valid && length > 1) {
      // Overlong forms, surrogates and code points beyond U+10FFFF are not UTF-8.
      uint32_t cp = c & (0xFF >> (length + 1));
      for (size_t k = 1; k < length; ++k) {
        cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
      }
      const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
      valid = cp >= min[length] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    }
    if (!valid) length = 1;
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
