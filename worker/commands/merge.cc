// loratrf-worker merge --model DIR --adapter DIR --output DIR
#include <filesystem>
#include <iostream>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "worker/engine/adapters/adapter_model.h"
#include "common/command_line.h"
#include "common/status_macros.h"
#include "worker/commands/commands.h"
#include "worker/commands/model_loading.h"
#include "worker/engine/model/hf_checkpoint.h"

namespace loratrf::worker {
namespace {

absl::Status Merge(const CommandLine& flags) {
  ASSIGN_OR_RETURN(std::string model_dir, flags.Require("--model"));
  ASSIGN_OR_RETURN(std::string adapter_dir, flags.Require("--adapter"));
  ASSIGN_OR_RETURN(std::string output, flags.Require("--output"));
  if (std::filesystem::exists(output)) {
    return absl::InvalidArgumentError(absl::StrCat("--output: ", output, " already exists"));
  }
  ASSIGN_OR_RETURN(LoadedModel loaded, LoadModel(model_dir, adapter_dir));
  RETURN_IF_ERROR(engine::MergeAdapters(*loaded.model));
  RETURN_IF_ERROR(engine::SaveHfModel(*loaded.model, model_dir, output));
  std::cout << "merged model written to " << output << "\n";
  return absl::OkStatus();
}

}  // namespace

int RunMerge(const std::vector<std::string>& args) {
  return RunCommand("merge", args, 
                    {{"--model", true}, {"--adapter", true}, {"--output", true}}, Merge);
}

}  // namespace loratrf::worker
