// Training and eval data: JSONL files (one JSON object a line) read into token-id examples.
//
// Formats (extra keys on a line are ignored, so a datasets-exported file with more columns works):
//   classification  {"text": str, "label": int|str}  optionally with "text_pair": str
//                   {"input_ids": [int...], "label": int|str}
//   causal_lm       {"prompt": str, "completion": str}
//                   {"instruction": str, "input": str (optional, may be ""), "output": str}
//                   {"input_ids": [int...]}                  loss on every token
//                   {"input_ids": [int...], "labels": [int...]}  same length, -100 = no loss
//                   {"prompt_ids": [int...], "completion_ids": [int...]}
// When a line has several of these, the first in this order wins: input_ids, prompt_ids,
// instruction, prompt (text columns left beside input_ids by a tokenizing script are ignored).
//
// Text encoding (through Tokenizer):
//   - classification: Encode(text, special tokens) or EncodePair(text, text_pair).
//   - prompt/completion: Encode(prompt, special tokens) ++ Encode(completion, no special tokens)
//     ++ [eos]. Encoding the two parts separately makes the loss boundary exact (no token can
//     straddle it); a tokenizer that marks the start of every input as a word start (SentencePiece)
//     therefore sees the completion as a new word, which is what a completion usually is.
//     EOS (when the tokenizer has one) is appended so that the model learns to stop.
//   - instruction/input/output: the prompt is the Stanford Alpaca template (kAlpacaPrompt…
//     below) filled with instruction and input; the completion is the output.
//   - Pre-tokenized ids are taken as they are: no special tokens and no EOS are added.
//
// Labels (causal_lm) are aligned with input_ids, not shifted: labels[t] is the target for
// position t, and the loss shifts (predicts labels[t] from positions < t), as transformers'
// *ForCausalLM does. Hence labels[0] is never a target. Prompt tokens are -100 (kIgnoreIndex).
//
// Truncation to max_seq_len: the end is cut, for both tasks. For causal_lm this keeps the start
// of the prompt and cuts the end of the completion (or of the prompt, and then all of the
// completion). An example left with no target (no t >= 1 with labels[t] != -100) is an error
// naming its line, never a silent drop: raise max_seq_len or shorten that prompt.
//
// Errors: every bad line is reported as "<file>:<line>: <field>: <rule>" (the first few bad
// lines in one status, so that one run shows them together). Blank lines (whitespace only) are
// skipped; nothing else is. Lines longer than 1 MiB, files larger than max_file_bytes, a missing
// file, and a file with no examples are errors. A user's data error is INVALID_ARGUMENT.
//
// Threading: ReadDataset keeps no state between calls; concurrent calls are safe when the
// tokenizer's const methods are (tokenizer.h requires it). Example and Dataset are plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/engine/data/tokenizer.h"

namespace loratrf::engine {

// The label value that the loss ignores (PyTorch's cross_entropy ignore_index default).
inline constexpr int64_t kIgnoreIndex = -100;
// The longest line the reader accepts; a longer one is an error (and would be a huge example).
inline constexpr size_t kMaxLineBytes = size_t{1} << 20;

// Stanford Alpaca's prompt templates, for {"instruction", "input", "output"} lines.
inline constexpr absl::string_view kAlpacaPromptWithInput =
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";
inline constexpr absl::string_view kAlpacaPromptNoInput =
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n";

enum class DataTask {
  kClassification,  // one label per example (sequence classification)
  kCausalLm,        // next-token prediction on the labelled tokens
};

struct Example {
  std::vector<int64_t> input_ids;  // never empty, at most max_seq_len, each in [0, vocab_size)
  // causal_lm: per-token targets aligned with input_ids (same length), kIgnoreIndex where no
  // loss; empty for classification.
  std::vector<int64_t> labels;
  int64_t label = -1;  // classification: the class id in [0, num_labels); -1 for causal_lm
  int64_t line = 0;    // 1-based line of the source file, for messages
};

// String class names ↔ ids. Built from a training file the ids are the names' sorted (bytewise)
// order, so that the same set of names always gets the same ids, whatever the line order; eval
// data and a resumed run reuse the saved map, so train and eval agree.
// Threading: immutable after construction; const methods are safe from any thread.
class LabelMap {
 public:
  LabelMap() = default;  // empty: the data uses integer labels
  // `names` in id order; they must be unique and non-empty.
  static absl::StatusOr<LabelMap> Create(std::vector<std::string> names);

  // The JSON form {"labels": [names in id order]}.
  std::string ToJson() const;
  static absl::StatusOr<LabelMap> FromJson(absl::string_view text);
  // Writes ToJson() atomically (temp file, fsync, rename) to `path`.
  absl::Status Save(const std::string& path) const;
  static absl::StatusOr<LabelMap> Load(const std::string& path);

  std::optional<int64_t> Find(absl::string_view name) const;
  const std::vector<std::string>& names() const { return names_; }
  int64_t size() const { return static_cast<int64_t>(names_.size()); }
  bool empty() const { return names_.empty(); }
  bool operator==(const LabelMap& other) const { return names_ == other.names_; }

 private:
  explicit LabelMap(std::vector<std::string> names) : names_(std::move(names)) {}
  std::vector<std::string> names_;  // id → name; sorted when built from data
};

struct DataOptions {
  DataTask task = DataTask::kCausalLm;
  int64_t max_seq_len = 0;  // > 0; longer examples are truncated (see above)
  int64_t vocab_size = 0;   // > 0; every id (given or from the tokenizer) must be below it
  // Classification: integer labels must be in [0, num_labels) (required for them); string
  // labels may have at most num_labels distinct names. 0: no bound for string labels.
  int64_t num_labels = 0;
  // Encodes text fields; null when the model has no tokenizer.json (then only ids are accepted).
  const Tokenizer* tokenizer = nullptr;
  // Classification with string labels: null builds the map from this file (training data);
  // non-null (eval data, a resumed run) requires every string label to be in it.
  const LabelMap* label_map = nullptr;
  uint64_t max_file_bytes = uint64_t{4} << 30;
};

struct Dataset {
  std::vector<Example> examples;  // in file order, never empty
  LabelMap label_map;             // the string labels' map (empty for integer labels)
  int64_t num_tokens = 0;         // sum of input_ids lengths
  int64_t num_truncated = 0;      // examples cut to max_seq_len
};

// Reads `path` (see the file comment). Errors: NOT_FOUND for a missing file, INVALID_ARGUMENT
// for bad data or options, the tokenizer's own errors wrapped with file:line:field.
absl::StatusOr<Dataset> ReadDataset(const std::string& path, const DataOptions& options);

// The number of classes a classification file implies, for a model whose config does not say:
// max + 1 for integer labels, the distinct names for string labels. The same label rules as
// ReadDataset (one kind throughout, every bad line named by file:line:field), without tokenizing.
// At least 2; integer labels below kMaxClasses.
inline constexpr int64_t kMaxClasses = int64_t{1} << 20;
absl::StatusOr<int64_t> CountClasses(const std::string& path,
                                     uint64_t max_file_bytes = uint64_t{4} << 30);

// The number of positions the shifted causal loss uses: t >= 1 with labels[t] != -100.
int64_t CountLossTokens(const std::vector<int64_t>& labels);

}  // namespace loratrf::engine
