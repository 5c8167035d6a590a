#include "worker/commands/spec_conversion.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/data/examples.h"

namespace loratrf::worker {

engine::AdapterSettings ToAdapterSettings(const v1::AdapterSpec& adapter) {
  engine::AdapterSettings s;
  s.method = adapter.method() == v1::ADAPTER_METHOD_LORA ? engine::AdapterMethod::kLora
                                                         : engine::AdapterMethod::kLoratrf;
  s.rank = adapter.rank();
  s.alpha = adapter.alpha();
  s.dropout = adapter.dropout();
  s.target_modules.assign(adapter.target_modules().begin(), adapter.target_modules().end());
  switch (adapter.filter()) {
    case v1::TRF_FILTER_OUTPUT: s.filter = engine::TrfFilter::kOutput; break;
    case v1::TRF_FILTER_BOTH: s.filter = engine::TrfFilter::kBoth; break;
    case v1::TRF_FILTER_BOTTLENECK: s.filter = engine::TrfFilter::kBottleneck; break;
    default: s.filter = engine::TrfFilter::kNone; break;
  }
  if (s.method == engine::AdapterMethod::kLora) s.filter = engine::TrfFilter::kNone;
  return s;
}

namespace {

// `status` with its message led by the spec field it concerns ("data.train: ...").
absl::Status InField(absl::string_view field, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(field, ": ", status.message()));
}

// The file or directory `field` names must be there before any work starts; a user error
// otherwise, naming the field as well as the path.
absl::Status CheckSpecPath(absl::string_view field, const std::string& path, bool directory) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) {
    const int error = errno;
    return absl::NotFoundError(
        absl::StrCat(field, ": ", path, ": cannot open (", std::strerror(error), ")"));
  }
  if (directory && !S_ISDIR(info.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", path, ": not a model directory"));
  }
  if (!directory && !S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", path, ": not a regular file"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<engine::TrainJob> ToTrainJob(const v1::JobSpec& spec, const std::string& spec_path,
                                            const std::string& output_dir) {
  engine::TrainJob job;
  job.model_dir = ResolveSpecPath(spec_path, spec.model().path());
  job.train_path = ResolveSpecPath(spec_path, spec.data().train());
  if (!spec.data().eval().empty()) job.eval_path = ResolveSpecPath(spec_path, spec.data().eval());
  RETURN_IF_ERROR(CheckSpecPath("model.path", job.model_dir, /*directory=*/true));
  RETURN_IF_ERROR(CheckSpecPath("data.train", job.train_path, /*directory=*/false));
  if (!job.eval_path.empty()) {
    RETURN_IF_ERROR(CheckSpecPath("data.eval", job.eval_path, /*directory=*/false));
  }
  job.output_dir = output_dir;
  job.task = spec.task() == v1::TASK_CLASSIFICATION ? engine::DataTask::kClassification
                                                    : engine::DataTask::kCausalLm;
  job.full_finetune = spec.adapter().method() == v1::ADAPTER_METHOD_FULL;
  if (!job.full_finetune) job.adapter = ToAdapterSettings(spec.adapter());
  const v1::TrainingSpec& t = spec.training();
  job.epochs = t.epochs();
  job.max_steps = static_cast<int64_t>(t.max_steps());
  job.batch_size = t.batch_size();
  job.micro_batch_size = t.micro_batch_size();
  job.max_seq_len = t.max_seq_len();
  job.packing = t.packing();
  job.learning_rate = t.learning_rate();
  job.schedule = t.lr_scheduler() == v1::LR_SCHEDULER_CONSTANT ? engine::LrScheduleKind::kConstant
                 : t.lr_scheduler() == v1::LR_SCHEDULER_LINEAR ? engine::LrScheduleKind::kLinear
                                                               : engine::LrScheduleKind::kCosine;
  job.warmup_ratio = t.warmup_ratio();
  job.max_grad_norm = t.max_grad_norm();
  job.weight_decay = t.weight_decay();
  job.seed = t.seed();
  job.cuda = spec.resources().device() == v1::DEVICE_CUDA;
  job.bf16 = t.precision() == v1::PRECISION_BF16;
  job.eval_every_steps = t.eval_every_steps();
  job.checkpoint_every_steps = t.checkpoint_every_steps();
  job.keep_checkpoints = t.keep_checkpoints();
  if (job.task == engine::DataTask::kClassification) {
    absl::StatusOr<int64_t> classes = engine::CountClasses(job.train_path);
    if (!classes.ok()) return InField("data.train", classes.status());
    job.num_labels = *classes;
  }
  return job;
}

std::string ResolveSpecPath(const std::string& spec_path, const std::string& path) {
  std::filesystem::path p(path);
  if (p.is_absolute()) return path;
  return (std::filesystem::path(spec_path).parent_path() / p).lexically_normal().string();
}

}  // namespace loratrf::worker
