#!/usr/bin/env python3
"""Writes a small pre-tokenized classification task that a tiny model can learn: class 1 when
the first token id is in [32, 64), else 0, followed by 1-3 random tokens. The classifier reads the
last token, so the adapter has to learn to carry the first token's information forward.

  make_synthetic_task.py OUTPUT_DIR [--train 512] [--eval 128] [--seed 0]
writes OUTPUT_DIR/train.jsonl and OUTPUT_DIR/eval.jsonl. Standard library only.
"""
import argparse
import json
import os
import random


def main():
    p = argparse.ArgumentParser()
    p.add_argument("output")
    p.add_argument("--train", type=int, default=512)
    p.add_argument("--eval", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.output, exist_ok=True)
    for name, count in (("train.jsonl", args.train), ("eval.jsonl", args.eval)):
        with open(os.path.join(args.output, name), "w") as f:
            for _ in range(count):
                first = rng.randrange(1, 64)
                ids = [first] + [rng.randrange(1, 64) for _ in range(rng.randrange(1, 4))]
                f.write(json.dumps({"input_ids": ids, "label": int(first >= 32)}) + "\n")


if __name__ == "__main__":
    main()
