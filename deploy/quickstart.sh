#!/usr/bin/env bash
# The main job: installs, builds, then runs the whole service on this machine — an embedded
# coordinator (SQLite under build/quickstart/data), two local CPU worker agents — and submits
# the example LoRATRF job to it: a tiny random Llama in Hugging Face format and a synthetic
# classification task (made by tests/reference/make_tiny_model.py and
# deploy/examples/make_synthetic_task.py), trained with one rank on each agent (Gloo across
# them). Shows the live progress, the evaluation, where the adapter is, a prediction with it,
# and shuts everything down cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
cmake -S . -B build -G Ninja
cmake --build build --parallel "$(nproc)"

work=build/quickstart
rm -rf "$work"
mkdir -p "$work"
bin=build/bin
pids=()
cleanup() {
  # SIGTERM: agents stop their ranks, the coordinator drains; nothing is lost either way.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

echo
echo "== a tiny random Llama in Hugging Face format, and a synthetic task =="
/usr/bin/python3 tests/reference/make_tiny_model.py --arch llama --head causal_lm --output "$work/model"
/usr/bin/python3 deploy/examples/make_synthetic_task.py "$work"
cp deploy/examples/tiny-loratrf.yaml "$work/job.yaml"
"$bin/loratrf" validate "$work/job.yaml" >/dev/null
echo
echo "== what trains =="
"$bin/loratrf-worker" params --spec "$work/job.yaml"

echo
echo "== the service: a coordinator and two agents on 127.0.0.1 =="
"$bin/loratrf-coordinator" --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s $work/data/coordinator.address ]] && break; sleep 0.1; done
[[ -s $work/data/coordinator.address ]] || { cat "$work/coordinator.log"; exit 1; }
export LORATRF_COORDINATOR=$(cat "$work/data/coordinator.address")
echo "coordinator at $LORATRF_COORDINATOR (log: $work/coordinator.log)"
for agent in agent-a agent-b; do
  "$bin/loratrf-worker" agent --coordinator "$LORATRF_COORDINATOR" --slots 1 \
    --work-dir "$work/$agent" --name "$agent" >"$work/$agent.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 300); do
  ready=$("$bin/loratrf" workers | grep -ci " ready " || true)
  [[ $ready -ge 2 ]] && break
  sleep 0.2
done
"$bin/loratrf" workers

echo
echo "== submit, then watch it train (one rank on each agent) =="
job=$("$bin/loratrf" submit "$work/job.yaml" | tail -n 1)
echo "job $job"
"$bin/loratrf" watch "$job"

echo
echo "== the result =="
"$bin/loratrf" get "$job"
echo
"$bin/loratrf" checkpoints "$job"
echo
"$bin/loratrf" download "$job" --output "$work/adapter"
ls -l "$work/adapter"
"$bin/loratrf-worker" logits --model "$work/model" --adapter "$work/adapter" \
  --input-ids 40,7,9 --output "$work/prediction.safetensors"
echo
echo "The adapter (PEFT format) is in $work/adapter; logits for [40, 7, 9] (class 1 expected)"
echo "are in $work/prediction.safetensors. Shutting the service down."
