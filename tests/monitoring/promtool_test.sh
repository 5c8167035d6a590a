#!/usr/bin/env bash
# Checks deploy/prometheus/ with Debian's promtool: both scrape configurations (with their rule
# files), both rule files, and the rule unit tests in alerts_test.yml (every alert firing and
# not firing, recording rule outputs).
# Usage: promtool_test.sh SOURCE_DIR
set -euo pipefail
src=${1:?usage: promtool_test.sh SOURCE_DIR}
prom=$src/deploy/prometheus

if ! command -v promtool >/dev/null; then
  echo "FAIL: promtool not found on PATH; it comes with the Debian package 'prometheus'" \
       "(bash deploy/install-deps.sh installs it)"
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== promtool check config prometheus.yml"
promtool check config "$prom/prometheus.yml"

echo "== promtool check config prometheus-kubernetes.yml"
if ! out=$(promtool check config "$prom/prometheus-kubernetes.yml" 2>&1); then
  if grep -q "field kubernetes_sd_configs not found" <<<"$out"; then
    # Debian builds Prometheus without Kubernetes service discovery. Check everything else
    # (relabelling, rule files, globals) with the discovery block swapped for an empty static
    # one, in a copy with the rules beside it so that rule_files resolve the same way.
    echo "note: this promtool has no Kubernetes service discovery (Debian's build);" \
         "checking the rest with kubernetes_sd_configs replaced by an empty static_configs"
    copy=$work/prometheus-kubernetes.yml
    cp -r "$prom/rules" "$work/rules"
    sed -e 's/^\( *\)kubernetes_sd_configs:$/\1static_configs:/' \
        -e 's/^\( *\)- role: pod$/\1- targets: []/' "$prom/prometheus-kubernetes.yml" >"$copy"
    if grep -q -e kubernetes_sd_configs -e 'role:' "$copy"; then
      echo "FAIL: prometheus-kubernetes.yml has a discovery block this test cannot swap"; exit 1
    fi
    promtool check config "$copy"
  else
    echo "$out"; exit 1
  fi
else
  echo "$out"
fi

echo "== promtool check rules"
promtool check rules "$prom/rules/recording.yml" "$prom/rules/alerts.yml"

echo "== promtool test rules alerts_test.yml"
# promtool compares annotations exactly; the runbook (static prose, checked for presence by
# check_queries.py) is left out of a copy of alerts.yml so that the tests need not repeat it.
# The copy keeps the layout the test file's relative rule_files expect.
mkdir -p "$work/tests/monitoring" "$work/deploy/prometheus/rules"
cp "$src/tests/monitoring/alerts_test.yml" "$work/tests/monitoring/"
cp "$prom/rules/recording.yml" "$work/deploy/prometheus/rules/"
awk 'BEGIN { skip = -1 }
     { match($0, /^ */); indent = RLENGTH }
     skip >= 0 { if ($0 ~ /^[[:space:]]*$/ || indent > skip) next; skip = -1 }
     /^[[:space:]]*runbook:/ { skip = indent; next }
     { print }' "$prom/rules/alerts.yml" >"$work/deploy/prometheus/rules/alerts.yml"
if grep -q 'runbook:' "$work/deploy/prometheus/rules/alerts.yml"; then
  echo "FAIL: could not strip the runbook annotations"; exit 1
fi
promtool test rules "$work/tests/monitoring/alerts_test.yml"
echo "ok: scrape configs, rule files and rule unit tests"
