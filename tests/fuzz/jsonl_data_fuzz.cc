// Fuzz target: the JSONL data reader (worker/engine/data/examples.h). The first byte picks the
// options (task, max_seq_len, vocab size, label bounds, a tokenizer or none, a label map or
// none); the rest is the data file. Any input must give a dataset or an error, never a crash; a
// dataset must keep every promise of examples.h (ids in range, lengths, labels, token count),
// and an error must be a non-empty INVALID_ARGUMENT.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "worker/engine/data/examples.h"
#include "worker/engine/data/tokenizer.h"

namespace {

using loratrf::engine::DataOptions;
using loratrf::engine::DataTask;
using loratrf::engine::kIgnoreIndex;

void Check(bool ok) {
  if (!ok) std::abort();
}

// A tokenizer with one token a byte (ids 3..258), BOS 1 and EOS 2; "\xff" cannot be encoded,
// to reach the reader's handling of tokenizer errors.
class ByteTokenizer final : public loratrf::engine::Tokenizer {
 public:
  absl::StatusOr<std::vector<int64_t>> Encode(absl::string_view text,
                                              bool add_special_tokens) const override {
    std::vector<int64_t> ids;
    if (add_special_tokens) ids.push_back(1);
    for (unsigned char c : text) {
      if (c == 0xff) return absl::InvalidArgumentError("byte 0xff cannot be encoded");
      ids.push_back(3 + c);
    }
    return ids;
  }
  absl::StatusOr<std::vector<int64_t>> EncodePair(absl::string_view a,
                                                  absl::string_view b) const override {
    auto first = Encode(a, true);
    if (!first.ok()) return first.status();
    auto second = Encode(b, false);
    if (!second.ok()) return second.status();
    first->insert(first->end(), second->begin(), second->end());
    return first;
  }
  int64_t pad_id() const override { return 0; }
  std::optional<int64_t> eos_id() const override { return 2; }
};

// The reader takes a path: each input is written to one file per process, removed at exit.
struct DataFile {
  std::string path = absl::StrCat("/tmp/loratrf_jsonl_fuzz_", ::getpid(), ".jsonl");
  ~DataFile() { ::unlink(path.c_str()); }
};

const std::string& DataPath() {
  static const DataFile file;
  return file.path;
}

void CheckError(const absl::Status& status) {
  Check(!status.ok());
  Check(!status.message().empty());
  Check(status.code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t knobs = data[0];
  absl::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  {
    std::ofstream out(DataPath(), std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
  }
  static const ByteTokenizer tokenizer;
  static const loratrf::engine::LabelMap label_map =
      *loratrf::engine::LabelMap::Create({"neg", "pos"});

  DataOptions options;
  options.task = (knobs & 1) ? DataTask::kClassification : DataTask::kCausalLm;
  options.max_seq_len = (knobs & 2) ? 4 : 64;
  options.vocab_size = (knobs & 4) ? 16 : 300;
  options.num_labels = (knobs & 8) ? 2 : 0;
  if (options.task == DataTask::kClassification && options.num_labels == 0 && (knobs & 16)) {
    options.num_labels = 3;
  }
  options.tokenizer = (knobs & 32) ? nullptr : &tokenizer;
  options.label_map = (knobs & 64) ? &label_map : nullptr;
  options.max_file_bytes = (knobs & 128) ? 64 : uint64_t{1} << 30;

  absl::StatusOr<loratrf::engine::Dataset> dataset =
      loratrf::engine::ReadDataset(DataPath(), options);
  if (!dataset.ok()) {
    CheckError(dataset.status());
  } else {
    Check(!dataset->examples.empty());
    int64_t tokens = 0, truncated_bound = 0;
    int64_t previous_line = 0;
    for (const loratrf::engine::Example& example : dataset->examples) {
      Check(!example.input_ids.empty());
      Check(static_cast<int64_t>(example.input_ids.size()) <= options.max_seq_len);
      for (int64_t id : example.input_ids) Check(id >= 0 && id < options.vocab_size);
      Check(example.line > previous_line);
      previous_line = example.line;
      tokens += static_cast<int64_t>(example.input_ids.size());
      if (options.task == DataTask::kCausalLm) {
        Check(example.labels.size() == example.input_ids.size());
        for (int64_t label : example.labels) {
          Check(label == kIgnoreIndex || (label >= 0 && label < options.vocab_size));
        }
        Check(loratrf::engine::CountLossTokens(example.labels) > 0);
        Check(example.label == -1);
      } else {
        Check(example.labels.empty());
        Check(example.label >= 0);
        if (options.num_labels > 0) Check(example.label < options.num_labels);
        if (!dataset->label_map.empty()) Check(example.label < dataset->label_map.size());
      }
      ++truncated_bound;
    }
    Check(tokens == dataset->num_tokens);
    Check(dataset->num_truncated >= 0 && dataset->num_truncated <= truncated_bound);
    if (options.label_map != nullptr && !dataset->label_map.empty()) {
      Check(dataset->label_map == *options.label_map);
    }
  }
  if (options.task == DataTask::kClassification) {
    absl::StatusOr<int64_t> classes =
        loratrf::engine::CountClasses(DataPath(), options.max_file_bytes);
    if (classes.ok()) {
      Check(*classes >= 2 && *classes <= loratrf::engine::kMaxClasses);
    } else {
      CheckError(classes.status());
    }
  }
  // The label map reader, on the same bytes.
  absl::StatusOr<loratrf::engine::LabelMap> map = loratrf::engine::LabelMap::FromJson(text);
  if (map.ok()) {
    absl::StatusOr<loratrf::engine::LabelMap> again =
        loratrf::engine::LabelMap::FromJson(map->ToJson());
    Check(again.ok() && *again == *map);
  } else {
    CheckError(map.status());
  }
  return 0;
}
