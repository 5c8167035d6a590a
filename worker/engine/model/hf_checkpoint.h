// A Hugging Face model directory's weights: model.safetensors, or the shards that
// model.safetensors.index.json names. Opening maps the files and checks them; tensors are
// copied out (converted to float32, or the requested dtype) only when loaded.
//
// Threading: immutable after Open; safe to share.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/checkpoint/safetensors.h"
#include "worker/engine/model/transformer.h"

namespace loratrf::engine {

class HfCheckpoint {
 public:
  static absl::StatusOr<HfCheckpoint> Open(const std::string& model_dir);

  const TensorEntry* Find(const std::string& name) const;
  const SafetensorsFile& FileOf(const std::string& name) const;
  std::vector<std::string> Names() const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<std::shared_ptr<const SafetensorsFile>> files_;
  std::map<std::string, std::pair<const SafetensorsFile*, const TensorEntry*>> tensors_;
};

struct LoadReport {
  std::vector<std::string> initialized;  // head parameters the checkpoint lacked, drawn fresh
  std::vector<std::string> unused;       // checkpoint tensors the model does not use
};

// Copies every model parameter from the checkpoint, found by its Hugging Face name (with or
// without the "model." / "bert." / "roberta." prefix). A missing non-head tensor, or any
// shape mismatch, is an error naming the tensor.
absl::StatusOr<LoadReport> LoadWeights(TransformerModel& model, const HfCheckpoint& checkpoint);

}  // namespace loratrf::engine

namespace loratrf::engine {

// Writes `model` as a Hugging Face model directory at `output_dir` (which must not exist):
// config.json (the source's, with the architecture of the model's head and torch_dtype
// float32), model.safetensors (float32), and the source's tokenizer files. Built in a temporary
// sibling directory and renamed into place, so a crash leaves nothing half-written.
absl::Status SaveHfModel(TransformerModel& model, const std::string& source_model_dir,
                         const std::string& output_dir);

// The files of SaveHfModel written into an existing directory `dir` (each atomically), for
// callers that commit the directory themselves (checkpoints).
absl::Status WriteHfModelFiles(TransformerModel& model, const std::string& source_model_dir,
                               const std::string& dir);

}  // namespace loratrf::engine
