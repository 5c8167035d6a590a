#!/usr/bin/python3
"""Writes a tiny random Hugging Face model directory, laid out as `save_pretrained` writes it.

    /usr/bin/python3 tests/reference/make_tiny_model.py --arch llama --head causal_lm --output DIR

Files: config.json (sorted keys, indent 2, as PretrainedConfig.to_json_string writes them) and
model.safetensors, or model-0000i-of-0000N.safetensors + model.safetensors.index.json with
--shards N. Weights are random but seeded per tensor (from the seed and the tensor's prefixed
name), so two models made with the same seed share every tensor they have in common whatever
their dtype, head, sharding or prefix: that is what lets the self-checks compare them.

Scales are chosen so that outputs are clearly non-trivial (unlike HF's std 0.02 init, which
makes every layer nearly the identity and hides bugs).
"""

import argparse
import json
import os
import sys
import zlib

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

DECODERS = ("llama", "mistral", "qwen2")
ENCODERS = ("bert", "roberta")
CLASS_PREFIX = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "bert": "Bert", "roberta": "Roberta"}
# The attribute name of the base model inside *ForCausalLM / *ForSequenceClassification.
BASE_PREFIX = {"llama": "model", "mistral": "model", "qwen2": "model", "bert": "bert", "roberta": "roberta"}
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# The transformers versions whose save_pretrained output each --config-style imitates.
VERSION = {"v4": "4.46.3", "v5": "5.0.0"}

# Tiny sizes shared by every arch (the defaults of --hidden, --intermediate, --vocab, --heads and
# --kv-heads; benchmarks ask for larger ones).
HIDDEN = 32
INTERMEDIATE = 64
VOCAB = 64
HEADS = 4
KV_HEADS = 2  # GQA by default for decoders
DECODER_MAX_POS = 128
ENCODER_SEQ = 64  # BERT max_position_embeddings; RoBERTa adds its padding offset (+2)

# llama3 rope scaling for a 8-dim head at theta 1e4: inv_freq = [1, .1, .01, .001] has
# wavelengths [6.3, 63, 628, 6283]; with original_max_position_embeddings 64 the boundaries are
# 64/4 = 16 and 64/1 = 64, so one frequency is kept, one smoothed and two divided by the factor.
LLAMA3_SCALING = {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}


def seeded_randn(seed, name, shape):
    """Standard normal float32 tensor that depends only on (seed, name, shape)."""
    g = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{name}".encode()) & 0x7FFFFFFF)
    return torch.randn(*shape, generator=g, dtype=torch.float32)


def init_tensor(seed, name, shape):
    """Random value for a parameter, scaled by its role (see module docstring)."""
    leaf = name.rsplit(".", 1)[-1]
    noise = seeded_randn(seed, name, shape)
    is_norm = "norm" in name.lower()  # RMSNorm / LayerNorm parameters
    if is_norm and leaf == "weight":
        return 1.0 + 0.1 * noise
    if leaf == "bias":
        return 0.05 * noise if is_norm else 0.1 * noise
    if "embed" in name:
        return 0.5 * noise
    if name.split(".", 1)[0] in ("lm_head", "score", "classifier"):
        return 0.3 * noise  # heads: keep logits well away from zero
    return 0.15 * noise


def label_maps(num_labels):
    id2label = {str(i): f"LABEL_{i}" for i in range(num_labels)}
    label2id = {f"LABEL_{i}": i for i in range(num_labels)}
    return id2label, label2id


def architecture_name(arch, head):
    suffix = {"none": "Model", "causal_lm": "ForCausalLM", "classification": "ForSequenceClassification"}[head]
    return CLASS_PREFIX[arch] + suffix


def decoder_config(args, head_dim):
    cfg = {
        "architectures": [architecture_name(args.arch, args.head)],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": args.hidden,
        "initializer_range": 0.02,
        "intermediate_size": args.intermediate,
        "max_position_embeddings": DECODER_MAX_POS,
        "model_type": args.arch,
        "num_attention_heads": args.heads,
        "num_hidden_layers": args.layers,
        "num_key_value_heads": args.kv_heads,
        "pad_token_id": 0,
        "rms_norm_eps": 1e-06,
        "tie_word_embeddings": bool(args.tie_embeddings),
        "use_cache": True,
        "vocab_size": args.vocab,
    }
    if args.arch == "llama":
        # LlamaConfig always stores head_dim (hidden // heads when not given).
        cfg.update({"attention_bias": False, "head_dim": head_dim, "mlp_bias": False, "pretraining_tp": 1})
    elif args.arch == "mistral":
        # MistralConfig stores head_dim too; 4096 is Mistral-7B-v0.1's window (longer than any test).
        cfg.update({"head_dim": head_dim, "sliding_window": 4096})
    elif args.arch == "qwen2":
        # Qwen2 4.x modeling ignored config.head_dim in early releases, so only write it when asked.
        cfg.update({"max_window_layers": args.layers, "sliding_window": 4096, "use_sliding_window": False})
        if args.head_dim is not None:
            cfg["head_dim"] = head_dim
        if args.config_style == "v5":
            # 5.x Qwen2Config lists layer_types and stores no window when sliding is off.
            cfg["layer_types"] = ["full_attention"] * args.layers
            cfg["sliding_window"] = None

    rope_scaling = None
    if args.rope_scaling == "llama3":
        rope_scaling = {"rope_type": "llama3", **LLAMA3_SCALING}
    theta = 10000.0
    if args.config_style == "v4":
        if args.arch != "mistral":  # MistralConfig 4.x has no rope_scaling attribute
            cfg["rope_scaling"] = rope_scaling
        cfg["rope_theta"] = theta
    else:
        # transformers 5.x: everything RoPE lives in rope_parameters.
        params = {"rope_theta": theta, "rope_type": "default"}
        if rope_scaling is not None:
            params.update(rope_scaling)
        cfg["rope_parameters"] = params
    return cfg


def encoder_config(args):
    cfg = {
        "architectures": [architecture_name(args.arch, args.head)],
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": args.hidden,
        "initializer_range": 0.02,
        "intermediate_size": args.intermediate,
        "layer_norm_eps": 1e-12,
        "model_type": args.arch,
        "num_attention_heads": args.heads,
        "num_hidden_layers": args.layers,
        "position_embedding_type": "absolute",
        "use_cache": True,
        "vocab_size": args.vocab,
    }
    if args.arch == "bert":
        cfg.update({"max_position_embeddings": ENCODER_SEQ, "pad_token_id": 0, "type_vocab_size": 2})
    else:
        # RoBERTa positions start at pad_token_id + 1, so the table is 2 longer than the sequence.
        cfg.update({"bos_token_id": 0, "eos_token_id": 2, "max_position_embeddings": ENCODER_SEQ + 2,
                    "pad_token_id": 1, "type_vocab_size": 1})
    return cfg


def build_config(args, head_dim):
    cfg = decoder_config(args, head_dim) if args.arch in DECODERS else encoder_config(args)
    if args.head == "classification":
        id2label, label2id = label_maps(args.num_labels)
        # to_diff_dict drops values equal to PretrainedConfig's defaults, and the default is
        # exactly two labels named LABEL_0/LABEL_1: such a config has no id2label at all and
        # readers must fall back to num_labels = 2.
        if args.num_labels != 2:
            cfg["id2label"] = id2label
            cfg["label2id"] = label2id
    dtype_key = "torch_dtype" if args.config_style == "v4" else "dtype"  # renamed in 4.56 / 5.x
    cfg[dtype_key] = args.dtype
    cfg["transformers_version"] = VERSION[args.config_style]
    return cfg


def decoder_shapes(args, head_dim):
    """(name, shape) in the order HF's state_dict() lists them."""
    q_out, kv_out = args.heads * head_dim, args.kv_heads * head_dim
    out = [("model.embed_tokens.weight", (args.vocab, args.hidden))]
    for i in range(args.layers):
        p = f"model.layers.{i}."
        qkv_bias = args.arch == "qwen2"
        for proj, rows in (("q_proj", q_out), ("k_proj", kv_out), ("v_proj", kv_out)):
            out.append((p + f"self_attn.{proj}.weight", (rows, args.hidden)))
            if qkv_bias:
                out.append((p + f"self_attn.{proj}.bias", (rows,)))
        out.append((p + "self_attn.o_proj.weight", (args.hidden, q_out)))
        out.append((p + "mlp.gate_proj.weight", (args.intermediate, args.hidden)))
        out.append((p + "mlp.up_proj.weight", (args.intermediate, args.hidden)))
        out.append((p + "mlp.down_proj.weight", (args.hidden, args.intermediate)))
        out.append((p + "input_layernorm.weight", (args.hidden,)))
        out.append((p + "post_attention_layernorm.weight", (args.hidden,)))
    out.append(("model.norm.weight", (args.hidden,)))
    if args.head == "causal_lm" and not args.tie_embeddings:
        out.append(("lm_head.weight", (args.vocab, args.hidden)))  # tied heads are not saved
    if args.head == "classification":
        out.append(("score.weight", (args.num_labels, args.hidden)))  # no bias in *ForSequenceClassification
    return out


def encoder_shapes(args, max_pos, type_vocab):
    b = BASE_PREFIX[args.arch] + "."
    out = [
        (b + "embeddings.word_embeddings.weight", (args.vocab, args.hidden)),
        (b + "embeddings.position_embeddings.weight", (max_pos, args.hidden)),
        (b + "embeddings.token_type_embeddings.weight", (type_vocab, args.hidden)),
        (b + "embeddings.LayerNorm.weight", (args.hidden,)),
        (b + "embeddings.LayerNorm.bias", (args.hidden,)),
    ]
    for i in range(args.layers):
        p = f"{b}encoder.layer.{i}."
        for m in ("query", "key", "value"):
            out += [(p + f"attention.self.{m}.weight", (args.hidden, args.hidden)),
                    (p + f"attention.self.{m}.bias", (args.hidden,))]
        out += [
            (p + "attention.output.dense.weight", (args.hidden, args.hidden)),
            (p + "attention.output.dense.bias", (args.hidden,)),
            (p + "attention.output.LayerNorm.weight", (args.hidden,)),
            (p + "attention.output.LayerNorm.bias", (args.hidden,)),
            (p + "intermediate.dense.weight", (args.intermediate, args.hidden)),
            (p + "intermediate.dense.bias", (args.intermediate,)),
            (p + "output.dense.weight", (args.hidden, args.intermediate)),
            (p + "output.dense.bias", (args.hidden,)),
            (p + "output.LayerNorm.weight", (args.hidden,)),
            (p + "output.LayerNorm.bias", (args.hidden,)),
        ]
    # RobertaForSequenceClassification is built with add_pooling_layer=False; BertFor... keeps it.
    if not (args.arch == "roberta" and args.head == "classification"):
        out += [(b + "pooler.dense.weight", (args.hidden, args.hidden)),
                (b + "pooler.dense.bias", (args.hidden,))]
    if args.head == "classification":
        if args.arch == "bert":
            out += [("classifier.weight", (args.num_labels, args.hidden)),
                    ("classifier.bias", (args.num_labels,))]
        else:
            out += [
                ("classifier.dense.weight", (args.hidden, args.hidden)),
                ("classifier.dense.bias", (args.hidden,)),
                ("classifier.out_proj.weight", (args.num_labels, args.hidden)),
                ("classifier.out_proj.bias", (args.num_labels,)),
            ]
    return out


def build_state_dict(args, cfg, head_dim):
    if args.arch in DECODERS:
        shapes = decoder_shapes(args, head_dim)
    else:
        shapes = encoder_shapes(args, cfg["max_position_embeddings"], cfg["type_vocab_size"])
    dtype = TORCH_DTYPES[args.dtype]
    state = {name: init_tensor(args.seed, name, shape).to(dtype) for name, shape in shapes}
    if args.legacy_position_ids and args.arch in ENCODERS:
        # Checkpoints saved by transformers < 4.31 carry this (now non-persistent) buffer; loaders
        # must ignore it. It is also the one I64 tensor we can produce.
        pos = torch.arange(cfg["max_position_embeddings"], dtype=torch.int64).unsqueeze(0)
        state[BASE_PREFIX[args.arch] + ".embeddings.position_ids"] = pos
    if args.no_prefix:
        # *Model.save_pretrained: the base model is the root module, so no "model."/"bert." prefix.
        b = BASE_PREFIX[args.arch] + "."
        state = {k[len(b):] if k.startswith(b) else k: v for k, v in state.items()}
    return state


def shard_names(names, sizes, n):
    """Splits names (kept in order) into n contiguous, non-empty groups of similar byte size."""
    if n > len(names):
        raise SystemExit(f"--shards {n}: only {len(names)} tensors")
    total = sum(sizes)
    groups = [[] for _ in range(n)]
    cum = 0
    for name, size in zip(names, sizes):
        groups[min(n - 1, cum * n // total)].append(name)
        cum += size
    if any(not g for g in groups):  # one huge tensor can starve a shard: fall back to counts
        per = -(-len(names) // n)
        groups = [names[i * per:(i + 1) * per] for i in range(n)]
        groups = [g for g in groups if g]
        while len(groups) < n:  # split the largest group until there are n
            big = max(range(len(groups)), key=lambda i: len(groups[i]))
            g = groups.pop(big)
            groups[big:big] = [g[: len(g) // 2], g[len(g) // 2:]]
    return groups


def write_model(out_dir, cfg, state, shards):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    meta = {"format": "pt"}
    if shards <= 1:
        safetensors_io.save_file(state, os.path.join(out_dir, "model.safetensors"), metadata=meta)
        return
    names = list(state)
    groups = shard_names(names, [safetensors_io.tensor_nbytes(state[k]) for k in names], shards)
    weight_map = {}
    for i, group in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        safetensors_io.save_file({k: state[k] for k in group}, os.path.join(out_dir, fname), metadata=meta)
        weight_map.update({k: fname for k in group})
    index = {
        "metadata": {"total_size": sum(safetensors_io.tensor_nbytes(t) for t in state.values())},
        "weight_map": weight_map,
    }
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", required=True, choices=DECODERS + ENCODERS)
    p.add_argument("--head", default="none", choices=("none", "causal_lm", "classification"))
    p.add_argument("--output", required=True, help="model directory to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=tuple(TORCH_DTYPES))
    p.add_argument("--tie-embeddings", action="store_true", help="decoders: tie_word_embeddings, no lm_head saved")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--no-prefix", action="store_true",
                   help="head none: save as *Model does, without the model./bert./roberta. prefix")
    p.add_argument("--num-labels", type=int, default=3)
    p.add_argument("--rope-scaling", default="none", choices=("none", "llama3"))
    p.add_argument("--config-style", default="v4", choices=("v4", "v5"))
    p.add_argument("--head-dim", type=int, default=None, help="decoders: head_dim != hidden/heads")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=HIDDEN, help="hidden_size")
    p.add_argument("--intermediate", type=int, default=INTERMEDIATE, help="intermediate_size")
    p.add_argument("--vocab", type=int, default=VOCAB, help="vocab_size")
    p.add_argument("--heads", type=int, default=HEADS, help="num_attention_heads")
    p.add_argument("--kv-heads", type=int, default=KV_HEADS, help="decoders: num_key_value_heads")
    p.add_argument("--legacy-position-ids", action="store_true",
                   help="encoders: also save the embeddings.position_ids buffer (I64), as old transformers did")
    args = p.parse_args(argv)
    if args.arch in ENCODERS:
        if args.head == "causal_lm":
            p.error(f"--arch {args.arch}: no causal_lm head (encoders)")
        for flag, bad in (("--tie-embeddings", args.tie_embeddings), ("--head-dim", args.head_dim is not None),
                          ("--rope-scaling", args.rope_scaling != "none")):
            if bad:
                p.error(f"{flag} applies to decoders only")
    if args.rope_scaling != "none" and args.arch == "mistral" and args.config_style == "v4":
        p.error("mistral: MistralConfig 4.x has no rope_scaling; use --config-style v5")
    if args.no_prefix and args.head != "none":
        p.error("--no-prefix: only for --head none (heads are saved with the prefixed base model)")
    if args.head == "classification" and args.num_labels < 1:
        p.error("--num-labels must be >= 1")
    if args.layers < 1 or args.shards < 1:
        p.error("--layers and --shards must be >= 1")
    if min(args.hidden, args.intermediate, args.vocab, args.heads, args.kv_heads) < 1:
        p.error("--hidden, --intermediate, --vocab, --heads and --kv-heads must be >= 1")
    if args.arch in DECODERS and args.heads % args.kv_heads:
        p.error("--heads must be a multiple of --kv-heads")
    if args.head_dim is None and args.hidden % args.heads:
        p.error("--hidden must be a multiple of --heads (or give --head-dim)")
    if args.arch in ENCODERS and args.kv_heads != KV_HEADS:
        p.error("--kv-heads applies to decoders only")
    return args


def main(argv=None):
    args = parse_args(argv)
    head_dim = args.head_dim if args.head_dim is not None else args.hidden // args.heads
    cfg = build_config(args, head_dim)
    state = build_state_dict(args, cfg, head_dim)
    write_model(args.output, cfg, state, args.shards)


if __name__ == "__main__":
    main()
