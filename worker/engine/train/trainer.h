// The training loop of one rank: data → micro-batches → forward/backward → gradient averaging
// across ranks → clipping → AdamW → schedule, with evaluation, metrics.jsonl, crash-safe
// checkpoints and exact resume.
//
// Output directory (the `loratrf-worker run` contract, docs/api.md):
//   checkpoints/<step>/   adapter_config.json, adapter_model.safetensors (or a full model's
//                         config.json + model.safetensors), trainer_state.safetensors
//                         (trainable tensors, AdamW moments, RNG), trainer_state.json,
//                         label_map.json, MANIFEST.json
//   final/                the adapter (or model) at the end of training
//   metrics.jsonl         one JSON object per step ("type": "train") and evaluation ("eval")
// Rank 0 writes files; every rank computes. Rerunning on the same output directory resumes from
// the latest committed checkpoint and ends with the same result as an uninterrupted run.
//
// Stopping early (SIGTERM on drain or eviction): TrainJob::stop_requested is polled once per
// step and folded into the all-reduce every step already runs, so all ranks see the same answer
// and stop after the same step, whichever of them was asked first and when. They then commit a
// checkpoint at that step (unless it was just committed) and Train() returns with
// TrainResult::stopped; asked before the first step, they stop at once without one.
//
// Threading: Train() runs on the calling thread and owns everything it creates.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/adapters/adapter_settings.h"
#include "worker/engine/data/examples.h"
#include "worker/engine/dist/communicator.h"
#include "worker/engine/train/lr_schedule.h"

namespace loratrf::engine {

struct TrainJob {
  std::string model_dir;
  std::string train_path;
  std::string eval_path;   // "" for none
  std::string output_dir;
  DataTask task = DataTask::kCausalLm;
  bool full_finetune = false;
  AdapterSettings adapter;  // LoRA / LoRATRF, when not full_finetune
  // Classification with integer labels on a checkpoint without a classification head: the
  // number of classes (the caller counts them in the data). 0 otherwise.
  int64_t num_labels = 0;

  int64_t epochs = 1;
  int64_t max_steps = 0;  // 0: no limit beyond epochs
  int64_t batch_size = 8;
  int64_t micro_batch_size = 8;
  int64_t max_seq_len = 256;
  bool packing = false;
  double learning_rate = 3e-4;
  LrScheduleKind schedule = LrScheduleKind::kCosine;
  double warmup_ratio = 0.0;
  double max_grad_norm = 1.0;
  double weight_decay = 0.0;
  uint64_t seed = 42;
  // CUDA: the model, batches and collectives live on GPU `cuda_device` (NCCL between ranks);
  // bf16 holds the frozen weights in bf16 and computes under bf16 autocast (adapters, saved
  // modules and optimizer state stay float32). CPU: float32 (bf16 is ignored), Gloo.
  bool cuda = false;
  int cuda_device = 0;
  bool bf16 = false;
  int64_t eval_every_steps = 0;        // 0: at the end only
  int64_t checkpoint_every_steps = 0;  // 0: final only
  uint32_t keep_checkpoints = 3;
  // True once this rank was asked to stop (async-signal-safe flag behind it); unset: never.
  // Called on the training thread once per step.
  std::function<bool()> stop_requested;
};

struct TrainResult {
  int64_t steps = 0;           // optimizer steps in total (including those before a resume)
  int64_t resumed_from = 0;    // the checkpoint's step, 0 for a fresh start
  double last_loss = 0;
  std::optional<double> eval_loss;
  std::optional<double> eval_accuracy;
  std::string final_dir;      // "" when stopped
  // Every rank agreed to stop after `steps`; the checkpoint at that step is committed (none
  // when no step was done by this run: the run resumes from where it started).
  bool stopped = false;
};

// Runs (or resumes) the job on this rank. `progress` (rank 0 only, may be null) gets one line
// per step. User errors (bad data, a spec that does not fit the model) are INVALID_ARGUMENT;
// a lost peer is UNAVAILABLE or DEADLINE_EXCEEDED.
absl::StatusOr<TrainResult> Train(const TrainJob& job, Communicator& communicator,
                                  std::ostream* progress);

}  // namespace loratrf::engine
