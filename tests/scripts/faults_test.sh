# A killed rank ends the job and the resumed run completes; a corrupt checkpoint is
# detected; a rank that stops answering is named by rank 0's watchdog; a NaN on
# one rank stops every rank at the same step.
source "$(dirname "$0")/lib.sh"
make_tiny_source "$WORK/src"
expect_exit 0 "$KR" prepare --workdir "$WORK/data" --source "$WORK/src" --val-size 200
TRAIN=("${MPIRUN[@]}" -n 2 "$KR" train-teacher --data "$WORK/data/data/data.h5" --width 8 --epochs 2 --batch 40
       --threads 1 --eval-batch 100 --seed 3 --progress-every 0)
params() { json_field "$1/results/teacher.json" params_sha256; }

expect_exit 0 "${TRAIN[@]}" --workdir "$WORK/a"
reference=$(params "$WORK/a")

# kill -9 of rank 1 at step 30 (checkpoints every 10 steps).
start=$(date +%s)
set +e
"${TRAIN[@]}" --workdir "$WORK/k" --checkpoint-every-steps 10 --fault-rank 1 --fault-step 30 \
  --fault-action kill > "$WORK/out" 2>&1
code=$?
set -e
elapsed=$(( $(date +%s) - start ))
[[ "$code" != 0 ]] || fail "job with a killed rank exited 0"
(( elapsed < 120 )) || fail "job with a killed rank took ${elapsed}s to end"
expect_exit 0 "${TRAIN[@]}" --workdir "$WORK/k"
expect_output "resumed from .*step_00000030"
[[ "$(params "$WORK/k")" == "$reference" ]] || fail "run resumed after kill -9 differs"
pass "kill -9 of rank 1: job ended in ${elapsed}s (exit $code); resumed run bit-identical"

# One flipped byte in the latest checkpoint.
expect_exit 75 "${TRAIN[@]}" --workdir "$WORK/e" --checkpoint-every-steps 5 --stop-at-step 17
latest="$WORK/e/teacher/ckpt/$(cat "$WORK/e/teacher/ckpt/latest")"
python3 -c "import sys; p=sys.argv[1]; d=bytearray(open(p,'rb').read()); d[len(d)//2]^=1; open(p,'wb').write(d)" \
  "$latest/model.pt"
expect_exit 1 "${TRAIN[@]}" --workdir "$WORK/e"
expect_output "is corrupt"
expect_output "model.pt fails its checksum"
expect_output "newest older checkpoint that verifies is .*step_00000015"
pass "flipped byte detected; the newest good checkpoint is named"

# Rank 1 sleeps twice the timeout at step 3.
start=$(date +%s)
expect_exit 1 "${TRAIN[@]}" --workdir "$WORK/w" --comm-timeout 10 --comm-warn 3 --fault-rank 1 --fault-step 3 \
  --fault-action sleep:20
elapsed=$(( $(date +%s) - start ))
(( elapsed < 40 )) || fail "hung job took ${elapsed}s to end (timeout 10 s)"
grep "kr rank 0" "$WORK/out" | grep -q "not arrived: rank 1" || { cat "$WORK/out"; fail "rank 0 did not name rank 1"; }
grep "kr rank 0" "$WORK/out" | grep -q "collective #[0-9]* (allreduce(sum)) at step 3" || { cat "$WORK/out"; fail "no sequence number"; }
pass "watchdog: ended in ${elapsed}s; rank 0 named rank 1 and the collective"

# Rank 0 is the late one (issue 19, defect 8): rank 1's warnings name it.
expect_exit 1 "${TRAIN[@]}" --workdir "$WORK/w0" --comm-timeout 10 --comm-warn 3 --fault-rank 0 --fault-step 3 \
  --fault-action sleep:20
grep "kr rank 1" "$WORK/out" | grep -q "not arrived: rank 0" || { cat "$WORK/out"; fail "rank 1 did not name rank 0"; }
pass "watchdog: rank 1 named a late rank 0"

# NaN loss on rank 1 at step 2.
expect_exit 1 "${TRAIN[@]}" --workdir "$WORK/n" --fault-rank 1 --fault-step 2 --fault-action nan
[[ $(grep -c "non-finite loss at step 2 (epoch 1) on rank 1" "$WORK/out") == 2 ]] || { cat "$WORK/out"; fail "both ranks must report the NaN"; }
pass "NaN on rank 1: both ranks stop at step 2 with the same message"
echo "faults_test: all passed"
