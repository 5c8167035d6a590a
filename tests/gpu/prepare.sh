#!/usr/bin/env bash
# Prepares what tests/gpu/run.sh needs on a GPU machine that cannot reach a package archive:
# the Debian 12 packages of the engine-only build and its tests (headers, libraries, protoc,
# pkg-config), downloaded here into .gpu-debs/ (git-ignored). Carry that folder with the run:
#
#   bash tests/gpu/prepare.sh            # here, once (needs the Debian archive)
#   bash tests/gpu/run.sh                # there, with .gpu-debs/ carried along
#
# The GPU machine brings its own PyTorch (libtorch, NCCL), CUDA toolkit, CMake and ninja.
set -euo pipefail
cd "$(dirname "$0")/../.."

packages=(
  # protobuf: headers, the library, protoc (the API messages are generated at build time)
  libprotobuf-dev libprotobuf32 libprotoc32 protobuf-compiler
  # abseil, yaml-cpp, nlohmann-json (the spec parser and the engine)
  libabsl-dev libabsl20220623 libyaml-cpp-dev libyaml-cpp0.7 nlohmann-json3-dev
  # tokenizers: ICU and PCRE2, found through pkg-config
  libicu-dev libicu72 icu-devtools libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0
  libpcre2-posix3 pkgconf pkgconf-bin libpkgconf3
  # tests
  libgtest-dev libgmock-dev googletest
  # Gloo's headers, for a libtorch that does not ship them
  libgloo-dev
)
mkdir -p .gpu-debs
rm -f .gpu-debs/*.deb
(cd .gpu-debs && apt-get download "${packages[@]}")
du -sh .gpu-debs
echo "prepare: ${#packages[@]} packages in .gpu-debs/; carry it with tests/gpu/run.sh"
