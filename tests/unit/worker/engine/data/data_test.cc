// The engine's data layer: every JSONL format and its errors (file:line: field: rule), label
// maps, truncation, deterministic shuffling, rank sharding, packing and collation.
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "worker/engine/data/batching.h"
#include "worker/engine/data/examples.h"
#include "worker/engine/data/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace loratrf::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// One id per byte (byte + 3); 0 pad, 1 BOS, 2 EOS. Special tokens: BOS first; pairs are
// BOS a EOS b. Text containing "FAIL" cannot be encoded.
class ByteTokenizer : public Tokenizer {
 public:
  explicit ByteTokenizer(std::optional<int64_t> eos = 2, int64_t offset = 3)
      : eos_(eos), offset_(offset) {}
  absl::StatusOr<std::vector<int64_t>> Encode(absl::string_view text,
                                              bool add_special_tokens) const override {
    if (text.find("FAIL") != absl::string_view::npos) return absl::InvalidArgumentError("bad text");
    std::vector<int64_t> ids;
    if (add_special_tokens) ids.push_back(1);
    for (unsigned char c : text) ids.push_back(c + offset_);
    return ids;
  }
  absl::StatusOr<std::vector<int64_t>> EncodePair(absl::string_view text,
                                                  absl::string_view pair) const override {
    std::vector<int64_t> ids = *Encode(text, true);
    ids.push_back(2);
    for (unsigned char c : pair) ids.push_back(c + offset_);
    return ids;
  }
  int64_t pad_id() const override { return 0; }
  std::optional<int64_t> eos_id() const override { return eos_; }

 private:
  std::optional<int64_t> eos_;
  int64_t offset_;
};

constexpr int64_t kVocab = 259;

std::vector<int64_t> Bytes(absl::string_view text) {
  std::vector<int64_t> ids;
  for (unsigned char c : text) ids.push_back(c + 3);
  return ids;
}

std::vector<int64_t> Concat(std::vector<int64_t> a, const std::vector<int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

class DataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("data_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& text, const std::string& name = "data.jsonl") {
    std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  DataOptions Options(DataTask task, int64_t max_seq_len = 64) {
    DataOptions options;
    options.task = task;
    options.max_seq_len = max_seq_len;
    options.vocab_size = kVocab;
    options.num_labels = 3;
    options.tokenizer = &tokenizer_;
    return options;
  }

  // Reads `text` and expects one error, exactly "<path>:<line>: <message>".
  void ExpectError(const std::string& text, const DataOptions& options, int line,
                   const std::string& message) {
    std::string path = Write(text);
    absl::StatusOr<Dataset> data = ReadDataset(path, options);
    ASSERT_FALSE(data.ok()) << text;
    EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(data.status().message(), path + ":" + std::to_string(line) + ": " + message) << text;
  }

  std::filesystem::path dir_;
  ByteTokenizer tokenizer_;
};

// ---------------------------------------------------------------- formats

TEST_F(DataTest, ClassificationTextIntLabels) {
  auto data = ReadDataset(Write("{\"text\": \"ab\", \"label\": 2}\n{\"text\": \"c\", \"label\": 0}\n"),
                          Options(DataTask::kClassification));
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->examples.size(), 2u);
  EXPECT_THAT(data->examples[0].input_ids, ElementsAre(1, 'a' + 3, 'b' + 3));
  EXPECT_EQ(data->examples[0].label, 2);
  EXPECT_TRUE(data->examples[0].labels.empty());
  EXPECT_EQ(data->examples[1].label, 0);
  EXPECT_EQ(data->examples[1].line, 2);
  EXPECT_TRUE(data->label_map.empty());
  EXPECT_EQ(data->num_tokens, 5);
}

TEST_F(DataTest, ClassificationTextPair) {
  auto data = ReadDataset(Write(R"({"text": "a", "text_pair": "b", "label": 1, "idx": 7})"),
                          Options(DataTask::kClassification));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->examples[0].input_ids, ElementsAre(1, 'a' + 3, 2, 'b' + 3));
}

TEST_F(DataTest, ClassificationPreTokenizedNeedsNoTokenizer) {
  DataOptions options = Options(DataTask::kClassification);
  options.tokenizer = nullptr;
  // A tokenizing script's leftover text column is ignored: input_ids wins.
  auto data = ReadDataset(Write(R"({"input_ids": [5, 6, 258], "text": "x", "label": 1})"), options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->examples[0].input_ids, ElementsAre(5, 6, 258));
  EXPECT_EQ(data->examples[0].label, 1);
}

TEST_F(DataTest, StringLabelsGetSortedStableIds) {
  DataOptions options = Options(DataTask::kClassification);
  options.num_labels = 0;
  auto a = ReadDataset(Write("{\"text\":\"x\",\"label\":\"pos\"}\n{\"text\":\"y\",\"label\":\"neg\"}\n"
                             "{\"text\":\"z\",\"label\":\"neutral\"}\n", "a.jsonl"),
                       options);
  auto b = ReadDataset(Write("{\"text\":\"z\",\"label\":\"neutral\"}\n{\"text\":\"x\",\"label\":\"pos\"}\n"
                             "{\"text\":\"y\",\"label\":\"neg\"}\n", "b.jsonl"),
                       options);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_THAT(a->label_map.names(), ElementsAre("neg", "neutral", "pos"));
  EXPECT_EQ(a->label_map, b->label_map);
  EXPECT_EQ(a->examples[0].label, 2);  // pos
  EXPECT_EQ(a->examples[1].label, 0);  // neg
  EXPECT_EQ(b->examples[0].label, 1);  // neutral
}

TEST_F(DataTest, EvalDataUsesTheTrainingLabelMap) {
  DataOptions options = Options(DataTask::kClassification);
  LabelMap train = *LabelMap::Create({"neg", "pos"});
  options.label_map = &train;
  auto eval = ReadDataset(Write("{\"text\":\"x\",\"label\":\"pos\"}\n"), options);
  ASSERT_TRUE(eval.ok()) << eval.status();
  EXPECT_EQ(eval->examples[0].label, 1);
  EXPECT_EQ(eval->label_map, train);
  ExpectError("{\"text\":\"x\",\"label\":\"pos\"}\n{\"text\":\"x\",\"label\":\"meh\"}\n", options, 2,
              "label: \"meh\" is not one of the training labels [neg, pos]");
}

TEST_F(DataTest, CausalPromptCompletion) {
  auto data = ReadDataset(Write(R"({"prompt": "ab", "completion": "cd"})"), Options(DataTask::kCausalLm));
  ASSERT_TRUE(data.ok()) << data.status();
  const Example& e = data->examples[0];
  EXPECT_THAT(e.input_ids, ElementsAreArray(Concat(Concat({1}, Bytes("abcd")), {2})));
  EXPECT_THAT(e.labels, ElementsAreArray(Concat({-100, -100, -100}, Concat(Bytes("cd"), {2}))));
  EXPECT_EQ(e.label, -1);
  EXPECT_EQ(CountLossTokens(e.labels), 3);
}

TEST_F(DataTest, CausalWithoutEosAppendsNothing) {
  ByteTokenizer no_eos(std::nullopt);
  DataOptions options = Options(DataTask::kCausalLm);
  options.tokenizer = &no_eos;
  auto data = ReadDataset(Write(R"({"prompt": "a", "completion": "b"})"), options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->examples[0].input_ids, ElementsAre(1, 'a' + 3, 'b' + 3));
  EXPECT_THAT(data->examples[0].labels, ElementsAre(-100, -100, 'b' + 3));
}

TEST_F(DataTest, CausalInstructionUsesAlpacaTemplate) {
  auto data = ReadDataset(
      Write("{\"instruction\": \"Add\", \"input\": \"1+1\", \"output\": \"2\"}\n"
            "{\"instruction\": \"Say hi\", \"output\": \"hi\"}\n"
            "{\"instruction\": \"Say {input}\", \"input\": \"\", \"output\": \"x\"}\n"),
      Options(DataTask::kCausalLm, 1000));
  ASSERT_TRUE(data.ok()) << data.status();
  std::string with_input =
      "Below is an instruction that describes a task, paired with an input that provides further "
      "context. Write a response that appropriately completes the request.\n\n"
      "### Instruction:\nAdd\n\n### Input:\n1+1\n\n### Response:\n";
  std::vector<int64_t> prompt = Concat({1}, Bytes(with_input));
  EXPECT_THAT(data->examples[0].input_ids, ElementsAreArray(Concat(Concat(prompt, Bytes("2")), {2})));
  EXPECT_EQ(CountLossTokens(data->examples[0].labels), 2);  // "2" and EOS
  std::string no_input =
      "Below is an instruction that describes a task. Write a response that appropriately "
      "completes the request.\n\n### Instruction:\nSay hi\n\n### Response:\n";
  EXPECT_THAT(data->examples[1].input_ids,
              ElementsAreArray(Concat(Concat(Concat({1}, Bytes(no_input)), Bytes("hi")), {2})));
  // Placeholders inside user text are not substituted again.
  std::string literal =
      "Below is an instruction that describes a task. Write a response that appropriately "
      "completes the request.\n\n### Instruction:\nSay {input}\n\n### Response:\n";
  EXPECT_THAT(data->examples[2].input_ids,
              ElementsAreArray(Concat(Concat(Concat({1}, Bytes(literal)), Bytes("x")), {2})));
}

TEST_F(DataTest, CausalInputIdsLossOnAllTokens) {
  DataOptions options = Options(DataTask::kCausalLm);
  options.tokenizer = nullptr;
  auto data = ReadDataset(Write(R"({"input_ids": [4, 5, 6]})"), options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->examples[0].labels, ElementsAre(4, 5, 6));
}

TEST_F(DataTest, CausalInputIdsWithLabels) {
  DataOptions options = Options(DataTask::kCausalLm);
  options.tokenizer = nullptr;
  auto data = ReadDataset(Write(R"({"input_ids": [4, 5, 6, 7], "labels": [-100, -100, 6, 7]})"), options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->examples[0].labels, ElementsAre(-100, -100, 6, 7));
}

TEST_F(DataTest, CausalPromptAndCompletionIds) {
  DataOptions options = Options(DataTask::kCausalLm);
  options.tokenizer = nullptr;
  auto data = ReadDataset(Write(R"({"prompt_ids": [4, 5], "completion_ids": [6]})"), options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->examples[0].input_ids, ElementsAre(4, 5, 6));  // no EOS added to given ids
  EXPECT_THAT(data->examples[0].labels, ElementsAre(-100, -100, 6));
}

TEST_F(DataTest, BlankLinesCrLfAndBomAreHandled) {
  auto data = ReadDataset(Write("\xEF\xBB\xBF{\"text\":\"a\",\"label\":0}\r\n\n   \t\r\n"
                                "{\"text\":\"b\",\"label\":1}"),  // no final newline
                          Options(DataTask::kClassification));
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->examples.size(), 2u);
  EXPECT_EQ(data->examples[0].line, 1);
  EXPECT_EQ(data->examples[1].line, 4);
}

// ---------------------------------------------------------------- errors

TEST_F(DataTest, LineErrorsNameFileLineAndField) {
  DataOptions cls = Options(DataTask::kClassification);
  const std::string good = "{\"text\":\"a\",\"label\":0}\n";
  ExpectError(good + "{\"text\": \"a\", \"label\": 0\n", cls, 2,
              "not valid JSON (column 25: syntax error while parsing object - unexpected "
              "end of input; expected '}')");
  ExpectError(good + "[1, 2]\n", cls, 2, "not a JSON object (got an array)");
  ExpectError(good + "{\"label\": 0}\n", cls, 2, "text: missing");
  ExpectError(good + "{\"text\": \"a\"}\n", cls, 2, "label: missing");
  ExpectError(good + "{\"text\": 5, \"label\": 0}\n", cls, 2, "text: must be a string, got a number");
  ExpectError(good + "{\"text\": \"\", \"label\": 0}\n", cls, 2, "text: empty");
  ExpectError(good + "{\"text\": \"a\", \"text_pair\": \"\", \"label\": 0}\n", cls, 2, "text_pair: empty");
  ExpectError(good + "{\"text\": \"a\", \"label\": true}\n", cls, 2,
              "label: must be an integer or a string, got true");
  ExpectError(good + "{\"text\": \"a\", \"label\": 1.5}\n", cls, 2,
              "label: must be an integer or a string, got 1.5");
  ExpectError(good + "{\"text\": \"a\", \"label\": 3}\n", cls, 2, "label: 3 is out of range [0, 3)");
  ExpectError(good + "{\"text\": \"a\", \"label\": -1}\n", cls, 2, "label: -1 is out of range [0, 3)");
  ExpectError(good + "{\"text\": \"a\", \"label\": \"pos\"}\n", cls, 2,
              "label: is a string but line 1 has an integer label (use one kind throughout)");
  ExpectError(good + "{\"input_ids\": \"1 2\", \"label\": 0}\n", cls, 2,
              "input_ids: must be an array of token ids, got a string");
  ExpectError(good + "{\"input_ids\": [], \"label\": 0}\n", cls, 2, "input_ids: empty");
  ExpectError(good + "{\"input_ids\": [1, \"2\"], \"label\": 0}\n", cls, 2,
              "input_ids[1]: must be an integer token id, got \"2\"");
  ExpectError(good + "{\"input_ids\": [1, 259], \"label\": 0}\n", cls, 2,
              "input_ids[1]: 259 is out of the vocabulary [0, 259)");
  ExpectError(good + "{\"input_ids\": [-1], \"label\": 0}\n", cls, 2,
              "input_ids[0]: -1 is out of the vocabulary [0, 259)");
  ExpectError(good + "{\"text\": \"FAIL\", \"label\": 0}\n", cls, 2, "text: cannot be tokenized: bad text");

  DataOptions lm = Options(DataTask::kCausalLm);
  ExpectError(R"({"prompt": "a"})", lm, 1, "completion: missing");
  ExpectError(R"({"prompt": "a", "completion": ""})", lm, 1, "completion: empty");
  ExpectError(R"({"prompt": "", "completion": "b"})", lm, 1, "prompt: empty");
  ExpectError(R"({"instruction": "a", "input": 3, "output": "b"})", lm, 1, "input: must be a string, got a number");
  ExpectError(R"({"instruction": "a"})", lm, 1, "output: missing");
  ExpectError(R"({"question": "a", "answer": "b"})", lm, 1,
              "no known fields: a causal_lm line needs \"prompt\" and \"completion\", "
              "\"instruction\" and \"output\", \"input_ids\", or \"prompt_ids\" and \"completion_ids\"");
  ExpectError(R"({"input_ids": [4, 5], "labels": [4]})", lm, 1,
              "labels: has 1 entries but input_ids has 2 (one label per token)");
  ExpectError(R"({"input_ids": [4, 5], "labels": [4, -5]})", lm, 1,
              "labels[1]: must be -100 or a token id in [0, 259), got -5");
  ExpectError(R"({"input_ids": [4, 5], "labels": [4, 18446744073709551516]})", lm, 1,
              "labels[1]: must be -100 or a token id in [0, 259), got 18446744073709551516");
  ExpectError(R"({"input_ids": [4, 5], "labels": [4, -100]})", lm, 1,
              "labels: no label after the first token is other than -100 (nothing to learn)");
  ExpectError(R"({"input_ids": [4]})", lm, 1,
              "input_ids: a single token has nothing to predict (needs at least 2 tokens)");
  ExpectError(R"({"prompt_ids": [4]})", lm, 1, "completion_ids: missing");
}

TEST_F(DataTest, TextWithoutTokenizerSaysATokenizerJsonIsNeeded) {
  DataOptions options = Options(DataTask::kCausalLm);
  options.tokenizer = nullptr;
  // Reported once, at the first text line: every later text line would say the same.
  ExpectError("{\"input_ids\": [4, 5]}\n{\"prompt\": \"a\", \"completion\": \"b\"}\n"
              "{\"prompt\": \"a\", \"completion\": \"b\"}\n",
              options, 2,
              "prompt: text needs a tokenizer, and the model directory has no tokenizer.json "
              "(add one, or give input_ids instead of text)");
}

TEST_F(DataTest, TokenizerIdsOutsideTheModelVocabularyAreRejected) {
  ByteTokenizer big(2, 300);
  DataOptions options = Options(DataTask::kClassification);
  options.tokenizer = &big;
  ExpectError(R"({"text": "a", "label": 0})", options, 1,
              "text: the tokenizer gave id 397, outside the model's vocabulary [0, 259)");
}

TEST_F(DataTest, IntegerLabelsNeedNumLabels) {
  DataOptions options = Options(DataTask::kClassification);
  options.num_labels = 0;
  ExpectError(R"({"text": "a", "label": 0})", options, 1,
              "label: integer labels need num_labels (the model's number of classes)");
}

TEST_F(DataTest, MoreStringLabelsThanNumLabels) {
  DataOptions options = Options(DataTask::kClassification);
  options.num_labels = 2;
  ExpectError("{\"text\":\"a\",\"label\":\"c\"}\n{\"text\":\"a\",\"label\":\"a\"}\n"
              "{\"text\":\"a\",\"label\":\"b\"}\n",
              options, 1, "label: \"c\" makes 3 distinct labels, more than num_labels 2");
}

TEST_F(DataTest, ManyBadLinesAreReportedTogether) {
  std::string text;
  for (int i = 0; i < 8; ++i) text += "{\"text\": \"a\"}\n";
  std::string path = Write(text);
  auto data = ReadDataset(path, Options(DataTask::kClassification));
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.status().message(),
            path + ":1: label: missing; " + path + ":2: label: missing; " + path +
                ":3: label: missing; " + path + ":4: label: missing; " + path +
                ":5: label: missing; and 3 more bad lines");
}

TEST_F(DataTest, OverlongLineIsAnErrorAndReadingContinues) {
  std::string big = "{\"text\": \"" + std::string(kMaxLineBytes, 'x') + "\", \"label\": 0}";
  std::string path = Write("{\"text\":\"a\",\"label\":0}\n" + big + "\n{\"text\": 1, \"label\": 0}\n");
  auto data = ReadDataset(path, Options(DataTask::kClassification));
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.status().message(), path + ":2: line longer than 1048576 bytes; " + path +
                                         ":3: text: must be a string, got a number");
}

TEST_F(DataTest, FileLevelErrors) {
  DataOptions options = Options(DataTask::kClassification);
  std::string missing = (dir_ / "nope.jsonl").string();
  auto data = ReadDataset(missing, options);
  EXPECT_EQ(data.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(data.status().message(), missing + ": no such data file");

  std::string empty = Write("", "empty.jsonl");
  data = ReadDataset(empty, options);
  EXPECT_EQ(data.status().message(), empty + ": no examples (the file is empty or blank)");
  std::string blank = Write("\n  \n\n", "blank.jsonl");
  EXPECT_THAT(ReadDataset(blank, options).status().message(), HasSubstr("no examples"));

  EXPECT_THAT(ReadDataset(dir_.string(), options).status().message(), HasSubstr("not a regular file"));

  options.max_file_bytes = 10;
  std::string large = Write("{\"text\":\"a\",\"label\":0}\n", "large.jsonl");
  EXPECT_EQ(ReadDataset(large, options).status().message(),
            large + ": 23 bytes, more than the limit of 10");

  DataOptions bad = Options(DataTask::kClassification);
  bad.max_seq_len = 0;
  EXPECT_THAT(ReadDataset(large, bad).status().message(), HasSubstr("max_seq_len must be positive"));
}

// ---------------------------------------------------------------- truncation

TEST_F(DataTest, ClassificationTruncationCutsTheEnd) {
  auto data = ReadDataset(Write("{\"text\":\"abcdef\",\"label\":0}\n{\"text\":\"ab\",\"label\":0}\n"),
                          Options(DataTask::kClassification, 4));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->examples[0].input_ids, ElementsAre(1, 'a' + 3, 'b' + 3, 'c' + 3));
  EXPECT_EQ(data->num_truncated, 1);
}

TEST_F(DataTest, CausalTruncationKeepsThePromptStart) {
  auto data = ReadDataset(Write(R"({"prompt": "ab", "completion": "cdef"})"), Options(DataTask::kCausalLm, 5));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->examples[0].input_ids, ElementsAre(1, 'a' + 3, 'b' + 3, 'c' + 3, 'd' + 3));
  EXPECT_THAT(data->examples[0].labels, ElementsAre(-100, -100, -100, 'c' + 3, 'd' + 3));
  EXPECT_EQ(data->num_truncated, 1);
}

TEST_F(DataTest, CausalTruncationThatLeavesNoTargetIsAnError) {
  ExpectError("{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"abcdef\", \"completion\": \"z\"}\n",
              Options(DataTask::kCausalLm, 5), 2,
              "completion: nothing left to learn after truncation to max_seq_len 5 (the prompt "
              "alone has 7 tokens); raise max_seq_len or shorten this example");
  DataOptions ids = Options(DataTask::kCausalLm, 3);
  ExpectError(R"({"input_ids": [4, 5, 6, 7], "labels": [-100, -100, -100, 7]})", ids, 1,
              "labels: nothing left to learn after truncation to max_seq_len 3; raise max_seq_len "
              "or shorten this example");
}

// ---------------------------------------------------------------- label maps

TEST_F(DataTest, LabelMapSaveLoadRoundTrip) {
  LabelMap map = *LabelMap::Create({"neg", "pos", "ünï"});
  std::string path = (dir_ / "labels.json").string();
  ASSERT_TRUE(map.Save(path).ok());
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "{\n  \"labels\": [\n    \"neg\",\n    \"pos\",\n    \"ünï\"\n  ]\n}\n");
  auto loaded = LabelMap::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, map);
  EXPECT_EQ(loaded->Find("pos"), 1);
  EXPECT_EQ(loaded->Find("zzz"), std::nullopt);
  EXPECT_EQ(loaded->size(), 3);
}

// Wide and deep lines and label maps are answered after one pass: a wide line is an example
// (extra keys are ignored), a deep one is a clear error naming its line.
TEST_F(DataTest, WideAndDeepLinesAreAnswered) {
  std::string wide = "{\"text\":\"a\",\"label\":0";
  for (int i = 0; i < 60'000; ++i) absl::StrAppend(&wide, ",\"k", i, "\":", i);
  wide += "}\n";
  ASSERT_LT(wide.size(), kMaxLineBytes);
  auto data = ReadDataset(Write(wide + "{\"text\":\"b\",\"label\":1}\n"),
                          Options(DataTask::kClassification));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->examples.size(), 2u);

  std::string deep = "{\"text\":\"a\",\"label\":0,\"x\":" + std::string(400'000, '[') +
                     std::string(400'000, ']') + "}\n";
  ExpectError("{\"text\":\"a\",\"label\":0}\n" + deep, Options(DataTask::kClassification), 2,
              "not a data line: JSON nested deeper than 8 levels");
}

TEST_F(DataTest, WideAndDeepLabelMapsAreAnswered) {
  std::string text = "{\"labels\": [";
  for (int i = 0; i < 200'000; ++i) absl::StrAppend(&text, i ? "," : "", "\"c", i, "\"");
  text += "]}";
  absl::StatusOr<LabelMap> wide = LabelMap::FromJson(text);
  ASSERT_TRUE(wide.ok()) << wide.status();
  EXPECT_EQ(wide->size(), 200'000);
  EXPECT_THAT(std::string(LabelMap::FromJson(std::string(500'000, '[')).status().message()),
              HasSubstr("label map: nested deeper than 8 levels"));
  EXPECT_THAT(std::string(LabelMap::FromJson(R"({"labels": [], "labels": ["a"]})").status().message()),
              HasSubstr("label map: duplicate key 'labels'"));
}

TEST_F(DataTest, LabelMapErrors) {
  EXPECT_EQ(LabelMap::Create({"a", "a"}).status().message(), "labels: \"a\" appears twice");
  EXPECT_EQ(LabelMap::Create({"a", ""}).status().message(), "labels: a label name is empty");
  EXPECT_EQ(LabelMap::FromJson("{\"labels\": [\"a\", 1]}").status().message(),
            "labels[1]: must be a string, got 1");
  EXPECT_EQ(LabelMap::FromJson("[]").status().message(), "label map: not a JSON object");
  EXPECT_EQ(LabelMap::FromJson("{").status().message(), "label map: not valid JSON");
  EXPECT_EQ(LabelMap::FromJson("{}").status().message(), "labels: missing");
  std::string missing = (dir_ / "none.json").string();
  EXPECT_EQ(LabelMap::Load(missing).status().code(), absl::StatusCode::kNotFound);
  std::string bad = Write("{\"labels\": 3}", "bad.json");
  EXPECT_EQ(LabelMap::Load(bad).status().message(), bad + ": labels: must be an array of strings");
}

// ---------------------------------------------------------------- shuffling

TEST(Shuffle, SplitMixAndEngineAreTheStandardOnes) {
  EXPECT_EQ(SplitMix64(0), 0xE220A8397B1DCDAFULL);  // splitmix64's first output from state 0
  std::mt19937_64 rng;  // the standard fixes its 10000th output
  rng.discard(9999);
  EXPECT_EQ(rng(), 9981545732273789042ULL);
}

TEST(Shuffle, FixedOrdersComputedOutsideCpp) {
  // Computed by an independent Python implementation of the algorithm in batching.h.
  EXPECT_THAT(ShuffledOrder(8, 42, 0), ElementsAre(1, 0, 3, 4, 2, 7, 6, 5));
  EXPECT_THAT(ShuffledOrder(8, 42, 1), ElementsAre(0, 4, 7, 5, 6, 2, 3, 1));
  EXPECT_THAT(ShuffledOrder(8, 42, 2), ElementsAre(2, 7, 5, 3, 0, 1, 6, 4));
  EXPECT_THAT(ShuffledOrder(10, 7, 0), ElementsAre(7, 8, 0, 4, 1, 6, 9, 5, 2, 3));
}

TEST(Shuffle, DeterministicPerSeedAndEpoch) {
  std::vector<int64_t> a = ShuffledOrder(1000, 123, 4);
  EXPECT_EQ(a, ShuffledOrder(1000, 123, 4));
  EXPECT_NE(a, ShuffledOrder(1000, 123, 5));
  EXPECT_NE(a, ShuffledOrder(1000, 124, 4));
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[static_cast<size_t>(i)], i);
  EXPECT_TRUE(ShuffledOrder(0, 1, 0).empty());
  EXPECT_THAT(ShuffledOrder(1, 1, 0), ElementsAre(0));
}

// ---------------------------------------------------------------- sampler

BatchingOptions Batching(int64_t batch, int64_t micro, int64_t world, int64_t rank, uint64_t seed = 9) {
  BatchingOptions options;
  options.batch_size = batch;
  options.micro_batch_size = micro;
  options.world_size = world;
  options.rank = rank;
  options.seed = seed;
  return options;
}

TEST(BatchSampler, RejectsBadShapes) {
  EXPECT_THAT(BatchSampler::Create(100, Batching(6, 4, 1, 0)).status().message(),
              HasSubstr("batch_size 6 must be a positive multiple of micro_batch_size 4"));
  EXPECT_THAT(BatchSampler::Create(100, Batching(8, 2, 3, 0)).status().message(),
              HasSubstr("world size 3"));
  EXPECT_THAT(BatchSampler::Create(100, Batching(8, 2, 2, 2)).status().message(),
              HasSubstr("rank 2 is out of [0, 2)"));
  EXPECT_THAT(BatchSampler::Create(100, Batching(8, 0, 1, 0)).status().message(),
              HasSubstr("micro_batch_size must be >= 1"));
  EXPECT_EQ(BatchSampler::Create(7, Batching(8, 2, 1, 0)).status().message(),
            "the data has 7 examples, fewer than one batch of 8");
}

TEST(BatchSampler, DropsThePartialLastBatchAndWalksEpochs) {
  auto sampler = BatchSampler::Create(10, Batching(4, 2, 1, 0));
  ASSERT_TRUE(sampler.ok());
  EXPECT_EQ(sampler->steps_per_epoch(), 2);
  EXPECT_EQ(sampler->accumulation_steps(), 2);
  Cursor c;
  c = sampler->Next(c);
  EXPECT_EQ(c, (Cursor{0, 1}));
  c = sampler->Next(c);
  EXPECT_EQ(c, (Cursor{1, 0}));
  EXPECT_TRUE(sampler->CheckCursor({3, 1}).ok());
  EXPECT_THAT(sampler->CheckCursor({0, 2}).message(), HasSubstr("an epoch has 2 steps"));
  EXPECT_FALSE(sampler->CheckCursor({-1, 0}).ok());
  // The two steps of epoch 0 are the first 8 of that epoch's order.
  std::vector<int64_t> order = ShuffledOrder(10, 9, 0);
  std::vector<int64_t> seen = Concat(sampler->GlobalBatch({0, 0}), sampler->GlobalBatch({0, 1}));
  EXPECT_EQ(seen, std::vector<int64_t>(order.begin(), order.begin() + 8));
  std::vector<int64_t> next = ShuffledOrder(10, 9, 1);
  EXPECT_EQ(sampler->GlobalBatch({1, 0}), std::vector<int64_t>(next.begin(), next.begin() + 4));
}

TEST(BatchSampler, WithoutShuffleFollowsFileOrder) {
  BatchingOptions options = Batching(4, 2, 1, 0);
  options.shuffle = false;
  auto sampler = BatchSampler::Create(9, options);
  ASSERT_TRUE(sampler.ok());
  EXPECT_THAT(sampler->MicroBatches({3, 1}), ElementsAre(ElementsAre(4, 5), ElementsAre(6, 7)));
}

TEST(BatchSampler, RankShardsAreDisjointAndMakeTheGlobalBatch) {
  const int64_t n = 103, batch = 12, micro = 2;
  for (int64_t world : {1, 2, 3, 6}) {
    auto single = *BatchSampler::Create(n, Batching(batch, micro, 1, 0));
    std::vector<BatchSampler> ranks;
    for (int64_t r = 0; r < world; ++r) ranks.push_back(*BatchSampler::Create(n, Batching(batch, micro, world, r)));
    for (Cursor c{0, 0}; c.epoch < 2; c = single.Next(c)) {
      std::vector<int64_t> joined;
      for (BatchSampler& rank : ranks) {
        std::vector<std::vector<int64_t>> micros = rank.MicroBatches(c);
        ASSERT_EQ(static_cast<int64_t>(micros.size()), rank.accumulation_steps());
        for (const auto& m : micros) {
          ASSERT_EQ(static_cast<int64_t>(m.size()), micro);
          joined.insert(joined.end(), m.begin(), m.end());
        }
      }
      // Same data per step whatever the world size, and no example twice in a step.
      ASSERT_EQ(joined, single.GlobalBatch(c)) << "world " << world;
      std::set<int64_t> unique(joined.begin(), joined.end());
      ASSERT_EQ(unique.size(), joined.size());
    }
  }
}

TEST(EvalBatches, CoverEveryExampleOnceAcrossRanks) {
  std::vector<int64_t> all;
  for (int64_t r = 0; r < 3; ++r) {
    for (const auto& b : EvalBatches(10, 2, 3, r)) {
      EXPECT_LE(b.size(), 2u);
      all.insert(all.end(), b.begin(), b.end());
    }
  }
  EXPECT_THAT(all, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9));
  EXPECT_THAT(EvalBatches(5, 2, 1, 0), ElementsAre(ElementsAre(0, 1), ElementsAre(2, 3), ElementsAre(4)));
  EXPECT_TRUE(EvalBatches(1, 2, 2, 0).empty());
}

// ---------------------------------------------------------------- packing and collation

Example Causal(std::vector<int64_t> ids, std::vector<int64_t> labels, int64_t line = 0) {
  Example e;
  e.input_ids = std::move(ids);
  e.labels = std::move(labels);
  e.line = line;
  return e;
}

TEST(Pack, ConcatenatesWithinMaxSeqLenAndMasksBoundaries) {
  std::vector<Example> examples = {Causal({4, 5}, {4, 5}, 1), Causal({6, 7, 8}, {-100, 7, 8}, 2),
                                   Causal({9, 10}, {9, 10}, 3), Causal({11}, {11}, 4)};
  std::vector<Example> rows = PackExamples(examples, 5);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_THAT(rows[0].input_ids, ElementsAre(4, 5, 6, 7, 8));
  EXPECT_THAT(rows[0].labels, ElementsAre(4, 5, -100, 7, 8));
  EXPECT_EQ(rows[0].line, 1);
  EXPECT_THAT(rows[1].input_ids, ElementsAre(9, 10, 11));
  EXPECT_THAT(rows[1].labels, ElementsAre(9, 10, -100));  // 11 is not predicted from 10
}

TEST(Collate, CausalPadsRightWithMaskedLabels) {
  Example a = Causal({4, 5, 6}, {-100, 5, 6});
  Example b = Causal({7, 8}, {7, 8});
  auto batch = Collate({&a, &b}, 0);
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_TRUE(torch::equal(batch->input_ids, torch::tensor({4, 5, 6, 7, 8, 0}, torch::kInt64).view({2, 3})));
  EXPECT_TRUE(torch::equal(batch->attention_mask, torch::tensor({1, 1, 1, 1, 1, 0}, torch::kInt64).view({2, 3})));
  EXPECT_TRUE(torch::equal(batch->labels, torch::tensor({-100, 5, 6, 7, 8, -100}, torch::kInt64).view({2, 3})));
  EXPECT_EQ(batch->num_tokens, 5);
  EXPECT_EQ(batch->num_targets, 3);  // 5, 6 and 8: labels[0] is never a target after the shift
}

TEST(Collate, ClassificationLabelsAreOnePerRow) {
  Example a, b;
  a.input_ids = {4};
  a.label = 2;
  b.input_ids = {5, 6, 7};
  b.label = 0;
  auto batch = Collate({&a, &b}, 1);
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_TRUE(torch::equal(batch->input_ids, torch::tensor({4, 1, 1, 5, 6, 7}, torch::kInt64).view({2, 3})));
  EXPECT_TRUE(torch::equal(batch->attention_mask, torch::tensor({1, 0, 0, 1, 1, 1}, torch::kInt64).view({2, 3})));
  EXPECT_TRUE(torch::equal(batch->labels, torch::tensor({2, 0}, torch::kInt64)));
  EXPECT_EQ(batch->num_targets, 2);
}

TEST(Collate, RejectsEmptyAndMixedBatches) {
  EXPECT_FALSE(Collate({}, 0).ok());
  Example a = Causal({4, 5}, {4, 5});
  Example b;
  b.input_ids = {4};
  b.label = 0;
  EXPECT_THAT(Collate({&a, &b}, 0).status().message(), HasSubstr("mixed"));
  EXPECT_FALSE(Collate({&a, nullptr}, 0).ok());
}

TEST_F(DataTest, ReadThenBatchEndToEnd) {
  std::string text;
  for (int i = 0; i < 6; ++i) text += "{\"prompt\": \"p" + std::to_string(i) + "\", \"completion\": \"c\"}\n";
  auto data = ReadDataset(Write(text), Options(DataTask::kCausalLm));
  ASSERT_TRUE(data.ok()) << data.status();
  auto sampler = BatchSampler::Create(static_cast<int64_t>(data->examples.size()), Batching(4, 2, 2, 1));
  ASSERT_TRUE(sampler.ok());
  for (const auto& micro : sampler->MicroBatches({0, 0})) {
    std::vector<const Example*> rows;
    for (int64_t i : micro) rows.push_back(&data->examples[static_cast<size_t>(i)]);
    auto batch = Collate(rows, tokenizer_.pad_id());
    ASSERT_TRUE(batch.ok());
    EXPECT_EQ(batch->input_ids.sizes(), (std::vector<int64_t>{2, 5}));
    EXPECT_EQ(batch->num_targets, 4);  // "c" and EOS per row
  }
}

// A data file is any file the job names (/proc/self/environ, another tenant's file): what an
// error quotes of it is short and one line, whatever the bytes.
TEST_F(DataTest, ErrorsQuoteABoundedSanitisedExcerptOfTheLine) {
  const std::string environ =
      std::string("HOME=/root\0TOKEN=", 17) + std::string(4000, 's') + std::string("\0", 1);
  const std::string bad_label = "{\"text\": \"a\", \"label\": \"" + std::string(4000, 's') +
                                "\\n\\u001b\"}\n";
  const std::string bad_value = "{\"text\": \"a\", \"label\": [\"" + std::string(4000, 's') + "\"]}\n";
  const std::string bad_json = "{\"text\": \"" + std::string(4000, 's') + "\x01\x7f\"}\n";
  DataOptions options = Options(DataTask::kClassification);
  LabelMap map = *LabelMap::Create({"neg", "pos"});
  const std::vector<std::pair<std::string, bool>> cases = {
      {environ, false}, {bad_label, true}, {bad_value, false}, {bad_json, false}};
  for (const auto& [text, use_map] : cases) {
    DataOptions with_map = options;
    if (use_map) with_map.label_map = &map;
    absl::StatusOr<Dataset> data = ReadDataset(Write(text), with_map);
    ASSERT_FALSE(data.ok());
    const std::string message(data.status().message());
    EXPECT_LT(message.size(), dir_.string().size() + 400) << message;
    EXPECT_EQ(message.find(std::string(100, 's')), std::string::npos) << message;
    for (char bad : {'\n', '\x1b', '\x01', '\x7f', '\0'}) {
      EXPECT_EQ(message.find(bad), std::string::npos) << message;
    }
  }
}

}  // namespace
}  // namespace loratrf::engine
