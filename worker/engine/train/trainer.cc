#include "worker/engine/train/trainer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "worker/engine/adapters/adapter_io.h"
#include "worker/engine/adapters/adapter_model.h"
#include "common/atomic_file.h"
#include "common/json_parse.h"
#include "common/read_file.h"
#include "common/text.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "proto/contract/metrics_jsonl.h"
#include "proto/contract/run_output.h"
#include "worker/engine/checkpoint/checkpoint_store.h"
#include "worker/engine/checkpoint/safetensors.h"
#include "worker/engine/checkpoint/tensor_io.h"
#include "worker/engine/data/batching.h"
#include "worker/engine/dist/gradient_reducer.h"
#include "worker/engine/model/hf_checkpoint.h"
#include "worker/engine/tokenizer/hf_tokenizer.h"
#include "worker/engine/train/cross_entropy.h"
#include "worker/engine/train/device_stats.h"
#include "worker/engine/train/grad_clip.h"
#include "worker/engine/train/optimizer.h"

namespace loratrf::engine {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr char kTrainerStateTensors[] = "trainer_state.safetensors";
constexpr char kTrainerStateJson[] = "trainer_state.json";
constexpr uint64_t kMaxTrainerStateBytes = 1 << 20;  // a few numbers; anything larger is not ours
constexpr char kLabelMapFile[] = "label_map.json";

// `status` with its message led by the spec field whose file it concerns ("data.train: ...").
absl::Status InField(absl::string_view field, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(field, ": ", status.message()));
}

// Sum of the per-target losses of one micro-batch, and (for evaluation) correct predictions.
// Both stay on the device: reading them on the host would wait for the GPU every micro-batch.
struct LossSums {
  torch::Tensor loss_sum;  // float32 scalar, differentiable
  torch::Tensor correct;   // int64 scalar, when asked for
};

LossSums ComputeLoss(TransformerModel& model, const Batch& batch, DataTask task, bool count_correct) {
  // A batch without padding goes without its mask: attention is then causal alone, which the
  // fused kernels do without any mask tensor (and no device tensor is read to find that out).
  const bool padded = batch.num_tokens < batch.input_ids.numel();
  ModelOutput out = model.Forward(batch.input_ids, padded ? batch.attention_mask : torch::Tensor());
  LossSums sums;
  torch::Tensor logits, targets;
  if (task == DataTask::kClassification) {
    logits = out.logits;
    targets = batch.labels;
  } else {
    // Position t predicts token t + 1 (transformers' shift), done on the targets: the last
    // position gets the ignored target, so the logits are used as they are, without a copy.
    logits = out.logits.reshape({-1, out.logits.size(-1)});
    targets = torch::cat({batch.labels.slice(1, 1),
                          torch::full({batch.labels.size(0), 1}, kIgnoreIndex, batch.labels.options())},
                         1)
                  .reshape({-1});
  }
  sums.loss_sum = CrossEntropySum(logits, targets);
  if (count_correct) {
    sums.correct = logits.argmax(-1).eq(targets).logical_and(targets.ne(kIgnoreIndex)).sum();
  }
  return sums;
}

absl::StatusOr<Batch> CollateIndices(const Dataset& data, const std::vector<int64_t>& indices,
                                     int64_t pad_id, const torch::Device& device) {
  std::vector<const Example*> examples;
  examples.reserve(indices.size());
  for (int64_t i : indices) examples.push_back(&data.examples[static_cast<size_t>(i)]);
  absl::StatusOr<Batch> batch = Collate(examples, pad_id);
  if (batch.ok() && !device.is_cpu()) {
    // From page-locked memory, without waiting: the copy queues behind the GPU's work instead
    // of stalling the host until the device is idle.
    for (torch::Tensor* t : {&batch->input_ids, &batch->attention_mask, &batch->labels}) {
      *t = t->pin_memory().to(torch::TensorOptions().device(device), /*non_blocking=*/true);
    }
  }
  return batch;
}

// bf16 autocast for the forward pass on CUDA, restored when the scope ends.
class AutocastScope {
 public:
  explicit AutocastScope(bool enable) : enabled_(enable) {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
#endif
  }
  ~AutocastScope() {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
    at::autocast::set_enabled(false);
#endif
    at::autocast::clear_cache();
  }

 private:
  bool enabled_;
};

int64_t Targets(const Dataset& data, const std::vector<int64_t>& indices, DataTask task) {
  if (task == DataTask::kClassification) return static_cast<int64_t>(indices.size());
  int64_t total = 0;
  for (int64_t i : indices) total += CountLossTokens(data.examples[static_cast<size_t>(i)].labels);
  return total;
}

NamedTensors TrainableParameters(TransformerModel& model) {
  NamedTensors out;
  for (auto& item : model.named_parameters()) {
    if (item.value().requires_grad()) out.emplace_back(item.key(), item.value());
  }
  return out;
}

std::string FormatSeconds(double seconds) {
  int64_t s = static_cast<int64_t>(seconds);
  std::ostringstream out;
  out << std::setfill('0') << std::setw(2) << s / 3600 << ":" << std::setw(2) << (s / 60) % 60
      << ":" << std::setw(2) << s % 60;
  return out.str();
}

// Appends one line to metrics.jsonl and flushes, so a crash loses at most the line in flight.
class MetricsLog {
 public:
  explicit MetricsLog(const std::string& path) : path_(path) {}
  // A resumed run replays from its checkpoint: drop what the crashed run logged after it.
  absl::Status TruncateAfter(int64_t step) {
    std::ifstream in(path_);
    if (!in) return absl::OkStatus();
    std::string kept, line;
    while (std::getline(in, line)) {
      std::optional<uint64_t> row_step = contract::MetricsLineStep(line);
      if (row_step && static_cast<int64_t>(*row_step) <= step) kept += line + "\n";
    }
    return WriteFileAtomically(path_, kept);
  }
  // With the reason (a full disk must say so): plain POSIX calls, whose errno is kept.
  absl::Status Append(const std::string& line) {
    const std::string text = line + "\n";
    const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Failed("cannot open it to append", errno);
    size_t written = 0;
    while (written < text.size()) {
      const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int error = n < 0 ? errno : EIO;
        ::close(fd);
        return Failed("cannot append", error);
      }
      written += static_cast<size_t>(n);
    }
    if (::close(fd) != 0 && errno != EINTR) return Failed("cannot append", errno);
    return absl::OkStatus();
  }

 private:
  absl::Status Failed(const char* what, int error) const {
    return absl::InternalError(absl::StrCat(path_, ": ", what, ": ", std::strerror(error)));
  }

  std::string path_;
};

// This rank's telemetry (ranks/<rank>.jsonl): started empty by each process, one line per
// step, evaluation and checkpoint, flushed as written so the agent sees each at once.
class TelemetryLog {
 public:
  absl::Status Open(const std::string& output_dir, int rank) {
    const std::string dir = absl::StrCat(output_dir, "/", contract::kRankTelemetryDirName);
    std::error_code ec;
    fs::create_directories(dir, ec);
    path_ = absl::StrCat(dir, "/", rank, ".jsonl");
    out_.open(path_, std::ios::trunc);
    return out_ ? absl::OkStatus()
                : absl::InternalError(absl::StrCat(path_, ": cannot create"));
  }
  // Telemetry is for watching: a write that fails is logged once, never fatal to training.
  template <typename Row>
  void Append(const Row& row) {
    if (!out_.is_open()) return;
    out_ << contract::ToJsonLine(row) << "\n";
    out_.flush();
    if (!out_ && !warned_) {
      warned_ = true;
      std::cerr << "loratrf-worker: " << path_ << ": cannot append telemetry\n";
    }
  }

 private:
  std::string path_;
  std::ofstream out_;
  bool warned_ = false;
};

double UnixSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class Trainer {
 public:
  Trainer(const TrainJob& job, Communicator& comm, std::ostream* progress)
      : job_(job), comm_(comm), progress_(comm.rank() == 0 ? progress : nullptr),
        metrics_(absl::StrCat(job.output_dir, "/", contract::kMetricsFileName)) {}

  absl::StatusOr<TrainResult> Run() {
    RETURN_IF_ERROR(Setup());
    TrainResult result;
    result.resumed_from = step_;
    result.final_dir = absl::StrCat(job_.output_dir, "/", contract::kFinalDirName);
    if (fs::exists(result.final_dir)) {
      // Already finished: rerunning a completed job changes nothing.
      ASSIGN_OR_RETURN(CheckpointManifest manifest, VerifyCheckpoint(result.final_dir));
      result.steps = static_cast<int64_t>(manifest.step);
      return result;
    }
    Cursor cursor{step_ / sampler_->steps_per_epoch(), step_ % sampler_->steps_per_epoch()};
    model_->train();
    if (step_ < total_steps_) {
      // Asked to stop while loading: nothing new to save, the run resumes from where it began.
      ASSIGN_OR_RETURN(const bool stop, AgreeToStop());
      if (stop) return Stopped(result);
    }
    while (step_ < total_steps_) {
      ASSIGN_OR_RETURN(result.last_loss, Step(cursor));
      cursor = sampler_->Next(cursor);
      if (step_ == total_steps_) break;  // the end gets its own evaluation and the final save
      std::optional<contract::EvalRow> eval;
      if (eval_ && job_.eval_every_steps > 0 && step_ % job_.eval_every_steps == 0) {
        ASSIGN_OR_RETURN(eval, Evaluate());
      }
      const bool scheduled = job_.checkpoint_every_steps > 0 && step_ % job_.checkpoint_every_steps == 0;
      if (scheduled || stop_agreed_) RETURN_IF_ERROR(SaveCheckpoint(/*final=*/false, eval));
      if (stop_agreed_) return Stopped(result);
    }
    std::optional<contract::EvalRow> eval;
    if (eval_) {
      ASSIGN_OR_RETURN(eval, Evaluate());
      result.eval_loss = eval->loss;
      result.eval_accuracy = eval->accuracy;
    }
    RETURN_IF_ERROR(SaveCheckpoint(/*final=*/true, eval));
    result.steps = step_;
    return result;
  }

 private:
  absl::Status Setup() {
    absl::StatusOr<ModelConfig> loaded_config = LoadModelConfig(job_.model_dir);
    if (!loaded_config.ok()) return InField("model.path", loaded_config.status());
    ModelConfig config = std::move(*loaded_config);
    const bool classify = job_.task == DataTask::kClassification;
    if (!classify && config.family != ModelFamily::kDecoder) {
      return absl::InvalidArgumentError(absl::StrCat("task causal_lm needs a decoder model; ",
                                                     job_.model_dir, " is ", config.model_type));
    }
    const std::string checkpoints = CheckpointsDir();
    std::vector<CheckpointManifest> saved = ListCheckpoints(checkpoints);
    std::optional<LabelMap> saved_labels;
    if (!saved.empty() && fs::exists(saved.back().dir + "/" + kLabelMapFile)) {
      ASSIGN_OR_RETURN(saved_labels, LabelMap::Load(saved.back().dir + "/" + kLabelMapFile));
    }

    // Text fields go through the model's own tokenizer.json; data given as ids needs none.
    std::unique_ptr<tokenizer::HfTokenizer> text_tokenizer;
    if (fs::exists(job_.model_dir + "/tokenizer.json")) {
      ASSIGN_OR_RETURN(text_tokenizer, tokenizer::HfTokenizer::Load(job_.model_dir));
    }
    DataOptions options;
    options.tokenizer = text_tokenizer.get();
    options.task = job_.task;
    options.max_seq_len = job_.max_seq_len;
    options.vocab_size = config.vocab_size;
    options.num_labels = config.head == HeadKind::kSequenceClassification ? config.num_labels
                                                                          : job_.num_labels;
    options.label_map = saved_labels ? &*saved_labels : nullptr;
    // TrainJob's paths are the spec's: errors name the field as well as the file.
    absl::StatusOr<Dataset> train = ReadDataset(job_.train_path, options);
    if (!train.ok()) return InField("data.train", train.status());
    train_ = std::move(*train);
    if (job_.packing && !classify) train_.examples = PackExamples(train_.examples, job_.max_seq_len);
    labels_ = train_.label_map;
    if (!job_.eval_path.empty()) {
      DataOptions eval_options = options;
      eval_options.label_map = labels_.empty() ? nullptr : &labels_;
      absl::StatusOr<Dataset> eval = ReadDataset(job_.eval_path, eval_options);
      if (!eval.ok()) return InField("data.eval", eval.status());
      eval_ = std::move(*eval);
    }
    int64_t num_labels = 0;
    if (classify) {
      num_labels = !labels_.empty() ? std::max<int64_t>(labels_.size(), options.num_labels)
                                    : options.num_labels;
      if (!labels_.empty()) config.id2label = labels_.names();
    }
    pad_id_ = config.pad_token_id.value_or(0);

    // CUDA is checked before anything is loaded: a job that cannot run here fails at once.
    if (job_.cuda) {
      if (!torch::cuda::is_available()) {
        return absl::FailedPreconditionError("resources.device is cuda, but no CUDA device is usable here");
      }
      device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(job_.cuda_device));
    }
    // The same seed on every rank: the same adapter initialisation everywhere. Adapters and
    // new heads are drawn on the CPU, from the CPU generator, whatever the model's device, so
    // that a CUDA run starts from exactly the adapter the CPU run of the same spec starts from.
    torch::manual_seed(job_.seed);
    // The model is made on its device and in the dtype its frozen weights keep (bf16 on a GPU
    // when asked: no float32 copy to re-cast every forward), and the checkpoint loads straight
    // into it, a tensor at a time. What trains (adapters, saved modules) is float32.
    const torch::Dtype frozen_dtype = job_.cuda && job_.bf16 ? torch::kBFloat16 : torch::kFloat32;
    model_ = BuildModel(config, classify ? HeadKind::kSequenceClassification : HeadKind::kCausalLm,
                        num_labels, torch::dtype(frozen_dtype).device(device_));
    ASSIGN_OR_RETURN(HfCheckpoint checkpoint, HfCheckpoint::Open(job_.model_dir));
    ASSIGN_OR_RETURN(LoadReport report, LoadWeights(*model_, checkpoint));
    if (job_.full_finetune) {
      EnableFullFineTuning(*model_);
    } else {
      settings_ = job_.adapter;
      settings_.modules_to_save = model_->HeadModules();
      settings_.task = model_->head();
      ASSIGN_OR_RETURN(auto adapted, ApplyAdapter(*model_, settings_));
    }

    BatchingOptions batching;
    batching.batch_size = job_.batch_size;
    batching.micro_batch_size = job_.micro_batch_size;
    batching.world_size = comm_.world_size();
    batching.rank = comm_.rank();
    batching.seed = job_.seed;
    ASSIGN_OR_RETURN(BatchSampler sampler,
                     BatchSampler::Create(static_cast<int64_t>(train_.examples.size()), batching));
    sampler_.emplace(std::move(sampler));
    total_steps_ = job_.epochs * sampler_->steps_per_epoch();
    if (job_.max_steps > 0) total_steps_ = std::min(total_steps_, job_.max_steps);
    ASSIGN_OR_RETURN(LrSchedule schedule, LrSchedule::Create(job_.schedule, job_.learning_rate,
                                                             total_steps_, job_.warmup_ratio));
    schedule_.emplace(schedule);
    AdamWOptions adamw;
    adamw.weight_decay = job_.weight_decay;
    ASSIGN_OR_RETURN(AdamW optimizer, AdamW::Create(TrainableParameters(*model_), adamw));
    optimizer_.emplace(std::move(optimizer));
    if (comm_.world_size() > 1) {
      std::vector<at::Tensor> parameters;
      for (auto& [name, p] : optimizer_->parameters()) parameters.push_back(p);
      ASSIGN_OR_RETURN(reducer_, GradientReducer::Create(comm_, parameters));
    }

    std::error_code ec;
    if (comm_.rank() == 0) {
      fs::create_directories(job_.output_dir, ec);
      if (ec) return absl::InvalidArgumentError(absl::StrCat(job_.output_dir, ": cannot create: ", ec.message()));
      RemovePartialCheckpoints(checkpoints);
    }
    // Every rank must resume from the same step: rank 0's. A rank that cannot see that
    // checkpoint (an output directory that is not shared) must fail, not silently diverge.
    {
      const double mine = saved.empty() ? 0.0 : static_cast<double>(saved.back().step);
      at::Tensor step = torch::tensor({comm_.rank() == 0 ? mine : 0.0}, torch::kFloat64).to(device_);
      RETURN_IF_ERROR(comm_.Broadcast(step, 0));
      if (step.item<double>() != mine) {
        return absl::FailedPreconditionError(absl::StrCat(
            "rank ", comm_.rank(), " sees checkpoint step ", mine, " but rank 0 resumes from step ",
            step.item<double>(), ": every rank needs the same output directory"));
      }
    }
    if (!saved.empty()) {
      RETURN_IF_ERROR(Restore(saved.back()));
      if (comm_.rank() == 0) RETURN_IF_ERROR(metrics_.TruncateAfter(step_));
    } else if (comm_.rank() == 0) {
      RETURN_IF_ERROR(metrics_.TruncateAfter(0));
    }
    RETURN_IF_ERROR(telemetry_.Open(job_.output_dir, comm_.rank()));
    for (const auto& parameter : model_->named_parameters()) {
      const torch::Tensor& p = parameter.value();
      if (p.requires_grad()) {
        trained_weights_ += p.numel();
      } else if (p.dim() == 2 && parameter.key().find("embed") == std::string::npos &&
                 parameter.key().find("embeddings") == std::string::npos) {
        frozen_matmul_weights_ += p.numel();  // a frozen matrix product (embeddings are lookups)
      }
    }
    layers_ = config.num_layers;
    hidden_ = config.hidden_size;
    cuda_index_ = job_.cuda ? job_.cuda_device : -1;
    device_peak_flops_ = DevicePeakFlops(cuda_index_);
    if (progress_) {
      ParameterCounts counts = CountParameters(*model_);
      *progress_ << "loratrf: " << train_.examples.size() << " training examples, "
                 << total_steps_ << " steps (" << sampler_->steps_per_epoch() << " per epoch), "
                 << comm_.world_size() << " rank(s)"
                 << (job_.cuda ? std::string()
                               : absl::StrCat(" x ", at::get_num_threads(), " CPU thread(s)"))
                 << ", " << counts.trainable << " of " << counts.total
                 << " parameters trainable"
                 << (step_ > 0 ? absl::StrCat(", resuming at step ", step_) : std::string()) << "\n";
      for (const std::string& name : report.initialized) {
        *progress_ << "loratrf: " << name << " is new (not in the checkpoint): initialised\n";
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<double> Step(const Cursor& cursor) {
    auto started = Clock::now();
    const std::vector<int64_t> global = sampler_->GlobalBatch(cursor);
    const int64_t global_targets = std::max<int64_t>(1, Targets(train_, global, job_.task));
    // Each rank's gradients are averaged over ranks afterwards; scaling by world / targets makes
    // the result the mean over the global batch, whatever the micro-batching or world size.
    const double scale = static_cast<double>(comm_.world_size()) / static_cast<double>(global_targets);
    const auto f64 = torch::dtype(torch::kFloat64).device(device_);
    torch::Tensor loss_sum = torch::zeros({}, f64);
    int64_t tokens = 0, samples = 0;
    double data_wait = 0, flops = 0;
    const std::vector<std::vector<int64_t>> micro_batches = sampler_->MicroBatches(cursor);
    if (reducer_) reducer_->BeginStep();
    for (size_t i = 0; i < micro_batches.size(); ++i) {
      if (reducer_) reducer_->SetLastMicroBatch(i + 1 == micro_batches.size());
      const auto collating = Clock::now();
      ASSIGN_OR_RETURN(Batch batch, CollateIndices(train_, micro_batches[i], pad_id_, device_));
      data_wait += std::chrono::duration<double>(Clock::now() - collating).count();
      LossSums sums;
      {
        AutocastScope autocast(job_.bf16);
        sums = ComputeLoss(*model_, batch, job_.task, false);
      }
      (sums.loss_sum * scale).backward();
      loss_sum.add_(sums.loss_sum.detach().to(torch::kFloat64));
      tokens += batch.num_tokens;
      samples += batch.input_ids.size(0);
      flops += TrainingFlops(batch.num_tokens, batch.input_ids.size(1), frozen_matmul_weights_,
                             trained_weights_, layers_, hidden_);
    }
    // The buckets the last backward did not already start, then the average over ranks.
    const auto reducing = Clock::now();
    if (reducer_) RETURN_IF_ERROR(reducer_->FinishStep());
    NamedTensors trainable = optimizer_->parameters();
    // The stop flag rides along: every rank reads the same sum, so all of them stop after this
    // step or none does, however far apart their signals came.
    std::vector<at::Tensor> totals = {
        torch::stack({loss_sum, torch::full({}, static_cast<double>(tokens), f64),
                      torch::full({}, StopRequestedHere() ? 1.0 : 0.0, f64)})};
    RETURN_IF_ERROR(comm_.AllReduceSum(totals));
    const double allreduce = std::chrono::duration<double>(Clock::now() - reducing).count();
    ASSIGN_OR_RETURN(double grad_norm, ClipGradNorm(trainable, job_.max_grad_norm));
    // One copy to the host for both sums (the norm above has synchronised already).
    const torch::Tensor summed = totals[0].cpu();
    const double loss = summed[0].item<double>() / static_cast<double>(global_targets);
    const double global_tokens = summed[1].item<double>();
    const bool stop_agreed = summed[2].item<double>() > 0;
    const double lr = schedule_->LearningRate(step_);

    contract::RankStepRow telemetry;
    telemetry.step = static_cast<uint64_t>(step_ + 1);
    telemetry.total_steps = static_cast<uint64_t>(total_steps_);
    telemetry.tokens = static_cast<uint64_t>(tokens);
    telemetry.samples = static_cast<uint64_t>(samples);
    telemetry.data_wait_seconds = data_wait;
    telemetry.allreduce_seconds = allreduce;
    telemetry.loss = loss;
    telemetry.learning_rate = lr;
    telemetry.grad_norm = grad_norm;
    if (!std::isfinite(grad_norm)) {
      // Said to the agent first, so that a diverged run shows as a non-finite loss or norm.
      telemetry.step_seconds = std::chrono::duration<double>(Clock::now() - started).count();
      telemetry.time = UnixSeconds();
      telemetry_.Append(telemetry);
      return absl::InvalidArgumentError(absl::StrCat(
          "training diverged at step ", step_ + 1, ": the gradient norm is ", grad_norm,
          " (lower training.learning_rate?)"));
    }
    RETURN_IF_ERROR(optimizer_->Step(lr));
    optimizer_->ZeroGrad();
    ++step_;
    stop_agreed_ = stop_agreed;

    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    telemetry.step_seconds = seconds;
    telemetry.time = UnixSeconds();
    MemoryReading memory = ReadMemory(cuda_index_);
    telemetry.memory_device = memory.device;
    telemetry.memory_bytes = memory.in_use;
    telemetry.memory_peak_bytes = memory.peak;
    telemetry.model_flops_per_second = seconds > 0 ? flops / seconds : 0;
    if (device_peak_flops_) telemetry.mfu = telemetry.model_flops_per_second / *device_peak_flops_;
    telemetry_.Append(telemetry);
    const double epoch = static_cast<double>(step_) / static_cast<double>(sampler_->steps_per_epoch());
    if (comm_.rank() == 0) {
      contract::TrainRow row;
      row.step = static_cast<uint64_t>(step_);
      row.epoch = epoch;
      row.loss = loss;
      row.learning_rate = lr;
      row.grad_norm = grad_norm;
      row.tokens_per_second = global_tokens / seconds;
      row.samples_per_second = static_cast<double>(job_.batch_size) / seconds;
      row.step_seconds = seconds;
      RETURN_IF_ERROR(metrics_.Append(contract::ToJsonLine(row)));
      if (progress_) {
        *progress_ << absl::StrFormat(
            "step %d/%d  epoch %.2f  loss %.4f  lr %.2e  grad_norm %.3f  %.0f tok/s  eta %s\n",
            step_, total_steps_, epoch, loss, lr, grad_norm, global_tokens / seconds,
            FormatSeconds(seconds * static_cast<double>(total_steps_ - step_)));
      }
    }
    return loss;
  }

  absl::StatusOr<contract::EvalRow> Evaluate() {
    torch::NoGradGuard no_grad;
    model_->eval();
    const auto f64 = torch::dtype(torch::kFloat64).device(device_);
    torch::Tensor loss_sum = torch::zeros({}, f64), correct = torch::zeros({}, f64);
    int64_t targets = 0;
    for (const std::vector<int64_t>& micro :
         EvalBatches(static_cast<int64_t>(eval_->examples.size()), job_.micro_batch_size,
                     comm_.world_size(), comm_.rank())) {
      if (micro.empty()) continue;
      ASSIGN_OR_RETURN(Batch batch, CollateIndices(*eval_, micro, pad_id_, device_));
      AutocastScope autocast(job_.bf16);
      LossSums sums = ComputeLoss(*model_, batch, job_.task, true);
      loss_sum.add_(sums.loss_sum.to(torch::kFloat64));
      correct.add_(sums.correct.to(torch::kFloat64));
      targets += batch.num_targets;
    }
    model_->train();
    std::vector<at::Tensor> totals = {
        torch::stack({loss_sum, correct, torch::full({}, static_cast<double>(targets), f64)})};
    RETURN_IF_ERROR(comm_.AllReduceSum(totals));
    const torch::Tensor summed = totals[0].cpu();
    const double count = std::max(1.0, summed[2].item<double>());
    contract::EvalRow metrics;
    metrics.step = static_cast<uint64_t>(step_);
    metrics.loss = summed[0].item<double>() / count;
    metrics.accuracy = summed[1].item<double>() / count;
    metrics.examples = eval_->examples.size();
    if (comm_.rank() == 0) {
      RETURN_IF_ERROR(metrics_.Append(contract::ToJsonLine(metrics)));
      telemetry_.Append(contract::RankEvalRow{metrics.step, metrics.loss, metrics.accuracy});
      if (progress_) {
        *progress_ << absl::StrFormat("eval at step %d: loss %.4f, accuracy %.4f\n", step_,
                                      metrics.loss, metrics.accuracy);
      }
    }
    return metrics;
  }

  bool StopRequestedHere() const { return job_.stop_requested && job_.stop_requested(); }

  // Whether any rank was asked to stop, agreed by all (one tiny all-reduce).
  absl::StatusOr<bool> AgreeToStop() {
    std::vector<at::Tensor> flag = {
        torch::full({1}, StopRequestedHere() ? 1.0 : 0.0, torch::dtype(torch::kFloat64).device(device_))};
    RETURN_IF_ERROR(comm_.AllReduceSum(flag));
    return flag[0].cpu().item<double>() > 0;
  }

  // The end of a run stopped at step_, whose checkpoint is committed (or, at the step the run
  // resumed from, was already there).
  TrainResult Stopped(TrainResult result) {
    result.steps = step_;
    result.stopped = true;
    result.final_dir.clear();
    if (progress_) {
      *progress_ << "loratrf: stopped as asked after step " << step_ << " of " << total_steps_
                 << (step_ > result.resumed_from ? "; its checkpoint is committed"
                                                 : " (no step done: nothing new to save)")
                 << "\n";
    }
    return result;
  }

  std::string CheckpointsDir() const {
    return absl::StrCat(job_.output_dir, "/", contract::kCheckpointsDirName);
  }

  absl::Status SaveCheckpoint(bool final, const std::optional<contract::EvalRow>& eval) {
    if (comm_.rank() == 0) {
      const auto saving = Clock::now();
      const std::string checkpoints = CheckpointsDir();
      absl::StatusOr<CheckpointWriter> writer =
          final ? CheckpointWriter::BeginFinal(absl::StrCat(job_.output_dir, "/",
                                                            contract::kFinalDirName),
                                               static_cast<uint64_t>(step_))
                : CheckpointWriter::Begin(checkpoints, static_cast<uint64_t>(step_));
      if (!writer.ok()) return writer.status();
      const std::string& dir = writer->dir();
      if (job_.full_finetune) {
        RETURN_IF_ERROR(WriteHfModelFiles(*model_, job_.model_dir, dir));
      } else {
        RETURN_IF_ERROR(SaveAdapter(*model_, settings_, job_.model_dir, dir));
      }
      if (!labels_.empty()) RETURN_IF_ERROR(labels_.Save(dir + "/" + kLabelMapFile));
      if (!final) RETURN_IF_ERROR(SaveTrainerState(dir));
      ASSIGN_OR_RETURN(CheckpointManifest manifest,
                       writer->Commit(eval ? contract::ManifestMetrics(*eval)
                                           : std::map<std::string, double>()));
      if (!final) {
        const bool has_accuracy = eval.has_value();
        RETURN_IF_ERROR(PruneCheckpoints(
            checkpoints, job_.keep_checkpoints,
            has_accuracy ? contract::metrics_keys::kEvalAccuracy : contract::metrics_keys::kEvalLoss,
            has_accuracy));
      }
      telemetry_.Append(contract::RankCheckpointRow{
          static_cast<uint64_t>(step_),
          std::chrono::duration<double>(Clock::now() - saving).count()});
      if (progress_) *progress_ << "checkpoint committed: " << manifest.dir << "\n";
    }
    // Nobody runs ahead of a checkpoint that might be the one a restart resumes from.
    return comm_.Barrier();
  }

  absl::Status SaveTrainerState(const std::string& dir) {
    NamedTensors tensors;
    for (auto& [name, p] : optimizer_->parameters()) tensors.emplace_back("param/" + name, p.detach());
    for (auto& entry : optimizer_->StateTensors()) tensors.push_back(entry);
    // Every generator the job draws from (dropout): the CPU's and, on CUDA, the device's, so
    // that a resumed run continues the random stream an uninterrupted one would have drawn.
    for (auto& [name, generator] : Generators()) {
      std::lock_guard<std::mutex> lock(generator.mutex());
      tensors.emplace_back(name, generator.get_state());
    }
    RETURN_IF_ERROR(WriteTensors(dir + "/" + kTrainerStateTensors, tensors));
    json state = {{"step", step_}, {"total_steps", total_steps_}, {"world_size", comm_.world_size()},
                  {"batch_size", job_.batch_size}, {"seed", job_.seed}};
    return WriteFileAtomically(dir + "/" + kTrainerStateJson, state.dump(2) + "\n");
  }

  // The generators this job draws from, by the name their state is saved under: the CPU's,
  // and the job's CUDA device's (whatever its index on the machine that resumes).
  std::vector<std::pair<std::string, at::Generator>> Generators() const {
    std::vector<std::pair<std::string, at::Generator>> generators = {
        {"rng/cpu", at::detail::getDefaultCPUGenerator()}};
    if (device_.is_cuda()) {
      generators.emplace_back("rng/cuda", at::globalContext().defaultGenerator(device_));
    }
    return generators;
  }

  absl::Status Restore(const CheckpointManifest& checkpoint) {
    // Written by the trainer itself: small, flat, no key twice.
    absl::StatusOr<std::string> text =
        ReadFileWithLimit(checkpoint.dir + "/" + kTrainerStateJson, kMaxTrainerStateBytes);
    absl::StatusOr<json> parsed =
        text.ok() ? ParseJson(*text, JsonLimits{/*max_depth=*/8, false}) : text.status();
    json state = parsed.ok() ? *std::move(parsed) : json();
    if (!state.is_object() || !state.contains("step")) {
      return absl::DataLossError(absl::StrCat(checkpoint.dir, ": trainer state unreadable"));
    }
    if (state.value("batch_size", int64_t{0}) != job_.batch_size ||
        state.value("seed", uint64_t{0}) != job_.seed) {
      return absl::InvalidArgumentError(absl::StrCat(
          checkpoint.dir, ": made with another batch_size or seed; resume needs the same job "
          "(use a new --output to start over)"));
    }
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(checkpoint.dir + "/" + kTrainerStateTensors));
    NamedTensors optimizer_state;
    torch::NoGradGuard no_grad;
    std::map<std::string, at::Tensor> params;
    for (auto& [name, p] : optimizer_->parameters()) params[name] = p;
    std::map<std::string, at::Tensor> rng_states;
    size_t restored = 0;
    for (const TensorEntry& entry : file->tensors()) {
      ASSIGN_OR_RETURN(at::Tensor value, ReadTensor(*file, entry));
      if (entry.name.rfind("param/", 0) == 0) {
        auto it = params.find(entry.name.substr(6));
        if (it == params.end() || it->second.sizes() != value.sizes()) {
          return absl::DataLossError(absl::StrCat(checkpoint.dir, ": ", entry.name, " does not fit this job"));
        }
        it->second.copy_(value);
        ++restored;
      } else if (entry.name.rfind("rng/", 0) == 0) {
        rng_states.emplace(entry.name, value);
      } else {
        optimizer_state.emplace_back(entry.name, value);
      }
    }
    if (restored != params.size()) {
      return absl::DataLossError(absl::StrCat(checkpoint.dir, ": trainable tensors missing"));
    }
    for (auto& [name, generator] : Generators()) {
      auto it = rng_states.find(name);
      // A checkpoint made on another kind of device has no state for this one's generator:
      // that stream starts from the seed.
      if (it == rng_states.end()) continue;
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_state(it->second);
    }
    step_ = state["step"].get<int64_t>();
    RETURN_IF_ERROR(optimizer_->LoadState(optimizer_state, step_));
    if (step_ > total_steps_) {
      return absl::InvalidArgumentError(absl::StrCat(checkpoint.dir, ": step ", step_,
                                                     " is past this job's ", total_steps_, " steps"));
    }
    return absl::OkStatus();
  }

  const TrainJob& job_;
  Communicator& comm_;
  std::ostream* progress_;
  MetricsLog metrics_;
  Dataset train_;
  std::optional<Dataset> eval_;
  LabelMap labels_;
  int64_t pad_id_ = 0;
  torch::Device device_ = torch::kCPU;
  std::shared_ptr<TransformerModel> model_;
  AdapterSettings settings_;
  std::optional<BatchSampler> sampler_;
  std::optional<LrSchedule> schedule_;
  std::optional<AdamW> optimizer_;
  std::unique_ptr<GradientReducer> reducer_;  // with more than one rank
  TelemetryLog telemetry_;
  // For model FLOPs (device_stats.h): weights in frozen matrix products, trained weights, and
  // the shape attention's cost depends on.
  int64_t frozen_matmul_weights_ = 0;
  int64_t trained_weights_ = 0;
  int64_t layers_ = 0;
  int64_t hidden_ = 0;
  int cuda_index_ = -1;
  std::optional<double> device_peak_flops_;
  int64_t total_steps_ = 0;
  int64_t step_ = 0;
  bool stop_agreed_ = false;  // the last step's all-reduce said some rank was asked to stop
};

}  // namespace

absl::StatusOr<TrainResult> Train(const TrainJob& job, Communicator& communicator,
                                  std::ostream* progress) {
  try {
    Trainer trainer(job, communicator, progress);
    return trainer.Run();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("training failed: ", FirstLine(e.what())));
  }
}

}  // namespace loratrf::engine
