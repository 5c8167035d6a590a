// The rules a job spec must satisfy, wherever it came from (a YAML file, JSON, or an RPC).
// Each rule names its field; docs/api.md lists the same rules for users.
#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/unknown_field_set.h"
#include "common/status_macros.h"
#include "proto/spec/job_spec.h"
#include "proto/contract/limits.h"
#include "proto/contract/names.h"

namespace loratrf::spec {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", rule));
}

template <typename T>
absl::Status CheckRange(absl::string_view field, T value, T lo, T hi) {
  if (value < lo || value > hi) {
    return Invalid(field, absl::StrCat("must be in [", lo, ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

// value in (lo, hi] or [lo, hi] (lo_open), or [lo, hi) (hi_open); finite in every case.
absl::Status CheckReal(absl::string_view field, double value, double lo, bool lo_open, double hi,
                       bool hi_open) {
  bool ok = std::isfinite(value) && (lo_open ? value > lo : value >= lo) &&
            (hi_open ? value < hi : value <= hi);
  if (!ok) {
    return Invalid(field, absl::StrCat("must be in ", lo_open ? "(" : "[", FormatNumber(lo), ", ",
                                       FormatNumber(hi), hi_open ? ")" : "]", ", got ",
                                       FormatNumber(value)));
  }
  return absl::OkStatus();
}

absl::Status CheckEnumSet(absl::string_view field, int value,
                          const google::protobuf::EnumDescriptor& type) {
  const google::protobuf::EnumValueDescriptor* found = type.FindValueByNumber(value);
  if (found == nullptr || value == 0) {
    std::string choices;
    for (int i = 1; i < type.value_count(); ++i) {
      absl::StrAppend(&choices, i > 1 ? " | " : "", EnumValueName(*type.value(i)));
    }
    return Invalid(field, absl::StrCat("required, one of ", choices,
                                       found == nullptr ? absl::StrCat(" (got ", value, ")") : ""));
  }
  return absl::OkStatus();
}

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. Proto3 strings must
// be UTF-8, and a path that is not would not survive the trip through JSON either.
bool IsValidUtf8(absl::string_view text) {
  static constexpr uint32_t kMinForLength[] = {0, 0x80, 0x800, 0x10000};
  for (size_t i = 0; i < text.size();) {
    unsigned char lead = static_cast<unsigned char>(text[i]);
    size_t extra = 0;
    uint32_t code = lead;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if ((lead & 0xE0) == 0xC0) {
      extra = 1, code = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      extra = 2, code = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      extra = 3, code = lead & 0x07;
    } else {
      return false;
    }
    if (text.size() - i <= extra) return false;
    for (size_t k = 1; k <= extra; ++k) {
      unsigned char next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3F);
    }
    if (code < kMinForLength[extra] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// A path on the worker's file system. It is only ever read, never written, by the worker, and
// never used by the coordinator; it still must be one sane line.
absl::Status CheckPath(absl::string_view field, absl::string_view path, bool required) {
  if (path.empty()) return required ? Invalid(field, "required") : absl::OkStatus();
  if (path.size() > limits::kMaxPathLength) {
    return Invalid(field, absl::StrCat("must be at most ", limits::kMaxPathLength, " bytes, got ",
                                       path.size()));
  }
  for (unsigned char c : path) {
    if (c < 0x20 || c == 0x7f) return Invalid(field, "must not contain control characters");
  }
  if (!IsValidUtf8(path)) return Invalid(field, "must be valid UTF-8");
  return absl::OkStatus();
}

absl::Status CheckTargetModules(const v1::AdapterSpec& adapter) {
  if (adapter.target_modules().empty()) {
    return Invalid("adapter.target_modules", "required: the linear layers to adapt, e.g. "
                                             "[q_proj, v_proj] (Llama) or [query, value] (BERT)");
  }
  if (adapter.target_modules_size() > limits::kMaxTargetModules) {
    return Invalid("adapter.target_modules",
                   absl::StrCat("at most ", limits::kMaxTargetModules, " entries, got ",
                                adapter.target_modules_size()));
  }
  std::set<std::string> seen;
  for (int i = 0; i < adapter.target_modules_size(); ++i) {
    const std::string& name = adapter.target_modules(i);
    std::string field = absl::StrCat("adapter.target_modules[", i, "]");
    if (name.empty() || name.size() > limits::kMaxModuleNameLength) {
      return Invalid(field, absl::StrCat("must be 1 to ", limits::kMaxModuleNameLength, " characters"));
    }
    for (char c : name) {
      bool ok = IsLowerAlnum(c) || (c >= 'A' && c <= 'Z') || c == '_' || c == '.';
      if (!ok) return Invalid(field, "may contain only letters, digits, '_' and '.'");
    }
    if (name.front() == '.' || name.back() == '.') {
      return Invalid(field, "must not start or end with '.'");
    }
    if (!seen.insert(name).second) return Invalid(field, absl::StrCat("duplicate '", name, "'"));
  }
  return absl::OkStatus();
}

absl::Status CheckAdapter(const v1::AdapterSpec& adapter) {
  RETURN_IF_ERROR(
      CheckEnumSet("adapter.method", adapter.method(), *v1::AdapterMethod_descriptor()));
  if (adapter.method() == v1::ADAPTER_METHOD_FULL) {
    if (adapter.rank() != 0 || adapter.alpha() != 0 || adapter.dropout() != 0 ||
        !adapter.target_modules().empty() || adapter.filter() != 0) {
      return Invalid("adapter", "method full takes no rank, alpha, dropout, target_modules or "
                                "filter");
    }
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(CheckRange<uint32_t>("adapter.rank", adapter.rank(), 1, limits::kMaxRank));
  RETURN_IF_ERROR(CheckReal("adapter.alpha", adapter.alpha(), 0, true, limits::kMaxAlpha, false));
  RETURN_IF_ERROR(CheckReal("adapter.dropout", adapter.dropout(), 0, false, 1, true));
  RETURN_IF_ERROR(CheckTargetModules(adapter));
  if (adapter.method() == v1::ADAPTER_METHOD_LORATRF) {
    return CheckEnumSet("adapter.filter", adapter.filter(), *v1::TrfFilter_descriptor());
  }
  if (adapter.filter() != 0) return Invalid("adapter.filter", "only used with method loratrf");
  return absl::OkStatus();
}

absl::Status CheckTraining(const v1::JobSpec& spec) {
  const v1::TrainingSpec& t = spec.training();
  RETURN_IF_ERROR(CheckRange<uint32_t>("training.epochs", t.epochs(), 1, limits::kMaxEpochs));
  RETURN_IF_ERROR(CheckRange<uint64_t>("training.max_steps", t.max_steps(), 0, limits::kMaxSteps));
  RETURN_IF_ERROR(CheckRange<uint32_t>("training.batch_size", t.batch_size(), 1, limits::kMaxBatchSize));
  RETURN_IF_ERROR(CheckRange<uint32_t>("training.micro_batch_size", t.micro_batch_size(), 1,
                                       t.batch_size()));
  // batch_size = micro_batch_size x accumulation steps x world size.
  uint64_t world = uint64_t{spec.resources().workers()} * spec.resources().slots_per_worker();
  uint64_t per_step = uint64_t{t.micro_batch_size()} * world;
  if (t.batch_size() % per_step != 0) {
    return Invalid("training.batch_size",
                   absl::StrCat("must be a multiple of micro_batch_size x world size (",
                                t.micro_batch_size(), " x ", world, " = ", per_step, "), got ",
                                t.batch_size()));
  }
  RETURN_IF_ERROR(
      CheckReal("training.learning_rate", t.learning_rate(), 0, true, limits::kMaxLearningRate, false));
  RETURN_IF_ERROR(CheckEnumSet("training.lr_scheduler", t.lr_scheduler(),
                               *v1::LrScheduler_descriptor()));
  RETURN_IF_ERROR(CheckReal("training.warmup_ratio", t.warmup_ratio(), 0, false, 1, true));
  RETURN_IF_ERROR(
      CheckReal("training.max_grad_norm", t.max_grad_norm(), 0, false, limits::kMaxGradNorm, false));
  RETURN_IF_ERROR(
      CheckReal("training.weight_decay", t.weight_decay(), 0, false, limits::kMaxWeightDecay, false));
  RETURN_IF_ERROR(
      CheckRange<uint32_t>("training.max_seq_len", t.max_seq_len(), limits::kMinSeqLen, limits::kMaxSeqLen));
  RETURN_IF_ERROR(
      CheckEnumSet("training.precision", t.precision(), *v1::Precision_descriptor()));
  if (t.precision() == v1::PRECISION_BF16 && spec.resources().device() != v1::DEVICE_CUDA) {
    return Invalid("training.precision", "bf16 needs resources.device: cuda");
  }
  if (t.eval_every_steps() > 0 && spec.data().eval().empty()) {
    return Invalid("training.eval_every_steps", "needs data.eval");
  }
  RETURN_IF_ERROR(CheckRange<uint32_t>("training.keep_checkpoints", t.keep_checkpoints(), 1,
                                       limits::kMaxKeepCheckpoints));
  if (t.packing() && spec.task() != v1::TASK_CAUSAL_LM) {
    return Invalid("training.packing", "only used with task causal_lm");
  }
  return absl::OkStatus();
}

// Appends "PATH: unknown field number N" for each unknown field in `message` and the messages
// it holds.
void CollectUnknownFields(const google::protobuf::Message& message, const std::string& path,
                          std::vector<std::string>& out) {
  const google::protobuf::Reflection& reflection = *message.GetReflection();
  const google::protobuf::UnknownFieldSet& unknown = reflection.GetUnknownFields(message);
  for (int i = 0; i < unknown.field_count(); ++i) {
    out.push_back(absl::StrCat(path.empty() ? "spec" : path, ": unknown field number ",
                               unknown.field(i).number()));
  }
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  reflection.ListFields(message, &fields);
  for (const google::protobuf::FieldDescriptor* field : fields) {
    if (field->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    const std::string field_path = path.empty() ? field->name() : absl::StrCat(path, ".", field->name());
    if (field->is_repeated()) {
      for (int j = 0; j < reflection.FieldSize(message, field); ++j) {
        CollectUnknownFields(reflection.GetRepeatedMessage(message, field, j), field_path, out);
      }
    } else {
      CollectUnknownFields(reflection.GetMessage(message, field), field_path, out);
    }
  }
}

}  // namespace

absl::Status ValidateSubmittedJobSpec(const v1::JobSpec& spec) {
  std::vector<std::string> unknown;
  CollectUnknownFields(spec, "", unknown);
  if (!unknown.empty()) {
    constexpr size_t kNamed = 8;  // enough to act on, and a bounded message
    std::string named = absl::StrJoin(unknown.begin(),
                                      unknown.begin() + std::min(unknown.size(), kNamed), "; ");
    if (unknown.size() > kNamed) absl::StrAppend(&named, "; and ", unknown.size() - kNamed, " more");
    return absl::InvalidArgumentError(absl::StrCat(
        named, " (the coordinator's JobSpec has no such field: a newer client, or bytes not "
        "made from loratrf's protos; remove them)"));
  }
  RETURN_IF_ERROR(ValidateJobSpec(spec));
  const size_t bytes = spec.ByteSizeLong();
  if (bytes > limits::kMaxJobSpecBytes) {
    return Invalid("spec", absl::StrCat(bytes, " bytes serialized, more than the limit of ",
                                        limits::kMaxJobSpecBytes));
  }
  return absl::OkStatus();
}

absl::Status ValidateJobSpec(const v1::JobSpec& spec) {
  RETURN_IF_ERROR(contract::CheckJobName("name", spec.name()));
  RETURN_IF_ERROR(CheckPath("model.path", spec.model().path(), /*required=*/true));
  RETURN_IF_ERROR(CheckEnumSet("task", spec.task(), *v1::Task_descriptor()));
  RETURN_IF_ERROR(CheckPath("data.train", spec.data().train(), /*required=*/true));
  RETURN_IF_ERROR(CheckPath("data.eval", spec.data().eval(), /*required=*/false));
  RETURN_IF_ERROR(CheckAdapter(spec.adapter()));
  // Resources before training: the batch rule needs a valid world size.
  const v1::ResourceSpec& r = spec.resources();
  RETURN_IF_ERROR(CheckRange<uint32_t>("resources.workers", r.workers(), 1, limits::kMaxWorkers));
  RETURN_IF_ERROR(CheckRange<uint32_t>("resources.slots_per_worker", r.slots_per_worker(), 1,
                                       limits::kMaxSlotsPerWorker));
  RETURN_IF_ERROR(CheckEnumSet("resources.device", r.device(), *v1::Device_descriptor()));
  RETURN_IF_ERROR(CheckTraining(spec));
  RETURN_IF_ERROR(CheckRange<int32_t>("priority", spec.priority(), -limits::kMaxPriority, limits::kMaxPriority));
  RETURN_IF_ERROR(CheckRange<uint32_t>("max_restarts", spec.max_restarts(), 0, limits::kMaxRestarts));
  if (spec.labels_size() > limits::kMaxJobLabels) {
    return Invalid("labels", absl::StrCat("at most ", limits::kMaxJobLabels, " labels, got ",
                                          spec.labels_size()));
  }
  for (const auto& [key, value] : spec.labels()) {
    RETURN_IF_ERROR(contract::CheckJobLabel("labels", key, value));
  }
  return absl::OkStatus();
}

}  // namespace loratrf::spec
