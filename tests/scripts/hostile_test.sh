# Issue 19: the defects a hostile-user pass found, reproduced against the binary (the
# readers' and checkpoints' own cases are unit tests: Npz.CorruptMemberFailsItsCrc,
# Source.StrayLabelOfAnUnknownSetIsRefused, Checkpoint.*, Serialize.*, TypedOptions.*).
source "$(dirname "$0")/lib.sh"
make_tiny_source "$WORK/src"
W="$WORK/w"
status() { json_field "$1/run.json" status; }
expect_exit 0 "$KR" prepare --workdir "$W" --source "$WORK/src" --val-size 200
BASE=("$KR" train-teacher --workdir "$W" --width 8 --eval-batch 200 --progress-every 0)
TEACH=("${BASE[@]}" --epochs 1 --batch 50 --threads 1)
expect_exit 0 "${TEACH[@]}"
cp "$W/data/run.json" "$WORK/data_run.json"
cp "$W/teacher/run.json" "$WORK/teacher_run.json"

# Defect 1: a refused step leaves a complete record as it was.
expect_exit 2 "$KR" prepare --workdir "$W" --source "$WORK/src" --val-size 200
expect_output "output exists; pass --overwrite"
cmp -s "$W/data/run.json" "$WORK/data_run.json" || fail "refused prepare changed data/run.json"
expect_exit 2 "${BASE[@]}" --epochs 0
expect_output "--epochs must be at least 1, got 0"
expect_exit 2 "$KR" prepare --workdir "$W" --source "$WORK/src" --val-size 200 --out "$W/teacher/x.h5"
expect_output "holds the run of \`kr train-teacher\`"
cmp -s "$W/teacher/run.json" "$WORK/teacher_run.json" || fail "prepare --out teacher/ changed teacher/run.json"
[[ ! -e "$W/teacher/x.h5" ]] || fail "refused prepare wrote teacher/x.h5"
# A step that fails after starting marks itself failed, with the error.
expect_exit 1 "${TEACH[@]}" --out "$WORK/nan" --fault-rank 0 --fault-step 2 --fault-action nan
[[ $(status "$WORK/nan") == failed ]] || fail "a failed step left run.json '$(status "$WORK/nan")'"
grep -q "non-finite loss" "$WORK/nan/run.json" || fail "run.json of a failed step lacks the error"
pass "refused steps leave complete records byte-identical; a failed step says failed and why"

# Defect 2: the top byte of 100 floats of the teacher flipped; every load verifies.
cp "$W/teacher/model.pt" "$WORK/model.pt.good"
"$PY" - "$W/teacher/model.pt" <<'PY'
import sys, zipfile
path = sys.argv[1]
with zipfile.ZipFile(path) as archive:
    member = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
data = bytearray(open(path, "rb").read())
# the data start from the local header (its extra field can differ from the directory's)
name_len = int.from_bytes(data[member.header_offset + 26:member.header_offset + 28], "little")
extra_len = int.from_bytes(data[member.header_offset + 28:member.header_offset + 30], "little")
start = member.header_offset + 30 + name_len + extra_len
for i in range(100):
    data[start + 4 * i + 3] ^= 0x7F
open(path, "wb").write(bytes(data))
PY
expect_exit 1 "$KR" train-generator --workdir "$W" --epochs 1 --threads 1 --out "$WORK/gen"
expect_output "teacher/model.pt: weights fail their checksum"
cp "$WORK/model.pt.good" "$W/teacher/model.pt"
pass "flipped weights are refused naming teacher/model.pt"

# Defect 5: a count of zero is a usage error, not SIGFPE.
expect_exit 2 "${BASE[@]}" --epochs 1 --out "$WORK/b0" --batch 0
expect_output "--batch must be at least 1, got 0"
expect_exit 2 "$KR" sample --checkpoint "$W/teacher" --sample-batch 0 --indices 0-3
expect_output "--sample-batch must be at least 1, got 0"
expect_exit 2 "${BASE[@]}" --out "$WORK/t0" --threads 100000
expect_output "--threads must be between 0 and 1024, got 100000"
[[ ! -e "$WORK/b0" && ! -e "$WORK/t0" ]] || fail "a refused step left a run directory"
pass "--batch 0, --sample-batch 0, --threads 100000: usage errors (exit 2)"

# Weak spot: a second run into a directory a live run holds is refused; a stale lock is
# taken over.
sleep 300 & holder=$!
printf '{"step":"train-teacher","host":"%s","pid":%d,"slurm_job_id":"","since":"now"}\n' \
  "$(hostname)" "$holder" > "$W/teacher/run.lock"
expect_exit 2 "${TEACH[@]}"
expect_output "is in use by kr train-teacher (pid $holder on $(hostname)"
cmp -s "$W/teacher/run.json" "$WORK/teacher_run.json" || fail "a refused second run changed run.json"
kill "$holder"; wait "$holder" 2>/dev/null || true
expect_exit 0 "${TEACH[@]}"
expect_output "stale lock of pid $holder"
[[ ! -e "$W/teacher/run.lock" ]] || fail "the lock outlived its run"
pass "a held run directory is refused naming the holder; a stale lock is taken over"

# Weak spot: an empty split is refused, not reported as "test accuracy 0.00 %".
cp -r "$WORK/src" "$WORK/notest"
"$PY" - "$WORK/notest" <<'PY'
import gzip, struct, sys
d = sys.argv[1]
with gzip.open(d + "/t10k-images-idx3-ubyte.gz", "wb") as f:
    f.write(struct.pack(">IIII", 0x803, 0, 28, 28))
with gzip.open(d + "/t10k-labels-idx1-ubyte.gz", "wb") as f:
    f.write(struct.pack(">II", 0x801, 0))
PY
expect_exit 2 "$KR" prepare --workdir "$WORK/nt" --source "$WORK/notest" --val-size 200
expect_output "the test split is empty"
[[ ! -e "$WORK/nt/data/data.h5" && ! -e "$WORK/nt/data/run.json" ]] || fail "an empty split left output"
pass "an empty test split is refused"

# Weak spot: `kr run` checks every step's section before the first step starts.
cat > "$WORK/typo.ini" <<'INI'
[prepare]
val-size = 200
[distill]
tempreature = 2
INI
expect_exit 2 "$KR" run --workdir "$WORK/typo" --config "$WORK/typo.ini"
expect_output "tempreature"
[[ ! -e "$WORK/typo/data" ]] || fail "kr run started prepare before checking distill's section"
pass "a typo in [distill] stops kr run before prepare"

# Defect 4: a full disk during a checkpoint, then a rerun after freeing space resumes.
FULL="$WORK/full"
mkdir -p "$FULL"
RUN=("${BASE[@]}" --epochs 2 --batch 50 --threads 1 --checkpoint-every-steps 5 --keep 20)
expect_exit 0 "${RUN[@]}" --out "$WORK/ref"
reference=$(json_field "$WORK/ref/model.json" params_sha256)
ckpt_bytes=$(du -sb "$WORK/ref/ckpt/step_00000005" | cut -f1)
size_kb=$(( (ckpt_bytes * 3 / 2) / 1024 + 96 ))
if ! mount -t tmpfs -o size=${size_kb}k tmpfs "$FULL" 2>/dev/null; then
  echo "skip: cannot mount a tmpfs here (needs root): the full-disk case is not tested"
  echo "hostile_test: passed (full disk skipped)"
  exit 0
fi
trap 'umount "$FULL" 2>/dev/null; rm -rf "$WORK"' EXIT
expect_exit 1 "${RUN[@]}" --out "$FULL/t"
expect_output "No space left on device"
expect_output "B free on $FULL/t/ckpt"
leftovers=$(find "$FULL" -name '*.tmp*' | wc -l)
[[ "$leftovers" == 0 ]] || { find "$FULL"; fail "a full disk left temporary files"; }
for step in "$FULL"/t/ckpt/step_*; do
  [[ -s "$step/manifest.json" && -s "$step/state.json" ]] || fail "$step committed incomplete"
done
[[ $(status "$FULL/t") == failed ]] || fail "a full disk left run.json '$(status "$FULL/t")'"
mount -o remount,size=64m "$FULL"
expect_exit 0 "${RUN[@]}" --out "$FULL/t"
expect_output "resumed from .*step_00000005"
[[ $(json_field "$FULL/t/model.json" params_sha256) == "$reference" ]] ||
  fail "run resumed after a full disk differs from an uninterrupted one"
pass "full disk at the second checkpoint: error names the file and free space, nothing half-written; resumed bit-identical"
echo "hostile_test: all passed"
