#!/usr/bin/python3
"""Trains a LoRA adapter with Hugging Face transformers + PEFT and times each step: the side
that tests/gpu/bench.py compares `loratrf-worker run` against.

    python3 tests/gpu/peft_train.py --model DIR --data train.jsonl --output RESULT.json \
        --steps 6 --batch-size 8 --micro-batch-size 4 --rank 16 --alpha 32 \
        --target-modules q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj

The training is what a loratrf job does with `method: lora, dropout: 0, lr_scheduler:
constant, warmup_ratio: 0, weight_decay: 0, precision: bf16` (or fp32 with --precision fp32):

- the model: AutoModelForCausalLM.from_pretrained(DIR, bf16 weights, attn_implementation
  "sdpa"), no gradient checkpointing, no KV cache;
- the adapter: peft LoraConfig(r, lora_alpha, lora_dropout 0, target_modules); its weights are
  kept in float32 (as the engine keeps them, and as recent PEFT does by default) so that AdamW
  updates float32 parameters on both sides;
- a step: the batch in the engine's order (the same shuffle, from tests/bench/reference_train.py),
  split into micro-batches, each forward under torch.autocast(bf16) with
  loss = model(input_ids, labels=input_ids).loss divided by the number of micro-batches (every
  sequence has the same length, so that is the mean over the batch's tokens), backward;
  then clip_grad_norm_, AdamW step, zero_grad;
- the time of a step: from moving its first micro-batch to the device to the optimizer step,
  with torch.cuda.synchronize() before and after, so that each step's kernels are all counted
  in that step. tokens/s counts input tokens (batch x sequence length), as the engine does.

Writes one JSON object: per-step seconds, tokens/s and loss, the parameter counts, torch,
transformers and peft versions, and torch.cuda.max_memory_allocated (bytes).
Exit status: 0 done, 77 transformers or peft is not installed (the caller reports a skip),
2 bad usage, 1 anything else.
"""

import argparse
import json
import math
import os
import sys
import time

SKIP = 77


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="Hugging Face model directory")
    p.add_argument("--data", required=True, help='JSONL, one {"input_ids": [...]} a line')
    p.add_argument("--output", required=True, help="the JSON file to write")
    p.add_argument("--steps", type=int, required=True, help="steps in all, warmup included")
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--micro-batch-size", type=int, required=True)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--target-modules", required=True, help="comma-separated module names")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    args = p.parse_args(argv)
    if min(args.steps, args.batch_size, args.micro_batch_size, args.rank) < 1:
        p.error("--steps, --batch-size, --micro-batch-size and --rank must be >= 1")
    if args.batch_size % args.micro_batch_size:
        p.error("--batch-size must be a multiple of --micro-batch-size")
    if args.precision == "bf16" and args.device != "cuda":
        p.error("--precision bf16 needs --device cuda (the engine's bf16 is CUDA autocast)")
    args.target_modules = [m for m in args.target_modules.split(",") if m]
    if not args.target_modules:
        p.error("--target-modules is empty")
    return args


def read_data(path):
    with open(path) as f:
        return [json.loads(line)["input_ids"] for line in f if line.strip()]


def load_model(transformers, torch, model_dir, precision):
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    # transformers 4.56 renamed torch_dtype to dtype (the old name warns, and may go).
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    return transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, attn_implementation="sdpa", **{key: dtype})


def main(argv=None):
    args = parse_args(argv)
    try:
        import torch
        import transformers
        import peft
    except ImportError as e:
        print(f"peft_train: {e.name or e} is not installed", file=sys.stderr)
        return SKIP
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
    from reference_train import shuffled_order  # the engine's data order

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("peft_train: --device cuda, but no CUDA device is usable", file=sys.stderr)
        return 1
    device = torch.device(args.device)
    data = read_data(args.data)
    if len(data) < args.batch_size:
        print(f"peft_train: {args.data}: fewer examples than one batch", file=sys.stderr)
        return 2
    if len({len(r) for r in data}) != 1:
        print(f"peft_train: {args.data}: sequences of different lengths (no padding here)", file=sys.stderr)
        return 2

    torch.manual_seed(args.seed)
    model = load_model(transformers, torch, args.model, args.precision)
    model.config.use_cache = False
    lora = peft.LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0,
                           target_modules=args.target_modules, bias="none", task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, lora)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    model.to(device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    print(f"peft_train: torch {torch.__version__}, transformers {transformers.__version__}, "
          f"peft {peft.__version__}, {n_trainable} of {n_total} parameters trainable, "
          f"{len(data)} examples of {len(data[0])} tokens", flush=True)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    micro_per_step = args.batch_size // args.micro_batch_size
    steps_per_epoch = len(data) // args.batch_size
    order, order_epoch = None, -1
    rows = []
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for step in range(args.steps):
        epoch, in_epoch = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            order, order_epoch = shuffled_order(len(data), args.seed, epoch), epoch
        batch = order[in_epoch * args.batch_size:(in_epoch + 1) * args.batch_size]
        micros = [torch.tensor([data[i] for i in batch[s:s + args.micro_batch_size]], dtype=torch.int64)
                  for s in range(0, len(batch), args.micro_batch_size)]
        sync()
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        for ids in micros:
            ids = ids.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                loss = model(input_ids=ids, labels=ids).loss / micro_per_step
            loss.backward()
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        seconds = time.perf_counter() - started
        tokens = sum(m.numel() for m in micros)
        rows.append({"step": step + 1, "loss": float(loss_sum), "grad_norm": float(grad_norm),
                     "step_seconds": seconds, "tokens_per_second": tokens / seconds})
        print(f"step {step + 1}/{args.steps}  loss {rows[-1]['loss']:.4f}  grad_norm "
              f"{rows[-1]['grad_norm']:.3f}  {seconds:.3f} s  {tokens / seconds:.0f} tok/s", flush=True)
        if not (math.isfinite(rows[-1]["loss"]) and math.isfinite(rows[-1]["grad_norm"])):
            print("peft_train: the loss or gradient norm is not finite", file=sys.stderr)
            return 1

    result = {
        "steps": rows,
        "trainable_parameters": n_trainable,
        "total_parameters": n_total,
        "max_memory_allocated": torch.cuda.max_memory_allocated() if cuda else None,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__},
    }
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
