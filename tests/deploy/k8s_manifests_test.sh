#!/usr/bin/env bash
# The Kubernetes manifests, offline: deploy/k8s/generate.py --check (the PrometheusRule and the
# dashboard copies match their sources), then `kubectl kustomize` renders each overlay alone and
# with every optional component (full-cpu/, full-gpu/), and validate.mjs checks each rendering
# against the Kubernetes and CRD schemas and loratrf's policies. No cluster is contacted.
# Usage: k8s_manifests_test.sh SOURCE_DIR
set -euo pipefail
src=$(cd "${1:?usage: k8s_manifests_test.sh SOURCE_DIR}" && pwd)
here=$src/tests/deploy

if ! command -v kubectl >/dev/null; then
  echo "FAIL: kubectl not found on PATH (kustomize v5 is built into kubectl >= 1.27)"; exit 1
fi
if [[ ! -d $here/node_modules/kubernetes-models ]]; then
  echo "FAIL: the schema validators are not installed: npm ci --prefix tests/deploy" \
       "(tests/run.sh does it)"; exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

status=0
echo "== deploy/k8s/generate.py --check"
python3 "$src/deploy/k8s/generate.py" --check || status=1

for target in deploy/k8s/overlays/cpu:cpu deploy/k8s/overlays/gpu:gpu \
              tests/deploy/full-cpu:cpu tests/deploy/full-gpu:gpu; do
  dir=${target%:*} expect=${target#*:}
  out=$work/$(echo "$dir" | tr / _).yaml
  echo "== kubectl kustomize $dir"
  kubectl kustomize "$src/$dir" >"$out"
  node "$here/validate.mjs" --repo "$src" --expect "$expect" "$out" || status=1
done
exit $status
