#!/usr/bin/env bash
# The test command: installs what is missing (Debian 12), builds everything, runs every test.
# Usage: bash tests/run.sh [extra ctest arguments, e.g. -L unit]
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
# The reference tokenizer library (Hugging Face tokenizers' Node bindings) the tokenizer tests
# compare against; CI must not skip them.
npm ci --prefix tests/reference/tokenizers --no-audit --no-fund --loglevel=error
# The schema validators of the Kubernetes manifests' test (tests/deploy/).
npm ci --prefix tests/deploy --no-audit --no-fund --loglevel=error
export LORATRF_REQUIRE_REFERENCE=1
cmake -S . -B build -G Ninja -DLORATRF_WERROR=ON
cmake --build build --parallel "$(nproc)"
ctest --test-dir build --output-on-failure --parallel "$(nproc)" "$@"
