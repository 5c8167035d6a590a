// tokenizer.json "decoder": tokens → text. Supported: ByteLevel, Metaspace, WordPiece,
// ByteFallback, Fuse, Replace, Strip, BPEDecoder and Sequence; anything else is an error.
//
// Threading: immutable after parsing; Decode may run on many threads at once.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/tokenizer/json_fields.h"

namespace loratrf::engine::tokenizer {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Hugging Face's decode_chain: rewrites the token strings; the caller joins the result.
  virtual absl::Status DecodeChain(std::vector<std::string>& tokens) const = 0;
};

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const Json& json, absl::string_view path);

}  // namespace loratrf::engine::tokenizer
