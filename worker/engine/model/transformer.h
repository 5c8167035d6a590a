// TransformerModel: a Hugging Face *Model / *ForCausalLM / *ForSequenceClassification, built
// from a ModelConfig with the same module tree, so that named_parameters() yields Hugging Face
// tensor names ("model.layers.0.self_attn.q_proj.weight", "roberta.encoder.layer.0...").
//
// Threading: a torch module; used by one thread at a time.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "worker/engine/model/config.h"
#include <torch/nn/module.h>

namespace loratrf::engine {

struct ModelOutput {
  torch::Tensor hidden_states;  // [B, T, hidden]: after the final norm (decoders), last layer (encoders)
  torch::Tensor logits;         // [B, T, vocab], [B, num_labels], or undefined without a head
};

class TransformerModel : public torch::nn::Module {
 public:
  explicit TransformerModel(ModelConfig config) : config_(std::move(config)) {}

  // input_ids: int64 [B, T]. attention_mask: [B, T], 1 for tokens and 0 for padding (right
  // padding); undefined means no padding.
  virtual ModelOutput Forward(const torch::Tensor& input_ids,
                              const torch::Tensor& attention_mask) = 0;

  const ModelConfig& config() const { return config_; }
  HeadKind head() const { return config_.head; }

  // Parameter names of the task head, which a base checkpoint may lack (a classification head
  // on a *ForCausalLM checkpoint): initialised fresh, trained, saved as modules_to_save.
  virtual bool IsHeadParameter(const std::string& name) const = 0;
  // The module paths of the head, for adapter_config.json's modules_to_save.
  virtual std::vector<std::string> HeadModules() const = 0;
  // Draws the head's parameters as transformers' _init_weights does (normal(0, 0.02), zero bias).
  void InitHead(const std::string& name, torch::Tensor& parameter) const;

 protected:
  ModelConfig config_;
};

// Builds the model for `config` with `head` (which may differ from the checkpoint's own head)
// and, for classification, `num_labels` classes. Parameters are allocated with `options`
// (torch::kMeta allocates nothing: for counting) and left uninitialised: load them.
std::shared_ptr<TransformerModel> BuildModel(ModelConfig config, HeadKind head,
                                             int64_t num_labels,
                                             const torch::TensorOptions& options);

}  // namespace loratrf::engine
