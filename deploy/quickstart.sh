#!/usr/bin/env bash
# The main job, for now: install, build, and run the end-to-end smoke through the real
# binaries. (It becomes the real quickstart, a coordinator with two agents training a LoRATRF
# job, when the control plane lands: issue 6.)
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
cmake -S . -B build -G Ninja
cmake --build build --parallel "$(nproc)"

echo
echo "== this node =="
build/bin/loratrf-worker info
echo
echo "== a job spec, validated, with every default filled in =="
build/bin/loratrf validate tests/data/specs/minimal-causal-lm.yaml
echo
echo "== a bad spec is refused with the field and the rule (exit 2) =="
bad=$(mktemp --suffix=.yaml)
trap 'rm -f "$bad"' EXIT
sed 's/learning_rate: 3.0e-4/learning_rate: -1/' tests/data/specs/sst2-loratrf.yaml >"$bad"
status=0
build/bin/loratrf validate "$bad" || status=$?
echo "exit status: $status"
echo
echo "== end-to-end smoke: the integration tests =="
ctest --test-dir build -L integration --output-on-failure
