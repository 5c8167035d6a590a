#!/bin/bash
# CPU training throughput of `loratrf-worker run` against a plain PyTorch script doing the same
# training (tests/bench/reference_train.py): same model, adapter, data, batches, optimizer and
# thread count, runs alternated. With MODE=methods, instead: `loratrf-worker run` with LoRA
# against the same run with LoRATRF (the cost of the filter). See tests/bench/README.md.
#
#   tests/bench/train_throughput.sh
#   MODE=methods tests/bench/train_throughput.sh
#
# Environment (defaults in brackets): REPS [5] runs of each, WARMUP [1] steps not timed, STEPS [5]
# timed steps per run, THREADS [1] intra-op threads for both, WORKER [build/bin/loratrf-worker],
# KEEP=1 keeps the temporary directory, MODE [reference] or methods, RANK [8], TARGETS
# [q_proj, k_proj, v_proj, o_proj] (methods only), NO_GNU_TIME=1 reads peak RSS from /proc
# (VmHWM) instead of /usr/bin/time -v.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3  # Debian's, with torch; not the pyenv python3 on PATH
WORKER=${WORKER:-$ROOT/build/bin/loratrf-worker}
REPS=${REPS:-5}
WARMUP=${WARMUP:-1}
STEPS=${STEPS:-5}
THREADS=${THREADS:-1}
MODE=${MODE:-reference}
case $MODE in
  reference) SIDES=(loratrf reference) LABELS=(loratrf PyTorch) ;;
  methods) SIDES=(lora loratrf) LABELS=(LoRA LoRATRF) ;;
  *) echo "MODE must be reference or methods, got '$MODE'" >&2; exit 2 ;;
esac
TOTAL=$((WARMUP + STEPS))

# The model and job: a small Llama, LoRATRF on q_proj/v_proj, one rank.
HIDDEN=256 INTERMEDIATE=688 LAYERS=4 HEADS=8 KV_HEADS=4 VOCAB=2048
SEQ=128 BATCH=8 MICRO=8 EXAMPLES=64 RANK=${RANK:-8} ALPHA=16 LR=1.0e-4 CLIP=1.0 SEED=42
# The reference script adapts q, k, v and o; MODE=methods may adapt others.
TARGETS=${TARGETS:-q_proj, k_proj, v_proj, o_proj}
if [[ $MODE == reference && $TARGETS != "q_proj, k_proj, v_proj, o_proj" ]]; then
  echo "TARGETS is for MODE=methods (the reference script adapts q, k, v and o)" >&2; exit 2
fi

[[ -x $WORKER ]] || { echo "no $WORKER: cmake --build build --target loratrf-worker" >&2; exit 1; }
TMP=$(mktemp -d /tmp/loratrf-bench.XXXXXX)
if [[ ${KEEP:-0} == 1 ]]; then echo "keeping $TMP"; else trap 'rm -rf "$TMP"' EXIT; fi

export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

"$PY" "$ROOT/tests/reference/make_tiny_model.py" --arch llama --head causal_lm --output "$TMP/model" \
  --hidden $HIDDEN --intermediate $INTERMEDIATE --layers $LAYERS --heads $HEADS --kv-heads $KV_HEADS \
  --vocab $VOCAB
"$PY" - "$TMP/train.jsonl" $EXAMPLES $SEQ $VOCAB <<'EOF'
import json, random, sys
path, n, length, vocab = sys.argv[1], *map(int, sys.argv[2:])
rng = random.Random(0)
with open(path, "w") as f:
    for _ in range(n):  # ids 3.. (0-2 are pad/bos/eos), every sequence full length: no padding
        f.write(json.dumps({"input_ids": [rng.randrange(3, vocab) for _ in range(length)]}) + "\n")
EOF
write_spec() {  # write_spec METHOD: the job, as a spec file $TMP/job-METHOD.yaml
  cat > "$TMP/job-$1.yaml" <<EOF
name: bench-throughput
model: {path: model}
task: causal_lm
data: {train: train.jsonl}
adapter: {method: $1, rank: $RANK, alpha: $ALPHA, dropout: 0, $([[ $1 == lora ]] || echo "filter: bottleneck,")
          target_modules: [$TARGETS]}
training: {epochs: 1000, max_steps: $TOTAL, batch_size: $BATCH, micro_batch_size: $MICRO,
           learning_rate: $LR, lr_scheduler: constant, warmup_ratio: 0, weight_decay: 0,
           max_grad_norm: $CLIP, seed: $SEED, max_seq_len: $SEQ, precision: fp32,
           eval_every_steps: 0, checkpoint_every_steps: 0, keep_checkpoints: 1}
resources: {workers: 1, slots_per_worker: 1, device: cpu}
EOF
}
write_spec lora
write_spec loratrf

# run NAME CMD...: runs CMD, writes its wall seconds and peak RSS (KiB) to $TMP/NAME.time.
run() {
  local name=$1; shift
  if [[ -x /usr/bin/time && -z ${NO_GNU_TIME:-} ]]; then
    /usr/bin/time -f "%e %M" -o "$TMP/$name.time" "$@" > "$TMP/$name.log" 2>&1 \
      || { cat "$TMP/$name.log" >&2; exit 1; }
  else
    # No GNU time: poll the process's high-water mark (VmHWM) until it exits.
    local start hwm=0 pid h
    start=$(date +%s.%N)
    "$@" > "$TMP/$name.log" 2>&1 &
    pid=$!
    while kill -0 $pid 2>/dev/null; do
      h=$(awk '/^VmHWM:/ {print $2}' /proc/$pid/status 2>/dev/null || true)
      [[ -n $h && $h -gt $hwm ]] && hwm=$h
      sleep 0.05
    done
    wait $pid || { cat "$TMP/$name.log" >&2; exit 1; }
    awk -v s="$start" -v e="$(date +%s.%N)" -v m="$hwm" 'BEGIN {print e - s, m}' > "$TMP/$name.time"
  fi
}
run_worker() {  # run_worker METHOD REP
  run "$1-$2" "$WORKER" run --spec "$TMP/job-$1.yaml" --nproc 1 --output "$TMP/$1-$2"
}
run_side() {  # run_side SIDE REP
  case $1 in
    reference) run_reference "$2" ;;
    *) run_worker "$1" "$2" ;;
  esac
}
run_reference() {
  run "reference-$1" "$PY" "$ROOT/tests/bench/reference_train.py" --model "$TMP/model" \
    --data "$TMP/train.jsonl" --output "$TMP/reference-$1" --steps $TOTAL --batch-size $BATCH \
    --micro-batch-size $MICRO --lr $LR --max-grad-norm $CLIP --rank $RANK --alpha $ALPHA \
    --max-seq-len $SEQ --seed $SEED --threads "$THREADS"
}

echo "${LABELS[0]} vs ${LABELS[1]}: $REPS runs each of $WARMUP warmup + $STEPS timed steps," \
     "OMP_NUM_THREADS=$THREADS ($("$WORKER" info | grep -i 'threads'))"
echo "model: Llama hidden $HIDDEN, intermediate $INTERMEDIATE, $LAYERS layers, $HEADS heads," \
     "$KV_HEADS KV heads, vocab $VOCAB; seq $SEQ, batch $BATCH (micro $MICRO); ${SIDES[*]} r $RANK" \
     "alpha $ALPHA bottleneck on $TARGETS; AdamW lr $LR, clip $CLIP"
echo "host: $(getconf _NPROCESSORS_ONLN) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "BLAS $(readlink -f /lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || echo '?'), load $(cut -d' ' -f1-3 /proc/loadavg)"
started=$(date +%s)
for ((i = 1; i <= REPS; i++)); do
  # Alternate which goes first, so that drift in the machine's load hits both alike.
  if ((i % 2)); then run_side "${SIDES[0]}" $i; run_side "${SIDES[1]}" $i
  else run_side "${SIDES[1]}" $i; run_side "${SIDES[0]}" $i; fi
  echo "  run $i of $REPS done ($(($(date +%s) - started)) s)"
done

"$PY" - "$TMP" $REPS $WARMUP "${SIDES[@]}" "${LABELS[@]}" <<'EOF'
import json, statistics, sys
tmp, reps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sides, labels = sys.argv[4:6], sys.argv[6:8]

def rows(path):
    with open(path) as f:
        return [r for r in map(json.loads, f) if r.get("type") == "train"]

def measure(name, i):
    steps = rows(f"{tmp}/{name}-{i}/metrics.jsonl")
    timed = steps[warmup:]
    seconds = sum(r["step_seconds"] for r in timed)
    with open(f"{tmp}/{name}-{i}.time") as f:
        wall, rss = f.read().split()[:2]
    return {"tok": sum(r["tokens_per_second"] * r["step_seconds"] for r in timed) / seconds,
            "smp": sum(r["samples_per_second"] * r["step_seconds"] for r in timed) / seconds,
            "step": seconds / len(timed), "wall": float(wall), "rss": int(rss) / 1024,
            "losses": [r["loss"] for r in steps]}

runs = {n: [measure(n, i) for i in range(1, reps + 1)] for n in sides}
med = {n: {k: statistics.median(r[k] for r in rs) for k in ("tok", "smp", "step", "wall", "rss")}
       for n, rs in runs.items()}
a, b = med[sides[0]], med[sides[1]]
print()
ratio = f"{labels[0]}/{labels[1]}"
print(f"{'median of ' + str(reps) + ' runs':<28}{labels[0]:>12}{labels[1]:>12}{ratio:>18}")
for label, key, fmt in (("tokens/s", "tok", "{:.1f}"), ("samples/s", "smp", "{:.3f}"),
                        ("step time (s)", "step", "{:.3f}"), ("run wall time (s)", "wall", "{:.1f}"),
                        ("peak RSS (MiB)", "rss", "{:.0f}")):
    print(f"{label:<28}{fmt.format(a[key]):>12}{fmt.format(b[key]):>12}{a[key] / b[key]:>17.3f}x")
print()
print("tokens/s per run:")
for n, rs in runs.items():
    print(f"  {n:<10} " + "  ".join(f"{r['tok']:.1f}" for r in rs))
la, lb = runs[sides[0]][0]["losses"], runs[sides[1]][0]["losses"]
diff = max(abs(x - y) for x, y in zip(la, lb))
print(f"loss, step 1 -> {len(la)}: {labels[0]} {la[0]:.6f} -> {la[-1]:.6f}, "
      f"{labels[1]} {lb[0]:.6f} -> {lb[-1]:.6f}; largest per-step difference {diff:.2e}")
EOF
echo "total $(($(date +%s) - started)) s"
