#!/usr/bin/env bash
# Configures and builds kr (Release) in build/ (or $KR_BUILD_DIR); incremental and
# ccache-backed.
#   tools/build.sh [extra cmake -D options]
#   KR_BUILD_TARGETS="kr kr_unit_tests" tools/build.sh ...   only those targets
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${KR_BUILD_DIR:-$root/build}"
start=$(date +%s)
# ccache across clones (Note [Build speed]): paths relative to the checkout, and the
# working directory left out of the hash so that -g builds hit from another clone too.
export CCACHE_BASEDIR="$root"
export CCACHE_NOHASHDIR=1
export CCACHE_SLOPPINESS="pch_defines,time_macros,include_file_mtime,include_file_ctime"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-8G}"
mkdir -p "$build"
if ! cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" > "$build/configure.log" 2>&1; then
  cat "$build/configure.log"
  exit 1
fi
grep -E "^-- (kr |  )" "$build/configure.log" || true
targets=()
for target in ${KR_BUILD_TARGETS:-}; do targets+=(--target "$target"); done
if ! cmake --build "$build" -j "$(nproc)" "${targets[@]}" > "$build/build.log" 2>&1; then
  grep -E -B2 -A6 "error|Error" "$build/build.log" | head -80
  echo "build failed; full log: $build/build.log" >&2
  exit 1
fi
grep -E "warning:" "$build/build.log" || true
echo "build: $build/src/kr ready in $(( $(date +%s) - start )) s"
