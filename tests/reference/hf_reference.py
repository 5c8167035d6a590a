#!/usr/bin/python3
"""Independent float64 reference forward pass for tiny Hugging Face checkpoints (+ LoRA/LoRATRF).

    /usr/bin/python3 tests/reference/hf_reference.py --model DIR [--adapter DIR] \
        --input-ids 1,2,3 --output out.safetensors

Same command-line contract as `loratrf-worker logits`. Runs one sequence (batch 1, no padding,
no attention mask) and writes float32 tensors:
  hidden_states  [T, hidden]  decoders: after the final RMSNorm; encoders: last layer output
  logits         [T, vocab]   *ForCausalLM (lm_head, or the embeddings when tied)
                 [num_labels] *ForSequenceClassification

An adapter whose task_type is SEQ_CLS, on a base without a classification head (*ForCausalLM or
a bare *Model), is computed as *ForSequenceClassification, the class PEFT trained it on: the
head (score / classifier, saved in modules_to_save) comes from the adapter and num_labels from
its first dimension. SEQ_CLS without those head tensors, or CAUSAL_LM on a
*ForSequenceClassification base, is an error (exit 1).

This is not transformers: it is written from transformers' formulas (modeling_llama.py,
modeling_mistral.py, modeling_qwen2.py, modeling_bert.py, modeling_roberta.py,
modeling_rope_utils.py) and SPEC-loratrf.md, in plain torch, with everything in float64 so that
the only differences from HF are HF's own rounding. Exit status: 0 ok, 2 unknown architecture or
unsupported config (one line on stderr), 1 any other error (bad input, missing or mismatched
tensors).
"""

import argparse
import json
import math
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

F64 = torch.float64


class Unsupported(Exception):
    """Unknown architecture or a config this reference does not implement: exit 2."""


class InputError(Exception):
    """Bad files or arguments: exit 1."""


DECODERS = ("llama", "mistral", "qwen2")
ENCODERS = ("bert", "roberta")
ARCHITECTURES = {}
for _mt, _cls in (("llama", "Llama"), ("mistral", "Mistral"), ("qwen2", "Qwen2"), ("bert", "Bert"),
                  ("roberta", "Roberta")):
    ARCHITECTURES[_cls + "Model"] = (_mt, "none")
    ARCHITECTURES[_cls + "ForSequenceClassification"] = (_mt, "classification")
    if _mt in DECODERS:
        ARCHITECTURES[_cls + "ForCausalLM"] = (_mt, "causal_lm")

BASE_PREFIX = {"llama": "model", "mistral": "model", "qwen2": "model", "bert": "bert", "roberta": "roberta"}
# Children of the base model: a key starting with one of these was saved by *Model (no prefix).
BASE_CHILDREN = {"decoder": ("embed_tokens", "layers", "norm", "rotary_emb"),
                 "encoder": ("embeddings", "encoder", "pooler")}
# Buffers that some transformers versions saved and every version ignores on load.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq", "embeddings.position_ids", "embeddings.token_type_ids")


# ----------------------------------------------------------------------------------------------
# Config


class Spec:
    """What the forward pass needs from config.json, with transformers' defaults filled in."""


def _req(cfg, key):
    if key not in cfg or cfg[key] is None:
        raise InputError(f"config.json: missing {key}")
    return cfg[key]


def parse_rope(cfg):
    """(rope_type, theta, params) from either the 4.x or the 5.x config layout."""
    if cfg.get("rope_parameters") is not None:
        rp = dict(cfg["rope_parameters"])
        if any(isinstance(v, dict) for v in rp.values()):
            raise Unsupported("rope_parameters per layer type (nested) is not supported")
        theta = rp.get("rope_theta", cfg.get("rope_theta", 10000.0))
    else:
        rp = dict(cfg.get("rope_scaling") or {})
        theta = cfg.get("rope_theta", 10000.0)
    rope_type = rp.get("rope_type", rp.get("type", "default"))  # "type" is the pre-4.43 spelling
    partial = rp.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0))
    if partial != 1.0:
        raise Unsupported(f"partial_rotary_factor {partial} is not supported")
    if rope_type not in ("default", "linear", "llama3"):
        raise Unsupported(f"rope_type {rope_type!r} is not supported")
    if rope_type == "linear" and "factor" not in rp:
        raise InputError("rope scaling linear: missing factor")
    if rope_type == "llama3":
        for k in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
            if k not in rp:
                raise InputError(f"rope scaling llama3: missing {k}")
    return rope_type, float(theta), rp


def rope_inv_freq(rope_type, theta, rp, head_dim):
    """inv_freq as modeling_rope_utils computes it (default / linear / llama3), in float64."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=F64) / head_dim))
    if rope_type == "linear":
        inv_freq = inv_freq / rp["factor"]
    elif rope_type == "llama3":
        factor = rp["factor"]
        low, high = rp["low_freq_factor"], rp["high_freq_factor"]
        old_ctx = rp["original_max_position_embeddings"]
        low_freq_wavelen, high_freq_wavelen = old_ctx / low, old_ctx / high
        wavelen = 2 * math.pi / inv_freq
        # Long wavelengths are slowed by `factor`, short ones kept, the band between interpolated.
        scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_ctx / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
        inv_freq = torch.where(medium, smoothed, scaled)
    return inv_freq


def num_labels_of(cfg):
    # PretrainedConfig: id2label, when present, decides num_labels; otherwise the default is 2.
    if cfg.get("id2label"):
        return len(cfg["id2label"])
    return int(cfg.get("num_labels", 2))


def parse_spec(cfg):
    s = Spec()
    archs = cfg.get("architectures") or []
    model_type = cfg.get("model_type")
    if len(archs) > 1:
        raise Unsupported(f"several architectures {archs}")
    if archs:
        if archs[0] not in ARCHITECTURES:
            raise Unsupported(f"unknown architecture {archs[0]!r}")
        s.model_type, s.head = ARCHITECTURES[archs[0]]
        s.arch = archs[0]
        if model_type is not None and model_type != s.model_type:
            raise Unsupported(f"architecture {archs[0]} with model_type {model_type!r}")
    elif model_type in DECODERS + ENCODERS:
        s.model_type, s.head = model_type, "none"
        s.arch = f"{model_type} (no architectures)"
    else:
        raise Unsupported(f"unknown model_type {model_type!r}")
    s.family = "decoder" if s.model_type in DECODERS else "encoder"
    s.prefix = BASE_PREFIX[s.model_type]
    s.hidden = int(_req(cfg, "hidden_size"))
    s.intermediate = int(_req(cfg, "intermediate_size"))
    s.layers = int(_req(cfg, "num_hidden_layers"))
    s.heads = int(_req(cfg, "num_attention_heads"))
    s.vocab = int(_req(cfg, "vocab_size"))
    s.max_pos = cfg.get("max_position_embeddings")
    s.pad_token_id = cfg.get("pad_token_id")
    s.num_labels = num_labels_of(cfg)
    if cfg.get("is_decoder") or cfg.get("add_cross_attention"):
        raise Unsupported("is_decoder / add_cross_attention encoders are not supported")

    if s.family == "decoder":
        s.act = cfg.get("hidden_act", "silu")
        s.kv_heads = int(cfg.get("num_key_value_heads") or s.heads)
        s.head_dim = int(cfg.get("head_dim") or s.hidden // s.heads)
        if s.heads % s.kv_heads:
            raise InputError(f"num_key_value_heads {s.kv_heads} does not divide num_attention_heads {s.heads}")
        s.eps = float(cfg.get("rms_norm_eps", 1e-6))
        s.tie = bool(cfg.get("tie_word_embeddings", False))  # all three config classes default to False
        attn_bias = bool(cfg.get("attention_bias", False)) if s.model_type == "llama" else False
        s.qkv_bias = attn_bias or s.model_type == "qwen2"
        s.o_bias = attn_bias
        s.mlp_bias = bool(cfg.get("mlp_bias", False)) if s.model_type == "llama" else False
        s.sliding_window = None
        if s.model_type == "mistral":
            s.sliding_window = cfg.get("sliding_window")
        if s.model_type == "qwen2" and cfg.get("use_sliding_window"):
            raise Unsupported("qwen2 use_sliding_window is not supported")
        layer_types = cfg.get("layer_types")
        if layer_types and any(t != "full_attention" for t in layer_types):
            raise Unsupported(f"layer_types {sorted(set(layer_types))} are not supported")
        s.rope_type, s.rope_theta, s.rope_params = parse_rope(cfg)
        s.inv_freq = rope_inv_freq(s.rope_type, s.rope_theta, s.rope_params, s.head_dim)
    else:
        s.act = cfg.get("hidden_act", "gelu")
        s.max_pos = int(_req(cfg, "max_position_embeddings"))
        if s.hidden % s.heads:
            raise InputError(f"hidden_size {s.hidden} is not a multiple of num_attention_heads {s.heads}")
        s.head_dim = s.hidden // s.heads
        s.eps = float(cfg.get("layer_norm_eps", 1e-12))
        pet = cfg.get("position_embedding_type", "absolute")
        if pet != "absolute":
            raise Unsupported(f"position_embedding_type {pet!r} is not supported")
        if s.pad_token_id is None:
            s.pad_token_id = 0 if s.model_type == "bert" else 1
    if s.act not in ACTIVATIONS:
        raise Unsupported(f"hidden_act {s.act!r} is not supported")
    return s


# ----------------------------------------------------------------------------------------------
# Weights


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: invalid JSON: {e}") from None


def load_checkpoint(model_dir):
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(index_path):
        weight_map = read_json(index_path).get("weight_map") or {}
        state = {}
        for fname in sorted(set(weight_map.values())):
            state.update(safetensors_io.load_file(os.path.join(model_dir, fname)))
        for name, fname in weight_map.items():
            if name not in state:
                raise InputError(f"{index_path}: {name} is not in {fname}")
        return state
    if os.path.exists(single):
        return safetensors_io.load_file(single)
    raise InputError(f"{model_dir}: no model.safetensors or model.safetensors.index.json")


def canonical_name(name, spec):
    """The name as *ForCausalLM / *ForSequenceClassification would have it (base prefix added)."""
    first = name.split(".", 1)[0]
    if first in BASE_CHILDREN[spec.family]:
        return f"{spec.prefix}.{name}"
    return name


def expected_shapes(spec):
    """Every tensor the forward pass reads, with its shape."""
    p, h, i_, shapes = spec.prefix + ".", spec.hidden, spec.intermediate, {}
    if spec.family == "decoder":
        q_out, kv_out = spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim
        shapes[p + "embed_tokens.weight"] = (spec.vocab, h)
        for l in range(spec.layers):
            lp = f"{p}layers.{l}."
            for proj, rows in (("q_proj", q_out), ("k_proj", kv_out), ("v_proj", kv_out)):
                shapes[lp + f"self_attn.{proj}.weight"] = (rows, h)
                if spec.qkv_bias:
                    shapes[lp + f"self_attn.{proj}.bias"] = (rows,)
            shapes[lp + "self_attn.o_proj.weight"] = (h, q_out)
            if spec.o_bias:
                shapes[lp + "self_attn.o_proj.bias"] = (h,)
            for proj, shape in (("gate_proj", (i_, h)), ("up_proj", (i_, h)), ("down_proj", (h, i_))):
                shapes[lp + f"mlp.{proj}.weight"] = shape
                if spec.mlp_bias:
                    shapes[lp + f"mlp.{proj}.bias"] = (shape[0],)
            shapes[lp + "input_layernorm.weight"] = (h,)
            shapes[lp + "post_attention_layernorm.weight"] = (h,)
        shapes[p + "norm.weight"] = (h,)
        if spec.head == "causal_lm" and not spec.tie:
            shapes["lm_head.weight"] = (spec.vocab, h)
        if spec.head == "classification":
            shapes["score.weight"] = (spec.num_labels, h)
        return shapes
    shapes[p + "embeddings.word_embeddings.weight"] = (spec.vocab, h)
    shapes[p + "embeddings.position_embeddings.weight"] = (spec.max_pos, h)
    shapes[p + "embeddings.token_type_embeddings.weight"] = None  # type_vocab_size rows, any
    for n in ("weight", "bias"):
        shapes[p + f"embeddings.LayerNorm.{n}"] = (h,)
    for l in range(spec.layers):
        lp = f"{p}encoder.layer.{l}."
        for m in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes[lp + m + ".weight"], shapes[lp + m + ".bias"] = (h, h), (h,)
        shapes[lp + "intermediate.dense.weight"], shapes[lp + "intermediate.dense.bias"] = (i_, h), (i_,)
        shapes[lp + "output.dense.weight"], shapes[lp + "output.dense.bias"] = (h, i_), (h,)
        for m in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[lp + m + ".weight"], shapes[lp + m + ".bias"] = (h,), (h,)
    if spec.head == "classification":
        if spec.model_type == "bert":
            shapes[p + "pooler.dense.weight"], shapes[p + "pooler.dense.bias"] = (h, h), (h,)
            shapes["classifier.weight"], shapes["classifier.bias"] = (spec.num_labels, h), (spec.num_labels,)
        else:
            shapes["classifier.dense.weight"], shapes["classifier.dense.bias"] = (h, h), (h,)
            shapes["classifier.out_proj.weight"] = (spec.num_labels, h)
            shapes["classifier.out_proj.bias"] = (spec.num_labels,)
    return shapes


def check_weights(state, spec):
    expected = expected_shapes(spec)
    for name, shape in expected.items():
        if name not in state:
            raise InputError(f"checkpoint: missing tensor {name}")
        if shape is not None and tuple(state[name].shape) != shape:
            raise InputError(f"checkpoint: {name} has shape {list(state[name].shape)}, expected {list(shape)}")
    tt = state[spec.prefix + ".embeddings.token_type_embeddings.weight"] if spec.family == "encoder" else None
    if tt is not None and (tt.dim() != 2 or tt.shape[1] != spec.hidden or tt.shape[0] < 1):
        raise InputError(f"checkpoint: token_type_embeddings has shape {list(tt.shape)}")
    # HF warns about and ignores unused tensors (e.g. a pooler under *ForCausalLM); so do we.
    extra = sorted(set(state) - set(expected) - {spec.prefix + ".pooler.dense.weight",
                                                  spec.prefix + ".pooler.dense.bias"})
    if extra:
        print(f"hf_reference: warning: ignoring unused tensors {extra[:5]}{'...' if len(extra) > 5 else ''}",
              file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# Adapters (SPEC-loratrf.md)

ADAPTER_SUFFIXES = {
    ".lora_A.weight": "A",
    ".lora_B.weight": "B",
    ".trf_G.weight": "G",
    ".trf_G.bias": "c",
    ".trf_u": "u",
}
FILTER_TENSORS = {"bottleneck": {"A", "B", "G", "c"}, "output": {"A", "B", "u"}, "both": {"A", "B", "G", "c", "u"}}


def pattern_value(patterns, module_path, default):
    # PEFT's rank_pattern/alpha_pattern lookup: first key k with re.match(r"(.*\.)?k$", path).
    for key in patterns or {}:
        if re.match(rf"(.*\.)?{key}$", module_path):
            return patterns[key]
    return default


def matches_targets(module_path, targets):
    # PEFT's check_target_module_exists: a regex string must fullmatch; a list matches by name or
    # by "." + name suffix.
    if isinstance(targets, str):
        return re.fullmatch(targets, module_path) is not None
    return any(module_path == t or module_path.endswith("." + t) for t in targets or [])


class AdaptedLinear:
    def __init__(self, kind, filt, scale, tensors):
        self.kind, self.filter, self.scale = kind, filt, scale
        self.t = {k: v.to(F64) for k, v in tensors.items()}

    def apply(self, x, y0):
        """y0 = W0 x + b0 already computed; adds the adapter per SPEC-loratrf.md (eval: no dropout)."""
        z = x @ self.t["A"].T
        if self.kind == "LORATRF" and self.filter in ("bottleneck", "both"):
            g = 2 * torch.sigmoid(z @ self.t["G"].T + self.t["c"])
            z = g * z
        y = y0 + self.scale * (z @ self.t["B"].T)
        if self.kind == "LORATRF" and self.filter in ("output", "both"):
            y = y * (2 * torch.sigmoid(self.t["u"]))
        return y


def read_adapter(adapter_dir):
    """(adapter_config.json, {tensor name: tensor}) of an adapter directory."""
    cfg = read_json(os.path.join(adapter_dir, "adapter_config.json"))
    path = os.path.join(adapter_dir, "adapter_model.safetensors")
    if not os.path.exists(path):
        raise InputError(f"{adapter_dir}: no adapter_model.safetensors")
    return cfg, safetensors_io.load_file(path)


ADAPTER_ROOT = "base_model.model."
# The head *ForSequenceClassification adds on top of the base model; the first tensor's first
# dimension is num_labels.
CLASSIFICATION_HEADS = {
    "decoder": ("score.weight",),
    "bert": ("classifier.weight", "classifier.bias"),
    "roberta": ("classifier.out_proj.weight", "classifier.out_proj.bias",
                "classifier.dense.weight", "classifier.dense.bias"),
}


def head_class(spec):
    return {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "bert": "Bert",
            "roberta": "Roberta"}[spec.model_type] + "ForSequenceClassification"


def adopt_task_head(spec, state, cfg, tensors):
    """Matches the model to the adapter's task_type, before the checkpoint is checked.

    PEFT trains a SEQ_CLS adapter on AutoModelForSequenceClassification: on a checkpoint without a
    classification head (*ForCausalLM, *Model) the head is created fresh and saved with the
    adapter (modules_to_save), so the model to compute is *ForSequenceClassification with that
    head. Changes spec (head, num_labels) and state (the head added, lm_head dropped) in place.
    """
    task = cfg.get("task_type")
    if task == "CAUSAL_LM" and spec.head == "classification":
        raise InputError(f"adapter: task_type CAUSAL_LM does not apply to the classification model {spec.arch} "
                         f"(a causal-LM adapter needs a *ForCausalLM or *Model base)")
    if task != "SEQ_CLS" or spec.head == "classification":
        return
    head_key = "decoder" if spec.family == "decoder" else spec.model_type
    names = CLASSIFICATION_HEADS[head_key]
    found = {}
    for key, value in tensors.items():
        if key.startswith(ADAPTER_ROOT) and canonical_name(key[len(ADAPTER_ROOT):], spec) in names:
            found[canonical_name(key[len(ADAPTER_ROOT):], spec)] = value
    missing = [n for n in names if n not in found]
    if missing:
        raise InputError(f"adapter: task_type SEQ_CLS on {spec.arch}, which has no classification head, needs the "
                         f"trained head in the adapter (modules_to_save), but it lacks {', '.join(missing)}")
    first = found[names[0]]
    if first.dim() != 2 or first.shape[0] < 1:
        raise InputError(f"adapter: {names[0]} has shape {list(first.shape)}, expected [num_labels, hidden]")
    if spec.model_type == "bert" and spec.prefix + ".pooler.dense.weight" not in state:
        raise InputError(f"adapter: task_type SEQ_CLS on {spec.arch}: {head_class(spec)} needs the base model's "
                         f"pooler ({spec.prefix}.pooler.dense.weight/bias), which the checkpoint lacks")
    spec.head, spec.num_labels = "classification", int(first.shape[0])
    expected = expected_shapes(spec)
    for name, value in found.items():
        if tuple(value.shape) != expected[name]:
            raise InputError(f"adapter: {name} has shape {list(value.shape)}, expected {list(expected[name])}")
        state[name] = value  # the freshly created head; load_adapter replaces it with the same tensor
    state.pop("lm_head.weight", None)  # *ForSequenceClassification has no lm_head (HF ignores it)


def load_adapter(adapter_dir, spec, state, files=None):
    """Returns ({canonical module path: AdaptedLinear}, {canonical param name: replacement tensor}).

    files: (config, tensors) as read_adapter returns them, to avoid reading the directory again.
    """
    cfg, tensors = files if files is not None else read_adapter(adapter_dir)
    kind = cfg.get("peft_type")
    if kind not in ("LORA", "LORATRF"):
        raise Unsupported(f"adapter peft_type {kind!r} is not supported")
    if cfg.get("use_dora"):
        raise Unsupported("adapter use_dora is not supported")
    if cfg.get("fan_in_fan_out"):
        raise Unsupported("adapter fan_in_fan_out is not supported (no Conv1D layers here)")
    # SPEC-loratrf.md: the default filter is bottleneck.
    filt = (cfg.get("trf_filter") or "bottleneck") if kind == "LORATRF" else None
    if kind == "LORATRF" and filt not in FILTER_TENSORS:
        raise Unsupported(f"adapter trf_filter {filt!r} is not supported")
    needed = FILTER_TENSORS[filt] if kind == "LORATRF" else {"A", "B"}
    r_default, alpha_default = cfg.get("r", 8), cfg.get("lora_alpha", 8)

    root = ADAPTER_ROOT
    modules, replacements = {}, {}
    for key, value in tensors.items():
        if not key.startswith(root):
            raise InputError(f"adapter: tensor {key} does not start with {root}")
        rest = key[len(root):]
        for suffix, role in ADAPTER_SUFFIXES.items():
            if rest.endswith(suffix):
                modules.setdefault(rest[: -len(suffix)], {})[role] = value
                break
        else:
            if "lora_" in rest or "trf_" in rest:
                raise Unsupported(f"adapter tensor {key} is not supported")
            # modules_to_save (and bias="all"/"lora_only" biases): a trained copy of a base tensor.
            name = canonical_name(rest, spec)
            if name not in state and not (name == "lm_head.weight" and spec.tie):
                raise InputError(f"adapter: {key} replaces {name}, which the model does not have")
            if name in state and tuple(state[name].shape) != tuple(value.shape):
                raise InputError(f"adapter: {key} has shape {list(value.shape)}, model has {list(state[name].shape)}")
            replacements[name] = value

    adapted = {}
    for raw_path, parts in modules.items():
        if set(parts) != needed:
            raise InputError(f"adapter: module {raw_path} has tensors {sorted(parts)}, "
                             f"expected {sorted(needed)} for {kind} {filt or ''}".rstrip())
        if not matches_targets(raw_path, cfg.get("target_modules")):
            print(f"hf_reference: warning: {raw_path} does not match target_modules", file=sys.stderr)
        mpath = canonical_name(raw_path, spec)
        wname = mpath + ".weight"
        if wname in state:
            w_shape = tuple(state[wname].shape)
        elif mpath == "lm_head" and spec.head == "causal_lm" and spec.tie:
            w_shape = (spec.vocab, spec.hidden)
        else:
            raise InputError(f"adapter: module {raw_path} is not a linear layer of this model")
        if len(w_shape) != 2 or "embed" in mpath:
            raise Unsupported(f"adapter: module {raw_path} is not a linear layer")
        d_out, d_in = w_shape
        r = pattern_value(cfg.get("rank_pattern"), raw_path, r_default)
        alpha = pattern_value(cfg.get("alpha_pattern"), raw_path, alpha_default)
        shapes = {"A": (r, d_in), "B": (d_out, r), "G": (r, r), "c": (r,), "u": (d_out,)}
        for role, t in parts.items():
            if tuple(t.shape) != shapes[role]:
                raise InputError(f"adapter: {raw_path} {role} has shape {list(t.shape)}, expected {list(shapes[role])}")
        scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
        adapted[mpath] = AdaptedLinear(kind, filt, scale, parts)
    return adapted, replacements


# ----------------------------------------------------------------------------------------------
# Model


def gelu_exact(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


ACTIVATIONS = {
    "silu": lambda x: x * torch.sigmoid(x),
    "swish": lambda x: x * torch.sigmoid(x),
    "gelu": gelu_exact,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "relu": torch.relu,
}


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)  # biased, as nn.LayerNorm
    return (x - mean) / torch.sqrt(var + eps) * w + b


def rotate_half(x):
    # HF pairs dimension i with i + d/2 (not the interleaved pairs of the original Meta code).
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x, positions, inv_freq):
    """x: [T, heads, head_dim]."""
    freqs = positions.to(F64)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    return x * cos + rotate_half(x) * sin


def attention(q, k, v, mask):
    """q: [T, H, D], k/v: [T, H, D] (kv heads already repeated), mask: [T, T] bool (True = keep)."""
    scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask[None], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = torch.einsum("hqk,khd->qhd", probs, v)
    return out.reshape(q.shape[0], -1)


class Model:
    def __init__(self, model_dir, adapter_dir=None):
        self.spec = parse_spec(read_json(os.path.join(model_dir, "config.json")))
        spec = self.spec
        state = {}
        for name, t in load_checkpoint(model_dir).items():
            if name.endswith(IGNORED_SUFFIXES):
                continue
            name = canonical_name(name, spec)
            if name in state:
                raise InputError(f"checkpoint: {name} appears with and without the base prefix")
            state[name] = t
        files = read_adapter(adapter_dir) if adapter_dir is not None else None
        if files is not None:
            adopt_task_head(spec, state, *files)
        check_weights(state, spec)
        self.adapted = {}
        if files is not None:
            self.adapted, replacements = load_adapter(adapter_dir, spec, state, files)
            state.update(replacements)
        if spec.head == "causal_lm" and spec.tie:
            # Tied: lm_head *is* the embedding matrix, whatever the file holds.
            state["lm_head.weight"] = state[spec.prefix + ".embed_tokens.weight"]
        self.w = {k: v.to(F64) for k, v in state.items() if v.is_floating_point()}

    def linear(self, path, x):
        y = x @ self.w[path + ".weight"].T
        bias = self.w.get(path + ".bias")
        if bias is not None:
            y = y + bias
        adapter = self.adapted.get(path)
        if adapter is not None:
            y = adapter.apply(x, y)
        return y

    # -- decoders --------------------------------------------------------------------------------

    def decoder(self, ids):
        s, p = self.spec, self.spec.prefix
        T = len(ids)
        positions = torch.arange(T)
        i, j = positions[:, None], positions[None, :]
        mask = j <= i
        if s.sliding_window is not None:
            # masking_utils.sliding_window_overlay: keep kv_idx > q_idx - sliding_window.
            mask = mask & (j > i - s.sliding_window)
        act = ACTIVATIONS[s.act]
        h = self.w[p + ".embed_tokens.weight"][torch.tensor(ids)]
        for l in range(s.layers):
            lp = f"{p}.layers.{l}."
            x = rms_norm(h, self.w[lp + "input_layernorm.weight"], s.eps)
            q = self.linear(lp + "self_attn.q_proj", x).view(T, s.heads, s.head_dim)
            k = self.linear(lp + "self_attn.k_proj", x).view(T, s.kv_heads, s.head_dim)
            v = self.linear(lp + "self_attn.v_proj", x).view(T, s.kv_heads, s.head_dim)
            q, k = apply_rope(q, positions, s.inv_freq), apply_rope(k, positions, s.inv_freq)
            # repeat_kv: query head n uses kv head n // (heads / kv_heads).
            rep = s.heads // s.kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            h = h + self.linear(lp + "self_attn.o_proj", attention(q, k, v, mask))
            x = rms_norm(h, self.w[lp + "post_attention_layernorm.weight"], s.eps)
            gated = act(self.linear(lp + "mlp.gate_proj", x)) * self.linear(lp + "mlp.up_proj", x)
            h = h + self.linear(lp + "mlp.down_proj", gated)
        h = rms_norm(h, self.w[p + ".norm.weight"], s.eps)
        logits = None
        if s.head == "causal_lm":
            logits = self.linear("lm_head", h)
        elif s.head == "classification":
            scores = self.linear("score", h)
            logits = scores[self.pooled_token(ids)]
        return h, logits

    def pooled_token(self, ids):
        # *ForSequenceClassification: the rightmost token that is not pad_token_id (argmax of
        # index * non_pad, hence 0 when every token is padding); the last token without a pad id.
        if self.spec.pad_token_id is None:
            return len(ids) - 1
        non_pad = torch.tensor([t != self.spec.pad_token_id for t in ids], dtype=torch.int64)
        return int((torch.arange(len(ids)) * non_pad).argmax())

    # -- encoders --------------------------------------------------------------------------------

    def encoder(self, ids):
        s, p = self.spec, self.spec.prefix
        T = len(ids)
        ids_t = torch.tensor(ids)
        if s.model_type == "roberta":
            # create_position_ids_from_input_ids: non-pad tokens count up from pad_token_id + 1.
            keep = (ids_t != s.pad_token_id).to(torch.int64)
            positions = torch.cumsum(keep, 0) * keep + s.pad_token_id
        else:
            positions = torch.arange(T)
        if int(positions.max()) >= s.max_pos:
            raise InputError(f"sequence of {T} tokens needs position {int(positions.max())}, "
                             f"max_position_embeddings is {s.max_pos}")
        e = (self.w[p + ".embeddings.word_embeddings.weight"][ids_t]
             + self.w[p + ".embeddings.position_embeddings.weight"][positions]
             + self.w[p + ".embeddings.token_type_embeddings.weight"][0])  # token_type_ids all 0
        h = layer_norm(e, self.w[p + ".embeddings.LayerNorm.weight"], self.w[p + ".embeddings.LayerNorm.bias"], s.eps)
        mask = torch.ones(T, T, dtype=torch.bool)  # bidirectional, no padding
        act = ACTIVATIONS[s.act]
        for l in range(s.layers):
            lp = f"{p}.encoder.layer.{l}."
            q = self.linear(lp + "attention.self.query", h).view(T, s.heads, s.head_dim)
            k = self.linear(lp + "attention.self.key", h).view(T, s.heads, s.head_dim)
            v = self.linear(lp + "attention.self.value", h).view(T, s.heads, s.head_dim)
            a = self.linear(lp + "attention.output.dense", attention(q, k, v, mask))
            # Post-LayerNorm: the residual is added before the norm.
            a = layer_norm(a + h, self.w[lp + "attention.output.LayerNorm.weight"],
                           self.w[lp + "attention.output.LayerNorm.bias"], s.eps)
            f = self.linear(lp + "output.dense", act(self.linear(lp + "intermediate.dense", a)))
            h = layer_norm(f + a, self.w[lp + "output.LayerNorm.weight"], self.w[lp + "output.LayerNorm.bias"], s.eps)
        logits = None
        if s.head == "classification":
            cls = h[0]
            if s.model_type == "bert":
                pooled = torch.tanh(self.linear(p + ".pooler.dense", cls))
                logits = self.linear("classifier", pooled)
            else:
                logits = self.linear("classifier.out_proj", torch.tanh(self.linear("classifier.dense", cls)))
        return h, logits

    def forward(self, ids):
        s = self.spec
        if not ids:
            raise InputError("--input-ids: empty sequence")
        bad = [t for t in ids if not 0 <= t < s.vocab]
        if bad:
            raise InputError(f"--input-ids: {bad[0]} is outside the vocabulary (vocab_size {s.vocab})")
        with torch.no_grad():
            return self.decoder(ids) if s.family == "decoder" else self.encoder(ids)


def run(model_dir, input_ids, adapter_dir=None):
    """Python entry point for tests: {"hidden_states": f64 tensor, "logits": f64 tensor (if any)}."""
    h, logits = Model(model_dir, adapter_dir).forward(list(input_ids))
    out = {"hidden_states": h}
    if logits is not None:
        out["logits"] = logits
    return out


def parse_ids(text):
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise InputError(f"--input-ids: expected comma-separated integers, got {text!r}") from None


def main(argv=None):
    p = argparse.ArgumentParser(description="Independent float64 reference forward pass (see module docstring).")
    p.add_argument("--model", required=True, help="Hugging Face model directory")
    p.add_argument("--adapter", help="PEFT-format LoRA / LoRATRF adapter directory")
    p.add_argument("--input-ids", required=True, help="comma-separated token ids, e.g. 1,2,3")
    p.add_argument("--output", required=True, help="safetensors file to write")
    args = p.parse_args(argv)
    try:
        out = run(args.model, parse_ids(args.input_ids), args.adapter)
        safetensors_io.save_file({k: v.to(torch.float32).contiguous() for k, v in out.items()}, args.output,
                                 metadata={"format": "pt"})
    except Unsupported as e:
        print(f"hf_reference: unsupported: {e}", file=sys.stderr)
        return 2
    except (InputError, safetensors_io.SafetensorsError) as e:
        print(f"hf_reference: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
