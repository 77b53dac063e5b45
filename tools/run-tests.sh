#!/usr/bin/env bash
# README's test command: install what is needed, build, run every test, and print
# the time per ctest label.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
status=0
summary=""
# part NAME COMMAND...: runs one part, records its time and whether it passed.
part() {
  local name="$1" start
  shift
  start=$(date +%s)
  if "$@"; then
    summary+="${name}: $(( $(date +%s) - start )) s"$'\n'
  else
    status=1
    summary+="${name}: $(( $(date +%s) - start )) s, FAILED"$'\n'
  fi
}
part "install" "$root/tools/install-deps.sh" --slurm
part "layers (tools/check-layers)" "$root/tools/check-layers"
part "build" "$root/tools/build.sh"
(( status == 0 )) || { printf '\n%s' "$summary"; exit 1; }
build="${KR_BUILD_DIR:-$root/build}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# clang-tidy over the last commit's sources (its 8 most changed, ~45 s each): warnings
# are shown, WarningsAsErrors fail.
part "clang-tidy (tools/tidy, last commit)" "$root/tools/tidy" --build "$build" --max-files 8
# The unit label's tests are independent processes: two at a time on the 2 cores.
part "label unit" ctest --test-dir "$build" -L '^unit$' -j 2 --output-on-failure --timeout 900
for label in mpi pipeline slurm; do
  part "label ${label}" ctest --test-dir "$build" -L "^${label}\$" --output-on-failure --timeout 900
done
# The readers parse untrusted files: unit tests again under ASan + UBSan.
if [[ "${KR_SKIP_SANITIZERS:-0}" != 1 ]]; then
  # Only what the unit label runs: the library, kr (its script tests) and the unit tests.
  part "ASan+UBSan build" env KR_BUILD_DIR="$root/build-asan" KR_BUILD_TARGETS="kr kr_unit_tests" \
    "$root/tools/build.sh" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKR_SANITIZE=ON
  part "label unit (ASan+UBSan)" env ASAN_OPTIONS=detect_leaks=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$root/build-asan" -L '^unit$' -j 2 --output-on-failure --timeout 900
fi
printf '\n%s' "$summary"
exit $status
