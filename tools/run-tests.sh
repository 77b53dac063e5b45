#!/usr/bin/env bash
# README's test command: install what is needed, build, run every test, and print
# the time per ctest label.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/tools/install-deps.sh"
"$root/tools/build.sh"
build="${KR_BUILD_DIR:-$root/build}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
status=0
summary=""
for label in unit mpi; do
  start=$(date +%s)
  ctest --test-dir "$build" -L "^${label}\$" --output-on-failure --timeout 900 || status=1
  summary+="label ${label}: $(( $(date +%s) - start )) s"$'\n'
done
printf '\n%s' "$summary"
exit $status
