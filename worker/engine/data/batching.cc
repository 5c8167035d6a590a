#include "worker/engine/data/batching.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"

namespace loratrf::engine {
namespace {

// An unbiased draw from [0, n) (n >= 1): rejecting the lowest (2^64 mod n) values leaves a
// range whose size is a multiple of n. Fully specified, unlike uniform_int_distribution.
uint64_t Below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t threshold = (0 - n) % n;  // (2^64 - n) mod n == 2^64 mod n
  uint64_t r = rng();
  while (r < threshold) r = rng();
  return r % n;
}

}  // namespace

uint64_t SplitMix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::vector<int64_t> ShuffledOrder(int64_t num_examples, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(std::max<int64_t>(num_examples, 0)));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  std::mt19937_64 rng(SplitMix64(seed ^ SplitMix64(static_cast<uint64_t>(epoch))));
  for (size_t i = order.size(); i-- > 1;) {
    std::swap(order[i], order[Below(rng, i + 1)]);
  }
  return order;
}

// ---- BatchSampler ----

absl::StatusOr<BatchSampler> BatchSampler::Create(int64_t num_examples,
                                                  const BatchingOptions& options) {
  if (options.world_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("world_size must be >= 1, got ", options.world_size));
  }
  if (options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", options.rank, " is out of [0, ", options.world_size, ")"));
  }
  if (options.micro_batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("micro_batch_size must be >= 1, got ", options.micro_batch_size));
  }
  if (options.batch_size < 1 || options.batch_size % (options.micro_batch_size * options.world_size) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch_size ", options.batch_size, " must be a positive multiple of micro_batch_size ",
        options.micro_batch_size, " × world size ", options.world_size));
  }
  if (num_examples < options.batch_size) {
    return absl::InvalidArgumentError(absl::StrCat("the data has ", num_examples,
                                                   " examples, fewer than one batch of ",
                                                   options.batch_size));
  }
  return BatchSampler(num_examples, options);
}

BatchSampler::BatchSampler(int64_t num_examples, BatchingOptions options)
    : num_examples_(num_examples),
      options_(options),
      steps_per_epoch_(num_examples / options.batch_size),
      accumulation_steps_(options.batch_size / (options.micro_batch_size * options.world_size)) {}

absl::Status BatchSampler::CheckCursor(const Cursor& cursor) const {
  if (cursor.epoch < 0 || cursor.step_in_epoch < 0 || cursor.step_in_epoch >= steps_per_epoch_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data cursor (epoch ", cursor.epoch, ", step ", cursor.step_in_epoch,
        ") does not fit this data: an epoch has ", steps_per_epoch_, " steps"));
  }
  return absl::OkStatus();
}

Cursor BatchSampler::Next(const Cursor& cursor) const {
  if (cursor.step_in_epoch + 1 < steps_per_epoch_) return {cursor.epoch, cursor.step_in_epoch + 1};
  return {cursor.epoch + 1, 0};
}

const std::vector<int64_t>& BatchSampler::Order(int64_t epoch) {
  if (epoch != cached_epoch_) {
    if (options_.shuffle) {
      order_ = ShuffledOrder(num_examples_, options_.seed, epoch);
    } else {
      order_.resize(static_cast<size_t>(num_examples_));
      for (size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<int64_t>(i);
    }
    cached_epoch_ = epoch;
  }
  return order_;
}

std::vector<int64_t> BatchSampler::GlobalBatch(const Cursor& cursor) {
  const std::vector<int64_t>& order = Order(cursor.epoch);
  auto begin = order.begin() + cursor.step_in_epoch * options_.batch_size;
  return std::vector<int64_t>(begin, begin + options_.batch_size);
}

std::vector<int64_t> BatchSampler::RankBatch(const Cursor& cursor) {
  const std::vector<int64_t>& order = Order(cursor.epoch);
  const int64_t size = rank_batch_size();
  auto begin = order.begin() + cursor.step_in_epoch * options_.batch_size + options_.rank * size;
  return std::vector<int64_t>(begin, begin + size);
}

std::vector<std::vector<int64_t>> BatchSampler::MicroBatches(const Cursor& cursor) {
  std::vector<int64_t> mine = RankBatch(cursor);
  std::vector<std::vector<int64_t>> micro;
  for (size_t start = 0; start < mine.size(); start += static_cast<size_t>(options_.micro_batch_size)) {
    micro.emplace_back(mine.begin() + static_cast<std::ptrdiff_t>(start),
                       mine.begin() + static_cast<std::ptrdiff_t>(start + options_.micro_batch_size));
  }
  return micro;
}

std::vector<std::vector<int64_t>> EvalBatches(int64_t num_examples, int64_t micro_batch_size,
                                              int64_t world_size, int64_t rank) {
  std::vector<std::vector<int64_t>> batches;
  if (num_examples <= 0 || micro_batch_size <= 0 || world_size <= 0 || rank < 0 || rank >= world_size) {
    return batches;
  }
  const int64_t begin = rank * num_examples / world_size;
  const int64_t end = (rank + 1) * num_examples / world_size;
  for (int64_t start = begin; start < end; start += micro_batch_size) {
    std::vector<int64_t> batch;
    for (int64_t i = start; i < std::min(end, start + micro_batch_size); ++i) batch.push_back(i);
    batches.push_back(std::move(batch));
  }
  return batches;
}

std::vector<Example> PackExamples(const std::vector<Example>& examples, int64_t max_seq_len) {
  std::vector<Example> rows;
  const size_t limit = static_cast<size_t>(std::max<int64_t>(max_seq_len, 1));
  for (const Example& example : examples) {
    if (rows.empty() || rows.back().input_ids.size() + example.input_ids.size() > limit) {
      rows.push_back(example);  // starts a row: its first token is position 0, never a target
      continue;
    }
    Example& row = rows.back();
    const size_t boundary = row.labels.size();
    row.input_ids.insert(row.input_ids.end(), example.input_ids.begin(), example.input_ids.end());
    row.labels.insert(row.labels.end(), example.labels.begin(), example.labels.end());
    // The first token would be predicted from the previous example's last token: not a target.
    if (row.labels.size() > boundary) row.labels[boundary] = kIgnoreIndex;
  }
  return rows;
}

absl::StatusOr<Batch> Collate(const std::vector<const Example*>& examples, int64_t pad_id) {
  if (examples.empty()) return absl::InvalidArgumentError("Collate: no examples");
  for (const Example* example : examples) {
    if (example == nullptr) return absl::InvalidArgumentError("Collate: null example");
  }
  const bool causal = !examples[0]->labels.empty();
  size_t longest = 0;
  for (const Example* example : examples) {
    if (example->labels.empty() == causal) {
      return absl::InvalidArgumentError("Collate: causal_lm and classification examples mixed");
    }
    if (causal && example->labels.size() != example->input_ids.size()) {
      return absl::InvalidArgumentError(absl::StrCat("Collate: line ", example->line,
                                                     ": labels and input_ids differ in length"));
    }
    if (example->input_ids.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("Collate: line ", example->line, ": no tokens"));
    }
    longest = std::max(longest, example->input_ids.size());
  }
  const int64_t rows = static_cast<int64_t>(examples.size());
  const int64_t width = static_cast<int64_t>(longest);
  Batch batch;
  batch.input_ids = torch::full({rows, width}, pad_id, torch::kInt64);
  batch.attention_mask = torch::zeros({rows, width}, torch::kInt64);
  batch.labels = causal ? torch::full({rows, width}, kIgnoreIndex, torch::kInt64)
                        : torch::empty({rows}, torch::kInt64);
  // Fresh contiguous CPU tensors: fill them through raw pointers, row-major.
  int64_t* ids = batch.input_ids.data_ptr<int64_t>();
  int64_t* mask = batch.attention_mask.data_ptr<int64_t>();
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  for (int64_t b = 0; b < rows; ++b) {
    const Example& example = *examples[static_cast<size_t>(b)];
    std::copy(example.input_ids.begin(), example.input_ids.end(), ids + b * width);
    std::fill_n(mask + b * width, example.input_ids.size(), int64_t{1});
    batch.num_tokens += static_cast<int64_t>(example.input_ids.size());
    if (causal) {
      std::copy(example.labels.begin(), example.labels.end(), labels + b * width);
      batch.num_targets += CountLossTokens(example.labels);
    } else {
      labels[b] = example.label;
      batch.num_targets += 1;
    }
  }
  return batch;
}

}  // namespace loratrf::engine
