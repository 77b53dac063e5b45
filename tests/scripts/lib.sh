# Helpers for the whole-binary tests. Source from a test script; $KR is the binary.
set -euo pipefail
KR="$1"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kr_script.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
MPIRUN=(mpirun --bind-to none)
# Debian's python3 (with h5py and numpy), not a pyenv shim that lacks them.
PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# expect_exit CODE COMMAND...: runs COMMAND, captures output in $WORK/out, checks the exit code.
expect_exit() {
  local want="$1"; shift
  set +e
  "$@" > "$WORK/out" 2>&1
  local got=$?
  set -e
  [[ "$got" == "$want" ]] || { cat "$WORK/out" >&2; fail "'$*' exited $got, expected $want"; }
}

expect_output() {
  grep -q -- "$1" "$WORK/out" || { cat "$WORK/out" >&2; fail "output lacks '$1'"; }
}

json_field() {  # json_field FILE KEY
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# A small Fashion-MNIST-like IDX source the tests can train on in seconds.
make_tiny_source() {
  python3 - "$1" <<'PY'
import gzip, os, random, struct, sys
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
random.seed(0)
def write(name, count, labels):
    with gzip.open(os.path.join(out, name + "-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, count, 28, 28))
        pix = bytearray()
        for i in range(count):
            c = labels[i]
            for y in range(28):
                for x in range(28):
                    on = (x // 3 + y // 3 + c) % 10 < 4
                    pix.append(min(255, (200 if on else 20) + random.randint(0, 40)))
        f.write(bytes(pix))
    with gzip.open(os.path.join(out, name + "-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">II", 0x801, count))
        f.write(bytes(labels))
write("train", 1200, [i % 10 for i in range(1200)])
write("t10k", 200, [i % 10 for i in range(200)])
PY
}

# A CIFAR-100-format source (3x32x32, 100 classes): 10 train and 2 test images per class.
make_tiny_cifar100() {
  python3 - "$1" <<'PY'
import os, random, sys
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
random.seed(1)
def write(name, per_class):
    with open(os.path.join(out, name), "wb") as f:
        for i in range(per_class * 100):
            c = i % 100
            record = bytearray([c // 5, c])
            for channel in range(3):
                for y in range(32):
                    for x in range(32):
                        on = (x // 4 + y // 4 + c + channel) % 7 < 3
                        record.append(min(255, (180 if on else 30) + random.randint(0, 40)))
            f.write(bytes(record))
write("train.bin", 10)
write("test.bin", 2)
PY
}
