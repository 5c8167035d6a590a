#!/usr/bin/env python3
"""Training throughput, memory and MFU of `loratrf-worker run` against Hugging Face
transformers + PEFT doing the same training: the last step of tests/gpu/run.sh.

    python3 tests/gpu/bench.py --worker build-gpu/bin/loratrf-worker --out DIR [--dry-run]
                               [--reps N] [--budget SECONDS] [--keep]

  --worker PATH   the loratrf-worker to time (default: build-gpu/bin/loratrf-worker)
  --out DIR       where gpu-bench.json and gpu-bench-logs/ (one log a run) go
  --dry-run       for a machine without a GPU: a tiny model, fp32, on the CPU
  --reps N        runs of each of the three (default: $REPS, else 3)
  --budget S      wall-clock seconds for the whole benchmark, model writing included (default:
                  $BENCH_BUDGET_S, else 210): no run starts that the time left cannot hold (as
                  long as the slowest run of its kind so far took), a run still going when the
                  time is up is killed, and the figures are those of the runs done
  --keep          keep the temporary directory (model, data, run outputs)

Environment: LORATRF_PYTHON, the interpreter with PyTorch (and, for the PEFT side, transformers
and peft) that runs make_bench_model.py and peft_train.py (default: this one; the driver itself
needs only the standard library). BENCH_PEAK_FLOPS: the GPU's peak dense bf16 FLOP/s, when the
table below does not know it (or to override it).

What runs (the same training on both sides, see peft_train.py):
  model    Llama, TinyLlama-1.1B's shape, random init (std 0.02), bf16 weights on disk
  data     random token ids, every sequence exactly SEQ long (no padding)
  adapter  rank 16, alpha 32, dropout 0, on q,k,v,o,gate,up,down_proj of every decoder layer
  training bf16 autocast, AdamW lr 1e-4, weight decay 0, clip 1.0, constant LR, no gradient
           checkpointing, the same batch and micro-batch on both sides
  runs     ours LoRA, ours LoRATRF (filter bottleneck), PEFT LoRA, alternated: each rep starts
           with a different one, so that drift in the machine hits all three alike
Each run does WARMUP untimed steps, then TIMED timed ones; figures are medians over the runs.
Peak device memory is measured the same way for both sides: nvidia-smi's per-process used
memory, polled every 0.2 s while the run lasts (in a container whose PIDs nvidia-smi cannot see,
the GPU's total used memory less what was used before the run starts, said so in the output).

Exit status: 0 every run that started succeeded (the PEFT side may be skipped when transformers
or peft is missing), 1 a run failed or no run of ours finished, 2 bad usage.
"""

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "tests", "gpu")
PEFT_SKIP = 77  # peft_train.py: transformers or peft is not installed
# The two ways device memory is read (MemoryPoller); one of them for every run, so that the
# ratio of the two sides compares like with like.
PER_PROCESS, GPU_TOTAL = "per-process", "GPU total less idle"

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK, ALPHA, LR, CLIP, SEED = 16, 32, 1.0e-4, 1.0, 42
WARMUP, TIMED = 2, 4
# Batch 8 of 2048 tokens in micro-batches of 2: without gradient checkpointing, activations
# for 4096 tokens through 22 layers stay far below the H200's 141 GB on both sides, even if
# attention falls back to materialising the score matrices.
GPU = {
    "model": dict(hidden=2048, intermediate=5632, layers=22, heads=32, kv_heads=4, vocab=32000,
                  max_position_embeddings=2048, rope_theta=10000.0, rms_norm_eps=1e-5),
    "seq": 2048, "batch": 8, "micro": 2, "precision": "bf16", "device": "cuda",
}
DRY = {
    "model": dict(hidden=64, intermediate=172, layers=2, heads=4, kv_heads=2, vocab=512,
                  max_position_embeddings=128, rope_theta=10000.0, rms_norm_eps=1e-5),
    "seq": 64, "batch": 8, "micro": 2, "precision": "fp32", "device": "cpu",
}
# Peak dense (no sparsity) bf16 tensor FLOP/s by nvidia-smi's GPU name, first match wins.
PEAK_BF16 = [("H200", 989e12), ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12),
             ("A100", 312e12)]
KINDS = ["ours-lora", "ours-loratrf", "peft-lora"]
LABELS = {"ours-lora": "ours LoRA", "ours-loratrf": "ours LoRATRF", "peft-lora": "PEFT LoRA"}


def log(*args):
    print(*args, flush=True)


# ---- parameters and FLOPs ----------------------------------------------------------------------

def linear_shapes(m):
    """(d_in, d_out) of each linear layer of one Llama decoder layer."""
    head_dim = m["hidden"] // m["heads"]
    q, kv, h, i = m["heads"] * head_dim, m["kv_heads"] * head_dim, m["hidden"], m["intermediate"]
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def count_parameters(m, method):
    """The model's parameters, from its config alone.

    base      = layers x (linear weights + 2 RMSNorm weights) + embed_tokens + final norm + lm_head
    LoRA      = layers x sum over targeted linears of r x (d_in + d_out)       (A: r x d_in, B: d_out x r)
    LoRATRF   = LoRA + layers x targeted linears x (r x r + r)                  (bottleneck G and c)
    frozen_matmul: the frozen weights a token is multiplied by (every decoder linear and lm_head);
    the embedding table is a lookup and the norms are elementwise, so neither counts for FLOPs.
    """
    shapes = linear_shapes(m)
    h, L, V = m["hidden"], m["layers"], m["vocab"]
    linear = sum(d_in * d_out for d_in, d_out in shapes.values())
    base = L * (linear + 2 * h) + V * h + h + V * h
    trainable = L * sum(RANK * (shapes[t][0] + shapes[t][1]) for t in TARGETS)
    if method == "loratrf":
        trainable += L * len(TARGETS) * (RANK * RANK + RANK)
    return {"base": base, "trainable": trainable, "frozen_matmul": L * linear + V * h}


FLOP_FORMULA = ("FLOPs/token = 4 x frozen matmul params (forward 2, backward to the inputs 2)"
                " + 6 x trainable params (forward 2, backward 4)"
                " + 12 x layers x seq x hidden (QK^T and AV, forward and backward, no causal discount)")


def flops_per_token(m, seq, counts):
    return 4 * counts["frozen_matmul"] + 6 * counts["trainable"] + 12 * m["layers"] * seq * m["hidden"]


# ---- the device ---------------------------------------------------------------------------------

def nvidia_smi(*query):
    """Rows of nvidia-smi CSV output (lists of stripped fields), or None when it cannot answer."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return [[f.strip() for f in line.split(",")] for line in out.stdout.splitlines() if line.strip()]


def gpu_used_mib():
    rows = nvidia_smi("--query-gpu=memory.used")
    try:
        return sum(float(r[0]) for r in rows) if rows else None
    except ValueError:
        return None


def descendants(pid):
    """pid and every process below it (the worker may start rank processes)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in found:
            found.add(p)
            todo += children.get(p, [])
    return found


class MemoryPoller(threading.Thread):
    """Polls a process tree's device memory (nvidia-smi) and host peak RSS every 0.2 s."""

    def __init__(self, pid, have_smi):
        super().__init__(daemon=True)
        self.pid, self.have_smi = pid, have_smi
        self.baseline = gpu_used_mib() if have_smi else None
        self.peak_pid = None     # MiB, the tree's processes as nvidia-smi lists them
        self.peak_total = None   # MiB, the whole GPU's used memory
        self.peak_rss = 0        # KiB, VmHWM
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            pids = descendants(self.pid)
            for p in pids:
                try:
                    with open(f"/proc/{p}/status") as f:
                        for line in f:
                            if line.startswith("VmHWM:"):
                                self.peak_rss = max(self.peak_rss, int(line.split()[1]))
                except (OSError, ValueError):
                    pass
            if self.have_smi:
                rows = nvidia_smi("--query-compute-apps=pid,used_memory") or []
                mine = [float(r[1]) for r in rows if len(r) == 2 and r[0].isdigit() and int(r[0]) in pids
                        and r[1].replace(".", "", 1).isdigit()]
                if mine:
                    self.peak_pid = max(self.peak_pid or 0, sum(mine))
                total = gpu_used_mib()
                if total is not None:
                    self.peak_total = max(self.peak_total or 0, total)
            self.done.wait(0.2)

    def result(self):
        """{"per-process": MiB or None, "GPU total less idle": MiB or None}."""
        total = None
        if self.peak_total is not None and self.baseline is not None:
            total = self.peak_total - self.baseline
        return {PER_PROCESS: self.peak_pid, GPU_TOTAL: total}


# ---- one run ------------------------------------------------------------------------------------

def run_process(cmd, log_path, timeout, have_smi):
    """Runs cmd (its output to log_path), polling its memory. Returns a dict with rc, wall_s,
    peak_mib_by (MemoryPoller.result), peak_rss_mib, timed_out."""
    started = time.time()
    with open(log_path, "w") as logf:
        logf.write("$ " + " ".join(cmd) + "\n")
        logf.flush()
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
        poller = MemoryPoller(proc.pid, have_smi)
        poller.start()
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        poller.done.set()
        poller.join()
    return {"rc": rc, "wall_s": time.time() - started, "peak_mib_by": poller.result(),
            "peak_rss_mib": poller.peak_rss / 1024, "timed_out": timed_out}


def tail(path, lines=25):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def summarize_steps(rows, total):
    """Timed figures from per-step rows {"step_seconds", "tokens_per_second", "loss"}."""
    if len(rows) != total:
        raise ValueError(f"{len(rows)} steps recorded, {total} expected")
    timed = rows[WARMUP:]
    seconds = sum(r["step_seconds"] for r in timed)
    return {"step_s": seconds / len(timed),
            "tokens_per_s": sum(r["tokens_per_second"] * r["step_seconds"] for r in timed) / seconds,
            "step_seconds": [r["step_seconds"] for r in rows],
            "losses": [r["loss"] for r in rows]}


# ---- the benchmark ------------------------------------------------------------------------------

def write_job(path, kind, model_dir, data, setup):
    method = "loratrf" if kind == "ours-loratrf" else "lora"
    extra = ", filter: bottleneck" if method == "loratrf" else ""
    with open(path, "w") as f:
        f.write(f"""name: gpu-bench-{method}
model: {{path: {model_dir}}}
task: causal_lm
data: {{train: {data}}}
adapter: {{method: {method}, rank: {RANK}, alpha: {ALPHA}, dropout: 0{extra},
          target_modules: [{", ".join(TARGETS)}]}}
training: {{epochs: 1, max_steps: {WARMUP + TIMED}, batch_size: {setup["batch"]},
           micro_batch_size: {setup["micro"]}, learning_rate: {LR}, lr_scheduler: constant,
           warmup_ratio: 0, weight_decay: 0, max_grad_norm: {CLIP}, seed: {SEED},
           max_seq_len: {setup["seq"]}, precision: {setup["precision"]}, eval_every_steps: 0,
           checkpoint_every_steps: 0, keep_checkpoints: 1}}
resources: {{workers: 1, slots_per_worker: 1, device: {setup["device"]}}}
""")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", default=os.path.join(ROOT, "build-gpu", "bin", "loratrf-worker"))
    p.add_argument("--out", required=True)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--reps", default=os.environ.get("REPS", "3"))
    p.add_argument("--budget", default=os.environ.get("BENCH_BUDGET_S", "210"))
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    try:
        args.reps = int(args.reps)
        args.budget = float(args.budget)
    except ValueError:
        p.error("--reps (REPS) must be an integer and --budget (BENCH_BUDGET_S) a number of seconds")
    if args.reps < 1 or not args.budget > 0:
        p.error("--reps (REPS) must be >= 1 and --budget (BENCH_BUDGET_S) > 0")
    args.worker = os.path.abspath(args.worker)
    if not (os.path.isfile(args.worker) and os.access(args.worker, os.X_OK)):
        p.error(f"--worker {args.worker}: no such executable")
    try:
        os.makedirs(os.path.join(args.out, "gpu-bench-logs"), exist_ok=True)
    except OSError as e:
        p.error(f"--out {args.out}: cannot create: {e.strerror}")
    peak = os.environ.get("BENCH_PEAK_FLOPS")
    args.peak_override = None
    if peak:
        try:
            args.peak_override = float(peak)
        except ValueError:
            p.error(f"BENCH_PEAK_FLOPS={peak!r}: not a number (FLOP/s, e.g. 989e12)")
        if not args.peak_override > 0:
            p.error("BENCH_PEAK_FLOPS must be > 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    python = os.environ.get("LORATRF_PYTHON") or sys.executable
    setup = DRY if args.dry_run else GPU
    m, seq = setup["model"], setup["seq"]

    gpu_rows = nvidia_smi("--query-gpu=name")
    have_smi = gpu_rows is not None
    gpu_name = gpu_rows[0][0] if gpu_rows else None
    peak_flops = args.peak_override
    if peak_flops is None and gpu_name:
        peak_flops = next((v for k, v in PEAK_BF16 if k in gpu_name), None)
    peak_source = "BENCH_PEAK_FLOPS" if args.peak_override else "table" if peak_flops else None

    counts = {method: count_parameters(m, method) for method in ("lora", "loratrf")}
    fpt = {method: flops_per_token(m, seq, c) for method, c in counts.items()}

    log(f"benchmark: {'dry run, ' if args.dry_run else ''}{args.reps} rep(s) of ours LoRA, ours LoRATRF,"
        f" PEFT LoRA; {WARMUP} warmup + {TIMED} timed steps a run; budget {args.budget:.0f} s")
    log(f"model: Llama hidden {m['hidden']}, intermediate {m['intermediate']}, {m['layers']} layers, "
        f"{m['heads']} heads, {m['kv_heads']} KV heads, vocab {m['vocab']}, random init std 0.02, bf16 "
        f"weights; {counts['lora']['base']:,} parameters")
    log(f"training: seq {seq}, batch {setup['batch']} (micro {setup['micro']}), {setup['precision']}, "
        f"device {setup['device']}; rank {RANK} alpha {ALPHA} dropout 0 on {','.join(TARGETS)}; "
        f"AdamW lr {LR} wd 0, clip {CLIP}, constant LR")
    log(f"GPU: {gpu_name or 'none (no nvidia-smi)'}; peak dense bf16: "
        + (f"{peak_flops / 1e12:.0f} TFLOP/s ({peak_source})" if peak_flops else "unknown GPU: MFU skipped"))

    tmp = tempfile.mkdtemp(prefix="loratrf-gpu-bench-")
    try:
        return bench(args, python, setup, counts, fpt, peak_flops, gpu_name, have_smi, tmp, started)
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def bench(args, python, setup, counts, fpt, peak_flops, gpu_name, have_smi, tmp, started):
    m, seq = setup["model"], setup["seq"]
    total_steps = WARMUP + TIMED
    logs = os.path.join(args.out, "gpu-bench-logs")
    model_dir, data = os.path.join(tmp, "model"), os.path.join(tmp, "train.jsonl")

    # The model and the data.
    cmd = [python, os.path.join(HERE, "make_bench_model.py"), "--output", model_dir,
           "--device", "cpu" if args.dry_run else "auto"]
    for key, value in m.items():
        cmd += ["--" + key.replace("_", "-"), str(value)]
    made = subprocess.run(cmd, capture_output=True, text=True)
    if made.returncode != 0:
        log(f"make_bench_model.py failed (exit {made.returncode}):\n{made.stdout}{made.stderr}")
        return 1
    log(made.stdout.strip())
    rng = random.Random(SEED)
    with open(data, "w") as f:
        for _ in range(setup["batch"] * total_steps):  # ids 3.. (0-2: pad/bos/eos), all full length
            f.write(json.dumps({"input_ids": [rng.randrange(3, m["vocab"]) for _ in range(seq)]}) + "\n")
    for kind in ("ours-lora", "ours-loratrf"):
        write_job(os.path.join(tmp, f"{kind}.yaml"), kind, model_dir, data, setup)

    # Our parameter arithmetic against the worker's own count (from config.json, nothing loaded).
    for method in ("lora", "loratrf"):
        got = subprocess.run([args.worker, "params", "--spec", os.path.join(tmp, f"ours-{method}.yaml")],
                             capture_output=True, text=True)
        try:
            got = json.loads(got.stdout)
        except json.JSONDecodeError:
            log(f"loratrf-worker params failed:\n{got.stdout}{got.stderr}")
            return 1
        c = counts[method]
        if (got["trainable"], got["total"]) != (c["trainable"], c["base"] + c["trainable"]):
            log(f"parameter arithmetic is wrong for {method}: worker says {got['trainable']} trainable of "
                f"{got['total']}, the formula {c['trainable']} of {c['base'] + c['trainable']}")
            return 1
    log(f"parameters (agree with loratrf-worker params): LoRA {counts['lora']['trainable']:,} trainable, "
        f"LoRATRF {counts['loratrf']['trainable']:,}; frozen in matmuls {counts['lora']['frozen_matmul']:,}")

    def command(kind, rep):
        out = os.path.join(tmp, f"{kind}-{rep}")
        if kind.startswith("ours"):
            return [args.worker, "run", "--spec", os.path.join(tmp, f"{kind}.yaml"), "--nproc", "1",
                    "--output", out], out
        return [python, os.path.join(HERE, "peft_train.py"), "--model", model_dir, "--data", data,
                "--output", out + ".json", "--steps", str(total_steps), "--batch-size", str(setup["batch"]),
                "--micro-batch-size", str(setup["micro"]), "--rank", str(RANK), "--alpha", str(ALPHA),
                "--lr", str(LR), "--max-grad-norm", str(CLIP), "--seed", str(SEED),
                "--target-modules", ",".join(TARGETS), "--device", setup["device"],
                "--precision", setup["precision"]], out + ".json"

    runs, failures, notes = [], [], []
    peft_skipped = False
    longest = {}  # kind -> the longest wall time of a run of it so far
    for rep in range(args.reps):
        order = KINDS[rep % 3:] + KINDS[:rep % 3]  # each rep starts with another one
        for kind in order:
            if kind == "peft-lora" and peft_skipped:
                continue
            left = args.budget - (time.time() - started)
            need = longest.get(kind, max(longest.values(), default=0))
            if left < need:
                notes.append(f"budget: {kind} rep {rep + 1} not started ({left:.0f} s left, "
                             f"a run takes ~{need:.0f} s)")
                log(notes[-1])
                continue
            cmd, result = command(kind, rep + 1)
            log_path = os.path.join(logs, f"{kind}-{rep + 1}.log")
            r = run_process(cmd, log_path, max(left, 20), have_smi)
            r.update(kind=kind, rep=rep + 1)
            longest[kind] = max(longest.get(kind, 0), r["wall_s"])
            if kind == "peft-lora" and r["rc"] == PEFT_SKIP:
                peft_skipped = True
                log("PEFT LoRA: skipped: no transformers/peft (" + tail(log_path, 1).strip() + ")")
                continue
            try:
                if r["timed_out"]:
                    raise ValueError(f"killed: the budget ran out after {r['wall_s']:.0f} s")
                if r["rc"] != 0:
                    raise ValueError(f"exit {r['rc']}")
                if kind.startswith("ours"):
                    with open(os.path.join(result, "metrics.jsonl")) as f:
                        rows = [x for x in map(json.loads, f) if x.get("type") == "train"]
                else:
                    with open(result) as f:
                        peft = json.load(f)
                    rows = peft["steps"]
                    r["max_memory_allocated_mib"] = (peft["max_memory_allocated"] / 2**20
                                                     if peft["max_memory_allocated"] is not None else None)
                    r["peft_trainable"] = peft["trainable_parameters"]
                    r["versions"] = peft["versions"]
                r.update(summarize_steps(rows, total_steps))
            except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
                r["error"] = str(e)
                failures.append(f"{kind} rep {rep + 1}: {e}")
                log(f"{LABELS[kind]} rep {rep + 1}: FAILED: {e}; the end of {log_path}:\n{tail(log_path)}")
                runs.append(r)
                continue
            runs.append(r)
            mem = ", ".join(f"{v:.0f} MiB {k}" for k, v in r["peak_mib_by"].items() if v is not None) or "n/a"
            log(f"{LABELS[kind]} rep {rep + 1}: {r['tokens_per_s']:.1f} tok/s, {r['step_s']:.3f} s/step, "
                f"peak device memory {mem}, peak RSS {r['peak_rss_mib']:.0f} MiB, loss "
                f"{r['losses'][0]:.4f} -> {r['losses'][-1]:.4f}, run {r['wall_s']:.1f} s "
                f"({time.time() - started:.0f} s in all)")

    report(args, setup, counts, fpt, peak_flops, gpu_name, runs, failures, notes, peft_skipped, started)
    if failures:
        log("benchmark: FAILED: " + "; ".join(failures))
        return 1
    if not any(r["kind"] == "ours-lora" and "error" not in r for r in runs):
        log("benchmark: FAILED: no run of ours finished within the budget")
        return 1
    return 0


def report(args, setup, counts, fpt, peak_flops, gpu_name, runs, failures, notes, peft_skipped, started):
    m, seq = setup["model"], setup["seq"]
    good = {k: [r for r in runs if r["kind"] == k and "error" not in r] for k in KINDS}
    done = [r for k in KINDS for r in good[k]]
    # Per process when nvidia-smi showed every run's processes (it cannot in a container that
    # has a PID namespace of its own), else the whole GPU's for every run.
    memory_method = None
    for method in (PER_PROCESS, GPU_TOTAL):
        if done and all(r["peak_mib_by"][method] is not None for r in done):
            memory_method = method
            break
    for r in done:
        r["peak_mib"] = r["peak_mib_by"][memory_method] if memory_method else None

    def med(kind, key):
        vals = [r[key] for r in good[kind] if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    method = {"ours-lora": "lora", "ours-loratrf": "loratrf", "peft-lora": "lora"}
    medians = {}
    for k in KINDS:
        tok = med(k, "tokens_per_s")
        medians[k] = {
            "runs": len(good[k]), "tokens_per_s": tok, "step_s": med(k, "step_s"),
            "peak_device_mib": med(k, "peak_mib"), "peak_rss_mib": med(k, "peak_rss_mib"),
            "mfu": tok * fpt[method[k]] / peak_flops if tok is not None and peak_flops else None,
        }
    if good["peft-lora"]:
        medians["peft-lora"]["max_memory_allocated_mib"] = med("peft-lora", "max_memory_allocated_mib")

    def ratio(a, b):
        return a / b if a is not None and b else None

    ratios = {
        "ours_lora_tokens_per_s_over_peft": ratio(medians["ours-lora"]["tokens_per_s"],
                                                  medians["peft-lora"]["tokens_per_s"]),
        "loratrf_step_s_over_lora": ratio(medians["ours-loratrf"]["step_s"], medians["ours-lora"]["step_s"]),
        "ours_lora_peak_memory_over_peft": ratio(medians["ours-lora"]["peak_device_mib"],
                                                 medians["peft-lora"]["peak_device_mib"]),
    }

    def fmt(v, f):
        return "-" if v is None else f.format(v)

    log("")
    log(f"{'median over runs':<32}" + "".join(f"{LABELS[k]:>15}" for k in KINDS))
    for label, key, f in (("runs done", "runs", "{}"), ("tokens/s", "tokens_per_s", "{:.1f}"),
                          ("step time (s)", "step_s", "{:.3f}"),
                          ("peak device memory (MiB)", "peak_device_mib", "{:.0f}"),
                          ("peak host RSS (MiB)", "peak_rss_mib", "{:.0f}"), ("MFU", "mfu", "{:.1%}")):
        log(f"{label:<32}" + "".join(f"{fmt(medians[k].get(key), f):>15}" for k in KINDS))
    if peft_skipped:
        log("PEFT LoRA: skipped: no transformers/peft")
    elif medians["peft-lora"].get("max_memory_allocated_mib") is not None:
        log(f"PEFT torch.cuda.max_memory_allocated (for reference, no CUDA context or cache): "
            f"{medians['peft-lora']['max_memory_allocated_mib']:.0f} MiB")
    if memory_method:
        log(f"peak device memory: {memory_method} (nvidia-smi, polled every 0.2 s)")
    else:
        log("peak device memory: not measured (no nvidia-smi, or it did not answer for every run)")
    # Both sides see the same first batch and start from the base model (B is zero), so their
    # first losses differ only by rounding: a check that they train the same thing.
    first = {k: statistics.median(r["losses"][0] for r in good[k]) for k in KINDS if good[k]}
    if first:
        log("loss at step 1 (the same batch; B = 0, so the base model's loss): "
            + ", ".join(f"{LABELS[k]} {v:.4f}" for k, v in first.items()))
    log("")
    for label, key in (("ours LoRA tokens/s / PEFT LoRA tokens/s", "ours_lora_tokens_per_s_over_peft"),
                       ("ours LoRATRF step time / ours LoRA step time", "loratrf_step_s_over_lora"),
                       ("ours LoRA peak memory / PEFT LoRA peak memory", "ours_lora_peak_memory_over_peft")):
        log(f"{label + ':':<47}{fmt(ratios[key], '{:.3f}')}")
    log("")
    log(FLOP_FORMULA)
    for meth in ("lora", "loratrf"):
        c = counts[meth]
        log(f"  {meth:<8} 4 x {c['frozen_matmul']:,} + 6 x {c['trainable']:,} + 12 x {m['layers']} x {seq} x "
            f"{m['hidden']} = {fpt[meth]:.4g}")
    log("MFU = FLOPs/token x tokens/s / peak dense bf16 FLOP/s"
        + (f" ({peak_flops / 1e12:.0f} TFLOP/s, {gpu_name})" if peak_flops else " (unknown GPU: skipped)"))
    log("")
    for k in KINDS:
        if good[k]:
            log(f"tokens/s per run, {LABELS[k]:<13} "
                + "  ".join(f"{r['tokens_per_s']:.1f}" for r in good[k]))
    log(f"benchmark: {len(done)} run(s) done in {time.time() - started:.0f} s")

    summary = {
        "dry_run": args.dry_run, "gpu": gpu_name, "peak_flops": peak_flops,
        "model": m, "seq": seq, "batch_size": setup["batch"], "micro_batch_size": setup["micro"],
        "precision": setup["precision"], "device": setup["device"], "rank": RANK, "alpha": ALPHA,
        "target_modules": TARGETS, "warmup_steps": WARMUP, "timed_steps": TIMED, "reps": args.reps,
        "budget_s": args.budget, "memory_method": memory_method, "parameters": counts,
        "flops_per_token": fpt, "flop_formula": FLOP_FORMULA, "medians": medians, "ratios": ratios,
        "first_step_loss": first, "peft_skipped": peft_skipped, "runs": runs,
        "failures": failures, "notes": notes, "seconds": time.time() - started,
    }
    with open(os.path.join(args.out, "gpu-bench.json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
