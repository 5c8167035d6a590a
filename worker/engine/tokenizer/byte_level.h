// GPT-2's byte-level alphabet: each of the 256 byte values is shown as one printable code
// point (printable Latin-1 bytes as themselves, the rest shifted to U+0100..), so that BPE can
// work on arbitrary bytes as if they were text.
//
// Threading: the tables are built once (thread-safe static init) and never change.
#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace loratrf::engine::tokenizer {

// Every byte of `bytes` as its byte-level code point, UTF-8 encoded.
std::string BytesToByteLevelChars(absl::string_view bytes);
// The byte a byte-level code point stands for; nullopt for any other code point.
std::optional<unsigned char> ByteLevelCharToByte(char32_t c);

}  // namespace loratrf::engine::tokenizer
