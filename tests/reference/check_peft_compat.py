#!/usr/bin/env python3
"""Checks adapter compatibility with Hugging Face PEFT, where transformers and peft exist
(the GPU machine has them; these development machines cannot install them).

  check_peft_compat.py --worker build/bin/loratrf-worker --model TINY_MODEL_DIR
      [--ours ADAPTER_DIR_WRITTEN_BY_LORATRF]

1. PEFT -> loratrf: makes a LoRA adapter with peft (random, non-zero B), saves it with
   save_pretrained, and checks `loratrf-worker logits` with it against PEFT's own logits.
2. loratrf -> PEFT (with --ours): loads an adapter directory that loratrf wrote with
   PeftModel.from_pretrained, unchanged, and checks PEFT's logits against loratrf's.

Exit status: 0 all equal, 1 a mismatch or load failure, 77 transformers/peft not installed.
TINY_MODEL_DIR comes from make_tiny_model.py (--arch llama --head causal_lm).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

try:
    import torch
    import transformers
    import peft
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"check_peft_compat: skipped: {e}", file=sys.stderr)
    sys.exit(77)

IDS = [5, 17, 3, 42, 9, 11, 30]


def our_logits(worker, model, adapter):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.safetensors")
        subprocess.run([worker, "logits", "--model", model, "--adapter", adapter,
                        "--input-ids", ",".join(map(str, IDS)), "--output", out], check=True)
        return safetensors_io.load_file(out)["logits"].double()


def peft_logits(model_dir, adapter_dir):
    base = transformers.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    model = peft.PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        return model(torch.tensor([IDS])).logits[0].double()


def compare(name, ours, theirs):
    worst = (ours - theirs).abs().max().item()
    scale = theirs.abs().max().item()
    ok = worst <= 1e-4 * max(1.0, scale)
    print(f"{name}: largest difference {worst:.3g} (scale {scale:.3g}): {'ok' if ok else 'MISMATCH'}")
    return ok


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--worker", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--ours")
    args = p.parse_args()
    print(f"transformers {transformers.__version__}, peft {peft.__version__}")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        base = transformers.AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
        config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
        model = peft.get_peft_model(base, config)
        torch.manual_seed(0)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.2)  # a fresh B is zero: make the adapter do something
        adapter = os.path.join(tmp, "peft_adapter")
        model.save_pretrained(adapter)
        print("PEFT wrote:", json.load(open(os.path.join(adapter, "adapter_config.json")))["peft_type"])
        ok &= compare("PEFT adapter in loratrf", our_logits(args.worker, args.model, adapter),
                      peft_logits(args.model, adapter))
    if args.ours:
        try:
            theirs = peft_logits(args.model, args.ours)
        except Exception as e:  # any load failure is the finding
            print(f"loratrf adapter in PEFT: FAILED TO LOAD: {e}")
            return 1
        ok &= compare("loratrf adapter in PEFT", our_logits(args.worker, args.model, args.ours), theirs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
