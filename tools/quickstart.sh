#!/usr/bin/env bash
# README's first command: install what is needed, build, and run the pipeline on
# Fashion-MNIST at quick-start size over 2 MPI ranks.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/tools/install-deps.sh"
"$root/tools/build.sh"
exec "$root/tools/run-pipeline" --ranks 2 --config "$root/configs/quick.ini" "$@"
