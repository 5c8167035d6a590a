#!/usr/bin/env bash
# The main job, for now: install, build, and fine-tune a tiny model with LoRATRF on two local
# Gloo ranks, then show the result. (With the control plane, issue 6, this becomes: an embedded
# coordinator, two agents, `loratrf submit` and `loratrf watch`.)
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
cmake -S . -B build -G Ninja
cmake --build build --parallel "$(nproc)"

work=build/quickstart
rm -rf "$work"
mkdir -p "$work"
echo
echo "== a tiny random Llama in Hugging Face format, and a synthetic task =="
/usr/bin/python3 tests/reference/make_tiny_model.py --arch llama --head causal_lm --output "$work/model"
/usr/bin/python3 deploy/examples/make_synthetic_task.py "$work"
cp deploy/examples/tiny-loratrf.yaml "$work/job.yaml"
build/bin/loratrf validate "$work/job.yaml" >/dev/null
echo
echo "== what trains =="
build/bin/loratrf-worker params --spec "$work/job.yaml"
echo
echo "== training on 2 ranks (Gloo over loopback) =="
build/bin/loratrf-worker run --spec "$work/job.yaml" --nproc 2 --output "$work/run"
echo
echo "== the adapter, in PEFT's format, and a prediction with it =="
ls -l "$work/run/final"
build/bin/loratrf-worker logits --model "$work/model" --adapter "$work/run/final" \
  --input-ids 40,7,9 --output "$work/prediction.safetensors"
echo "logits for [40, 7, 9] (class 1 expected) written to $work/prediction.safetensors"
