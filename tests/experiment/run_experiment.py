#!/usr/bin/python3
"""The LoRATRF experiment, run through the service the way a user would run it.

For each task family (supersense classification, hypernym multiple choice, arithmetic):
  1. methods: full fine-tuning; LoRA at ranks 4, 8, 16; LoRATRF with each filter (bottleneck,
     output, both) at the largest rank whose trainable parameters are at most 0.663x LoRA rank
     8's (SPEC-loratrf.md's "33.71% fewer"), counted by `loratrf-worker params`;
  2. `loratrf sweep` on dev: every method at each learning rate of its grid (one seed); the best
     final dev metric picks each method's learning rate;
  3. `loratrf sweep` on test: every method at its learning rate, seeds 1..S;
  4. one table per task (trainable parameters, test metric mean +- std, wall time), written to
     OUT/results.md and OUT/results.json, and with --results FILE into that file between the
     markers `<!-- experiment:begin -->` and `<!-- experiment:end -->`.

The base model comes from base_model.py (cached; built first if missing), the task data from
make_tasks.py. Unless --coordinator is given, a coordinator and one agent are started on
127.0.0.1 with data under OUT/service and stopped at the end. Jobs are ordinary jobs: watch,
cancel or download any of them meanwhile with `loratrf`.

  /usr/bin/python3 tests/experiment/run_experiment.py                 # the full run (~2 h, 2 cores)
  /usr/bin/python3 tests/experiment/run_experiment.py --smoke         # minutes: tiny everything
  ... --results docs/results.md                                       # regenerate the doc's tables

Progress goes to stderr; the last line of stdout is the path of results.json.
"""

import argparse
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TASKS = ("supersense", "hypernym_mc", "arithmetic")
METRIC_NAMES = {"supersense": "accuracy", "hypernym_mc": "multiple-choice accuracy",
                "arithmetic": "exact match"}
FILTERS = ("bottleneck", "output", "both")
LORA_RANKS = (4, 8, 16)
PARAMETER_RATIO = 0.663  # SPEC-loratrf.md: params(LoRATRF, r') <= 0.663 * params(LoRA, 8)
ADAPTER_LRS = (3.0e-4, 1.0e-3, 3.0e-3)
FULL_LRS = (3.0e-5, 1.0e-4, 3.0e-4)
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
MARK_BEGIN = "<!-- experiment:begin -->"
MARK_END = "<!-- experiment:end -->"


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(argv, **kwargs):
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"run_experiment: {' '.join(argv)} exited {result.returncode}:\n"
                         f"{result.stderr.strip()[-2000:]}")
    return result.stdout


def last_json_line(text):
    return json.loads(text.strip().splitlines()[-1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- the service

class Service:
    """A coordinator and one agent on 127.0.0.1, or an existing coordinator."""

    def __init__(self, bin_dir, root, slots, coordinator=None):
        self.bin_dir = bin_dir
        self.processes = []
        if coordinator:
            self.address = coordinator
            return
        os.makedirs(root, exist_ok=True)
        self.address = f"127.0.0.1:{free_port()}"
        coordinator_log = open(os.path.join(root, "coordinator.log"), "ab")
        self.processes.append(subprocess.Popen(
            [os.path.join(bin_dir, "loratrf-coordinator"), "--listen", self.address,
             "--data-dir", os.path.join(root, "coordinator"),
             "--metrics-listen", f"127.0.0.1:{free_port()}"],
            stdout=coordinator_log, stderr=coordinator_log))
        self.wait_until(lambda: self.cli_ok(["list"]), "the coordinator to answer")
        agent_log = open(os.path.join(root, "agent.log"), "ab")
        self.processes.append(subprocess.Popen(
            [os.path.join(bin_dir, "loratrf-worker"), "agent", "--coordinator", self.address,
             "--slots", str(slots), "--work-dir", os.path.join(root, "agent"),
             "--name", "experiment"],
            stdout=agent_log, stderr=agent_log))
        self.wait_until(lambda: '"experiment"' in self.cli(["workers", "-o", "json"]),
                        "the agent to register")

    def cli_argv(self, args):
        return [os.path.join(self.bin_dir, "loratrf"), "--coordinator", self.address] + args

    def cli(self, args):
        return run(self.cli_argv(args))

    def cli_ok(self, args):
        return subprocess.run(self.cli_argv(args), capture_output=True).returncode == 0

    def wait_until(self, predicate, what, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for p in self.processes:
                if p.poll() is not None:
                    raise SystemExit(f"run_experiment: {p.args[0]} exited {p.returncode} "
                                     f"while waiting for {what}")
            try:
                if predicate():
                    return
            except SystemExit:
                pass
            time.sleep(0.5)
        raise SystemExit(f"run_experiment: timed out waiting for {what}")

    def stop(self):
        for p in reversed(self.processes):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()


# ----------------------------------------------------------------------------- methods

def adapter_overrides(method, rank=None, filt=None):
    if method == "full":
        return {"adapter": {"method": "full"}}
    o = {"adapter.method": method, "adapter.rank": rank, "adapter.alpha": 2 * rank}
    if filt:
        o["adapter.filter"] = filt
    return o


def apply_overrides(spec, overrides):
    spec = json.loads(json.dumps(spec))
    for path, value in overrides.items():
        node = spec
        keys = path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return spec


def trainable_parameters(bin_dir, spec, workdir):
    path = os.path.join(workdir, "params-spec.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spec, f)
    out = run([os.path.join(bin_dir, "loratrf-worker"), "params", "--spec", path])
    return int(last_json_line(out)["trainable"])


def choose_methods(bin_dir, base_spec, workdir):
    """The methods of one task, with LoRATRF's ranks matched to 0.663x LoRA rank 8."""
    methods = [{"label": "full", "method": "full", "rank": None, "filter": None,
                "overrides": adapter_overrides("full")}]
    for r in LORA_RANKS:
        methods.append({"label": f"LoRA r{r}", "method": "lora", "rank": r, "filter": None,
                        "overrides": adapter_overrides("lora", r)})
    for m in methods:
        m["params"] = trainable_parameters(bin_dir, apply_overrides(base_spec, m["overrides"]),
                                           workdir)
    lora8 = next(m["params"] for m in methods if m["label"] == "LoRA r8")
    for filt in FILTERS:
        best = None
        for r in range(1, 17):
            o = adapter_overrides("loratrf", r, filt)
            p = trainable_parameters(bin_dir, apply_overrides(base_spec, o), workdir)
            if p <= PARAMETER_RATIO * lora8:
                best = {"label": f"LoRATRF {filt} r{r}", "method": "loratrf", "rank": r,
                        "filter": filt, "overrides": o, "params": p}
        if best is None:
            raise SystemExit(f"run_experiment: no LoRATRF {filt} rank fits 0.663x LoRA r8")
        methods.append(best)
    for m in methods:
        m["ratio_to_lora8"] = m["params"] / lora8
        m["lrs"] = FULL_LRS if m["method"] == "full" else ADAPTER_LRS
    return methods


# ----------------------------------------------------------------------------- sweeps

def run_sweep(service, workdir, name, base_path, variants, grid, poll):
    sweep = {"name": name, "base": base_path, "variants": variants}
    if grid:
        sweep["grid"] = grid
    path = os.path.join(workdir, f"{name}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(sweep, f, sort_keys=False)
    sweep_id = service.cli(["sweep", path]).strip().splitlines()[-1]
    log(f"{name}: sweep {sweep_id} submitted")
    started = time.time()
    said = None
    while True:
        rows = json.loads(service.cli(["sweep", "results", sweep_id, "-o", "json"]))
        done = sum(1 for r in rows if r["state"] in TERMINAL)
        if done != said:
            log(f"{name}: {done}/{len(rows)} jobs finished ({time.time() - started:.0f} s)")
            said = done
        if rows and done == len(rows):
            break
        time.sleep(poll)
    rows.sort(key=lambda r: int(r["name"].rsplit("-", 1)[1]))
    failed = [r for r in rows if r["state"] != "SUCCEEDED"]
    if failed:
        raise SystemExit(f"run_experiment: sweep {sweep_id}: {len(failed)} job(s) did not "
                         f"succeed, e.g. {failed[0]['name']} {failed[0]['id']} "
                         f"({failed[0]['state']}); see `loratrf get {failed[0]['id']}`")
    return sweep_id, rows


def experiment_task(service, bin_dir, task, specs_dir, workdir, seeds, lr_count, poll):
    dev_path = os.path.join(specs_dir, f"{task}-dev.yaml")
    test_path = os.path.join(specs_dir, f"{task}-test.yaml")
    with open(dev_path, encoding="utf-8") as f:
        base_spec = yaml.safe_load(f)
    methods = choose_methods(bin_dir, base_spec, workdir)
    for m in methods:
        log(f"{task}: {m['label']}: {m['params']} trainable parameters "
            f"({m['ratio_to_lora8']:.3f}x LoRA r8)")

    # Learning rate per method, on dev, one seed.
    variants, keys = [], []
    for m in methods:
        start = max(0, (len(m["lrs"]) - lr_count) // 2)  # fewer rates: the middle ones
        for lr in m["lrs"][start:start + lr_count]:
            variants.append({**m["overrides"], "training.learning_rate": lr})
            keys.append((m["label"], lr))
    dev_id, dev_rows = run_sweep(service, workdir, f"{task.replace('_', '-')}-dev", dev_path,
                                 variants, None, poll)
    dev = {}
    for (label, lr), row in zip(keys, dev_rows):
        dev.setdefault(label, []).append({"lr": lr, "accuracy": row["eval_accuracy"],
                                          "loss": row["eval_loss"], "job": row["id"]})
    for m in methods:
        # Highest dev metric; then lowest dev loss; then the smaller rate.
        m["dev"] = dev[m["label"]]
        best = sorted(m["dev"], key=lambda d: (-d["accuracy"], d["loss"], d["lr"]))[0]
        m["lr"] = best["lr"]

    # Test: each method at its rate, seeds 1..S.
    variants = [{**m["overrides"], "training.learning_rate": m["lr"]} for m in methods]
    test_id, test_rows = run_sweep(service, workdir, f"{task.replace('_', '-')}-test", test_path,
                                   variants, {"training.seed": list(range(1, seeds + 1))}, poll)
    for i, m in enumerate(methods):
        rows = test_rows[i * seeds:(i + 1) * seeds]
        m["test"] = [{"seed": s + 1, "accuracy": r["eval_accuracy"], "loss": r["eval_loss"],
                      "wall_seconds": r["wall_seconds"], "job": r["id"],
                      "reported_trainable": r["trainable_parameters"]} for s, r in enumerate(rows)]
        for t in m["test"]:
            if int(t["reported_trainable"]) != m["params"]:
                raise SystemExit(f"run_experiment: {task} {m['label']}: the job reported "
                                 f"{t['reported_trainable']} trainable parameters, "
                                 f"`params` said {m['params']}")
    return {"task": task, "metric": METRIC_NAMES[task], "dev_sweep": dev_id,
            "test_sweep": test_id, "methods": methods}


# ----------------------------------------------------------------------------- report

def mean_std(values):
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def verdicts(task_result):
    methods = {m["label"]: m for m in task_result["methods"]}
    lora8 = methods["LoRA r8"]
    lora_mean, lora_std = mean_std([t["accuracy"] for t in lora8["test"]])
    out = []
    for m in task_result["methods"]:
        if m["method"] != "loratrf":
            continue
        mean, std = mean_std([t["accuracy"] for t in m["test"]])
        out.append({"method": m["label"], "params_ratio": m["ratio_to_lora8"],
                    "mean": mean, "lora8_mean": lora_mean, "difference": mean - lora_mean,
                    "combined_std": math.sqrt(std ** 2 + lora_std ** 2),
                    "held": m["ratio_to_lora8"] <= PARAMETER_RATIO and mean >= lora_mean})
    return out


def markdown(results, setup):
    lines = [MARK_BEGIN, "",
             f"Generated by `{setup['command']}` on {setup['date']} "
             f"({setup['machine']}); base model `{setup['base_model']['name']}` "
             f"({setup['base_model']['parameters']:,} parameters, held-out perplexity "
             f"{setup['base_model']['heldout_perplexity']:.1f}); {setup['seeds']} seeds on test; "
             f"learning rate per method picked on dev from {list(ADAPTER_LRS)} (adapters) and "
             f"{list(FULL_LRS)} (full). Wall time is each job's first RUNNING to its end, "
             f"{setup['slots']} job(s) at a time.", ""]
    for r in results:
        lines += [f"**{r['task']}** (test {r['metric']}; sweeps {r['dev_sweep']}, "
                  f"{r['test_sweep']})", "",
                  "| method | trainable params | × LoRA r8 | lr | test metric (mean ± std) "
                  "| per seed | wall time |",
                  "|---|---:|---:|---:|---:|---|---:|"]
        for m in r["methods"]:
            accs = [t["accuracy"] for t in m["test"]]
            mean, std = mean_std(accs)
            wall = statistics.fmean(t["wall_seconds"] for t in m["test"])
            lines.append(f"| {m['label']} | {m['params']:,} | {m['ratio_to_lora8']:.3f} | "
                         f"{m['lr']:g} | {100 * mean:.1f}% ± {100 * std:.1f} | "
                         f"{', '.join(f'{100 * a:.1f}' for a in accs)} | {wall:.0f} s |")
        lines.append("")
        for v in verdicts(r):
            lines.append(f"- {v['method']} ({v['params_ratio']:.3f}× the parameters): "
                         f"{100 * v['mean']:.1f}% vs LoRA r8 {100 * v['lora8_mean']:.1f}% "
                         f"(difference {100 * v['difference']:+.1f} points, combined std "
                         f"{100 * v['combined_std']:.1f}): claim "
                         f"{'held' if v['held'] else 'did not hold'} on the means.")
        lines.append("")
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def write_between_markers(path, section):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if MARK_BEGIN in text and MARK_END in text:
        head = text[:text.index(MARK_BEGIN)]
        tail = text[text.index(MARK_END) + len(MARK_END):].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        raise SystemExit(f"run_experiment: {path} has no {MARK_BEGIN} ... {MARK_END} section")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- main

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join(
        os.environ.get("LORATRF_CACHE", os.path.expanduser("~/.cache/loratrf")), "experiment"))
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--lr-count", type=int, default=3, help="learning rates tried per method")
    p.add_argument("--smoke", action="store_true",
                   help="smoke base model, tiny task sets, one rate, one seed, one epoch")
    p.add_argument("--bin", default=os.environ.get("LORATRF_BIN", os.path.join(REPO, "build", "bin")))
    p.add_argument("--coordinator", help="use this coordinator (and its agents) instead of starting one")
    p.add_argument("--slots", type=int, default=os.cpu_count() or 1,
                   help="slots of the agent this command starts (jobs run side by side)")
    p.add_argument("--results", help="markdown file to write the tables into (between markers)")
    p.add_argument("--poll", type=float, default=5.0, help="seconds between progress checks")
    args = p.parse_args(argv)

    tasks = [t for t in args.tasks.split(",") if t]
    for t in tasks:
        if t not in TASKS:
            p.error(f"--tasks: unknown task {t!r} (known: {', '.join(TASKS)})")
    if args.seeds < 1 or args.lr_count < 1 or args.slots < 1:
        p.error("--seeds, --lr-count and --slots must be at least 1")
    for binary in ("loratrf", "loratrf-coordinator", "loratrf-worker"):
        if not os.access(os.path.join(args.bin, binary), os.X_OK):
            p.error(f"--bin: {os.path.join(args.bin, binary)} is not an executable (build first)")
    if args.smoke:
        args.seeds, args.lr_count = min(args.seeds, 1), 1
    os.makedirs(args.out, exist_ok=True)
    started = time.time()

    log("base model (cached after the first build)")
    base_cmd = ["/usr/bin/python3", os.path.join(HERE, "base_model.py"),
                "--worker", os.path.join(args.bin, "loratrf-worker")]
    if args.smoke:
        base_cmd += ["--smoke", "--cache", os.path.join(args.out, "cache")]
    base = last_json_line(run(base_cmd))
    log(f"base model {base['dir']}: held-out perplexity {base['heldout_perplexity']:.1f}")

    data_dir = os.path.join(args.out, "tasks")
    task_cmd = ["/usr/bin/python3", os.path.join(HERE, "make_tasks.py"), "--out", data_dir,
                "--base-model", base["dir"]]
    if args.smoke:
        task_cmd += ["--supersense-labels", "4", "--supersense-train", "48", "--supersense-eval",
                     "16", "--mc-train", "32", "--mc-eval", "16", "--math-train", "32",
                     "--math-eval", "16"]
    run(task_cmd)
    specs_dir = os.path.join(data_dir, "specs")
    if args.smoke:
        # One epoch, one step per eval set check: the point is the plumbing, not the numbers.
        for name in os.listdir(specs_dir):
            path = os.path.join(specs_dir, name)
            with open(path, encoding="utf-8") as f:
                spec = yaml.safe_load(f)
            spec["training"].update({"epochs": 1, "batch_size": 16, "micro_batch_size": 16})
            with open(path, "w", encoding="utf-8") as f:
                yaml.safe_dump(spec, f, sort_keys=False)

    service = Service(args.bin, os.path.join(args.out, "service"), args.slots, args.coordinator)
    results = []
    try:
        with tempfile.TemporaryDirectory(dir=args.out) as workdir:
            for task in tasks:
                log(f"task {task}")
                results.append(experiment_task(service, args.bin, task, specs_dir, workdir,
                                               args.seeds, args.lr_count, args.poll))
    finally:
        service.stop()

    setup = {"command": "tests/experiment/run_experiment.py" + (" --smoke" if args.smoke else ""),
             "date": time.strftime("%Y-%m-%d"), "seeds": args.seeds, "slots": args.slots,
             "machine": f"{os.cpu_count()} CPU cores", "base_model": base,
             "wall_seconds": time.time() - started}
    report = {"setup": setup, "tasks": results,
              "verdicts": {r["task"]: verdicts(r) for r in results}}
    json_path = os.path.join(args.out, "results.json")
    with open(json_path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    os.replace(json_path + ".tmp", json_path)
    section = markdown(results, setup)
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as f:
        f.write(section)
    if args.results:
        write_between_markers(args.results, section)
    log(f"done in {time.time() - started:.0f} s")
    print(json_path)


if __name__ == "__main__":
    main()
