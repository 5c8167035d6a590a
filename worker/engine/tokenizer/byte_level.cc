#include "worker/engine/tokenizer/byte_level.h"

#include <array>

#include "absl/container/flat_hash_map.h"
#include "worker/engine/tokenizer/unicode_text.h"

namespace loratrf::engine::tokenizer {
namespace {

struct ByteLevelTables {
  std::array<std::string, 256> byte_to_utf8;
  absl::flat_hash_map<char32_t, unsigned char> char_to_byte;

  ByteLevelTables() {
    // GPT-2's bytes_to_unicode(): '!'..'~', '¡'..'¬' and '®'..'ÿ' map to themselves; the other
    // bytes take U+0100, U+0101, ... in byte order.
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      char32_t c = printable ? static_cast<char32_t>(b) : next++;
      AppendUtf8(c, byte_to_utf8[b]);
      char_to_byte[c] = static_cast<unsigned char>(b);
    }
  }
};

const ByteLevelTables& Tables() {
  static const ByteLevelTables* tables = new ByteLevelTables();
  return *tables;
}

}  // namespace

std::string BytesToByteLevelChars(absl::string_view bytes) {
  const ByteLevelTables& tables = Tables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char byte : bytes) out += tables.byte_to_utf8[static_cast<unsigned char>(byte)];
  return out;
}

std::optional<unsigned char> ByteLevelCharToByte(char32_t c) {
  const ByteLevelTables& tables = Tables();
  auto it = tables.char_to_byte.find(c);
  if (it == tables.char_to_byte.end()) return std::nullopt;
  return it->second;
}

}  // namespace loratrf::engine::tokenizer
