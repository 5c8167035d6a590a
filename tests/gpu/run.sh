#!/usr/bin/env bash
# The one script a GPU machine runs, from the repository root, with .gpu-debs/ carried along
# (tests/gpu/prepare.sh makes it here): builds the engine-only loratrf-worker and the GPU tests
# against that machine's PyTorch (its libtorch and NCCL) and CUDA toolkit, runs every `gpu`
# test, checks adapters against Hugging Face PEFT both ways, benchmarks training against
# transformers + PEFT, and writes everything to one file.
#
#   bash tests/gpu/run.sh [--dry-run] [--out DIR] [--jobs N]
#
#   --out DIR   where the results go (default: $OUT when set, else .gpu-out/): gpu-results.txt
#               (the summary and every step's output), gpu-info.json (loratrf-worker info),
#               gpu-bench.json (the benchmark's figures) and gpu-bench-logs/ (one log a run)
#   --dry-run   for a machine without a GPU: the same carry, configure and build, against the
#               libtorch found here, with CUDA optional; the GPU tests then skip or check only
#               what a CPU machine can, and the benchmark trains a tiny model on the CPU
#   --jobs N    build parallelism (default: the CPU count)
#
# The benchmark (tests/gpu/bench.py, last, so that a slow one cannot starve the tests): a random
# TinyLlama-shaped 1.1B Llama, seq 2048, bf16, LoRA rank 16 on every linear of the decoder
# layers, trained by `loratrf-worker run` (LoRA and LoRATRF) and by transformers + PEFT (LoRA)
# with the same batches, runs alternated; medians of tokens/s, step time, peak device memory
# (nvidia-smi, the same way for both) and MFU, and the ratios ours/PEFT. It keeps to a
# wall-clock budget of its own (BENCH_BUDGET_S, 210 s), reporting the runs it had time for.
#
# Environment: LORATRF_PYTHON, the interpreter with PyTorch (default: python3, which has it on
# the GPU machine); REPS and BENCH_BUDGET_S for the benchmark (tests/gpu/bench.py). Exit
# status: 0 when every step passed, 1 when one failed, 2 for bad usage.
set -uo pipefail
cd "$(dirname "$0")/../.."

usage() { echo "usage: bash tests/gpu/run.sh [--dry-run] [--out DIR] [--jobs N]" >&2; exit 2; }
dry_run=0
out=${OUT:-.gpu-out}
jobs=$(nproc)
while (($#)); do
  case $1 in
    --dry-run) dry_run=1 ;;
    --out) [[ $# -ge 2 && -n $2 ]] || usage; out=$2; shift ;;
    --jobs) [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || usage; jobs=$2; shift ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done
python=${LORATRF_PYTHON:-python3}
if ! compgen -G ".gpu-debs/*.deb" >/dev/null; then
  echo "run.sh: .gpu-debs/ has no packages: run 'bash tests/gpu/prepare.sh' where the Debian" \
       "archive is reachable, and carry .gpu-debs/ with this script" >&2
  exit 2
fi
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "run.sh: $python has no PyTorch: set LORATRF_PYTHON to the interpreter that has it" >&2
  exit 2
fi
mkdir -p "$out" || exit 2
results=$out/gpu-results.txt
: >"$results"
failed=()

log() { echo "$*" | tee -a "$results"; }
# step NAME COMMAND...: runs it, its output into the results file, and records pass or fail.
step() {
  local name=$1
  shift
  local start=$SECONDS
  log "==== $name"
  if "$@" >>"$results" 2>&1; then
    log "---- $name: ok ($((SECONDS - start)) s)"
  else
    local code=$?
    log "---- $name: FAILED (exit $code, $((SECONDS - start)) s)"
    failed+=("$name")
  fi
}

log "loratrf GPU run: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)," \
    "dry run: $dry_run"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >>"$results" 2>&1 ||
  log "(no nvidia-smi)"

# 1. The carried packages, unpacked beside the build (never into /).
deps=$PWD/build-gpu-deps
unpack() {
  rm -rf "$deps" && mkdir -p "$deps" || return 1
  for deb in .gpu-debs/*.deb; do dpkg-deb -x "$deb" "$deps" || return 1; done
  # pkg-config files say prefix=/usr: the sysroot maps them into $deps.
  ls "$deps/usr/lib/x86_64-linux-gnu/pkgconfig/libpcre2-8.pc" >/dev/null
}
step "unpack the carried packages" unpack
multiarch=$deps/usr/lib/x86_64-linux-gnu
export PATH="$deps/usr/bin:$PATH"
export LD_LIBRARY_PATH="$multiarch${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PKG_CONFIG_PATH="$multiarch/pkgconfig:$deps/usr/share/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR=$deps
export LORATRF_PYTHON=$python

# 2. Configure and build against this machine's PyTorch.
torch_prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
cuda=ON
((dry_run)) && cuda=AUTO
configure() {
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DLORATRF_ENGINE_ONLY=ON \
    -DLORATRF_CUDA="$cuda" -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr" \
    -DProtobuf_PROTOC_EXECUTABLE="$deps/usr/bin/protoc" -DGTest_DIR="$multiarch/cmake/GTest"
}
step "configure (libtorch: $torch_prefix, CUDA: $cuda)" configure
step "build" cmake --build build-gpu --parallel "$jobs" --target loratrf-worker cuda_test
step "loratrf-worker info" bash -c "build-gpu/bin/loratrf-worker info -o json | tee '$out/gpu-info.json'"

# 3. The gpu tests (CUDA against CPU, resume after SIGKILL, ranks and GPUs).
step "gpu tests" ctest --test-dir build-gpu -L gpu --no-tests=error --output-on-failure

# 4. PEFT both ways: we load a LoRA adapter PEFT saved and give its outputs; PEFT loads the
#    adapter a short run of ours trained and gives ours.
peft() {
  local tmp code
  tmp=$(mktemp -d) || return 1
  peft_in "$tmp"
  code=$?
  rm -rf "$tmp"
  return $code
}
peft_in() {
  local tmp=$1
  "$python" tests/reference/make_tiny_model.py --arch llama --head causal_lm --output "$tmp/model" ||
    return 1
  for i in $(seq 1 16); do echo "{\"input_ids\": [$i, $((i + 3)), $((i + 7)), $((i + 11))]}"; done \
    >"$tmp/train.jsonl"
  cat >"$tmp/job.yaml" <<SPEC
name: peft-check
model: {path: $tmp/model}
task: causal_lm
data: {train: $tmp/train.jsonl}
adapter: {method: lora, rank: 4, alpha: 8, target_modules: [q_proj, v_proj]}
training: {max_steps: 3, batch_size: 4, micro_batch_size: 4, learning_rate: 1.0e-2}
SPEC
  build-gpu/bin/loratrf-worker run --spec "$tmp/job.yaml" --output "$tmp/run" || return 1
  "$python" tests/reference/check_peft_compat.py --worker build-gpu/bin/loratrf-worker \
    --model "$tmp/model" --ours "$tmp/run/final"
  local code=$?
  if ((code == 77)); then echo "skipped: transformers or peft is not installed"; return 0; fi
  return $code
}
step "PEFT round trip" peft

# 5. The benchmark: ours against transformers + PEFT (without them, the PEFT side is skipped).
bench_args=(--worker build-gpu/bin/loratrf-worker --out "$out")
((dry_run)) && bench_args+=(--dry-run)
step "benchmark" "$python" tests/gpu/bench.py "${bench_args[@]}"

if ((${#failed[@]})); then
  log "RESULT: FAILED: ${failed[*]}"
  exit 1
fi
log "RESULT: every step passed"
