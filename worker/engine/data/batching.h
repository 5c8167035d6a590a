// Batching: the order in which examples are seen, which rank sees which, and how a micro-batch
// becomes tensors.
//
// Shuffling is a pure function of (seed, epoch), identical on every standard library and
// machine, so that resuming needs only a Cursor and every rank computes the same global order:
//   epoch_seed = SplitMix64(seed ^ SplitMix64(epoch))
//   rng        = std::mt19937_64(epoch_seed)      (its output sequence is fixed by the standard)
//   Below(n)   = r % n for the first r = rng() with r >= (2^64 - n) % n   (unbiased rejection)
//   Fisher-Yates: order = [0, n); for i = n-1 down to 1: swap(order[i], order[Below(i + 1)])
// std::shuffle and std::uniform_int_distribution are not used: their algorithms are
// implementation-defined, and a different standard library would see different data.
//
// Sharding: every optimizer step takes the next `batch_size` examples of the epoch's order (the
// global batch). Rank r takes the contiguous slice [r * b, (r + 1) * b) of it, b = batch_size /
// world_size, and splits it into micro-batches of micro_batch_size (gradient accumulation).
// So the ranks' slices are disjoint and together are the global batch, whatever world_size:
// N ranks see the same data per step as one rank, and a Cursor saved with one world size
// resumes with another. The last partial global batch of an epoch is dropped (different
// examples each epoch, since the order changes); steps_per_epoch = num_examples / batch_size.
//
// Collate: right padding to the longest sequence of the micro-batch (dynamic padding). Causal
// labels stay aligned with input_ids; the loss shifts them (transformers' convention).
//
// Packing (optional, causal_lm): PackExamples concatenates consecutive examples into rows of at
// most max_seq_len tokens before batching. See its comment for what it changes.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/data/examples.h"
#include <torch/types.h>

namespace loratrf::engine {

// The splitmix64 finalizer (Steele, Lea, Flood 2014) of x + 0x9E3779B97F4A7C15: a bijective
// mix that turns nearby seeds (42, 43) and epochs (0, 1) into unrelated 64-bit values.
uint64_t SplitMix64(uint64_t x);

// The permutation of [0, num_examples) for `epoch` (the algorithm in the file comment).
std::vector<int64_t> ShuffledOrder(int64_t num_examples, uint64_t seed, int64_t epoch);

// Where the trainer is in the data: the next optimizer step to run is step `step_in_epoch`
// (0-based) of epoch `epoch` (0-based). The trainer checkpoints it and resumes from it.
struct Cursor {
  int64_t epoch = 0;
  int64_t step_in_epoch = 0;
  bool operator==(const Cursor& other) const {
    return epoch == other.epoch && step_in_epoch == other.step_in_epoch;
  }
  bool operator!=(const Cursor& other) const { return !(*this == other); }
};

struct BatchingOptions {
  int64_t batch_size = 0;        // global: examples per optimizer step over all ranks
  int64_t micro_batch_size = 0;  // examples per forward/backward on one rank
  int64_t world_size = 1;
  int64_t rank = 0;              // in [0, world_size)
  uint64_t seed = 0;
  bool shuffle = true;           // false: file order every epoch
};

// Threading: single-threaded (caches the current epoch's order); one per rank, used by the
// training loop's thread.
class BatchSampler {
 public:
  // Requires batch_size = micro_batch_size × accumulation × world_size for a whole accumulation,
  // and at least one global batch of examples.
  static absl::StatusOr<BatchSampler> Create(int64_t num_examples, const BatchingOptions& options);

  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  // Micro-batches per rank per optimizer step.
  int64_t accumulation_steps() const { return accumulation_steps_; }
  int64_t rank_batch_size() const { return options_.batch_size / options_.world_size; }
  const BatchingOptions& options() const { return options_; }

  // OK when `cursor` is a step of this sampler (epoch >= 0, step in [0, steps_per_epoch)).
  absl::Status CheckCursor(const Cursor& cursor) const;
  // The step after `cursor`, moving to the next epoch after the last step.
  Cursor Next(const Cursor& cursor) const;

  // Example indices of step `cursor` (which must pass CheckCursor): all ranks' (batch_size),
  // this rank's slice (rank_batch_size), and that slice as accumulation_steps() micro-batches.
  std::vector<int64_t> GlobalBatch(const Cursor& cursor);
  std::vector<int64_t> RankBatch(const Cursor& cursor);
  std::vector<std::vector<int64_t>> MicroBatches(const Cursor& cursor);

 private:
  BatchSampler(int64_t num_examples, BatchingOptions options);
  const std::vector<int64_t>& Order(int64_t epoch);

  int64_t num_examples_;
  BatchingOptions options_;
  int64_t steps_per_epoch_;
  int64_t accumulation_steps_;
  int64_t cached_epoch_ = -1;          // the epoch whose order `order_` holds
  std::vector<int64_t> order_;
};

// Eval: every example exactly once, no shuffling, nothing dropped. Rank r takes the contiguous
// range [r * n / W, (r + 1) * n / W) in file order, in micro-batches of `micro_batch_size` (the
// last may be smaller; a rank may get none when n < W).
std::vector<std::vector<int64_t>> EvalBatches(int64_t num_examples, int64_t micro_batch_size,
                                              int64_t world_size, int64_t rank);

// Sequence packing for causal_lm, done once in file order (so it is deterministic and the
// shuffle then moves whole rows): consecutive examples are concatenated, without separators,
// while the row stays within max_seq_len; an example that does not fit starts the next row
// (examples are never split). Within a row attention crosses example boundaries, and position
// ids continue, as in transformers' run_clm group_texts; only the first token of each packed
// example loses its label (-100), so that no loss term predicts one example from another.
// Effect: rows are nearly full, so far fewer pad tokens are computed when lengths vary
// (throughput in tokens/s rises by about the padding fraction saved), and there are fewer,
// longer rows, so an epoch has fewer optimizer steps. Examples must come from ReadDataset
// (each within max_seq_len); `line` of a packed row is its first example's line.
std::vector<Example> PackExamples(const std::vector<Example>& examples, int64_t max_seq_len);

// A micro-batch as tensors (CPU, int64); the trainer moves them to its device.
struct Batch {
  torch::Tensor input_ids;       // [B, T], right-padded with pad_id; T = longest in the batch
  torch::Tensor attention_mask;  // [B, T], 1 for tokens, 0 for padding
  // causal_lm: [B, T] aligned with input_ids (not shifted), -100 at padding and prompt tokens;
  // classification: [B] class ids.
  torch::Tensor labels;
  int64_t num_tokens = 0;   // real (non-pad) tokens
  // Loss terms: causal_lm, positions t >= 1 whose label is not -100 (what the shifted loss
  // averages over); classification, B. The trainer normalises by the global sum over
  // micro-batches and ranks so that accumulation and data parallelism do not change the loss.
  int64_t num_targets = 0;
};

// Examples with labels are causal_lm, without are classification; a mix, an empty list or a
// null pointer is INVALID_ARGUMENT.
absl::StatusOr<Batch> Collate(const std::vector<const Example*>& examples, int64_t pad_id);

}  // namespace loratrf::engine
