// BERT and RoBERTa: post-LayerNorm encoders with learned absolute positions and token types.
// Module names follow modeling_bert.py / modeling_roberta.py.
#include <torch/torch.h>

#include "worker/engine/adapters/adaptable_linear.h"
#include "worker/engine/model/architectures.h"
#include "worker/engine/model/layers.h"

namespace loratrf::engine {
namespace {

torch::Tensor Activate(Activation activation, const torch::Tensor& x) {
  return activation == Activation::kGeluTanh ? torch::gelu(x, "tanh")
         : activation == Activation::kSilu   ? torch::silu(x)
                                             : torch::gelu(x);
}

// A plain module that only names a level of the tree ("attention", "output", ...).
std::shared_ptr<torch::nn::Module> Level(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>(name));
}

class EncoderLayerImpl : public torch::nn::Module {
 public:
  EncoderLayerImpl(const ModelConfig& c, const torch::TensorOptions& options)
      : heads_(c.num_heads), head_dim_(c.head_dim), activation_(c.activation),
        hidden_dropout_(c.hidden_dropout), attention_dropout_(c.attention_dropout) {
    const int64_t h = c.hidden_size;
    auto attention = Level(*this, "attention");
    auto self = Level(*attention, "self");
    query = self->register_module("query", AdaptableLinear(h, h, true, options));
    key = self->register_module("key", AdaptableLinear(h, h, true, options));
    value = self->register_module("value", AdaptableLinear(h, h, true, options));
    auto attention_output = Level(*attention, "output");
    attention_dense = attention_output->register_module("dense", AdaptableLinear(h, h, true, options));
    attention_norm = attention_output->register_module("LayerNorm", LayerNorm(h, c.norm_eps, options));
    auto intermediate = Level(*this, "intermediate");
    intermediate_dense = intermediate->register_module(
        "dense", AdaptableLinear(h, c.intermediate_size, true, options));
    auto output = Level(*this, "output");
    output_dense = output->register_module("dense", AdaptableLinear(c.intermediate_size, h, true, options));
    output_norm = output->register_module("LayerNorm", LayerNorm(h, c.norm_eps, options));
  }

  torch::Tensor forward(const torch::Tensor& x, const AttentionMask& mask) {
    const int64_t batch = x.size(0), length = x.size(1);
    auto split = [&](const torch::Tensor& t) {
      return t.view({batch, length, heads_, head_dim_}).transpose(1, 2);
    };
    torch::Tensor context = Attention(split(query(x)), split(key(x)), split(value(x)), mask,
                                      attention_dropout_, is_training());
    context = context.transpose(1, 2).reshape({batch, length, heads_ * head_dim_});
    torch::Tensor h = attention_norm(x + Dropout(attention_dense(context)));
    torch::Tensor inner = Activate(activation_, intermediate_dense(h));
    return output_norm(h + Dropout(output_dense(inner)));
  }

  AdaptableLinear query{nullptr}, key{nullptr}, value{nullptr}, attention_dense{nullptr},
      intermediate_dense{nullptr}, output_dense{nullptr};
  LayerNorm attention_norm{nullptr}, output_norm{nullptr};

 private:
  torch::Tensor Dropout(const torch::Tensor& x) {
    return torch::dropout(x, hidden_dropout_, is_training() && hidden_dropout_ > 0);
  }
  int64_t heads_, head_dim_;
  Activation activation_;
  double hidden_dropout_, attention_dropout_;
};
TORCH_MODULE(EncoderLayer);

// BertModel / RobertaModel: the `bert.` or `roberta.` part of the checkpoint names.
class EncoderStackImpl : public torch::nn::Module {
 public:
  EncoderStackImpl(const ModelConfig& c, bool with_pooler, const torch::TensorOptions& options)
      : config_(c) {
    auto embeddings = Level(*this, "embeddings");
    word_embeddings = embeddings->register_module(
        "word_embeddings", Embedding(c.vocab_size, c.hidden_size, options));
    position_embeddings = embeddings->register_module(
        "position_embeddings", Embedding(c.max_position_embeddings, c.hidden_size, options));
    token_type_embeddings = embeddings->register_module(
        "token_type_embeddings", Embedding(c.type_vocab_size, c.hidden_size, options));
    embedding_norm = embeddings->register_module("LayerNorm", LayerNorm(c.hidden_size, c.norm_eps, options));
    auto encoder = Level(*this, "encoder");
    layers = encoder->register_module("layer", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_layers; ++i) layers->push_back(EncoderLayer(c, options));
    if (with_pooler) {
      auto pooler = Level(*this, "pooler");
      pooler_dense = pooler->register_module("dense", AdaptableLinear(c.hidden_size, c.hidden_size, true, options));
    }
  }

  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& attention_mask) {
    const int64_t length = ids.size(1);
    torch::Tensor positions;
    if (config_.family == ModelFamily::kRoberta) {
      // RoBERTa numbers real tokens from pad_token_id + 1 and gives padding pad_token_id.
      const int64_t pad = *config_.pad_token_id;
      torch::Tensor real = ids.ne(pad).to(torch::kLong);
      positions = real.cumsum(1) * real + pad;
    } else {
      positions = torch::arange(length, torch::dtype(torch::kLong).device(ids.device())).unsqueeze(0);
    }
    if (length > config_.max_position_embeddings ||
        (config_.family == ModelFamily::kRoberta &&
         length + *config_.pad_token_id >= config_.max_position_embeddings)) {
      throw std::invalid_argument("sequence of " + std::to_string(length) +
                                  " tokens is longer than the model's position table");
    }
    torch::Tensor h = word_embeddings(ids) + position_embeddings(positions) +
                      token_type_embeddings(torch::zeros_like(ids));
    h = embedding_norm(h);
    h = torch::dropout(h, config_.hidden_dropout, is_training() && config_.hidden_dropout > 0);

    // Bidirectional: only padding keys are masked, and with no padding nothing is.
    AttentionMask mask;
    if (attention_mask.defined()) {
      mask.allowed = attention_mask.ne(0).view({ids.size(0), 1, 1, length});
    }
    for (const auto& layer : *layers) h = layer->as<EncoderLayer>()->forward(h, mask);
    return h;
  }

  Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  LayerNorm embedding_norm{nullptr};
  torch::nn::ModuleList layers{nullptr};
  AdaptableLinear pooler_dense{nullptr};

 private:
  ModelConfig config_;
};
TORCH_MODULE(EncoderStack);

class EncoderModel : public TransformerModel {
 public:
  EncoderModel(ModelConfig c, int64_t num_labels, const torch::TensorOptions& options)
      : TransformerModel(std::move(c)) {
    const bool bert = config_.family == ModelFamily::kBert;
    const bool classify = config_.head == HeadKind::kSequenceClassification;
    base_name_ = bert ? "bert" : "roberta";
    // BertForSequenceClassification classifies the pooled [CLS]; RoBERTa has no pooler and its
    // own two-layer head on <s>.
    stack_ = register_module(base_name_, EncoderStack(config_, bert && classify, options));
    const torch::TensorOptions head_options = TrainedHeadOptions(options);
    if (classify && bert) {
      classifier_ = register_module("classifier", AdaptableLinear(config_.hidden_size, num_labels, true, head_options));
    } else if (classify) {
      auto head = Level(*this, "classifier");
      head_dense_ = head->register_module("dense", AdaptableLinear(config_.hidden_size, config_.hidden_size, true, head_options));
      classifier_ = head->register_module("out_proj", AdaptableLinear(config_.hidden_size, num_labels, true, head_options));
    }
    classifier_dropout_ = config_.classifier_dropout.value_or(config_.hidden_dropout);
  }

  ModelOutput Forward(const torch::Tensor& ids, const torch::Tensor& attention_mask) override {
    ModelOutput out;
    out.hidden_states = stack_(ids, attention_mask);
    if (config_.head != HeadKind::kSequenceClassification) return out;
    torch::Tensor first = out.hidden_states.select(1, 0);
    const bool dropout = is_training() && classifier_dropout_ > 0;
    if (head_dense_) {
      first = torch::dropout(first, classifier_dropout_, dropout);
      first = torch::tanh(head_dense_(first));
    } else {
      first = torch::tanh(stack_->pooler_dense(first));
    }
    out.logits = classifier_(torch::dropout(first, classifier_dropout_, dropout));
    return out;
  }

  bool IsHeadParameter(const std::string& name) const override {
    return name.rfind("classifier.", 0) == 0 || name.rfind(base_name_ + ".pooler.", 0) == 0;
  }
  std::vector<std::string> HeadModules() const override {
    if (config_.head != HeadKind::kSequenceClassification) return {};
    return {"classifier"};
  }

 private:
  std::string base_name_;
  EncoderStack stack_{nullptr};
  AdaptableLinear head_dense_{nullptr};
  AdaptableLinear classifier_{nullptr};
  double classifier_dropout_ = 0.0;
};

}  // namespace

std::shared_ptr<TransformerModel> MakeEncoderModel(ModelConfig config, int64_t num_labels,
                                                   const torch::TensorOptions& options) {
  return std::make_shared<EncoderModel>(std::move(config), num_labels, options);
}

}  // namespace loratrf::engine
