#include "worker/engine/model/hf_checkpoint.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>
#include <set>
#include <sstream>
#include <sys/stat.h>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json_parse.h"
#include "common/read_file.h"
#include "common/status_macros.h"
#include "common/text.h"
#include "worker/engine/checkpoint/tensor_io.h"
#include "common/atomic_file.h"
#include "nlohmann/json.hpp"

namespace loratrf::engine {
namespace {

constexpr uint64_t kMaxIndexBytes = 64 << 20;
constexpr uint64_t kMaxConfigBytes = 4 << 20;  // as LoadModelConfig reads it

bool IsRegularFile(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

std::string ShapeString(c10::IntArrayRef shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

absl::StatusOr<HfCheckpoint> HfCheckpoint::Open(const std::string& model_dir) {
  HfCheckpoint out;
  out.dir_ = model_dir;
  std::vector<std::string> shard_names;
  const std::string single = model_dir + "/model.safetensors";
  const std::string index_path = model_dir + "/model.safetensors.index.json";
  std::map<std::string, std::string> weight_map;  // tensor → shard file name

  if (IsRegularFile(single)) {
    shard_names.push_back("model.safetensors");
  } else if (IsRegularFile(index_path)) {
    auto fail = [&](absl::string_view message) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": ", message));
    };
    struct stat info {};
    ::stat(index_path.c_str(), &info);
    if (static_cast<uint64_t>(info.st_size) > kMaxIndexBytes) return fail("larger than 64 MiB");
    std::ifstream in(index_path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<nlohmann::json> parsed =
        ParseJson(text.str(), JsonLimits{/*max_depth=*/64, /*allow_duplicate_keys=*/false});
    if (!parsed.ok()) return fail(absl::StrCat("not valid JSON: ", parsed.status().message()));
    nlohmann::json index = *std::move(parsed);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      return fail("weight_map: required, an object of tensor name → shard file");
    }
    std::set<std::string> unique;
    for (const auto& [tensor, shard] : index["weight_map"].items()) {
      if (!shard.is_string() || !IsPlainFileName(shard.get<std::string>())) {
        return fail(absl::StrCat("weight_map: ", Excerpt(tensor),
                                 ": must name a file in the model directory"));
      }
      weight_map[tensor] = shard.get<std::string>();
      if (unique.insert(shard.get<std::string>()).second) {
        shard_names.push_back(shard.get<std::string>());
      }
    }
  } else if (IsRegularFile(model_dir + "/pytorch_model.bin")) {
    return absl::InvalidArgumentError(absl::StrCat(
        model_dir, ": only safetensors weights are supported (found pytorch_model.bin, a pickle, "
                   "which is never loaded; convert it with safetensors' convert script)"));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        model_dir, ": no model.safetensors or model.safetensors.index.json"));
  }

  for (const std::string& name : shard_names) {
    ASSIGN_OR_RETURN(std::shared_ptr<const SafetensorsFile> file,
                     SafetensorsFile::Open(model_dir + "/" + name));
    for (const TensorEntry& entry : file->tensors()) {
      if (!weight_map.empty()) {
        auto it = weight_map.find(entry.name);
        if (it == weight_map.end() || it->second != name) continue;  // the index decides
      }
      if (!out.tensors_.emplace(entry.name, std::make_pair(file.get(), &entry)).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(file->path(), ": ", Excerpt(entry.name), ": also in another shard"));
      }
    }
    out.files_.push_back(std::move(file));
  }
  for (const auto& [tensor, shard] : weight_map) {
    if (!out.tensors_.count(tensor)) {
      return absl::InvalidArgumentError(absl::StrCat(
          index_path, ": weight_map: ", tensor, ": not in ", shard));
    }
  }
  return out;
}

const TensorEntry* HfCheckpoint::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second.second;
}

const SafetensorsFile& HfCheckpoint::FileOf(const std::string& name) const {
  return *tensors_.at(name).first;
}

std::vector<std::string> HfCheckpoint::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, _] : tensors_) names.push_back(name);
  return names;
}

absl::StatusOr<LoadReport> LoadWeights(TransformerModel& model, const HfCheckpoint& checkpoint) {
  LoadReport report;
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    torch::Tensor& parameter = item.value();
    // A base model saved on its own (LlamaModel, BertModel) has no prefix.
    std::vector<std::string> candidates = {name};
    for (const char* prefix : {"model.", "bert.", "roberta."}) {
      std::string p = prefix;
      if (name.rfind(p, 0) == 0) candidates.push_back(name.substr(p.size()));
    }
    const TensorEntry* entry = nullptr;
    std::string found;
    for (const std::string& candidate : candidates) {
      if ((entry = checkpoint.Find(candidate))) {
        found = candidate;
        break;
      }
    }
    if (entry == nullptr) {
      if (model.IsHeadParameter(name)) {
        model.InitHead(name, parameter);
        report.initialized.push_back(name);
        continue;
      }
      return absl::InvalidArgumentError(
          absl::StrCat(checkpoint.dir(), ": tensor ", name, " is missing from the checkpoint"));
    }
    if (c10::IntArrayRef(entry->shape) != parameter.sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          checkpoint.FileOf(found).path(), ": tensor ", found, " has shape ",
          ShapeString(entry->shape), ", the model (config.json) needs ",
          ShapeString(parameter.sizes())));
    }
    if (entry->dtype == DType::kBool || entry->dtype == DType::kI64 ||
        entry->dtype == DType::kI32 || entry->dtype == DType::kI16 ||
        entry->dtype == DType::kI8 || entry->dtype == DType::kU8) {
      return absl::InvalidArgumentError(absl::StrCat(checkpoint.FileOf(found).path(), ": tensor ",
                                                     found, " is ", DTypeName(entry->dtype),
                                                     ", not a floating-point weight"));
    }
    ASSIGN_OR_RETURN(torch::Tensor value,
                     ReadTensor(checkpoint.FileOf(found), *entry, parameter.scalar_type()));
    parameter.copy_(value);
    used.insert(found);
  }
  for (const std::string& name : checkpoint.Names()) {
    if (!used.count(name)) report.unused.push_back(name);
  }
  return report;
}

}  // namespace loratrf::engine

namespace loratrf::engine {
namespace {

std::string ClassPrefix(const std::string& architecture) {
  for (const char* suffix : {"ForSequenceClassification", "ForCausalLM", "ForMaskedLM", "Model"}) {
    std::string s = suffix;
    if (architecture.size() > s.size() &&
        architecture.compare(architecture.size() - s.size(), s.size(), s) == 0) {
      return architecture.substr(0, architecture.size() - s.size());
    }
  }
  return architecture;
}

// Files of a model directory besides its weights that a merged model keeps.
constexpr const char* kTokenizerFiles[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.txt",      "vocab.json",            "merges.txt",              "added_tokens.json",
    "generation_config.json"};

absl::Status CopyFile(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  if (!in.good() && !in.eof()) return absl::InternalError(absl::StrCat(from, ": cannot read"));
  return WriteFileAtomically(to, bytes.str());
}

}  // namespace

absl::Status WriteHfModelFiles(TransformerModel& model, const std::string& source_model_dir,
                               const std::string& dir) {
  std::string source_config_path = source_model_dir + "/config.json";
  absl::StatusOr<std::string> text = ReadFileWithLimit(source_config_path, kMaxConfigBytes);
  if (!text.ok()) return absl::InvalidArgumentError(text.status().message());
  absl::StatusOr<nlohmann::json> parsed = ParseJson(*text, JsonLimits{/*max_depth=*/64, true});
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_config_path, ": not valid JSON: ", parsed.status().message()));
  }
  nlohmann::json config = *std::move(parsed);
  const ModelConfig& c = model.config();
  std::string prefix = ClassPrefix(c.architecture);
  switch (c.head) {
    case HeadKind::kCausalLm: config["architectures"] = {prefix + "ForCausalLM"}; break;
    case HeadKind::kNone: config["architectures"] = {prefix + "Model"}; break;
    case HeadKind::kSequenceClassification: {
      config["architectures"] = {prefix + "ForSequenceClassification"};
      nlohmann::json id2label = nlohmann::json::object(), label2id = nlohmann::json::object();
      for (int64_t i = 0; i < c.num_labels; ++i) {
        std::string label = static_cast<int64_t>(c.id2label.size()) == c.num_labels
                                ? c.id2label[static_cast<size_t>(i)]
                                : absl::StrCat("LABEL_", i);
        id2label[std::to_string(i)] = label;
        label2id[label] = i;
      }
      config["id2label"] = id2label;
      config["label2id"] = label2id;
      config.erase("num_labels");
      break;
    }
  }
  config.erase("dtype");
  config["torch_dtype"] = "float32";

  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (auto& item : model.named_parameters()) {
    tensors.emplace_back(item.key(), item.value().detach().to(torch::kFloat32));
  }
  RETURN_IF_ERROR(WriteTensors(dir + "/model.safetensors", tensors, {{"format", "pt"}}));
  RETURN_IF_ERROR(WriteFileAtomically(dir + "/config.json", config.dump(2) + "\n"));
  for (const char* name : kTokenizerFiles) {
    if (IsRegularFile(source_model_dir + "/" + name)) {
      RETURN_IF_ERROR(CopyFile(source_model_dir + "/" + name, dir + "/" + name));
    }
  }
  return absl::OkStatus();
}

absl::Status SaveHfModel(TransformerModel& model, const std::string& source_model_dir,
                         const std::string& output_dir) {
  struct stat info {};
  if (::stat(output_dir.c_str(), &info) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(output_dir, ": already exists"));
  }
  std::string parent = output_dir.substr(0, output_dir.find_last_of('/') + 1);
  std::string temp = absl::StrCat(parent.empty() ? "." : parent, "/.",
                                  output_dir.substr(parent.size()), ".tmp-", ::getpid());
  std::error_code ec;
  std::filesystem::remove_all(temp, ec);
  if (!std::filesystem::create_directories(temp, ec)) {
    return absl::InternalError(absl::StrCat(temp, ": cannot create: ", ec.message()));
  }
  auto write_all = [&]() -> absl::Status {
    RETURN_IF_ERROR(WriteHfModelFiles(model, source_model_dir, temp));
    RETURN_IF_ERROR(FsyncDirectory(temp));
    if (::rename(temp.c_str(), output_dir.c_str()) != 0) {
      return absl::InternalError(absl::StrCat(output_dir, ": cannot rename into place: ",
                                              std::strerror(errno)));
    }
    return FsyncDirectory(parent.empty() ? "." : parent);
  };
  absl::Status status = write_all();
  if (!status.ok()) std::filesystem::remove_all(temp, ec);
  return status;
}

}  // namespace loratrf::engine
