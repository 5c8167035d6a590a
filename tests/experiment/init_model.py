#!/usr/bin/python3
"""Writes a randomly initialised Llama causal LM directory to pretrain from.

    /usr/bin/python3 tests/experiment/init_model.py --tokenizer-dir DIR --output DIR \
        [--hidden 256 --layers 4 --heads 4 --kv-heads 4 --intermediate 688 --max-pos 256 --seed 0]

The config and tensor layout are tests/reference/make_tiny_model.py's (the files HF's
save_pretrained writes, checked against the reference implementation); only the values differ:
transformers' LlamaPreTrainedModel._init_weights, i.e. every Linear and the embedding
N(0, initializer_range = 0.02) and every RMSNorm weight 1, seeded per tensor from --seed and
the tensor's name (so a tensor's values do not depend on the others). The vocabulary and the
special ids come from the tokenizer: tokenizer.json and tokenizer_config.json are copied in.
"""

import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import make_tiny_model  # noqa: E402

INIT_STD = 0.02  # LlamaConfig.initializer_range


def init_tensor(seed, name, shape):
    if name.endswith("norm.weight"):
        return make_tiny_model.torch.ones(*shape)
    return INIT_STD * make_tiny_model.seeded_randn(seed, name, shape)


def special_ids(tokenizer_json):
    ids = {t["content"]: t["id"] for t in tokenizer_json.get("added_tokens", [])}
    return ids.get("<s>"), ids.get("</s>"), ids.get("<unk>")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokenizer-dir", required=True, help="holds tokenizer.json (+ tokenizer_config.json)")
    p.add_argument("--output", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=688)
    p.add_argument("--max-pos", type=int, default=256, help="max_position_embeddings")
    p.add_argument("--tie-embeddings", action="store_true")
    args = p.parse_args(argv)

    with open(os.path.join(args.tokenizer_dir, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    vocab = len(tok["model"]["vocab"])
    vocab = max([vocab] + [t["id"] + 1 for t in tok.get("added_tokens", [])])
    bos, eos, _ = special_ids(tok)

    tiny_args = make_tiny_model.parse_args([
        "--arch", "llama", "--head", "causal_lm", "--output", args.output, "--seed", str(args.seed),
        "--layers", str(args.layers), "--hidden", str(args.hidden), "--intermediate",
        str(args.intermediate), "--vocab", str(vocab), "--heads", str(args.heads), "--kv-heads",
        str(args.kv_heads)] + (["--tie-embeddings"] if args.tie_embeddings else []))
    head_dim = args.hidden // args.heads
    cfg = make_tiny_model.build_config(tiny_args, head_dim)
    cfg["max_position_embeddings"] = args.max_pos
    cfg["initializer_range"] = INIT_STD
    if bos is not None:
        cfg["bos_token_id"] = bos
    if eos is not None:
        cfg["eos_token_id"] = eos
    cfg.pop("pad_token_id", None)  # Llama 2 has none; the trainer pads with EOS and masks it
    shapes = make_tiny_model.decoder_shapes(tiny_args, head_dim)
    state = {name: init_tensor(args.seed, name, shape) for name, shape in shapes}
    make_tiny_model.write_model(args.output, cfg, state, 1)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        src = os.path.join(args.tokenizer_dir, name)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(args.output, name))
    total = sum(t.numel() for t in state.values())
    print(json.dumps({"parameters": total, "vocab_size": vocab, "hidden": args.hidden,
                      "layers": args.layers}))


if __name__ == "__main__":
    main()
