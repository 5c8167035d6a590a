// loratrf_tokenizer unit tests: small hand-written tokenizer.json texts whose expected ids were
// worked out by hand from Hugging Face tokenizers' semantics, one component at a time (models,
// normalizers, pre-tokenizers, added tokens, post-processors, decoders), plus the errors each
// unsupported or malformed piece must produce, eos/pad discovery from a model directory, and
// concurrent encoding. Parity with the reference library on real files lives in
// tests/integration.
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/engine/tokenizer/byte_level.h"
#include "worker/engine/tokenizer/hf_tokenizer.h"
#include "worker/engine/tokenizer/pre_tokenizers.h"
#include "worker/engine/tokenizer/regex.h"

namespace loratrf::engine::tokenizer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Ids = std::vector<int64_t>;
using Ranges = std::vector<std::pair<size_t, size_t>>;

std::unique_ptr<HfTokenizer> MustParse(const std::string& json_text) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer =
      HfTokenizer::Parse(json_text, "test.json");
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status() << "\n" << json_text;
  if (!tokenizer.ok()) return nullptr;
  return std::move(*tokenizer);
}

// The Parse error of `json_text` (an OK status if it parsed, which fails the caller's checks).
absl::Status ParseError(const std::string& json_text) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer =
      HfTokenizer::Parse(json_text, "test.json");
  return tokenizer.status();
}

Ids MustEncode(const HfTokenizer& tokenizer, const std::string& text,
               bool add_special_tokens = false) {
  absl::StatusOr<Ids> ids = tokenizer.Encode(text, add_special_tokens);
  EXPECT_TRUE(ids.ok()) << ids.status() << " encoding \"" << text << "\"";
  return ids.ok() ? *ids : Ids{-1};
}

std::string MustDecode(const HfTokenizer& tokenizer, const Ids& ids,
                       bool skip_special_tokens = false) {
  absl::StatusOr<std::string> text = tokenizer.Decode(ids, skip_special_tokens);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "<decode failed>";
}

// A tokenizer.json with the given components (JSON texts; "" leaves a component out).
std::string TokenizerJson(const std::string& model, const std::string& normalizer = "",
                          const std::string& pre_tokenizer = "", const std::string& decoder = "",
                          const std::string& added_tokens = "",
                          const std::string& post_processor = "") {
  nlohmann::json j;
  j["version"] = "1.0";
  j["model"] = nlohmann::json::parse(model);
  j["normalizer"] = normalizer.empty() ? nlohmann::json() : nlohmann::json::parse(normalizer);
  j["pre_tokenizer"] =
      pre_tokenizer.empty() ? nlohmann::json() : nlohmann::json::parse(pre_tokenizer);
  j["decoder"] = decoder.empty() ? nlohmann::json() : nlohmann::json::parse(decoder);
  j["added_tokens"] =
      added_tokens.empty() ? nlohmann::json::array() : nlohmann::json::parse(added_tokens);
  j["post_processor"] =
      post_processor.empty() ? nlohmann::json() : nlohmann::json::parse(post_processor);
  return j.dump();
}

// A WordLevel model over `words` (ids 0.. in order) with "[UNK]" as the last id.
std::string WordLevel(const std::vector<std::string>& words) {
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < words.size(); ++i) vocab[words[i]] = i;
  vocab["[UNK]"] = words.size();
  nlohmann::json model = {{"type", "WordLevel"}, {"vocab", vocab}, {"unk_token", "[UNK]"}};
  return model.dump();
}

constexpr char kWhitespaceSplit[] = R"({"type": "WhitespaceSplit"})";

// Normalizer probe: a WordLevel tokenizer over `words` (plus [UNK]) with no decoder, so that
// Decode joins the token strings with spaces: what comes back is the normalized words (or
// [UNK] where normalization went wrong).
std::string Normalized(const std::string& normalizer, const std::vector<std::string>& words,
                       const std::string& text, const std::string& pre_tokenizer = kWhitespaceSplit) {
  std::unique_ptr<HfTokenizer> tokenizer =
      MustParse(TokenizerJson(WordLevel(words), normalizer, pre_tokenizer));
  if (tokenizer == nullptr) return "<parse failed>";
  return MustDecode(*tokenizer, MustEncode(*tokenizer, text));
}

// Runs one pre-tokenizer (a JSON text) on `words` (the first starts the input).
std::vector<std::string> PreTokenize(const std::string& pre_tokenizer,
                                     const std::vector<std::string>& texts) {
  absl::StatusOr<std::unique_ptr<PreTokenizer>> parsed =
      ParsePreTokenizer(nlohmann::json::parse(pre_tokenizer), "pre_tokenizer");
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  if (!parsed.ok()) return {"<parse failed>"};
  std::vector<Word> words;
  for (size_t i = 0; i < texts.size(); ++i) words.push_back({texts[i], i == 0});
  absl::Status status = (*parsed)->PreTokenize(words);
  EXPECT_TRUE(status.ok()) << status;
  std::vector<std::string> out;
  for (const Word& word : words) out.push_back(word.text);
  return out;
}

std::vector<std::string> PreTokenize(const std::string& pre_tokenizer, const std::string& text) {
  return PreTokenize(pre_tokenizer, std::vector<std::string>{text});
}

// ---------------------------------------------------------------------------------------------
// BPE

// a=0 b=1 c=2 ab=3 bc=4 abc=5; `merges` is the JSON list.
std::string AbcBpe(const std::string& merges, const std::string& extra = "") {
  return absl::StrCat(R"({"type": "BPE", "dropout": null, "unk_token": null,
      "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5}, "merges": )",
                      merges, extra, "}");
}

TEST(Bpe, LowerMergeRankWins) {
  auto bc_first = MustParse(TokenizerJson(AbcBpe(R"(["b c", "a b"])")));
  ASSERT_NE(bc_first, nullptr);
  EXPECT_EQ(MustEncode(*bc_first, "abc"), (Ids{0, 4}));  // a + bc; "a bc" is no merge

  auto ab_first = MustParse(TokenizerJson(AbcBpe(R"(["a b", "b c"])")));
  ASSERT_NE(ab_first, nullptr);
  EXPECT_EQ(MustEncode(*ab_first, "abc"), (Ids{3, 2}));  // ab + c
}

TEST(Bpe, MergesChainToTheWholeWord) {
  auto tokenizer = MustParse(TokenizerJson(AbcBpe(R"(["a b", "ab c"])")));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "abc"), (Ids{5}));
  EXPECT_EQ(MustEncode(*tokenizer, "cab"), (Ids{2, 3}));
  EXPECT_EQ(MustEncode(*tokenizer, "abab"), (Ids{3, 3}));
}

TEST(Bpe, TiesGoToTheLeftmostPair) {
  // "aaa" with the one merge "a a" (aa=1): the left pair merges first, leaving aa + a.
  auto tokenizer = MustParse(TokenizerJson(
      R"({"type": "BPE", "vocab": {"a": 0, "aa": 1}, "merges": ["a a"]})"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "aaa"), (Ids{1, 0}));
  EXPECT_EQ(MustEncode(*tokenizer, "aaaa"), (Ids{1, 1}));
}

TEST(Bpe, MergesAsPairsEqualMergesAsStrings) {
  auto strings = MustParse(TokenizerJson(AbcBpe(R"(["b c", "a b"])")));
  auto pairs = MustParse(TokenizerJson(AbcBpe(R"([["b", "c"], ["a", "b"]])")));
  ASSERT_NE(strings, nullptr);
  ASSERT_NE(pairs, nullptr);
  for (const char* text : {"abc", "cba", "ab", "bcbc", "aabbcc"}) {
    EXPECT_EQ(MustEncode(*strings, text), MustEncode(*pairs, text)) << text;
  }
  EXPECT_EQ(MustEncode(*pairs, "abc"), (Ids{0, 4}));
}

TEST(Bpe, IgnoreMergesTakesAWholeWordFromTheVocab) {
  auto ignoring = MustParse(TokenizerJson(AbcBpe(R"(["a b"])", R"(, "ignore_merges": true)")));
  auto merging = MustParse(TokenizerJson(AbcBpe(R"(["a b"])", R"(, "ignore_merges": false)")));
  ASSERT_NE(ignoring, nullptr);
  ASSERT_NE(merging, nullptr);
  EXPECT_EQ(MustEncode(*ignoring, "abc"), (Ids{5}));
  EXPECT_EQ(MustEncode(*merging, "abc"), (Ids{3, 2}));
  // A word not in the vocab still goes through the merges.
  EXPECT_EQ(MustEncode(*ignoring, "abb"), (Ids{3, 1}));
}

TEST(Bpe, ByteFallbackForAnUnknownCharacter) {
  // é is C3 A9; 日 (E6 97 A5) has no byte tokens for all of its bytes, so it is unknown.
  auto tokenizer = MustParse(TokenizerJson(R"({"type": "BPE", "byte_fallback": true,
      "unk_token": "<unk>", "vocab": {"<unk>": 0, "a": 1, "<0xC3>": 2, "<0xA9>": 3,
      "<0xE6>": 4}, "merges": []})"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "aéa"), (Ids{1, 2, 3, 1}));
  EXPECT_EQ(MustEncode(*tokenizer, "a日"), (Ids{1, 0}));
}

TEST(Bpe, UnknownTokenFusedOrNot) {
  const std::string model = R"({"type": "BPE", "unk_token": "<unk>",
      "vocab": {"<unk>": 0, "a": 1}, "merges": [], "fuse_unk": )";
  auto fused = MustParse(TokenizerJson(model + "true}"));
  auto unfused = MustParse(TokenizerJson(model + "false}"));
  ASSERT_NE(fused, nullptr);
  ASSERT_NE(unfused, nullptr);
  EXPECT_EQ(MustEncode(*fused, "axyéa"), (Ids{1, 0, 1}));
  EXPECT_EQ(MustEncode(*unfused, "axyéa"), (Ids{1, 0, 0, 0, 1}));
  EXPECT_EQ(MustEncode(*fused, "xaz"), (Ids{0, 1, 0}));
}

TEST(Bpe, WithoutUnknownTokenUnknownCharactersAreDropped) {
  auto tokenizer = MustParse(
      TokenizerJson(R"({"type": "BPE", "vocab": {"a": 0, "aa": 1}, "merges": ["a a"]})"));
  ASSERT_NE(tokenizer, nullptr);
  // Hugging Face never adds a symbol for the x, so the two a's are adjacent and merge.
  EXPECT_EQ(MustEncode(*tokenizer, "axa"), (Ids{1}));
  EXPECT_EQ(MustEncode(*tokenizer, "xay"), (Ids{0}));
  EXPECT_EQ(MustEncode(*tokenizer, "xyz"), (Ids{}));
}

TEST(Bpe, ContinuingSubwordPrefix) {
  // The merge "a ##b" produces "ab" (the right side's prefix is dropped).
  auto tokenizer = MustParse(TokenizerJson(R"({"type": "BPE",
      "continuing_subword_prefix": "##", "unk_token": "[UNK]",
      "vocab": {"[UNK]": 0, "a": 1, "b": 2, "##a": 3, "##b": 4, "ab": 5},
      "merges": ["a ##b"]})"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "ab"), (Ids{5}));
  EXPECT_EQ(MustEncode(*tokenizer, "ba"), (Ids{2, 3}));   // b, ##a
  EXPECT_EQ(MustEncode(*tokenizer, "abb"), (Ids{5, 4}));  // ab, ##b
}

TEST(Bpe, EndOfWordSuffix) {
  auto tokenizer = MustParse(TokenizerJson(R"({"type": "BPE", "end_of_word_suffix": "</w>",
      "unk_token": "<unk>",
      "vocab": {"<unk>": 0, "a": 1, "b": 2, "a</w>": 3, "b</w>": 4, "ab</w>": 5},
      "merges": ["a b</w>"]})"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "ab"), (Ids{5}));
  EXPECT_EQ(MustEncode(*tokenizer, "ba"), (Ids{2, 3}));  // only the last character has </w>
  EXPECT_EQ(MustEncode(*tokenizer, "b"), (Ids{4}));
}

// ---------------------------------------------------------------------------------------------
// WordPiece

std::string WordPieceJson(const std::string& extra = "") {
  return TokenizerJson(absl::StrCat(R"({"type": "WordPiece", "unk_token": "[UNK]",
      "continuing_subword_prefix": "##",
      "vocab": {"[UNK]": 0, "un": 1, "una": 2, "##ff": 3, "##aff": 4, "##able": 5, "é": 6,
                "##é": 7})",
                                    extra, "}"),
                       "", kWhitespaceSplit);
}

TEST(WordPiece, GreedyLongestMatchFirst) {
  auto tokenizer = MustParse(WordPieceJson());
  ASSERT_NE(tokenizer, nullptr);
  // Greedy takes "una" (not "un" + "##aff"), then "##ff", then "##able".
  EXPECT_EQ(MustEncode(*tokenizer, "unaffable"), (Ids{2, 3, 5}));
  EXPECT_EQ(MustEncode(*tokenizer, "un una"), (Ids{1, 2}));
  EXPECT_EQ(MustEncode(*tokenizer, "ééé"), (Ids{6, 7, 7}));  // shrinks by whole code points
}

TEST(WordPiece, AWordWithAnUnmatchedPieceIsOneUnknown) {
  auto tokenizer = MustParse(WordPieceJson());
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "unaffablex un"), (Ids{0, 1}));
  EXPECT_EQ(MustEncode(*tokenizer, "xun"), (Ids{0}));
}

TEST(WordPiece, MaxInputCharsPerWord) {
  auto tokenizer = MustParse(WordPieceJson(R"(, "max_input_chars_per_word": 5)"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "unaffable una"), (Ids{0, 2}));
  // Characters, not bytes: five é are ten bytes but within the limit.
  EXPECT_EQ(MustEncode(*tokenizer, "ééééé"), (Ids{6, 7, 7, 7, 7}));
  EXPECT_EQ(MustEncode(*tokenizer, "éééééé"), (Ids{0}));
}

// ---------------------------------------------------------------------------------------------
// Normalizers

TEST(Normalizers, LowercaseIsFullAndContextFree) {
  const std::string lowercase = R"({"type": "Lowercase"})";
  EXPECT_EQ(Normalized(lowercase, {"i\u0307", "σ", "abc", "ς"}, "İ Σ ABC"), "i\u0307 σ abc");
  // A final sigma in a word still becomes σ (Rust's char::to_lowercase has no context).
  EXPECT_EQ(Normalized(lowercase, {"οσ"}, "ΟΣ"), "οσ");
}

TEST(Normalizers, Nfkc) {
  EXPECT_EQ(Normalized(R"({"type": "NFKC"})", {"fi", "2"}, "ﬁ ²"), "fi 2");
  // NFC does not apply compatibility mappings.
  EXPECT_EQ(Normalized(R"({"type": "NFC"})", {"ﬁ", "é"}, "ﬁ e\u0301"), "ﬁ é");
}

TEST(Normalizers, NfdThenStripAccents) {
  const std::string sequence =
      R"({"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"}]})";
  EXPECT_EQ(Normalized(sequence, {"e", "cafe"}, "é café"), "e cafe");
  // StripAccents alone removes marks only: a precomposed é has none.
  EXPECT_EQ(Normalized(R"({"type": "StripAccents"})", {"é", "e"}, "é e\u0301"), "é e");
}

TEST(Normalizers, Strip) {
  // No pre-tokenizer: the whole (stripped) text is one word.
  EXPECT_EQ(Normalized(R"({"type": "Strip", "strip_left": true, "strip_right": true})", {"hi"},
                       "  hi \t\u3000", ""),
            "hi");
  EXPECT_EQ(Normalized(R"({"type": "Strip", "strip_left": false, "strip_right": true})",
                       {"  hi", "hi"}, "  hi  ", ""),
            "  hi");
  EXPECT_EQ(Normalized(R"({"type": "Strip", "strip_left": true, "strip_right": false})",
                       {"hi  ", "hi"}, "  hi  ", ""),
            "hi  ");
}

TEST(Normalizers, ReplaceWithAStringIsLiteral) {
  const std::string replace =
      R"({"type": "Replace", "pattern": {"String": "a.b"}, "content": "X"})";
  EXPECT_EQ(Normalized(replace, {"X", "axb", "XX"}, "a.b axb a.ba.b"), "X axb XX");
}

TEST(Normalizers, ReplaceWithARegex) {
  const std::string replace =
      R"({"type": "Replace", "pattern": {"Regex": "\\d+"}, "content": "#"})";
  EXPECT_EQ(Normalized(replace, {"a#", "#b#", "c"}, "a12 3b4 c"), "a# #b# c");
  // Replace with the empty string removes.
  EXPECT_EQ(Normalized(R"({"type": "Replace", "pattern": {"String": "-"}, "content": ""})",
                       {"abc"}, "a-b--c"),
            "abc");
}

TEST(Normalizers, PrependButNotOntoEmptyText) {
  const std::string prepend = R"({"type": "Prepend", "prepend": "▁"})";
  EXPECT_EQ(Normalized(prepend, {"▁hi"}, "hi", ""), "▁hi");
  // Strip leaves nothing, and Prepend must not turn nothing into "▁".
  auto tokenizer = MustParse(TokenizerJson(
      WordLevel({"▁", "▁hi"}),
      R"({"type": "Sequence", "normalizers": [{"type": "Strip", "strip_left": true,
          "strip_right": true}, {"type": "Prepend", "prepend": "▁"}]})"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_THAT(MustEncode(*tokenizer, "   "), IsEmpty());
  EXPECT_EQ(MustEncode(*tokenizer, " hi "), (Ids{1}));
}

TEST(Normalizers, BertNormalizerDefaults) {
  // clean_text drops U+200B (Cf) and U+0001 (Cc), turns the tab into a space; CJK characters
  // get spaces around them; strip_accents null follows lowercase (true).
  const std::string bert = R"({"type": "BertNormalizer", "clean_text": true,
      "handle_chinese_chars": true, "strip_accents": null, "lowercase": true})";
  EXPECT_EQ(Normalized(bert, {"helloworld", "中", "国", "x"}, "Héllo\u200bWorld\tx\u0001中国"),
            "helloworld x 中 国");
}

TEST(Normalizers, BertNormalizerWithoutLowercaseKeepsAccents) {
  const std::string bert = R"({"type": "BertNormalizer", "clean_text": true,
      "handle_chinese_chars": false, "strip_accents": null, "lowercase": false})";
  EXPECT_EQ(Normalized(bert, {"Héllo", "中国"}, "Héllo 中国"), "Héllo 中国");
  const std::string strip = R"({"type": "BertNormalizer", "clean_text": false,
      "handle_chinese_chars": false, "strip_accents": true, "lowercase": false})";
  EXPECT_EQ(Normalized(strip, {"Hello"}, "Héllo"), "Hello");
}

TEST(Normalizers, SequenceAppliesInOrder) {
  // Replace then Lowercase vs Lowercase then Replace: only the second sees the "A".
  const std::string replace_first = R"({"type": "Sequence", "normalizers": [
      {"type": "Replace", "pattern": {"String": "a"}, "content": "b"}, {"type": "Lowercase"}]})";
  const std::string lowercase_first = R"({"type": "Sequence", "normalizers": [
      {"type": "Lowercase"}, {"type": "Replace", "pattern": {"String": "a"}, "content": "b"}]})";
  EXPECT_EQ(Normalized(replace_first, {"ab", "bb"}, "Aa"), "ab");
  EXPECT_EQ(Normalized(lowercase_first, {"ab", "bb"}, "Aa"), "bb");
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers

// "a--b-c" with the matches of "-".
const Ranges kDashes = {{1, 2}, {2, 3}, {4, 5}};

TEST(SplitByMatches, Removed) {
  EXPECT_EQ(SplitByMatches(6, kDashes, SplitBehavior::kRemoved, false),
            (Ranges{{0, 1}, {3, 4}, {5, 6}}));
}

TEST(SplitByMatches, Isolated) {
  EXPECT_EQ(SplitByMatches(6, kDashes, SplitBehavior::kIsolated, false),
            (Ranges{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 6}}));
}

TEST(SplitByMatches, MergedWithPrevious) {
  // "a-", "-", "b-", "c"
  EXPECT_EQ(SplitByMatches(6, kDashes, SplitBehavior::kMergedWithPrevious, false),
            (Ranges{{0, 2}, {2, 3}, {3, 5}, {5, 6}}));
}

TEST(SplitByMatches, MergedWithNext) {
  // "a", "-", "-b", "-c"
  EXPECT_EQ(SplitByMatches(6, kDashes, SplitBehavior::kMergedWithNext, false),
            (Ranges{{0, 1}, {1, 2}, {2, 4}, {4, 6}}));
}

TEST(SplitByMatches, Contiguous) {
  // "a", "--", "b", "-", "c"
  EXPECT_EQ(SplitByMatches(6, kDashes, SplitBehavior::kContiguous, false),
            (Ranges{{0, 1}, {1, 3}, {3, 4}, {4, 5}, {5, 6}}));
}

TEST(SplitByMatches, Invert) {
  // Inverted, the letters are the matches.
  EXPECT_EQ(SplitByMatches(6, kDashes, SplitBehavior::kRemoved, true),
            (Ranges{{1, 2}, {2, 3}, {4, 5}}));
  // "a", "-", "-b", "-c"
  EXPECT_EQ(SplitByMatches(6, kDashes, SplitBehavior::kMergedWithPrevious, true),
            (Ranges{{0, 1}, {1, 2}, {2, 4}, {4, 6}}));
  // "a-", "-", "b-", "c"
  EXPECT_EQ(SplitByMatches(6, kDashes, SplitBehavior::kMergedWithNext, true),
            (Ranges{{0, 2}, {2, 3}, {3, 5}, {5, 6}}));
}

TEST(SplitByMatches, MatchesAtTheEdgesAndNone) {
  EXPECT_EQ(SplitByMatches(3, {{0, 1}, {2, 3}}, SplitBehavior::kMergedWithPrevious, false),
            (Ranges{{0, 1}, {1, 3}}));  // a leading match has nothing to join
  EXPECT_EQ(SplitByMatches(3, {{0, 1}, {2, 3}}, SplitBehavior::kMergedWithNext, false),
            (Ranges{{0, 2}, {2, 3}}));
  EXPECT_EQ(SplitByMatches(3, {}, SplitBehavior::kRemoved, false), (Ranges{{0, 3}}));
  EXPECT_EQ(SplitByMatches(3, {{0, 3}}, SplitBehavior::kRemoved, false), (Ranges{}));
}

TEST(PreTokenizers, SplitWithARegex) {
  EXPECT_THAT(PreTokenize(R"({"type": "Split", "pattern": {"Regex": "\\s+"},
                              "behavior": "Removed", "invert": false})",
                          "a  b\tc "),
              ElementsAre("a", "b", "c"));
  EXPECT_THAT(PreTokenize(R"({"type": "Split", "pattern": {"Regex": "\\d"},
                              "behavior": "Isolated", "invert": false})",
                          "ab12c"),
              ElementsAre("ab", "1", "2", "c"));
  // Inverted Removed keeps only what the pattern matches.
  EXPECT_THAT(PreTokenize(R"({"type": "Split", "pattern": {"Regex": "\\p{L}+"},
                              "behavior": "Removed", "invert": true})",
                          "héllo, wörld!"),
              ElementsAre("héllo", "wörld"));
}

TEST(PreTokenizers, SplitWithAString) {
  EXPECT_THAT(PreTokenize(R"({"type": "Split", "pattern": {"String": "."},
                              "behavior": "MergedWithPrevious", "invert": false})",
                          "a.b.c"),
              ElementsAre("a.", "b.", "c"));
}

TEST(PreTokenizers, ByteLevelUsesTheGpt2Pattern) {
  const std::string with_prefix =
      R"({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true})";
  const std::string without_prefix =
      R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})";
  EXPECT_THAT(PreTokenize(without_prefix, " Hello world"), ElementsAre("ĠHello", "Ġworld"));
  EXPECT_THAT(PreTokenize(with_prefix, "Hello world"), ElementsAre("ĠHello", "Ġworld"));
  EXPECT_THAT(PreTokenize(without_prefix, "Hello world"), ElementsAre("Hello", "Ġworld"));
  // Contractions, a space left before the last word, digits and punctuation runs.
  EXPECT_THAT(PreTokenize(without_prefix, "it's  ok 42!!"),
              ElementsAre("it", "'s", "Ġ", "Ġok", "Ġ42", "!!"));
  // Bytes outside printable Latin-1 get shifted code points (newline → Ċ), é → Ã©.
  EXPECT_THAT(PreTokenize(without_prefix, "é\n"), ElementsAre("Ã©", "Ċ"));
}

TEST(PreTokenizers, MetaspacePrependSchemes) {
  const std::string always =
      R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true})";
  const std::string first =
      R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true})";
  const std::string never =
      R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": true})";
  const std::vector<std::string> words = {"Hey friend", "x"};  // the second is not at the start
  EXPECT_THAT(PreTokenize(always, words), ElementsAre("▁Hey", "▁friend", "▁x"));
  EXPECT_THAT(PreTokenize(first, words), ElementsAre("▁Hey", "▁friend", "x"));
  EXPECT_THAT(PreTokenize(never, words), ElementsAre("Hey", "▁friend", "x"));
  // Already starting with a space: no second marker.
  EXPECT_THAT(PreTokenize(always, " a"), ElementsAre("▁a"));
  const std::string no_split =
      R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": false})";
  EXPECT_THAT(PreTokenize(no_split, "a b"), ElementsAre("▁a▁b"));
}

TEST(PreTokenizers, Whitespace) {
  EXPECT_THAT(PreTokenize(R"({"type": "Whitespace"})", "Hello, world!  ok?!"),
              ElementsAre("Hello", ",", "world", "!", "ok", "?!"));
}

TEST(PreTokenizers, BertPreTokenizer) {
  EXPECT_THAT(PreTokenize(R"({"type": "BertPreTokenizer"})", "Hello, world!"),
              ElementsAre("Hello", ",", "world", "!"));
  // Every punctuation character is its own piece, ASCII symbols such as $ included.
  EXPECT_THAT(PreTokenize(R"({"type": "BertPreTokenizer"})", "a$b ...«c»"),
              ElementsAre("a", "$", "b", ".", ".", ".", "«", "c", "»"));
}

TEST(PreTokenizers, DigitsIndividualOrContiguous) {
  EXPECT_THAT(PreTokenize(R"({"type": "Digits", "individual_digits": true})", "a123b4"),
              ElementsAre("a", "1", "2", "3", "b", "4"));
  EXPECT_THAT(PreTokenize(R"({"type": "Digits", "individual_digits": false})", "a123b4"),
              ElementsAre("a", "123", "b", "4"));
}

TEST(PreTokenizers, Punctuation) {
  EXPECT_THAT(PreTokenize(R"({"type": "Punctuation", "behavior": "Isolated"})", "hi!?x"),
              ElementsAre("hi", "!", "?", "x"));
  EXPECT_THAT(PreTokenize(R"({"type": "Punctuation", "behavior": "Contiguous"})", "hi!?x"),
              ElementsAre("hi", "!?", "x"));
  EXPECT_THAT(PreTokenize(R"({"type": "Punctuation"})", "a,b"), ElementsAre("a", ",", "b"));
}

TEST(PreTokenizers, SequenceAndCharDelimiterSplit) {
  EXPECT_THAT(PreTokenize(R"({"type": "Sequence", "pretokenizers": [
                              {"type": "CharDelimiterSplit", "delimiter": "|"},
                              {"type": "Digits", "individual_digits": true}]})",
                          "ab|c12||d"),
              ElementsAre("ab", "c", "1", "2", "d"));
}

// ---------------------------------------------------------------------------------------------
// Regex

constexpr char kSpace[] = "\\t\\n\\x{0B}\\f\\r\\x{85}\\p{Z}";
constexpr char kWord[] = "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}";

TEST(TranslateOnigurumaClasses, OutsideClasses) {
  EXPECT_EQ(TranslateOnigurumaClasses("\\s"), absl::StrCat("[", kSpace, "]"));
  EXPECT_EQ(TranslateOnigurumaClasses("\\S"), absl::StrCat("[^", kSpace, "]"));
  EXPECT_EQ(TranslateOnigurumaClasses("\\w"), absl::StrCat("[", kWord, "]"));
  EXPECT_EQ(TranslateOnigurumaClasses("\\W"), absl::StrCat("[^", kWord, "]"));
  EXPECT_EQ(TranslateOnigurumaClasses("a\\d+"), "a[\\p{Nd}]+");
  EXPECT_EQ(TranslateOnigurumaClasses("\\p{L}\\n"), "\\p{L}\\n");  // other escapes unchanged
}

TEST(TranslateOnigurumaClasses, InsideClasses) {
  EXPECT_EQ(TranslateOnigurumaClasses("[\\s\\d]"), absl::StrCat("[", kSpace, "\\p{Nd}]"));
  EXPECT_EQ(TranslateOnigurumaClasses("[^\\s\\p{L}]"), absl::StrCat("[^", kSpace, "\\p{L}]"));
  // A negated class escape inside a class is left to PCRE2.
  EXPECT_EQ(TranslateOnigurumaClasses("[^\\S]"), "[^\\S]");
  // After the class closes, \s is outside again.
  EXPECT_EQ(TranslateOnigurumaClasses("[a]\\s"), absl::StrCat("[a][", kSpace, "]"));
}

TEST(TranslateOnigurumaClasses, EscapedBackslashAndBracketEdges) {
  // "\\s" is an escaped backslash followed by a plain s.
  EXPECT_EQ(TranslateOnigurumaClasses("\\\\s"), "\\\\s");
  EXPECT_EQ(TranslateOnigurumaClasses("\\\\\\s"), absl::StrCat("\\\\[", kSpace, "]"));
  // "[\]s]": an escaped ] inside the class, then s; the class ends at the last ].
  EXPECT_EQ(TranslateOnigurumaClasses("[\\]s]"), "[\\]s]");
  EXPECT_EQ(TranslateOnigurumaClasses("[\\]s]\\s"), absl::StrCat("[\\]s][", kSpace, "]"));
  // "[]\s]": a ] right after [ is a member, so \s is still inside the class.
  EXPECT_EQ(TranslateOnigurumaClasses("[]\\s]"), absl::StrCat("[]", kSpace, "]"));
  EXPECT_EQ(TranslateOnigurumaClasses("[^]\\d]"), "[^]\\p{Nd}]");
}

Ranges MustFindAll(const std::string& pattern, const std::string& text) {
  absl::StatusOr<Regex> regex = Regex::Compile(pattern);
  EXPECT_TRUE(regex.ok()) << regex.status();
  if (!regex.ok()) return {};
  absl::StatusOr<Ranges> matches = regex->FindAll(text);
  EXPECT_TRUE(matches.ok()) << matches.status();
  return matches.ok() ? *matches : Ranges{};
}

TEST(Regex, EmptyMatchesAreSkippedWithoutLooping) {
  EXPECT_EQ(MustFindAll("x*", "abc"), (Ranges{}));
  EXPECT_EQ(MustFindAll("x*", "axxbx"), (Ranges{{1, 3}, {4, 5}}));
  EXPECT_EQ(MustFindAll("x*", "日本"), (Ranges{}));  // steps over whole code points
  EXPECT_EQ(MustFindAll("(?=b)", "abab"), (Ranges{}));
}

TEST(Regex, MultibyteText) {
  EXPECT_EQ(MustFindAll("é+", "aééb é"), (Ranges{{1, 5}, {7, 9}}));
  EXPECT_EQ(MustFindAll("\\p{Han}", "a日b本"), (Ranges{{1, 4}, {5, 8}}));
  EXPECT_EQ(MustFindAll(".", "🙂x"), (Ranges{{0, 4}, {4, 5}}));
}

TEST(Regex, OnigurumaClassSemantics) {
  // \s includes U+0085 (NEL) as in Oniguruma.
  EXPECT_EQ(MustFindAll("\\s", "a\u0085b"), (Ranges{{1, 3}}));
  // \w includes combining marks: a Devanagari word is one match.
  EXPECT_EQ(MustFindAll("\\w+", "नमस्ते x"), (Ranges{{0, 18}, {19, 20}}));
  EXPECT_EQ(MustFindAll("\\d+", "a٣4"), (Ranges{{1, 4}}));  // Arabic-Indic 3 is Nd
}

TEST(Regex, CompileErrorNamesThePattern) {
  absl::StatusOr<Regex> regex = Regex::Compile("(ab");
  ASSERT_FALSE(regex.ok());
  EXPECT_EQ(regex.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(regex.status().message(), HasSubstr("(ab"));
}

Ranges MustFindAllLiteral(const std::string& literal, const std::string& text) {
  absl::StatusOr<Regex> regex = Regex::Literal(literal);
  EXPECT_TRUE(regex.ok()) << regex.status();
  if (!regex.ok()) return {};
  EXPECT_EQ(regex->pattern(), literal);
  absl::StatusOr<Ranges> matches = regex->FindAll(text);
  EXPECT_TRUE(matches.ok()) << matches.status();
  return matches.ok() ? *matches : Ranges{};
}

TEST(Regex, LiteralQuotesMetacharactersAndBackslashE) {
  EXPECT_EQ(MustFindAllLiteral("a.b", "axb a.b"), (Ranges{{4, 7}}));
  EXPECT_EQ(MustFindAllLiteral("(*+?)[]{}|^$", "x(*+?)[]{}|^$"), (Ranges{{1, 13}}));
  EXPECT_EQ(MustFindAllLiteral("\\E", "a\\Eb"), (Ranges{{1, 3}}));
  EXPECT_EQ(MustFindAllLiteral("x\\E.\\Ey", "x\\E.\\Ey x\\Ea\\Ey"), (Ranges{{0, 7}}));
  EXPECT_EQ(MustFindAllLiteral("a\\", "a\\a"), (Ranges{{0, 2}}));
}

TEST(Regex, LiteralWithBackslashClassEscapesMatchesThemLiterally) {
  // A {"String": "\\s"} pattern means the two characters backslash and s. The \s inside
  // \Q...\E must not be rewritten into an Oniguruma class spelling.
  EXPECT_EQ(MustFindAllLiteral("\\s", "a\\sb s"), (Ranges{{1, 3}}));
  EXPECT_EQ(MustFindAllLiteral("[\\d]", "1 [\\d]"), (Ranges{{2, 6}}));
  EXPECT_EQ(MustFindAllLiteral("\\w", "w\\w"), (Ranges{{1, 3}}));
}

// ---------------------------------------------------------------------------------------------
// Added tokens

TEST(AddedTokens, SpecialTokensMatchRawTextEvenInsideWords) {
  // Lowercase would turn "<S>" into "<s>": a raw (normalized: false) token is found first.
  auto tokenizer = MustParse(TokenizerJson(
      WordLevel({"x", "y", "<s>"}), R"({"type": "Lowercase"})", kWhitespaceSplit, "",
      R"([{"id": 4, "content": "<S>", "single_word": false, "lstrip": false, "rstrip": false,
           "normalized": false, "special": true}])"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "X<S>Y"), (Ids{0, 4, 1}));
  EXPECT_EQ(MustEncode(*tokenizer, "<s>"), (Ids{2}));  // not the added token: case differs
  EXPECT_EQ(tokenizer->TokenToId("<S>"), 4);
}

TEST(AddedTokens, NormalizedTokenMatchesAfterTheNormalizer) {
  auto tokenizer = MustParse(TokenizerJson(
      WordLevel({"there"}), R"({"type": "Lowercase"})", kWhitespaceSplit, "",
      R"([{"id": 7, "content": "Hello", "single_word": false, "lstrip": false, "rstrip": false,
           "normalized": true, "special": false}])"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "HELLO there"), (Ids{7, 0}));
  EXPECT_EQ(MustEncode(*tokenizer, "thereHeLLothere"), (Ids{0, 7, 0}));
}

TEST(AddedTokens, LeftmostLongest) {
  auto tokenizer = MustParse(TokenizerJson(
      WordLevel({"x"}), "", "", "",
      R"([{"id": 10, "content": "<a>", "special": true},
          {"id": 11, "content": "<a><b>", "special": true}])"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "<a><b><a>"), (Ids{11, 10}));
  EXPECT_EQ(MustEncode(*tokenizer, "x<a><b>x"), (Ids{0, 11, 0}));
  EXPECT_EQ(MustEncode(*tokenizer, "<a><a><b"), (Ids{10, 10, 1}));  // "<b" is [UNK]
}

std::string SingleWordJson() {
  return TokenizerJson(WordLevel({"say", "now", "xhellox", "hello²", "hello\u0301"}), "",
                       kWhitespaceSplit, "",
                       R"([{"id": 20, "content": "hello", "single_word": true, "lstrip": false,
                            "rstrip": false, "normalized": true, "special": false}])");
}

TEST(AddedTokens, SingleWord) {
  auto tokenizer = MustParse(SingleWordJson());
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "say hello now"), (Ids{0, 20, 1}));
  EXPECT_EQ(MustEncode(*tokenizer, "xhellox"), (Ids{2}));
  EXPECT_EQ(MustEncode(*tokenizer, "hello"), (Ids{20}));
  EXPECT_EQ(MustEncode(*tokenizer, "(hello)"), (Ids{5, 20, 5}));  // "(" and ")" are [UNK]
}

TEST(AddedTokens, SingleWordBoundariesAreRegexWordCharacters) {
  // Hugging Face decides single_word with the regexes \w$ and ^\w (Rust regex's Unicode \w:
  // Alphabetic, marks, Nd, Pc, Join_Control). "²" (No) is not \w, so "hello²" has a word
  // boundary after "hello"; U+0301 (Mn) is \w, so "hellóo"-style text has none.
  auto tokenizer = MustParse(SingleWordJson());
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "hello²"), (Ids{20, 5}));  // "²" alone is [UNK]
  EXPECT_EQ(MustEncode(*tokenizer, "hello\u0301"), (Ids{4}));
}

TEST(AddedTokens, LstripAndRstripSwallowSpaces) {
  const std::string word_level = WordLevel({"a", "b"});
  auto stripping = MustParse(TokenizerJson(
      word_level, "", "", "",
      R"([{"id": 9, "content": "<m>", "lstrip": true, "rstrip": true, "special": true}])"));
  auto keeping = MustParse(TokenizerJson(
      word_level, "", "", "",
      R"([{"id": 9, "content": "<m>", "lstrip": false, "rstrip": false, "special": true}])"));
  ASSERT_NE(stripping, nullptr);
  ASSERT_NE(keeping, nullptr);
  // No pre-tokenizer: "a " is a word of its own unless lstrip takes the space.
  EXPECT_EQ(MustEncode(*stripping, "a  <m> \tb"), (Ids{0, 9, 1}));
  EXPECT_EQ(MustEncode(*keeping, "a  <m> \tb"), (Ids{2, 9, 2}));
  auto left_only = MustParse(TokenizerJson(
      word_level, "", "", "",
      R"([{"id": 9, "content": "<m>", "lstrip": true, "rstrip": false, "special": true}])"));
  ASSERT_NE(left_only, nullptr);
  EXPECT_EQ(MustEncode(*left_only, "a <m> b"), (Ids{0, 9, 2}));
}

// ---------------------------------------------------------------------------------------------
// Post-processors

// WordLevel a=0 b=1 [UNK]=2, specials <s>=3 </s>=4 [CLS]=5 [SEP]=6, WhitespaceSplit.
std::string WithPostProcessor(const std::string& post_processor) {
  return TokenizerJson(WordLevel({"a", "b"}), "", kWhitespaceSplit, "",
                       R"([{"id": 3, "content": "<s>", "special": true},
                           {"id": 4, "content": "</s>", "special": true},
                           {"id": 5, "content": "[CLS]", "special": true},
                           {"id": 6, "content": "[SEP]", "special": true}])",
                       post_processor);
}

constexpr char kTemplate[] = R"({"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
               {"SpecialToken": {"id": "</s>", "type_id": 0}}],
    "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
             {"SpecialToken": {"id": "</s>", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
             {"SpecialToken": {"id": "</s>", "type_id": 1}}],
    "special_tokens": {"<s>": {"id": "<s>", "ids": [3], "tokens": ["<s>"]},
                       "</s>": {"id": "</s>", "ids": [4], "tokens": ["</s>"]}}})";

TEST(PostProcessors, TemplateProcessingSingleAndPair) {
  auto tokenizer = MustParse(WithPostProcessor(kTemplate));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "a b", true), (Ids{3, 0, 1, 4}));
  EXPECT_EQ(MustEncode(*tokenizer, "a b", false), (Ids{0, 1}));
  absl::StatusOr<Ids> pair = tokenizer->EncodePair("a", "b b");
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(*pair, (Ids{3, 0, 4, 1, 1, 4}));
}

TEST(PostProcessors, TemplateWithSeveralIdsForOneSpecialToken) {
  auto tokenizer = MustParse(WithPostProcessor(R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "X", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
      "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
      "special_tokens": {"X": {"id": "X", "ids": [5, 6], "tokens": ["[CLS]", "[SEP]"]}}})"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "b", true), (Ids{5, 6, 1}));
}

TEST(PostProcessors, BertProcessing) {
  auto tokenizer = MustParse(
      WithPostProcessor(R"({"type": "BertProcessing", "sep": ["[SEP]", 6], "cls": ["[CLS]", 5]})"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "a", true), (Ids{5, 0, 6}));
  absl::StatusOr<Ids> pair = tokenizer->EncodePair("a b", "b");
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(*pair, (Ids{5, 0, 1, 6, 1, 6}));
}

TEST(PostProcessors, RobertaProcessingPairHasADoubleSeparator) {
  auto tokenizer = MustParse(WithPostProcessor(R"({"type": "RobertaProcessing",
      "sep": ["</s>", 4], "cls": ["<s>", 3], "trim_offsets": true, "add_prefix_space": true})"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "a", true), (Ids{3, 0, 4}));
  absl::StatusOr<Ids> pair = tokenizer->EncodePair("a", "b");
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(*pair, (Ids{3, 0, 4, 4, 1, 4}));
}

TEST(PostProcessors, SequenceOfByteLevelAndTemplate) {
  auto tokenizer = MustParse(WithPostProcessor(absl::StrCat(
      R"({"type": "Sequence", "processors": [{"type": "ByteLevel", "add_prefix_space": false,
          "trim_offsets": false, "use_regex": false}, )",
      kTemplate, "]}")));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "b", true), (Ids{3, 1, 4}));
  EXPECT_EQ(MustEncode(*tokenizer, "b", false), (Ids{1}));
}

TEST(PostProcessors, NoneOrByteLevelAddsNothing) {
  auto none = MustParse(WithPostProcessor(""));
  auto byte_level = MustParse(WithPostProcessor(
      R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false})"));
  ASSERT_NE(none, nullptr);
  ASSERT_NE(byte_level, nullptr);
  EXPECT_EQ(MustEncode(*none, "a b", true), (Ids{0, 1}));
  EXPECT_EQ(MustEncode(*byte_level, "a b", true), (Ids{0, 1}));
  absl::StatusOr<Ids> pair = none->EncodePair("a", "b");
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(*pair, (Ids{0, 1}));
}

TEST(PostProcessors, TwoIdChangingStepsAreAnError) {
  absl::Status status = ParseError(WithPostProcessor(
      absl::StrCat(R"({"type": "Sequence", "processors": [)", kTemplate, ", ", kTemplate, "]}")));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("post_processor.processors[1]"));
}

// ---------------------------------------------------------------------------------------------
// Decoders

TEST(Decoders, ByteLevelRoundTripsMixedScripts) {
  // A byte-level BPE with the 256 byte characters and no merges.
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[BytesToByteLevelChars(std::string(1, static_cast<char>(b)))] = b;
  nlohmann::json model = {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}};
  auto tokenizer = MustParse(TokenizerJson(
      model.dump(), "",
      R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})",
      R"({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true})"));
  ASSERT_NE(tokenizer, nullptr);
  const std::string text = "Héllo, wörld! 日本語 🙂\n\tЖ  x\x01";
  Ids ids = MustEncode(*tokenizer, text);
  EXPECT_EQ(ids.size(), text.size());  // one id per byte
  EXPECT_EQ(ids[1], 0xC3);
  EXPECT_EQ(MustDecode(*tokenizer, ids), text);
  // An invalid byte sequence decodes to U+FFFD.
  EXPECT_EQ(MustDecode(*tokenizer, {'a', 0xE6, 0x97, 'b'}), "a\uFFFDb");
}

TEST(Decoders, Metaspace) {
  auto tokenizer = MustParse(TokenizerJson(
      WordLevel({"▁Hey", "▁friend!", "▁", "x▁y"}), "", "",
      R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true})"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustDecode(*tokenizer, {0, 1}), "Hey friend!");
  EXPECT_EQ(MustDecode(*tokenizer, {1, 0}), "friend! Hey");
  EXPECT_EQ(MustDecode(*tokenizer, {0, 3}), "Heyx y");

  auto never = MustParse(TokenizerJson(
      WordLevel({"▁Hey", "▁friend!"}), "", "",
      R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": true})"));
  ASSERT_NE(never, nullptr);
  EXPECT_EQ(MustDecode(*never, {0, 1}), " Hey friend!");
}

TEST(Decoders, MetaspaceDropsEveryMarkerOfTheFirstToken) {
  // Hugging Face's Metaspace decoder maps every replacement character of the first token to
  // nothing (not just one leading space) when prepend_scheme is not "never".
  auto tokenizer = MustParse(TokenizerJson(
      WordLevel({"▁▁", "▁Hey", "x▁y"}), "", "",
      R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true})"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustDecode(*tokenizer, {0, 1}), " Hey");
  EXPECT_EQ(MustDecode(*tokenizer, {2, 1}), "xy Hey");
}

TEST(Decoders, WordPieceWithCleanup) {
  auto tokenizer = MustParse(TokenizerJson(
      R"({"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
          "vocab": {"[UNK]": 0, "hello": 1, "world": 2, ".": 3, "##ing": 4, "do": 5, "not": 6,
                    "it": 7, "'": 8, "s": 9, ",": 10}})",
      "", kWhitespaceSplit, R"({"type": "WordPiece", "prefix": "##", "cleanup": true})"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustDecode(*tokenizer, {1, 4, 2, 3}), "helloing world.");
  EXPECT_EQ(MustDecode(*tokenizer, {1, 10, 2}), "hello, world");

  auto raw = MustParse(TokenizerJson(
      R"({"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "a": 1, ".": 2}})", "",
      kWhitespaceSplit, R"({"type": "WordPiece", "prefix": "##", "cleanup": false})"));
  ASSERT_NE(raw, nullptr);
  EXPECT_EQ(MustDecode(*raw, {1, 2}), "a .");
}

std::string ByteFallbackJson() {
  // 日 is E6 97 A5.
  return TokenizerJson(
      R"({"type": "BPE", "byte_fallback": true, "fuse_unk": true, "unk_token": "<unk>",
          "vocab": {"<unk>": 0, "▁a": 1, "<0xE6>": 2, "<0x97>": 3, "<0xA5>": 4, "b": 5},
          "merges": []})",
      "", "",
      R"({"type": "Sequence", "decoders": [
          {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
          {"type": "ByteFallback"}, {"type": "Fuse"},
          {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})");
}

TEST(Decoders, ByteFallbackAndFuse) {
  auto tokenizer = MustParse(ByteFallbackJson());
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustDecode(*tokenizer, {1, 2, 3, 4, 5}), "a日b");
  // An incomplete sequence: one U+FFFD per byte token.
  EXPECT_EQ(MustDecode(*tokenizer, {5, 2, 3, 5}), "b\uFFFD\uFFFDb");
  EXPECT_EQ(MustDecode(*tokenizer, {1, 1}), "a a");  // Strip took one leading space
  // And encoding 日 falls back to its bytes.
  EXPECT_EQ(MustEncode(*tokenizer, "b日"), (Ids{5, 2, 3, 4}));
}

TEST(Decoders, StripStartAndStop) {
  auto tokenizer = MustParse(TokenizerJson(
      WordLevel({"xxaxx", "xbx", "b"}), "", "",
      R"({"type": "Strip", "content": "x", "start": 1, "stop": 2})"));
  ASSERT_NE(tokenizer, nullptr);
  // "xxaxx" → "xa" (one x off the front, two off the back), "xbx" → "b", "b" → "b".
  EXPECT_EQ(MustDecode(*tokenizer, {0, 1, 2}), "xabb");
}

TEST(Decoders, BpeDecoderSuffix) {
  auto tokenizer = MustParse(TokenizerJson(
      WordLevel({"hel", "lo</w>", "world</w>"}), "", "",
      R"({"type": "BPEDecoder", "suffix": "</w>"})"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustDecode(*tokenizer, {0, 1, 2}), "hello world");
  EXPECT_EQ(MustDecode(*tokenizer, {2, 0, 1}), "world hello");
}

TEST(Decoders, NoDecoderJoinsWithSpaces) {
  auto tokenizer = MustParse(TokenizerJson(WordLevel({"a", "b"})));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustDecode(*tokenizer, {0, 1, 0}), "a b a");
  EXPECT_EQ(MustDecode(*tokenizer, {}), "");
}

TEST(Decoders, SkipSpecialTokens) {
  auto tokenizer = MustParse(WithPostProcessor(kTemplate));
  ASSERT_NE(tokenizer, nullptr);
  Ids ids = MustEncode(*tokenizer, "a b", true);
  EXPECT_EQ(MustDecode(*tokenizer, ids, false), "<s> a b </s>");
  EXPECT_EQ(MustDecode(*tokenizer, ids, true), "a b");
}

TEST(Decoders, UnknownIdIsAnErrorNamingIt) {
  auto tokenizer = MustParse(TokenizerJson(WordLevel({"a", "b"})));
  ASSERT_NE(tokenizer, nullptr);
  for (int64_t id : {int64_t{999}, int64_t{-1}, int64_t{3}}) {
    absl::StatusOr<std::string> text = tokenizer->Decode({0, id}, false);
    ASSERT_FALSE(text.ok()) << id;
    EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(text.status().message(), HasSubstr(absl::StrCat("token id ", id)));
  }
}

TEST(Decoders, GapsInTheIdSpaceAreUnknown) {
  // Ids 0 and 5 exist; 1..4 are holes.
  auto tokenizer = MustParse(TokenizerJson(WordLevel({"a"}), "", "", "",
                                           R"([{"id": 5, "content": "<x>", "special": true}])"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->id_limit(), 6);
  EXPECT_FALSE(tokenizer->Decode({3}, false).ok());
  EXPECT_EQ(MustDecode(*tokenizer, {5, 0}), "<x> a");
}

// ---------------------------------------------------------------------------------------------
// Errors

void ExpectParseError(const std::string& json_text, const std::vector<std::string>& parts) {
  absl::Status status = ParseError(json_text);
  ASSERT_FALSE(status.ok()) << json_text;
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("test.json"));
  for (const std::string& part : parts) EXPECT_THAT(status.message(), HasSubstr(part));
}

TEST(Errors, UnsupportedComponentsAreNamed) {
  const std::string model = WordLevel({"a"});
  ExpectParseError(TokenizerJson(model, R"({"type": "Precompiled", "precompiled_charsmap": ""})"),
                   {"normalizer", "Precompiled"});
  ExpectParseError(TokenizerJson(model, R"({"type": "Sequence", "normalizers": [
                       {"type": "NFC"}, {"type": "Precompiled"}]})"),
                   {"normalizer.normalizers[1]", "Precompiled"});
  ExpectParseError(TokenizerJson(model, "", R"({"type": "UnicodeScripts"})"),
                   {"pre_tokenizer", "UnicodeScripts"});
  ExpectParseError(
      TokenizerJson(R"({"type": "Unigram", "unk_id": 0, "vocab": [["a", 0.0]]})"),
      {"model", "Unigram"});
  ExpectParseError(TokenizerJson(model, "", "", R"({"type": "CTC", "pad_token": "<pad>"})"),
                   {"decoder", "CTC"});
  ExpectParseError(TokenizerJson(model, "", "", "", "", R"({"type": "Foo"})"),
                   {"post_processor", "Foo"});
}

TEST(Errors, BpeDropout) {
  ExpectParseError(TokenizerJson(AbcBpe("[]", R"(, "dropout": 0.1)")), {"model.dropout"});
  EXPECT_TRUE(ParseError(TokenizerJson(AbcBpe("[]", R"(, "dropout": 0.0)"))).ok());
}

TEST(Errors, MergeTokenNotInTheVocab) {
  ExpectParseError(TokenizerJson(AbcBpe(R"(["a z"])")), {"model.merges[0]", "\"z\""});
  // The merged result must exist too: "c" + "a" = "ca" is not in the vocab.
  ExpectParseError(TokenizerJson(AbcBpe(R"(["a b", "c a"])")), {"model.merges[1]", "\"ca\""});
  ExpectParseError(TokenizerJson(AbcBpe(R"(["a b c"])")), {"model.merges[0]"});
  ExpectParseError(TokenizerJson(AbcBpe(R"([["a"]])")), {"model.merges[0]"});
}

TEST(Errors, BadVocabIds) {
  ExpectParseError(TokenizerJson(R"({"type": "WordLevel", "vocab": {"a": -1}})"),
                   {"model.vocab", "\"a\""});
  ExpectParseError(TokenizerJson(R"({"type": "BPE", "vocab": {"a": 0, "b": "1"}, "merges": []})"),
                   {"model.vocab", "\"b\""});
  ExpectParseError(TokenizerJson(R"({"type": "BPE", "vocab": {"a": 1.5}, "merges": []})"),
                   {"model.vocab", "\"a\""});
}

TEST(Errors, UnknownTokenNotInTheVocab) {
  ExpectParseError(
      TokenizerJson(R"({"type": "BPE", "unk_token": "<unk>", "vocab": {"a": 0}, "merges": []})"),
      {"model.unk_token", "<unk>"});
  ExpectParseError(TokenizerJson(R"({"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"a": 0}})"),
                   {"model.unk_token", "[UNK]"});
}

TEST(Errors, MalformedJson) {
  ExpectParseError("{\"model\": ", {"not a JSON object"});
  ExpectParseError("", {"not a JSON object"});
  ExpectParseError("[1, 2]", {"not a JSON object"});
  ExpectParseError(R"({"version": "1.0"})", {"model", "missing"});
  ExpectParseError(R"({"model": null})", {"model", "missing"});
}

TEST(Errors, DeeplyNestedJsonIsRefusedWithoutCrashing) {
  std::string arrays = std::string(1000, '[') + std::string(1000, ']');
  ExpectParseError(absl::StrCat(R"({"model": )", WordLevel({"a"}), R"(, "x": )", arrays, "}"),
                   {"nested too deeply"});
  std::string objects;
  for (int i = 0; i < 1000; ++i) objects += "{\"a\": ";
  objects += "1" + std::string(1000, '}');
  ExpectParseError(objects, {"nested too deeply"});
  // Brackets inside strings do not count.
  EXPECT_TRUE(ParseError(TokenizerJson(WordLevel({std::string(1000, '[')}))).ok());
}

// A vocabulary of 300,000 words (Llama 3's has 128,000) and a million unknown keys are read
// after one pass; duplicate keys keep the last value, as Hugging Face's reader does.
TEST(Errors, WideJsonIsRead) {
  std::vector<std::string> words;
  for (int i = 0; i < 300'000; ++i) words.push_back("w" + std::to_string(i));
  std::unique_ptr<HfTokenizer> tokenizer =
      MustParse(TokenizerJson(WordLevel(words), "", kWhitespaceSplit));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "w0 w299999"), (Ids{0, 299999}));

  std::string keys = R"({"model": )" + WordLevel({"a"});
  for (int i = 0; i < 1'000'000; ++i) absl::StrAppend(&keys, ",\"k", i, "\": 0");
  EXPECT_NE(MustParse(keys + "}"), nullptr);
  EXPECT_NE(MustParse(R"({"model": null, "model": )" + WordLevel({"a"}) + "}"), nullptr);
}

TEST(Errors, MissingComponentType) {
  ExpectParseError(TokenizerJson(WordLevel({"a"}), R"({"lowercase": true})"),
                   {"normalizer.type", "missing"});
  ExpectParseError(TokenizerJson(R"({"vocab": {"a": 0}})"), {"model", "type"});
}

TEST(Errors, EncodeOfInvalidUtf8NamesTheByteOffset) {
  auto tokenizer = MustParse(TokenizerJson(WordLevel({"a"})));
  ASSERT_NE(tokenizer, nullptr);
  struct Case {
    std::string text;
    std::string offset;
  };
  for (const Case& c : {Case{"ab\xff", "byte 2"}, Case{"\xc0\xaf", "byte 0"},
                        Case{"a\xed\xa0\x80", "byte 1"}, Case{"aa\xf4\x90\x80\x80", "byte 2"},
                        Case{"\xe6\x97", "byte 0"}}) {
    absl::StatusOr<Ids> ids = tokenizer->Encode(c.text, false);
    ASSERT_FALSE(ids.ok()) << c.offset;
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(ids.status().message(), HasSubstr(c.offset));
    EXPECT_FALSE(tokenizer->EncodePair("a", c.text).ok());
  }
}

TEST(Errors, WordLevelWithoutUnknownTokenRefusesUnknownWords) {
  auto tokenizer = MustParse(TokenizerJson(R"({"type": "WordLevel", "vocab": {"a": 0}})", "",
                                           kWhitespaceSplit));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(MustEncode(*tokenizer, "a a"), (Ids{0, 0}));
  absl::StatusOr<Ids> ids = tokenizer->Encode("a zz", false);
  ASSERT_FALSE(ids.ok());
  EXPECT_THAT(ids.status().message(), HasSubstr("zz"));
}

// ---------------------------------------------------------------------------------------------
// Loading a model directory: eos and pad

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "tokenizer_test.XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    for (const char* name : {"tokenizer.json", "tokenizer_config.json", "config.json"}) {
      std::remove((dir_ + "/" + name).c_str());
    }
    ::rmdir(dir_.c_str());
  }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream out(dir_ + "/" + name, std::ios::binary);
    out << text;
    ASSERT_TRUE(out.good());
  }
  // a=0 b=1 [UNK]=2, added </s>=3 (special).
  void WriteTokenizer(const std::string& padding = "") {
    nlohmann::json j = nlohmann::json::parse(TokenizerJson(
        WordLevel({"a", "b"}), "", kWhitespaceSplit, "",
        R"([{"id": 3, "content": "</s>", "special": true}])"));
    if (!padding.empty()) j["padding"] = nlohmann::json::parse(padding);
    Write("tokenizer.json", j.dump());
  }
  std::unique_ptr<HfTokenizer> MustLoad(const std::string& path) {
    absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer = HfTokenizer::Load(path);
    EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
    return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
  }
  std::string dir_;
};

using Load = TempDir;

TEST_F(Load, FileOrDirectory) {
  WriteTokenizer();
  auto from_file = MustLoad(dir_ + "/tokenizer.json");
  auto from_dir = MustLoad(dir_);
  ASSERT_NE(from_file, nullptr);
  ASSERT_NE(from_dir, nullptr);
  EXPECT_EQ(MustEncode(*from_file, "b a"), (Ids{1, 0}));
  EXPECT_EQ(MustEncode(*from_dir, "b a"), (Ids{1, 0}));
  EXPECT_EQ(from_dir->eos_id(), std::nullopt);
  EXPECT_EQ(from_dir->pad_id(), 0);  // no padding, no eos
}

TEST_F(Load, MissingFileIsAnError) {
  EXPECT_FALSE(HfTokenizer::Load(dir_).ok());
  EXPECT_FALSE(HfTokenizer::Load(dir_ + "/nope.json").ok());
}

TEST_F(Load, EmptyFile) {
  Write("tokenizer.json", "");
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer = HfTokenizer::Load(dir_);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("tokenizer.json"));
}

TEST_F(Load, EosFromTokenizerConfigString) {
  WriteTokenizer();
  Write("tokenizer_config.json", R"({"eos_token": "</s>", "bos_token": "a"})");
  Write("config.json", R"({"eos_token_id": 1})");  // tokenizer_config.json wins
  auto tokenizer = MustLoad(dir_);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->eos_id(), 3);
  EXPECT_EQ(tokenizer->pad_id(), 3);  // no padding: eos
}

TEST_F(Load, EosFromTokenizerConfigAddedTokenObject) {
  WriteTokenizer();
  Write("tokenizer_config.json",
        R"({"eos_token": {"__type": "AddedToken", "content": "b", "lstrip": false}})");
  auto tokenizer = MustLoad(dir_);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->eos_id(), 1);
}

TEST_F(Load, EosFromConfigJsonIntOrList) {
  WriteTokenizer();
  Write("config.json", R"({"eos_token_id": 1})");
  auto from_int = MustLoad(dir_);
  ASSERT_NE(from_int, nullptr);
  EXPECT_EQ(from_int->eos_id(), 1);

  Write("config.json", R"({"eos_token_id": [3, 1]})");
  auto from_list = MustLoad(dir_);
  ASSERT_NE(from_list, nullptr);
  EXPECT_EQ(from_list->eos_id(), 3);

  // tokenizer_config.json without an eos_token falls through to config.json.
  Write("tokenizer_config.json", R"({"eos_token": null})");
  auto fallthrough = MustLoad(dir_);
  ASSERT_NE(fallthrough, nullptr);
  EXPECT_EQ(fallthrough->eos_id(), 3);
}

TEST_F(Load, EosIdOutOfRangeIsAnError) {
  WriteTokenizer();
  Write("config.json", R"({"eos_token_id": 4})");
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer = HfTokenizer::Load(dir_);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("eos_token_id"));
}

TEST_F(Load, EosTokenNotInTheVocabIsAnError) {
  WriteTokenizer();
  Write("tokenizer_config.json", R"({"eos_token": "<|end|>"})");
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer = HfTokenizer::Load(dir_);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("eos_token"));
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("<|end|>"));

  Write("tokenizer_config.json", R"({"eos_token": 5})");
  tokenizer = HfTokenizer::Load(dir_);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("eos_token"));
}

TEST_F(Load, PaddingPadIdWinsOverEos) {
  WriteTokenizer(R"({"strategy": "BatchLongest", "direction": "Right", "pad_id": 2,
                     "pad_type_id": 0, "pad_token": "[UNK]"})");
  Write("tokenizer_config.json", R"({"eos_token": "</s>"})");
  auto tokenizer = MustLoad(dir_);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->pad_id(), 2);
  EXPECT_EQ(tokenizer->eos_id(), 3);
}

TEST_F(Load, PadIdOutOfRangeIsAnError) {
  WriteTokenizer(R"({"pad_id": 4})");
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer = HfTokenizer::Load(dir_);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("padding.pad_id"));
}

// ---------------------------------------------------------------------------------------------
// Threads

TEST(Threads, ConcurrentEncodingMatchesSerial) {
  // A character-level BPE over a..z with a few merges; every word goes through the word cache.
  nlohmann::json vocab = nlohmann::json::object();
  int next = 0;
  for (char c = 'a'; c <= 'z'; ++c) vocab[std::string(1, c)] = next++;
  nlohmann::json merges = nlohmann::json::array();
  for (const char* merge : {"t h", "th e", "a n", "an d", "i n", "in g", "e r", "o n"}) {
    std::string text = merge;
    std::string merged = text.substr(0, text.find(' ')) + text.substr(text.find(' ') + 1);
    if (!vocab.contains(merged)) vocab[merged] = next++;
    merges.push_back(text);
  }
  nlohmann::json model = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}};
  auto tokenizer = MustParse(TokenizerJson(model.dump(), R"({"type": "Lowercase"})",
                                           kWhitespaceSplit));
  ASSERT_NE(tokenizer, nullptr);

  std::vector<std::string> texts;
  const std::vector<std::string> words = {"the", "and", "thing", "other", "ringing", "onion",
                                          "banded", "zebra", "theory", "handing"};
  for (int i = 0; i < 200; ++i) {
    std::string text;
    for (int j = 0; j < 3 + i % 7; ++j) {
      text += words[(i * 7 + j * 3) % words.size()];
      if ((i + j) % 5 == 0) text += std::string(1, static_cast<char>('a' + (i + j) % 26));
      text += j % 2 == 0 ? " " : "  ";
    }
    texts.push_back(text);
  }
  std::vector<Ids> serial;
  for (const std::string& text : texts) serial.push_back(MustEncode(*tokenizer, text));
  EXPECT_EQ(serial[0], MustEncode(*tokenizer, texts[0]));

  // A fresh tokenizer so that the threads fill its (empty) cache concurrently.
  auto shared = MustParse(TokenizerJson(model.dump(), R"({"type": "Lowercase"})",
                                        kWhitespaceSplit));
  ASSERT_NE(shared, nullptr);
  std::vector<std::vector<Ids>> results(8, std::vector<Ids>(texts.size()));
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round) {
        for (size_t k = 0; k < texts.size(); ++k) {
          size_t i = (k + static_cast<size_t>(t) * 25) % texts.size();
          absl::StatusOr<Ids> ids = shared->Encode(texts[i], false);
          results[t][i] = ids.ok() ? *ids : Ids{-1};
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < 8; ++t) {
    for (size_t i = 0; i < texts.size(); ++i) {
      ASSERT_EQ(results[t][i], serial[i]) << "thread " << t << " text \"" << texts[i] << "\"";
    }
  }
}

// tokenizer.json is a file the job names: errors quote a bounded, one-line excerpt of it.
TEST(HfTokenizer, ErrorsQuoteABoundedSanitisedExcerptOfTheFile) {
  const std::string junk = std::string(5000, 'j') + "\n\x1b[2J";
  nlohmann::json bad_vocab = {{"type", "WordLevel"},
                              {"vocab", {{junk, "not an id"}}},
                              {"unk_token", "[UNK]"}};
  nlohmann::json bad_type = {{"type", junk}};
  for (const std::string& text :
       {TokenizerJson(bad_vocab.dump()), TokenizerJson(bad_type.dump()),
        TokenizerJson(WordLevel({"a"}), "", R"({"type": "Split", "pattern": {"String": " "},
                      "behavior": ")" + std::string(5000, 'j') + "\\n\\u001b\"}")}) {
    absl::Status status = ParseError(text);
    ASSERT_FALSE(status.ok());
    const std::string message(status.message());
    EXPECT_LT(message.size(), 600u) << message;
    EXPECT_EQ(message.find(std::string(100, 'j')), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    EXPECT_EQ(message.find('\x1b'), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace loratrf::engine::tokenizer
