#!/usr/bin/env bash
# Installs every Debian 12 package that loratrf's build, tests and demo need.
# Idempotent: packages already present are left alone; apt-get update runs first.
# Usage: deploy/install-deps.sh [--with-fuzz | --build-only]
#   --build-only: only what compiling the three binaries needs (the image build stage: no test,
#   reference or demo packages, which would add gigabytes and minutes to every image build).
set -euo pipefail
mode="${1:-}"
case "$mode" in
  ""|--with-fuzz|--build-only) ;;
  *) echo "usage: $0 [--with-fuzz | --build-only]" >&2; exit 2 ;;
esac

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates
  # engine; OpenBLAS becomes the system BLAS that Debian's libtorch calls (the reference BLAS
  # it would otherwise get is an order of magnitude slower: docs/results.md)
  libtorch-dev libgloo-dev libopenblas0-pthread
  # control plane
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  prometheus-cpp-dev libsqlite3-dev sqlite3 libspdlog-dev
  # spec parsing
  libyaml-cpp-dev nlohmann-json3-dev
  # tokenizers: Unicode properties and normalization (ICU), pre-tokenizer regexes (PCRE2)
  libicu-dev libpcre2-dev
  # tests; WordNet 3.0 for the experiment generators' tests (tests/experiment/)
  libgtest-dev libgmock-dev prometheus python3 wordnet-base
  # independent reference implementations and benchmarks (Debian's PyTorch, same 1.13 core)
  python3-torch
)
if [[ "$mode" == "--build-only" ]]; then
  # Everything above the "tests" line.
  build_only=()
  for p in "${packages[@]}"; do
    [[ "$p" == libgtest-dev ]] && break
    build_only+=("$p")
  done
  packages=("${build_only[@]}")
else
  # Node runs the reference tokenizer library in tests (any node >= 18 will do: keep one that is
  # already installed, e.g. from NodeSource, instead of pulling Debian's).
  if ! command -v node >/dev/null; then packages+=(nodejs); fi
  if ! command -v npm >/dev/null; then packages+=(npm); fi
fi
if [[ "$mode" == "--with-fuzz" ]]; then
  packages+=(clang-14 libclang-rt-14-dev)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
