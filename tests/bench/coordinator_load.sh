#!/bin/bash
# Coordinator load benchmark: starts a real loratrf-coordinator on a temporary data
# dir (loopback, no auth), runs tests/bench/coordinator_load.cc against it (submitters, fake
# workers, watchers) and prints what it measured. See tests/bench/README.md.
#
#   tests/bench/coordinator_load.sh                                  # 10,000 jobs, 200 watchers, 50 workers
#   tests/bench/coordinator_load.sh --jobs 500 --watchers 20 --workers 10   # a quick run
#
# Arguments go to the generator; --jobs 10000 --watchers 200 --workers 50 --submitters 8 are
# added for those the arguments do not name. Environment: COORDINATOR
# [build/bin/loratrf-coordinator], LOAD [build/tests/coordinator_load], LEASE_TTL [10],
# KEEP=1 keeps the temporary directory (the coordinator's data dir and log).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
COORDINATOR=${COORDINATOR:-$ROOT/build/bin/loratrf-coordinator}
LOAD=${LOAD:-$ROOT/build/tests/coordinator_load}
LEASE_TTL=${LEASE_TTL:-10}

[[ -x $COORDINATOR ]] || { echo "no $COORDINATOR: cmake --build build --target loratrf-coordinator" >&2; exit 1; }
[[ -x $LOAD ]] || { echo "no $LOAD: cmake --build build --target coordinator_load" >&2; exit 1; }

TMP=$(mktemp -d /tmp/loratrf-load.XXXXXX)
COORD_PID=
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  if [[ -n $COORD_PID ]] && kill -0 "$COORD_PID" 2>/dev/null; then
    kill -TERM "$COORD_PID" 2>/dev/null || true
    wait "$COORD_PID" 2>/dev/null || true
  fi
  if [[ ${KEEP:-0} == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

echo "host: $(getconf _NPROCESSORS_ONLN) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
     "load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo "data dir on: $(df -P "$TMP" | awk 'NR == 2 {print $1}') ($(stat -f -c %T "$TMP"))"
"$LOAD" --fsync-probe "$TMP"

"$COORDINATOR" --listen 127.0.0.1:0 --data-dir "$TMP/data" --lease-ttl "$LEASE_TTL" \
  2> "$TMP/coordinator.log" &
COORD_PID=$!
for ((i = 0; i < 300; i++)); do
  [[ -s $TMP/data/coordinator.address ]] && break
  kill -0 "$COORD_PID" 2>/dev/null || { cat "$TMP/coordinator.log" >&2; exit 1; }
  sleep 0.1
done
[[ -s $TMP/data/coordinator.address ]] || { echo "the coordinator wrote no address in 30 s" >&2; exit 1; }
ADDRESS=$(head -n1 "$TMP/data/coordinator.address")
echo "coordinator: pid $COORD_PID on $ADDRESS (--lease-ttl $LEASE_TTL, SQLite WAL, durable before every answer)"

# The issue's sizes, unless the arguments name them (the generator refuses a flag given twice).
args=()
for flag in --jobs=10000 --watchers=200 --workers=50 --submitters=8; do
  name=${flag%%=*}
  [[ " $* " == *" $name "* || " $* " == *" $name="* ]] || args+=("$flag")
done
status=0
"$LOAD" --address "$ADDRESS" --coordinator-pid "$COORD_PID" "${args[@]}" "$@" || status=$?

echo "data dir after the run: $(du -sh "$TMP/data" | cut -f1)" \
     "(jobs.db + WAL $(du -ch "$TMP"/data/jobs.db* | tail -n1 | cut -f1))"
kill -TERM "$COORD_PID"
coordinator_status=0
wait "$COORD_PID" || coordinator_status=$?
COORD_PID=
if ((coordinator_status != 0)); then
  echo "the coordinator exited $coordinator_status after SIGTERM; its log:" >&2
  tail -n 20 "$TMP/coordinator.log" >&2
  status=1
else
  echo "coordinator drained and exited 0 after SIGTERM"
fi
exit $status
