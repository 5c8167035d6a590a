#!/usr/bin/env bash
# The image test with real containers (opt-in: a cold image build takes longer than CI allows,
# so it is not registered with ctest).
#
# Usage: tests/deploy/container_test.sh [--no-build] [--engine podman|docker]
#   LORATRF_HOST_BIN  host build's bin dir holding the `loratrf` CLI (default: build/bin)
#   LORATRF_IMAGE_TAG image tag to build or reuse (default: dev)
#
# Builds the CPU images with deploy/images/build.sh (or reuses them with --no-build), starts a
# coordinator container (its data dir on a named volume) and two worker containers, all with host
# networking on loopback ports, submits the quickstart job from the host's CLI and watches it
# succeed, restarts the coordinator container and checks that the job and its checkpoints are
# still there, downloads the adapter, and scrapes the coordinator's and both agents' /metrics.
# Removes its containers, volume and files on exit. Exit status: 0 passed, 1 failed, 2 bad usage.
set -euo pipefail
self=$(readlink -f "$0")
cd "$(dirname "$self")/../.."

build=1 engine=""
while (($#)); do
  case "$1" in
    --help|-h) sed -n '2,15p' "$self" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --no-build) build=0; shift ;;
    --engine) [[ $# -ge 2 ]] || { echo "--engine needs a value" >&2; exit 2; }; engine="$2"; shift 2 ;;
    *) echo "container_test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ -n "$engine" ]] || engine=$(command -v podman >/dev/null && echo podman || echo docker)
command -v "$engine" >/dev/null || { echo "container_test.sh: no podman or docker" >&2; exit 2; }
tag=${LORATRF_IMAGE_TAG:-dev}
cli=$(readlink -f "${LORATRF_HOST_BIN:-build/bin}")/loratrf
[[ -x "$cli" ]] || { echo "container_test.sh: no CLI at $cli (build the host tree, or set LORATRF_HOST_BIN)" >&2; exit 2; }

# Same sandbox-friendly defaults as build.sh (runc; ulimits some sandboxes cap).
run_flags=()
if [[ "$engine" == podman ]]; then
  command -v runc >/dev/null && run_flags+=(--runtime runc)
  run_flags+=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
fi
read -r -a run_flags <<<"${LORATRF_IMAGE_RUN_FLAGS-${run_flags[*]:-}}"

step() { echo; echo "== $* =="; }
fail() { echo "container_test.sh: FAIL: $*" >&2; exit 1; }

if ((build)); then
  step "build the images"
  deploy/images/build.sh --engine "$engine" --tag "$tag"
fi
coordinator_image=localhost/loratrf-coordinator:$tag
worker_image=localhost/loratrf-worker:$tag
for image in "$coordinator_image" "$worker_image"; do
  "$engine" image inspect "$image" >/dev/null 2>&1 || fail "no image $image (run without --no-build)"
done

suffix=$$
prefix=loratrf-ct-$suffix
volume=$prefix-data
# The job dir is bind-mounted read-only at the same path in the workers, so the absolute paths
# that `loratrf submit` writes into the spec resolve there too.
work=$(mktemp -d /tmp/loratrf-container-test.XXXXXX)
chmod 755 "$work"
containers=()
cleanup() {
  local rc=$?
  if ((rc != 0)); then
    for c in "${containers[@]}"; do
      echo "--- logs of $c (last 40 lines)"; "$engine" logs --tail 40 "$c" 2>&1 || true
    done
  fi
  # stop first: SIGTERM through tini lets the binaries shut down as they would in production.
  for c in "${containers[@]}"; do "$engine" stop -t 10 "$c" >/dev/null 2>&1 || true; done
  for c in "${containers[@]}"; do "$engine" rm -f "$c" >/dev/null 2>&1 || true; done
  "$engine" volume rm -f "$volume" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc_port=$(free_port) metrics_port=$(free_port) agent_metrics_a=$(free_port) agent_metrics_b=$(free_port)
export LORATRF_COORDINATOR=127.0.0.1:$grpc_port

step "the image basics: --help, non-root user, tini as PID 1"
"$engine" run --rm "${run_flags[@]}" "$coordinator_image" --help | grep -q "usage: loratrf-coordinator" \
  || fail "coordinator --help"
"$engine" run --rm "${run_flags[@]}" "$worker_image" --help | grep -q "usage: loratrf-worker" \
  || fail "worker --help"
"$engine" run --rm "${run_flags[@]}" --entrypoint /usr/local/bin/loratrf "$worker_image" --help \
  | grep -q "usage: loratrf" || fail "CLI --help in the worker image"
user=$("$engine" image inspect --format '{{.Config.User}}' "$worker_image")
[[ "$user" == 10001:10001 ]] || fail "worker image user is '$user'"
"$engine" run --rm "${run_flags[@]}" --entrypoint /bin/sh "$worker_image" -c \
  '! command -v gcc && ! command -v c++ && ! command -v cmake' >/dev/null || fail "a compiler in the worker image"
echo "ok"

step "the quickstart's model, data and job"
/usr/bin/python3 tests/reference/make_tiny_model.py --arch llama --head causal_lm --output "$work/model" >/dev/null
/usr/bin/python3 deploy/examples/make_synthetic_task.py "$work" >/dev/null
cp deploy/examples/tiny-loratrf.yaml "$work/job.yaml"
chmod -R a+rX "$work"

step "coordinator container (data on volume $volume)"
"$engine" volume create "$volume" >/dev/null
start_coordinator() {
  "$engine" run -d --name "$prefix-coordinator" --network host "${run_flags[@]}" \
    -v "$volume:/var/lib/loratrf/data" "$coordinator_image" \
    --listen "127.0.0.1:$grpc_port" --metrics-listen "127.0.0.1:$metrics_port" \
    --data-dir /var/lib/loratrf/data >/dev/null
}
start_coordinator
containers+=("$prefix-coordinator")
wait_for_coordinator() {
  for _ in $(seq 150); do "$cli" workers >/dev/null 2>&1 && return 0; sleep 0.2; done
  fail "the coordinator does not answer on $LORATRF_COORDINATOR"
}
wait_for_coordinator
pid1=$("$engine" exec "$prefix-coordinator" cat /proc/1/comm)
[[ "$pid1" == tini ]] || fail "PID 1 in the coordinator container is '$pid1'"
echo "coordinator at $LORATRF_COORDINATOR, PID 1 is $pid1"

step "two worker containers"
for agent in a b; do
  port_var=agent_metrics_$agent
  "$engine" run -d --name "$prefix-worker-$agent" --network host --shm-size 256m "${run_flags[@]}" \
    -v "$work:$work:ro" "$worker_image" agent --coordinator "$LORATRF_COORDINATOR" --slots 1 \
    --work-dir /var/lib/loratrf/work --name "ct-agent-$agent" \
    --metrics-listen "127.0.0.1:${!port_var}" --address 127.0.0.1 >/dev/null
  containers+=("$prefix-worker-$agent")
done
ready_agents() { "$cli" workers | awk '$2 == "ready"' | wc -l; }
for _ in $(seq 300); do
  [[ $(ready_agents) -ge 2 ]] && break
  sleep 0.2
done
"$cli" workers
[[ $(ready_agents) -ge 2 ]] || fail "two agents did not become ready"

step "submit from the host's CLI and watch"
job=$("$cli" submit "$work/job.yaml" | tail -n 1)
echo "job $job"
timeout 1200 "$cli" watch "$job" || fail "job $job did not succeed"
"$cli" checkpoints "$job" | tee "$work/checkpoints.before"

step "restart the coordinator container; the job and its checkpoints survive"
"$engine" restart -t 30 "$prefix-coordinator" >/dev/null
wait_for_coordinator
"$cli" get "$job" | tee "$work/job.after"
[[ $(awk '$1 == "state:" {print $2}' "$work/job.after") == succeeded ]] \
  || fail "job $job is not succeeded after the restart"
# tini passed SIGTERM on: the coordinator drained instead of being killed after the timeout.
"$engine" logs "$prefix-coordinator" 2>&1 | grep -q "draining (Terminated)" \
  || fail "the coordinator did not see SIGTERM on restart"
"$cli" checkpoints "$job" > "$work/checkpoints.after"
diff "$work/checkpoints.before" "$work/checkpoints.after" || fail "checkpoints changed across the restart"
[[ $(wc -l < "$work/checkpoints.after") -ge 2 ]] || fail "no checkpoints listed after the restart"

step "download the adapter"
"$cli" download "$job" --output "$work/adapter"
ls -l "$work/adapter"
[[ -s "$work/adapter/adapter_config.json" ]] || fail "no adapter_config.json in the download"
compgen -G "$work/adapter/*.safetensors" >/dev/null || fail "no safetensors in the download"

step "scrape /metrics"
scrape() {
  python3 - "$1" <<'PY'
import sys, urllib.request
print(urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=10).read().decode())
PY
}
scrape "127.0.0.1:$metrics_port" > "$work/coordinator.metrics"
grep -q '^loratrf_jobs_submitted_total' "$work/coordinator.metrics" || fail "coordinator /metrics lacks loratrf_jobs_submitted_total"
for port in "$agent_metrics_a" "$agent_metrics_b"; do
  scrape "127.0.0.1:$port" > "$work/agent-$port.metrics"
  grep -q '^loratrf_agent_slots' "$work/agent-$port.metrics" \
    || fail "agent /metrics on $port lacks loratrf_agent_slots"
done
echo "coordinator: $(grep -c '^loratrf_' "$work/coordinator.metrics") samples;" \
  "agents: $(grep -c '^loratrf_' "$work/agent-$agent_metrics_a.metrics")" \
  "and $(grep -c '^loratrf_' "$work/agent-$agent_metrics_b.metrics") samples"

echo
echo "container_test.sh: PASS"
