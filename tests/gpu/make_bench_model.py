#!/usr/bin/python3
"""Writes a randomly initialised Llama-shaped causal LM as a Hugging Face model directory
(config.json + model.safetensors, bf16): the model tests/gpu/bench.py trains.

    python3 tests/gpu/make_bench_model.py --output DIR [--hidden 2048 ...] [--device auto]

The defaults are TinyLlama-1.1B's shape (about 1.1e9 parameters). The weights are drawn as
transformers initialises a Llama (normal, std 0.02, for every linear and embedding weight; ones
for the RMSNorm weights), not with tests/reference/make_tiny_model.py's large scales: those are
meant to make a tiny model's outputs clearly non-trivial, and through 22 layers in bf16 they
would overflow, which the trainer refuses (a non-finite gradient norm is an error).

Speed matters (the GPU script has minutes in all): the weights are drawn directly in bf16 on
the GPU when there is one (one generator, tensor after tensor), which takes a few seconds for
2.2 GB, against tens of seconds for float32 on the CPU and a conversion.
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import safetensors_io  # noqa: E402


def config(args):
    """config.json as transformers 4.x's LlamaConfig.save_pretrained writes it."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "head_dim": args.hidden // args.heads,
        "hidden_act": "silu",
        "hidden_size": args.hidden,
        "initializer_range": args.init_std,
        "intermediate_size": args.intermediate,
        "max_position_embeddings": args.max_position_embeddings,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": args.heads,
        "num_hidden_layers": args.layers,
        "num_key_value_heads": args.kv_heads,
        "pad_token_id": 0,
        "pretraining_tp": 1,
        "rms_norm_eps": args.rms_norm_eps,
        "rope_scaling": None,
        "rope_theta": args.rope_theta,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.46.3",
        "use_cache": True,
        "vocab_size": args.vocab,
    }


def shapes(args):
    """(name, shape) of every tensor LlamaForCausalLM saves."""
    head_dim = args.hidden // args.heads
    q_out, kv_out = args.heads * head_dim, args.kv_heads * head_dim
    h, i = args.hidden, args.intermediate
    out = [("model.embed_tokens.weight", (args.vocab, h))]
    for layer in range(args.layers):
        p = f"model.layers.{layer}."
        out += [
            (p + "self_attn.q_proj.weight", (q_out, h)),
            (p + "self_attn.k_proj.weight", (kv_out, h)),
            (p + "self_attn.v_proj.weight", (kv_out, h)),
            (p + "self_attn.o_proj.weight", (h, q_out)),
            (p + "mlp.gate_proj.weight", (i, h)),
            (p + "mlp.up_proj.weight", (i, h)),
            (p + "mlp.down_proj.weight", (h, i)),
            (p + "input_layernorm.weight", (h,)),
            (p + "post_attention_layernorm.weight", (h,)),
        ]
    out += [("model.norm.weight", (h,)), ("lm_head.weight", (args.vocab, h))]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output", required=True, help="model directory to write")
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--intermediate", type=int, default=5632)
    p.add_argument("--layers", type=int, default=22)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--max-position-embeddings", type=int, default=2048)
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--rms-norm-eps", type=float, default=1e-5)
    p.add_argument("--init-std", type=float, default=0.02, help="std of the linear and embedding weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to draw the weights (auto: cuda when available)")
    args = p.parse_args(argv)
    if min(args.hidden, args.intermediate, args.layers, args.heads, args.kv_heads, args.vocab,
           args.max_position_embeddings) < 1:
        p.error("every size must be >= 1")
    if args.hidden % args.heads or args.heads % args.kv_heads:
        p.error("--hidden must be a multiple of --heads, and --heads of --kv-heads")
    if not args.init_std > 0:
        p.error("--init-std must be > 0")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is usable")

    started = time.time()
    gen = torch.Generator(device=device).manual_seed(args.seed)
    state = {}
    for name, shape in shapes(args):
        if name.endswith("norm.weight"):
            t = torch.ones(shape, dtype=torch.bfloat16)
        else:
            t = torch.randn(shape, generator=gen, device=device, dtype=torch.bfloat16)
            t = t.mul_(args.init_std).cpu()
        state[name] = t
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "config.json"), "w") as f:
        f.write(json.dumps(config(args), indent=2, sort_keys=True) + "\n")
    safetensors_io.save_file(state, os.path.join(args.output, "model.safetensors"), metadata={"format": "pt"})
    total = sum(t.numel() for t in state.values())
    print(f"make_bench_model: {total} parameters, bf16, drawn on {device}, written to {args.output} "
          f"in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
