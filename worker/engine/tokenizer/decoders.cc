#include "worker/engine/tokenizer/decoders.h"

#include <optional>
#include <utility>

#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "worker/engine/tokenizer/byte_level.h"
#include "worker/engine/tokenizer/normalizers.h"
#include "worker/engine/tokenizer/regex.h"
#include "worker/engine/tokenizer/unicode_text.h"

namespace loratrf::engine::tokenizer {
namespace {

// Bytes that may not be valid UTF-8 → text, each bad sequence replaced by U+FFFD (Rust's
// String::from_utf8_lossy, one replacement per maximal invalid subpart as ICU's U8_NEXT finds).
std::string Utf8Lossy(absl::string_view bytes) {
  if (ValidateUtf8(bytes).ok()) return std::string(bytes);
  std::string out;
  for (const CodePoint& point : DecodeUtf8(bytes)) {
    if (point.value == 0xFFFD && bytes.substr(point.offset, point.length) != "\xEF\xBF\xBD") {
      out += "\xEF\xBF\xBD";
    } else {
      out.append(bytes.data() + point.offset, point.length);
    }
  }
  return out;
}

class ByteLevelDecoder : public Decoder {
 public:
  absl::Status DecodeChain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& token : tokens) {
      // A token made only of byte-level characters stands for those bytes; any other token
      // (an added token such as "<|eot_id|>" typed by hand) stands for itself.
      std::string token_bytes;
      bool all_mapped = true;
      for (const CodePoint& point : DecodeUtf8(token)) {
        std::optional<unsigned char> byte = ByteLevelCharToByte(point.value);
        if (!byte.has_value()) {
          all_mapped = false;
          break;
        }
        token_bytes.push_back(static_cast<char>(*byte));
      }
      bytes += all_mapped ? token_bytes : token;
    }
    tokens = {Utf8Lossy(bytes)};
    return absl::OkStatus();
  }
};

// The marker becomes a space, except in the first token, where every marker goes (it is the
// one the pre-tokenizer prepended, and Hugging Face drops them all there).
class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  absl::Status DecodeChain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = absl::StrReplaceAll(tokens[i], {{replacement_, i == 0 && strip_first_ ? "" : " "}});
    }
    return absl::OkStatus();
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class WordPieceDecoder : public Decoder {
 public:
  WordPieceDecoder(std::string prefix, bool cleanup)
      : prefix_(std::move(prefix)), cleanup_(cleanup) {}
  absl::Status DecodeChain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string& token = tokens[i];
      if (i > 0) {
        if (token.rfind(prefix_, 0) == 0) {
          token.erase(0, prefix_.size());
        } else {
          token.insert(0, " ");
        }
      }
      if (cleanup_) {
        // Hugging Face's clean_up_tokenization, in its order.
        token = absl::StrReplaceAll(token, {{" .", "."}});
        token = absl::StrReplaceAll(token, {{" ?", "?"}});
        token = absl::StrReplaceAll(token, {{" !", "!"}});
        token = absl::StrReplaceAll(token, {{" ,", ","}});
        token = absl::StrReplaceAll(token, {{" ' ", "'"}});
        token = absl::StrReplaceAll(token, {{" n't", "n't"}});
        token = absl::StrReplaceAll(token, {{" 'm", "'m"}});
        token = absl::StrReplaceAll(token, {{" do not", " don't"}});
        token = absl::StrReplaceAll(token, {{" 's", "'s"}});
        token = absl::StrReplaceAll(token, {{" 've", "'ve"}});
        token = absl::StrReplaceAll(token, {{" 're", "'re"}});
      }
    }
    return absl::OkStatus();
  }

 private:
  std::string prefix_;
  bool cleanup_;
};

// <0xAB> tokens (SentencePiece byte fallback) back to bytes; a run that is not valid UTF-8
// becomes one U+FFFD per byte, as in Hugging Face.
class ByteFallbackDecoder : public Decoder {
 public:
  absl::Status DecodeChain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    size_t pending_tokens = 0;
    auto flush = [&] {
      if (pending_tokens == 0) return;
      if (ValidateUtf8(pending).ok()) {
        out.push_back(pending);
      } else {
        for (size_t i = 0; i < pending_tokens; ++i) out.push_back("\xEF\xBF\xBD");
      }
      pending.clear();
      pending_tokens = 0;
    };
    for (std::string& token : tokens) {
      if (std::optional<char> byte = ParseByteToken(token); byte.has_value()) {
        pending.push_back(*byte);
        ++pending_tokens;
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    tokens = std::move(out);
    return absl::OkStatus();
  }

 private:
  static std::optional<char> ParseByteToken(absl::string_view token) {
    if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return std::nullopt;
    int value = 0;
    for (char c : token.substr(3, 2)) {
      value *= 16;
      if (c >= '0' && c <= '9') {
        value += c - '0';
      } else if (c >= 'A' && c <= 'F') {
        value += c - 'A' + 10;
      } else if (c >= 'a' && c <= 'f') {
        value += c - 'a' + 10;
      } else {
        return std::nullopt;
      }
    }
    return static_cast<char>(value);
  }
};

class FuseDecoder : public Decoder {
 public:
  absl::Status DecodeChain(std::vector<std::string>& tokens) const override {
    std::string joined;
    for (const std::string& token : tokens) joined += token;
    tokens = {std::move(joined)};
    return absl::OkStatus();
  }
};

// A decoded token may not grow past this through Replace (content can be longer than a match).
constexpr size_t kMaxDecodedTokenBytes = 64u << 20;

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(Regex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status DecodeChain(std::vector<std::string>& tokens) const override {
    for (std::string& token : tokens) {
      ASSIGN_OR_RETURN(token, pattern_.ReplaceAll(token, content_, kMaxDecodedTokenBytes));
    }
    return absl::OkStatus();
  }

 private:
  Regex pattern_;
  std::string content_;
};

// Removes up to `start` leading and `stop` trailing copies of one character from each token.
class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, uint64_t start, uint64_t stop)
      : content_(content), start_(start), stop_(stop) {}
  absl::Status DecodeChain(std::vector<std::string>& tokens) const override {
    for (std::string& token : tokens) {
      std::vector<CodePoint> points = DecodeUtf8(token);
      size_t begin = 0;
      while (begin < points.size() && begin < start_ && points[begin].value == content_) ++begin;
      size_t end = points.size();
      size_t stripped = 0;
      while (end > begin && stripped < stop_ && points[end - 1].value == content_) {
        --end;
        ++stripped;
      }
      if (begin == end) {
        token.clear();
      } else {
        size_t first = points[begin].offset;
        size_t last = points[end - 1].offset + points[end - 1].length;
        token = token.substr(first, last - first);
      }
    }
    return absl::OkStatus();
  }

 private:
  char32_t content_;
  uint64_t start_, stop_;
};

class BpeSuffixDecoder : public Decoder {
 public:
  explicit BpeSuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  absl::Status DecodeChain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = absl::StrReplaceAll(tokens[i], {{suffix_, i + 1 == tokens.size() ? "" : " "}});
    }
    return absl::OkStatus();
  }

 private:
  std::string suffix_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps)
      : steps_(std::move(steps)) {}
  absl::Status DecodeChain(std::vector<std::string>& tokens) const override {
    for (const auto& step : steps_) RETURN_IF_ERROR(step->DecodeChain(tokens));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const Json& json, absl::string_view path) {
  ASSIGN_OR_RETURN(std::string type, TypeOf(json, path));
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(std::string replacement, StringField(json, path, "replacement"));
    bool strip_first = true;
    ASSIGN_OR_RETURN(std::optional<std::string> scheme,
                     OptionalStringField(json, path, "prepend_scheme"));
    if (scheme.has_value()) {
      strip_first = *scheme != "never";
    } else {
      ASSIGN_OR_RETURN(strip_first, BoolField(json, path, "add_prefix_space", true));
    }
    return std::make_unique<MetaspaceDecoder>(std::move(replacement), strip_first);
  }
  if (type == "WordPiece") {
    ASSIGN_OR_RETURN(std::optional<std::string> prefix, OptionalStringField(json, path, "prefix"));
    ASSIGN_OR_RETURN(bool cleanup, BoolField(json, path, "cleanup", true));
    return std::make_unique<WordPieceDecoder>(prefix.value_or("##"), cleanup);
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(Regex pattern, ParsePattern(json, path));
    ASSIGN_OR_RETURN(std::string content, StringField(json, path, "content"));
    return std::make_unique<ReplaceDecoder>(std::move(pattern), std::move(content));
  }
  if (type == "Strip") {
    ASSIGN_OR_RETURN(std::string content, StringField(json, path, "content"));
    std::vector<CodePoint> points = DecodeUtf8(content);
    if (points.size() != 1) {
      return FieldError(absl::StrCat(path, ".content"), "must be one character");
    }
    ASSIGN_OR_RETURN(uint64_t start, UintField(json, path, "start", 0, 1u << 20));
    ASSIGN_OR_RETURN(uint64_t stop, UintField(json, path, "stop", 0, 1u << 20));
    return std::make_unique<StripDecoder>(points[0].value, start, stop);
  }
  if (type == "BPEDecoder") {
    ASSIGN_OR_RETURN(std::optional<std::string> suffix, OptionalStringField(json, path, "suffix"));
    return std::make_unique<BpeSuffixDecoder>(suffix.value_or("</w>"));
  }
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(std::vector<std::unique_ptr<Decoder>> steps,
                     ParseComponentList<Decoder>(json, path, "decoders", ParseDecoder));
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  return Unsupported(path, "decoder", type,
                     "ByteLevel, Metaspace, WordPiece, ByteFallback, Fuse, Replace, Strip, "
                     "BPEDecoder, Sequence");
}

}  // namespace loratrf::engine::tokenizer
