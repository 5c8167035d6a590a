#!/usr/bin/python3
"""Runs the base-model recipe's smoke preset end to end (ctest experiment_base_model_smoke).

    /usr/bin/python3 tests/experiment/check_base_model.py --worker build/bin/loratrf-worker

In a temporary cache: the manifest's sha256 match the files, the model directory is complete,
the held-out perplexity is finite and below the vocabulary size (better than uniform), a rerun
does nothing, and a damaged weight file is noticed and rebuilt.
Exit 77 (ctest: skipped) when wordnet-base or the npm tokenizer package is missing, unless
LORATRF_REQUIRE_REFERENCE is set.
"""

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import base_model  # noqa: E402


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def recipe(worker, cache):
    env = dict(os.environ, LORATRF_CACHE=cache)
    r = subprocess.run([sys.executable, os.path.join(HERE, "base_model.py"), "--smoke", "--worker", worker],
                       env=env, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        fail(f"base_model.py --smoke exit {r.returncode}:\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--worker", required=True)
    args = p.parse_args()
    missing = [path for path in ("/usr/share/wordnet/data.noun",
                                 os.path.join(base_model.TOKENIZER_DIR, "tokenizer.json"))
               if not os.path.exists(path)]
    if missing:
        message = f"missing {', '.join(missing)} (apt-get install wordnet-base; npm ci in tests/reference/tokenizers)"
        if os.environ.get("LORATRF_REQUIRE_REFERENCE"):
            fail(message)
        print("SKIP: " + message)
        return 77

    with tempfile.TemporaryDirectory() as cache:
        summary, _ = recipe(args.worker, cache)
        model = os.path.join(cache, "base", "smoke")
        if summary["dir"] != model:
            fail(f"summary dir {summary['dir']} != {model}")
        manifest = json.load(open(os.path.join(model, "manifest.json")))
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                     "corpus/train.txt", "corpus/heldout.txt"):
            if name not in manifest["files"]:
                fail(f"manifest lists no {name}")
        on_disk = set()
        for root, _, names in os.walk(model):
            on_disk.update(os.path.relpath(os.path.join(root, n), model) for n in names)
        if on_disk - {"manifest.json"} != set(manifest["files"]):
            fail(f"files {sorted(on_disk)} != manifest {sorted(manifest['files'])}")
        for rel, digest in manifest["files"].items():
            if sha256(os.path.join(model, rel)) != digest:
                fail(f"{rel}: sha256 differs from the manifest")
        if manifest["fingerprint"]["tokenizer_sha256"] != sha256(os.path.join(model, "tokenizer.json")):
            fail("the tokenizer in the model dir is not the recipe's")
        vocab = json.load(open(os.path.join(model, "config.json")))["vocab_size"]
        ppl = summary["heldout_perplexity"]
        if not (math.isfinite(ppl) and 1 < ppl < vocab):
            fail(f"held-out perplexity {ppl} is not finite and below the vocabulary size {vocab}")
        if not manifest["command"] or "base_model.py" not in manifest["command"][0]:
            fail(f"manifest command {manifest['command']}")

        weights = os.path.join(model, "model.safetensors")
        before = os.stat(weights).st_mtime_ns
        again, log = recipe(args.worker, cache)
        if "up to date" not in log or again != summary or os.stat(weights).st_mtime_ns != before:
            fail("a rerun with a matching cache did something")

        with open(weights, "r+b") as f:  # one flipped byte in the weights
            f.seek(-1, os.SEEK_END)
            last = f.read(1)
            f.seek(-1, os.SEEK_END)
            f.write(bytes([last[0] ^ 0xFF]))
        rebuilt, log = recipe(args.worker, cache)
        if "does not match its manifest" not in log:
            fail("a damaged weight file was not noticed")
        # Fixed seeds: the rebuild is the same model, bit for bit.
        timing = "median_train_tokens_per_second"
        if (sha256(weights) != manifest["files"]["model.safetensors"]
                or {**rebuilt, timing: None} != {**summary, timing: None}):
            fail("the rebuild differs from the first build")
    print(f"ok: held-out perplexity {ppl:.1f} (vocabulary {vocab})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
