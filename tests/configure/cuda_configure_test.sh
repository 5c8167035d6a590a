#!/usr/bin/env bash
# A configure that asks for CUDA (-DLORATRF_CUDA=ON) and cannot have it must stop and name what
# is missing, instead of building a worker without NCCL that fails only on the GPU box. Where the
# libtorch has CUDA and NCCL is found (a GPU box), the same configure must succeed.
# Usage: cuda_configure_test.sh SOURCE_DIR TORCH_HAS_CUDA(ON|OFF) HAVE_NCCL(ON|OFF)
set -euo pipefail
src=$1 torch_cuda=$2 nccl=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

configure() {
  cmake -S "$src" -B "$work/$1" -G Ninja -DLORATRF_BUILD_TESTS=OFF -DLORATRF_ENGINE_ONLY=ON "${@:2}" 2>&1
}

if out=$(configure bad-value -DLORATRF_CUDA=maybe); then
  echo "FAIL: -DLORATRF_CUDA=maybe was accepted"; exit 1
fi
grep -q "LORATRF_CUDA must be AUTO, ON or OFF, got 'maybe'" <<<"$out" || { echo "$out"; exit 1; }

if [[ $torch_cuda == ON && $nccl == ON ]]; then
  configure wanted -DLORATRF_CUDA=ON >/dev/null || { echo "FAIL: a CUDA configure failed here"; exit 1; }
  echo "ok: LORATRF_CUDA=ON configures with this CUDA libtorch and NCCL"
  exit 0
fi
if out=$(configure wanted -DLORATRF_CUDA=ON); then
  echo "FAIL: LORATRF_CUDA=ON configured without a CUDA libtorch or NCCL"; exit 1
fi
grep -q "LORATRF_CUDA=ON, but:" <<<"$out" || { echo "$out"; exit 1; }
if [[ $torch_cuda == OFF ]]; then
  grep -q "has no CUDA (a CPU build)" <<<"$out" || { echo "$out"; exit 1; }
fi
if [[ $nccl == OFF ]]; then
  grep -q "no NCCL" <<<"$out" || { echo "$out"; exit 1; }
fi
echo "ok: LORATRF_CUDA=ON stops and names what is missing"
