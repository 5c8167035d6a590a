#!/usr/bin/env bash
# Builds the loratrf container images (CPU: coordinator and worker) from this checkout.
#
# Usage: deploy/images/build.sh [--engine podman|docker] [--tag TAG] [--base IMAGE]
#                               [--jobs N] [--target coordinator|worker|all]
#
# The base image: --base when given; otherwise the registry's Debian 12 when the registry
# answers; otherwise a Debian 12 minbase made from the Debian archive with debootstrap and
# imported once as localhost/loratrf-base:bookworm-debootstrap (reused while that tag exists).
# Prints each image's size and the build time. Exit status: 0 built, 1 a build step failed,
# 2 bad usage or a missing tool. LORATRF_IMAGE_SOURCE_URL fills the org.opencontainers.image.source
# label.
set -euo pipefail
self=$(readlink -f "$0")
cd "$(dirname "$self")/../.."

usage() { sed -n '2,12p' "$self" | sed 's/^# \{0,1\}//'; }
die_usage() { echo "build.sh: $*" >&2; usage >&2; exit 2; }

engine="" tag="dev" base="" jobs="$(nproc)" target="all"
while (($#)); do
  case "$1" in
    --help|-h) usage; exit 0 ;;
    --engine) [[ $# -ge 2 ]] || die_usage "--engine needs a value"; engine="$2"; shift 2 ;;
    --tag) [[ $# -ge 2 ]] || die_usage "--tag needs a value"; tag="$2"; shift 2 ;;
    --base) [[ $# -ge 2 ]] || die_usage "--base needs a value"; base="$2"; shift 2 ;;
    --jobs) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die_usage "--jobs needs a positive number"
            jobs="$2"; shift 2 ;;
    --target) [[ $# -ge 2 && "$2" =~ ^(coordinator|worker|all)$ ]] \
                || die_usage "--target is coordinator, worker or all"; target="$2"; shift 2 ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
done

if [[ -z "$engine" ]]; then
  if command -v podman >/dev/null; then engine=podman
  elif command -v docker >/dev/null; then engine=docker
  else echo "build.sh: neither podman nor docker is installed" >&2; exit 2; fi
fi
[[ "$engine" == podman || "$engine" == docker ]] || die_usage "--engine is podman or docker"
command -v "$engine" >/dev/null || { echo "build.sh: $engine is not installed" >&2; exit 2; }

# Options that make builds work in restricted sandboxes as well as on ordinary hosts: crun
# fails on some cgroup layouts where runc works, and some sandboxes refuse ulimits above these.
# LORATRF_IMAGE_BUILD_FLAGS overrides them (set it empty on a host that needs none).
default_flags=()
if [[ "$engine" == podman ]]; then
  command -v runc >/dev/null && default_flags+=(--runtime runc)
  default_flags+=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
fi
read -r -a build_flags <<<"${LORATRF_IMAGE_BUILD_FLAGS-${default_flags[*]:-}}"

registry_base=docker.io/library/debian:bookworm-slim
local_base=localhost/loratrf-base:bookworm-debootstrap
if [[ -z "$base" ]]; then
  if "$engine" image inspect "$registry_base" >/dev/null 2>&1; then
    base="$registry_base"
  elif timeout 20 "$engine" pull -q "$registry_base" >/dev/null 2>&1; then
    base="$registry_base"
  elif "$engine" image inspect "$local_base" >/dev/null 2>&1; then
    echo "build.sh: no registry; reusing $local_base"
    base="$local_base"
  else
    echo "build.sh: no registry reachable; making $local_base with debootstrap (once)"
    command -v debootstrap >/dev/null \
      || { echo "build.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }
    [[ $(id -u) -eq 0 ]] || { echo "build.sh: debootstrap needs root" >&2; exit 2; }
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
    tar -C "$rootfs" -c . | "$engine" import - "$local_base" >/dev/null
    base="$local_base"
  fi
fi
echo "build.sh: $engine, base $base, tag $tag, $jobs build jobs"

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
version=$(sed -n 's/^project(loratrf VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
targets=(coordinator worker)
[[ "$target" == all ]] || targets=("$target")
start=$(date +%s)
for t in "${targets[@]}"; do
  t0=$(date +%s)
  "$engine" build "${build_flags[@]}" -f deploy/images/Containerfile --target "$t" \
    --build-arg BASE_IMAGE="$base" --build-arg VERSION="$version" \
    --build-arg REVISION="$revision" --build-arg BUILD_JOBS="$jobs" \
    --build-arg SOURCE_URL="${LORATRF_IMAGE_SOURCE_URL:-}" \
    -t "localhost/loratrf-$t:$tag" . \
    || { echo "build.sh: building the $t image failed" >&2; exit 1; }
  echo "build.sh: loratrf-$t:$tag built in $(($(date +%s) - t0)) s"
done
echo "build.sh: total $(($(date +%s) - start)) s"
for t in "${targets[@]}"; do
  size=$("$engine" image inspect --format '{{.Size}}' "localhost/loratrf-$t:$tag")
  printf 'build.sh: localhost/loratrf-%s:%s  %s MB\n' "$t" "$tag" "$((size / 1000000))"
done
