#!/usr/bin/env bash
# README's test command: install what is needed, build, run every test, and print
# the time per ctest label.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/tools/install-deps.sh" --slurm
"$root/tools/build.sh"
build="${KR_BUILD_DIR:-$root/build}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
status=0
summary=""
for label in unit mpi pipeline slurm; do
  start=$(date +%s)
  ctest --test-dir "$build" -L "^${label}\$" --output-on-failure --timeout 900 || status=1
  summary+="label ${label}: $(( $(date +%s) - start )) s"$'\n'
done
# The readers parse untrusted files: unit tests again under ASan + UBSan.
if [[ "${KR_SKIP_SANITIZERS:-0}" != 1 ]]; then
  start=$(date +%s)
  KR_BUILD_DIR="$root/build-asan" "$root/tools/build.sh" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKR_SANITIZE=ON
  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$root/build-asan" -L '^unit$' --output-on-failure --timeout 900 || status=1
  summary+="label unit (ASan+UBSan build): $(( $(date +%s) - start )) s"$'\n'
fi
printf '\n%s' "$summary"
exit $status
