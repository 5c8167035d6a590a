// Fuzz target: tokenizer.json parsing and encoding. The input is a tokenizer.json text, a NUL
// byte, then a text to encode (any bytes). Parse never crashes; a tokenizer it accepts encodes
// every valid UTF-8 text (alone, with special tokens, and as a pair) to ids below id_limit(),
// refuses only invalid UTF-8, and decodes the ids it produced.
//
// Two refusals of valid text are by design and allowed: a word missing from a WordLevel vocab
// that has no unk_token (Hugging Face errors too), and a regex hitting PCRE2's match limit
// (ResourceExhausted).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "worker/engine/tokenizer/hf_tokenizer.h"
#include "worker/engine/tokenizer/unicode_text.h"

namespace {

using loratrf::engine::tokenizer::HfTokenizer;

constexpr size_t kMaxTextBytes = 4096;

void CheckIds(const HfTokenizer& tokenizer, const std::vector<int64_t>& ids) {
  for (int64_t id : ids) {
    if (id < 0 || id >= tokenizer.id_limit()) std::abort();
  }
  // Ids the tokenizer produced always decode, with or without the special tokens.
  if (!tokenizer.Decode(ids, /*skip_special_tokens=*/false).ok()) std::abort();
  if (!tokenizer.Decode(ids, /*skip_special_tokens=*/true).ok()) std::abort();
}

bool AllowedRefusal(const absl::Status& status) {
  return absl::IsResourceExhausted(status) ||
         (absl::IsInvalidArgument(status) &&
          absl::StrContains(status.message(), "which has no unk_token"));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view input(reinterpret_cast<const char*>(data), size);
  size_t nul = input.find('\0');
  absl::string_view json = input.substr(0, nul);
  absl::string_view text =
      nul == absl::string_view::npos ? absl::string_view() : input.substr(nul + 1);
  if (text.size() > kMaxTextBytes) return 0;

  auto tokenizer = HfTokenizer::Parse(json, "fuzz");
  if (!tokenizer.ok()) return 0;
  const bool valid_utf8 = loratrf::engine::tokenizer::ValidateUtf8(text).ok();

  for (bool add_special_tokens : {false, true}) {
    auto ids = (*tokenizer)->Encode(text, add_special_tokens);
    if (!ids.ok()) {
      if (valid_utf8 && !AllowedRefusal(ids.status())) std::abort();
      continue;
    }
    if (!valid_utf8) std::abort();  // invalid UTF-8 must be refused, not tokenized
    CheckIds(**tokenizer, *ids);
  }
  auto pair = (*tokenizer)->EncodePair(text, text);
  if (pair.ok() ? !valid_utf8 : valid_utf8 && !AllowedRefusal(pair.status())) std::abort();
  if (pair.ok()) CheckIds(**tokenizer, *pair);
  return 0;
}
