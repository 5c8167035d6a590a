// The Llama family (Llama 2/3, Mistral, Qwen2): pre-norm decoder layers with RMSNorm, RoPE,
// grouped-query attention and a SwiGLU MLP. Module names follow modeling_llama.py.
#include <cmath>
#include <utility>

#include <torch/torch.h>

#include "worker/engine/adapters/adaptable_linear.h"
#include "worker/engine/model/architectures.h"
#include "worker/engine/model/layers.h"

namespace loratrf::engine {
namespace {

torch::Tensor Activate(Activation activation, const torch::Tensor& x) {
  switch (activation) {
    case Activation::kSilu:
      return torch::silu(x);
    case Activation::kGeluExact:
      return torch::gelu(x);
    case Activation::kGeluTanh:
      return torch::gelu(x, "tanh");
  }
  return x;
}

// RoPE frequencies, with Llama 3's and linear scaling (modeling_rope_utils.py).
torch::Tensor InverseFrequencies(const ModelConfig& config) {
  const RopeConfig& rope = config.rope;
  torch::Tensor exponents =
      torch::arange(0, config.head_dim, 2, torch::kFloat64) / static_cast<double>(config.head_dim);
  torch::Tensor inv_freq = 1.0 / torch::pow(rope.theta, exponents);
  if (rope.type == RopeConfig::Type::kLinear) return inv_freq / rope.factor;
  if (rope.type == RopeConfig::Type::kLlama3) {
    const double old_context = static_cast<double>(rope.original_max_position_embeddings);
    const double low_freq_wavelen = old_context / rope.low_freq_factor;
    const double high_freq_wavelen = old_context / rope.high_freq_factor;
    torch::Tensor wavelen = 2 * M_PI / inv_freq;
    // Long wavelengths are slowed by `factor`, short ones kept, the middle band interpolated.
    torch::Tensor scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / rope.factor, inv_freq);
    torch::Tensor smooth = (old_context / wavelen - rope.low_freq_factor) /
                           (rope.high_freq_factor - rope.low_freq_factor);
    torch::Tensor smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled;
    torch::Tensor medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
    inv_freq = torch::where(medium, smoothed, scaled);
  }
  return inv_freq;
}

torch::Tensor RotateHalf(const torch::Tensor& x) {
  auto halves = x.chunk(2, -1);
  return torch::cat({-halves[1], halves[0]}, -1);
}

class DecoderAttentionImpl : public torch::nn::Module {
 public:
  DecoderAttentionImpl(const ModelConfig& c, const torch::TensorOptions& options)
      : heads_(c.num_heads), kv_heads_(c.num_kv_heads), head_dim_(c.head_dim),
        dropout_(c.attention_dropout) {
    q_proj = register_module("q_proj", AdaptableLinear(c.hidden_size, heads_ * head_dim_, c.qkv_bias, options));
    k_proj = register_module("k_proj", AdaptableLinear(c.hidden_size, kv_heads_ * head_dim_, c.qkv_bias, options));
    v_proj = register_module("v_proj", AdaptableLinear(c.hidden_size, kv_heads_ * head_dim_, c.qkv_bias, options));
    o_proj = register_module("o_proj", AdaptableLinear(heads_ * head_dim_, c.hidden_size, c.o_bias, options));
  }

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const AttentionMask& mask) {
    const int64_t batch = x.size(0), length = x.size(1);
    auto split = [&](const torch::Tensor& t, int64_t heads) {
      return t.view({batch, length, heads, head_dim_}).transpose(1, 2);
    };
    torch::Tensor q = split(q_proj(x), heads_);
    torch::Tensor k = split(k_proj(x), kv_heads_);
    torch::Tensor v = split(v_proj(x), kv_heads_);
    q = q * cos + RotateHalf(q) * sin;
    k = k * cos + RotateHalf(k) * sin;
    torch::Tensor out = Attention(q, k, v, mask, dropout_, is_training());
    return o_proj(out.transpose(1, 2).reshape({batch, length, heads_ * head_dim_}));
  }

  AdaptableLinear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t heads_, kv_heads_, head_dim_;
  double dropout_;
};
TORCH_MODULE(DecoderAttention);

class DecoderMlpImpl : public torch::nn::Module {
 public:
  DecoderMlpImpl(const ModelConfig& c, const torch::TensorOptions& options)
      : activation_(c.activation) {
    gate_proj = register_module("gate_proj", AdaptableLinear(c.hidden_size, c.intermediate_size, c.mlp_bias, options));
    up_proj = register_module("up_proj", AdaptableLinear(c.hidden_size, c.intermediate_size, c.mlp_bias, options));
    down_proj = register_module("down_proj", AdaptableLinear(c.intermediate_size, c.hidden_size, c.mlp_bias, options));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return down_proj(Activate(activation_, gate_proj(x)) * up_proj(x));
  }
  AdaptableLinear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};

 private:
  Activation activation_;
};
TORCH_MODULE(DecoderMlp);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ModelConfig& c, const torch::TensorOptions& options) {
    self_attn = register_module("self_attn", DecoderAttention(c, options));
    mlp = register_module("mlp", DecoderMlp(c, options));
    input_layernorm = register_module("input_layernorm", RmsNorm(c.hidden_size, c.norm_eps, options));
    post_attention_layernorm =
        register_module("post_attention_layernorm", RmsNorm(c.hidden_size, c.norm_eps, options));
  }
  torch::Tensor forward(torch::Tensor h, const torch::Tensor& cos, const torch::Tensor& sin,
                        const AttentionMask& mask) {
    h = h + self_attn(input_layernorm(h), cos, sin, mask);
    return h + mlp(post_attention_layernorm(h));
  }
  DecoderAttention self_attn{nullptr};
  DecoderMlp mlp{nullptr};
  RmsNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

// LlamaModel: the `model.` part of every checkpoint name.
class DecoderStackImpl : public torch::nn::Module {
 public:
  DecoderStackImpl(const ModelConfig& c, const torch::TensorOptions& options) : config_(c) {
    embed_tokens = register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size, options));
    layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_layers; ++i) layers->push_back(DecoderLayer(c, options));
    norm = register_module("norm", RmsNorm(c.hidden_size, c.norm_eps, options));
    inv_freq_ = InverseFrequencies(c);
  }

  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& attention_mask) {
    const int64_t length = ids.size(1);
    torch::Tensor h = embed_tokens(ids);

    // Positions 0..T-1 (right padding keeps every sequence's tokens at their own positions).
    const auto [cos, sin] = RotaryTables(length, h);

    // Causal, Mistral's sliding window, and key padding. Causal alone needs no mask tensor.
    AttentionMask mask;
    const bool windowed = config_.sliding_window && *config_.sliding_window < length;
    if (!attention_mask.defined() && !windowed) {
      mask.causal = true;
    } else {
      torch::Tensor query = torch::arange(length, torch::dtype(torch::kLong).device(h.device()));
      torch::Tensor allowed = query.unsqueeze(0) <= query.unsqueeze(1);  // [q, k]: k <= q
      if (windowed) {
        allowed = allowed.logical_and(query.unsqueeze(1) - query.unsqueeze(0) <
                                      *config_.sliding_window);
      }
      allowed = allowed.unsqueeze(0).unsqueeze(0);
      if (attention_mask.defined()) {
        allowed = allowed.logical_and(attention_mask.to(torch::kBool).unsqueeze(1).unsqueeze(2));
      }
      mask.allowed = allowed;
    }

    for (const auto& layer : *layers) h = layer->as<DecoderLayer>()->forward(h, cos, sin, mask);
    return norm(h);
  }

  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RmsNorm norm{nullptr};

 private:
  // cos and sin of every position's rotation angles, [T, head_dim], in h's dtype on h's device:
  // made once (in float64, as before) and sliced for shorter sequences, not rebuilt and copied
  // to the device on every forward.
  std::pair<torch::Tensor, torch::Tensor> RotaryTables(int64_t length, const torch::Tensor& h) {
    if (!rope_cos_.defined() || rope_cos_.size(0) < length || rope_cos_.device() != h.device() ||
        rope_cos_.scalar_type() != h.scalar_type()) {
      torch::Tensor positions = torch::arange(length, torch::dtype(torch::kFloat64));
      torch::Tensor angles = torch::outer(positions, inv_freq_);
      torch::Tensor emb = torch::cat({angles, angles}, -1);
      rope_cos_ = emb.cos().to(h.device(), h.scalar_type());
      rope_sin_ = emb.sin().to(h.device(), h.scalar_type());
    }
    return {rope_cos_.narrow(0, 0, length), rope_sin_.narrow(0, 0, length)};
  }

  ModelConfig config_;
  torch::Tensor inv_freq_;  // float64 [head_dim / 2]; not a parameter
  torch::Tensor rope_cos_, rope_sin_;  // the tables RotaryTables() last made
};
TORCH_MODULE(DecoderStack);

class DecoderModel : public TransformerModel {
 public:
  DecoderModel(ModelConfig c, int64_t num_labels, const torch::TensorOptions& options)
      : TransformerModel(std::move(c)) {
    stack_ = register_module("model", DecoderStack(config_, options));
    if (config_.head == HeadKind::kCausalLm && !config_.tie_word_embeddings) {
      lm_head_ = register_module("lm_head", AdaptableLinear(config_.hidden_size, config_.vocab_size, false, options));
    } else if (config_.head == HeadKind::kSequenceClassification) {
      score_ = register_module("score", AdaptableLinear(config_.hidden_size, num_labels, false,
                                                        TrainedHeadOptions(options)));
    }
  }

  ModelOutput Forward(const torch::Tensor& ids, const torch::Tensor& attention_mask) override {
    ModelOutput out;
    out.hidden_states = stack_(ids, attention_mask);
    if (config_.head == HeadKind::kCausalLm) {
      out.logits = lm_head_ ? lm_head_(out.hidden_states)
                            : torch::nn::functional::linear(out.hidden_states,
                                                            stack_->embed_tokens->weight);
    } else if (config_.head == HeadKind::kSequenceClassification) {
      // As LlamaForSequenceClassification: the rightmost token that is neither padding by the
      // attention mask nor the pad token.
      torch::Tensor real = attention_mask.defined() ? attention_mask.to(torch::kBool)
                                                    : torch::ones_like(ids, torch::kBool);
      if (config_.pad_token_id) real = real.logical_and(ids.ne(*config_.pad_token_id));
      torch::Tensor positions = torch::arange(ids.size(1), torch::dtype(torch::kLong).device(ids.device()));
      torch::Tensor last = (positions.unsqueeze(0) * real.to(torch::kLong)).argmax(-1);
      torch::Tensor rows = torch::arange(ids.size(0), torch::dtype(torch::kLong).device(ids.device()));
      out.logits = score_(out.hidden_states.index({rows, last}));
    }
    return out;
  }

  bool IsHeadParameter(const std::string& name) const override {
    return name.rfind("score.", 0) == 0;
  }
  std::vector<std::string> HeadModules() const override {
    if (config_.head == HeadKind::kSequenceClassification) return {"score"};
    return {};
  }

 private:
  DecoderStack stack_{nullptr};
  AdaptableLinear lm_head_{nullptr};
  AdaptableLinear score_{nullptr};
};

}  // namespace

std::shared_ptr<TransformerModel> MakeDecoderModel(ModelConfig config, int64_t num_labels,
                                                   const torch::TensorOptions& options) {
  return std::make_shared<DecoderModel>(std::move(config), num_labels, options);
}

}  // namespace loratrf::engine
