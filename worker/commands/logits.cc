// loratrf-worker logits --model DIR [--adapter DIR] --input-ids 1,2,3 --output F.safetensors
#include <charconv>
#include <filesystem>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/command_line.h"
#include "common/status_macros.h"
#include "worker/engine/checkpoint/tensor_io.h"
#include "worker/commands/commands.h"
#include "worker/commands/model_loading.h"

namespace loratrf::worker {
namespace {

constexpr size_t kMaxInputIds = 1 << 16;

absl::StatusOr<std::vector<int64_t>> ParseIds(const std::string& text, int64_t vocab_size) {
  std::vector<int64_t> ids;
  for (absl::string_view piece : absl::StrSplit(text, ',')) {
    int64_t id = -1;
    auto [end, ec] = std::from_chars(piece.data(), piece.data() + piece.size(), id);
    if (piece.empty() || ec != std::errc() || end != piece.data() + piece.size()) {
      return absl::InvalidArgumentError(absl::StrCat("--input-ids: '", piece, "' is not an integer"));
    }
    if (id < 0 || id >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("--input-ids: token id ", id,
                                                     " is outside the vocabulary [0, ", vocab_size, ")"));
    }
    if (ids.size() == kMaxInputIds) {
      return absl::InvalidArgumentError(absl::StrCat("--input-ids: more than ", kMaxInputIds, " ids"));
    }
    ids.push_back(id);
  }
  return ids;
}

absl::Status CheckOutputPath(const std::string& path) {
  std::filesystem::path p(path);
  std::error_code ec;
  if (std::filesystem::is_directory(p, ec)) {
    return absl::InvalidArgumentError(absl::StrCat("--output: ", path, " is a directory"));
  }
  std::filesystem::path parent = p.has_parent_path() ? p.parent_path() : ".";
  if (!std::filesystem::is_directory(parent, ec)) {
    return absl::InvalidArgumentError(absl::StrCat("--output: directory ", parent.string(), " does not exist"));
  }
  return absl::OkStatus();
}

absl::Status Logits(const CommandLine& flags) {
  ASSIGN_OR_RETURN(std::string model_dir, flags.Require("--model"));
  ASSIGN_OR_RETURN(std::string ids_text, flags.Require("--input-ids"));
  ASSIGN_OR_RETURN(std::string output, flags.Require("--output"));
  RETURN_IF_ERROR(CheckOutputPath(output));
  ASSIGN_OR_RETURN(LoadedModel loaded, LoadModel(model_dir, flags.GetOr("--adapter", "")));
  ASSIGN_OR_RETURN(std::vector<int64_t> ids, ParseIds(ids_text, loaded.model->config().vocab_size));
  if (static_cast<int64_t>(ids.size()) > loaded.model->config().max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--input-ids: ", ids.size(), " tokens is more than the model's max_position_embeddings (",
        loaded.model->config().max_position_embeddings, ")"));
  }

  torch::NoGradGuard no_grad;
  torch::Tensor input = torch::tensor(ids, torch::kLong).unsqueeze(0);
  engine::ModelOutput out = loaded.model->Forward(input, torch::Tensor());
  std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"hidden_states", out.hidden_states.squeeze(0).to(torch::kFloat32)}};
  if (out.logits.defined()) tensors.emplace_back("logits", out.logits.squeeze(0).to(torch::kFloat32));
  return engine::WriteTensors(output, tensors);
}

}  // namespace

int RunLogits(const std::vector<std::string>& args) {
  return RunCommand("logits", args, 
                    {{"--model", true}, {"--adapter", true}, {"--input-ids", true}, {"--output", true}},
                    Logits);
}

}  // namespace loratrf::worker
