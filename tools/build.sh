#!/usr/bin/env bash
# Configures and builds kr (Release) in build/; incremental and ccache-backed.
#   tools/build.sh [extra cmake -D options]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${KR_BUILD_DIR:-$root/build}"
start=$(date +%s)
# ccache across clones and with the torch precompiled header.
export CCACHE_BASEDIR="$root"
export CCACHE_SLOPPINESS="pch_defines,time_macros,include_file_mtime,include_file_ctime"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-8G}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" > "$build.configure.log" 2>&1 \
  || { cat "$build.configure.log"; exit 1; }
grep -E "^-- (kr |  )" "$build.configure.log" || true
cmake --build "$build" -j "$(nproc)" 2>&1 | grep -E "error|warning|Error" || true
[[ ${PIPESTATUS[0]} == 0 ]] || { echo "build failed" >&2; exit 1; }
test -x "$build/src/kr" || { echo "build failed: no kr binary" >&2; exit 1; }
echo "build: $build/src/kr ready in $(( $(date +%s) - start )) s"
