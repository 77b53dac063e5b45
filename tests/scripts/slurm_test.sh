# The pipeline under a real (local, private) Slurm cluster through slurm/submit:
# the afterok chain and every step's outputs, a failing first step cancelling the
# rest, a two-element array, and preemption (SIGUSR1 -> exit 75 -> scontrol requeue)
# resuming to the same weights as an uninterrupted run, and --tune (kr tune as a job,
# the final run chained after it on the config it wrote). Skips (77) without Slurm.
source "$(dirname "$0")/lib.sh"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CLUSTER="$WORK/cluster"
set +e
"$ROOT/tools/slurm-local" start "$CLUSTER" > "$WORK/cluster.env" 2> "$WORK/cluster.err"
code=$?
set -e
if [[ $code == 77 ]]; then cat "$WORK/cluster.err"; exit 77; fi
[[ $code == 0 ]] || { cat "$WORK/cluster.err"; fail "local Slurm cluster did not start"; }
trap '"$ROOT/tools/slurm-local" stop "$CLUSTER"; rm -rf "$WORK"' EXIT
source "$WORK/cluster.env"
SUBMIT=("$ROOT/slurm/submit" --kr "$KR" --log-dir "$WORK/logs")

# wait_jobs ID...: until none of them is in the queue (10 min at most).
wait_jobs() {
  local ids; ids=$(IFS=,; echo "$*")
  for _ in $(seq 1 1200); do
    [[ -z "$(squeue -h -j "$ids" 2>/dev/null)" ]] && return 0
    sleep 0.5
  done
  squeue; fail "jobs $ids still queued after 10 minutes"
}

# 1. The whole pipeline as a chain of jobs.
# Submitted held, so the dependencies are read before any job runs.
"${SUBMIT[@]}" --config "$ROOT/configs/tiny.ini" --workdir "$WORK/tiny" -- --hold > "$WORK/chain.txt"
mapfile -t ids < <(awk '{print $2}' "$WORK/chain.txt")
[[ ${#ids[@]} == 7 ]] || { cat "$WORK/chain.txt"; fail "expected 7 jobs"; }
squeue -h -o "%i %E" > "$WORK/deps.txt"
scontrol release "$(IFS=,; echo "${ids[*]}")"
for i in $(seq 1 6); do
  grep -q "^${ids[$i]} afterok:${ids[$((i - 1))]}" "$WORK/deps.txt" ||
    { cat "$WORK/deps.txt"; fail "job ${ids[$i]} does not depend afterok on ${ids[$((i - 1))]}"; }
done
wait_jobs "${ids[@]}"
W="$WORK/tiny"
for f in data/data.h5 teacher/model.pt generator/ema.pt pool/manifest.json student/model.pt \
         mia/keep.h5 results/mia.json results/report.html results/report.json; do
  [[ -s "$W/$f" ]] || { tail -20 "$WORK"/logs/*.out; fail "missing $f after the Slurm chain"; }
done
grep -q "train-teacher on 2 ranks" "$WORK"/logs/kr-train-teacher-"${ids[1]}".out || fail "teacher not on 2 ranks"
pass "pipeline as an afterok chain of ${#ids[@]} jobs (${ids[*]})"

# 2. A failing first step cancels every later one (none of them starts).
sed "s|^\[prepare\]|[prepare]\nsource = $WORK/absent|" "$ROOT/configs/tiny.ini" > "$WORK/broken.ini"
"${SUBMIT[@]}" --config "$WORK/broken.ini" --workdir "$WORK/broken" > "$WORK/broken.txt"
mapfile -t bad < <(awk '{print $2}' "$WORK/broken.txt")
wait_jobs "${bad[@]}"
grep -q "absent" "$WORK"/logs/kr-prepare-"${bad[0]}".out || fail "prepare's error not in its log"
for id in "${bad[@]:1}"; do
  if ls "$WORK"/logs/*-"$id".out > /dev/null 2>&1; then fail "job $id ran after its dependency failed"; fi
done
[[ ! -e "$WORK/broken/teacher" ]] || fail "a later step wrote outputs"
pass "failing first step: the ${#bad[@]} - 1 dependants cancelled"

# 3. A two-element array over two configs (each its own workdir), task i after task i.
for k in 0 1; do
  sed "s|^workdir = .*|workdir = $WORK/array$k|; s|^seed = .*|seed = $k|" "$ROOT/configs/tiny.ini" > "$WORK/array$k.ini"
done
"${SUBMIT[@]}" --pipeline teacher-only --config "$WORK/array0.ini,$WORK/array1.ini" --array 0-1%2 > "$WORK/array.txt"
mapfile -t arr < <(awk '{print $2}' "$WORK/array.txt")
wait_jobs "${arr[@]}"
for k in 0 1; do
  [[ -s "$WORK/array$k/teacher/model.pt" ]] || { tail "$WORK"/logs/*.out; fail "array task $k has no teacher"; }
  ls "$WORK"/logs/kr-train-teacher-"${arr[1]}"_"$k".out > /dev/null || fail "no log of array task $k"
done
[[ "$(json_field "$WORK/array0/results/teacher.json" params_sha256)" != \
   "$(json_field "$WORK/array1/results/teacher.json" params_sha256)" ]] || fail "array tasks trained the same model"
pass "array of 2 configs"

# 4. Preemption: SIGUSR1 to the running training step; the job requeues itself and resumes.
printf 'prepare data\ntrain-teacher teacher --epochs 6 --progress-every 1\n' > "$WORK/long.pipeline"
"${SUBMIT[@]}" --pipeline "$WORK/long.pipeline" --config "$ROOT/configs/tiny.ini" --workdir "$WORK/pre" > "$WORK/pre.txt"
mapfile -t pre < <(awk '{print $2}' "$WORK/pre.txt")
log="$WORK/logs/kr-train-teacher-${pre[1]}.out"
for _ in $(seq 1 1200); do
  grep -q "step [2-9][0-9]/" "$log" 2>/dev/null && break
  sleep 0.1
done
grep -q "step [2-9][0-9]/" "$log" || { cat "$log"; fail "the training step never got going"; }
scancel --signal=USR1 "${pre[1]}"
wait_jobs "${pre[@]}"
grep -q "requeueing ${pre[1]}" "$log" || { cat "$log"; fail "the preempted job did not requeue itself"; }
grep -q "restart 1" "$log" || { cat "$log"; fail "no second start of the job"; }
grep -q "resumed from" "$log" || { cat "$log"; fail "the requeued job did not resume from the checkpoint"; }
expect_exit 0 "${MPIRUN[@]}" -n 2 "$KR" train-teacher --config "$ROOT/configs/tiny.ini" --workdir "$WORK/ref" \
  --data "$WORK/pre/data/data.h5" --epochs 6 --progress-every 0
[[ "$(json_field "$WORK/pre/results/teacher.json" params_sha256)" == \
   "$(json_field "$WORK/ref/results/teacher.json" params_sha256)" ]] || fail "requeued run differs from the uninterrupted one"
pass "preemption under Slurm: requeued, resumed, same weights as uninterrupted"

# 5. --tune: jobs/tune.pipeline (section 1's data, teacher and generator are complete, so
# those jobs skip), then the final pipeline on <workdir>/tune/tuned.ini in <workdir>-tuned.
printf 'prepare data\ntrain-teacher teacher\ntrain-generator generator\ngenerate pool\ndistill student\n' > "$WORK/final.pipeline"
"${SUBMIT[@]}" --tune --pipeline "$WORK/final.pipeline" --config "$ROOT/configs/tiny.ini" --workdir "$W" -- --hold > "$WORK/tune.txt"
mapfile -t tj < <(awk '{print $2}' "$WORK/tune.txt")
[[ ${#tj[@]} == 9 && "$(awk 'NR == 4 {print $1}' "$WORK/tune.txt")" == tune ]] || { cat "$WORK/tune.txt"; fail "expected 4 search jobs (the 4th kr tune) and 5 final ones"; }
squeue -h -o "%i %E" > "$WORK/deps.txt"
scontrol release "$(IFS=,; echo "${tj[*]}")"
grep -q "^${tj[4]} afterok:${tj[3]}" "$WORK/deps.txt" || { cat "$WORK/deps.txt"; fail "the final run does not wait for kr tune"; }
wait_jobs "${tj[@]}"
grep -q "train-teacher complete in $W/teacher, skipped" "$WORK"/logs/kr-train-teacher-"${tj[1]}".out || fail "the search retrained a complete teacher"
grep -q "tune on 2 ranks" "$WORK"/logs/kr-tune-"${tj[3]}".out || fail "kr tune not on 2 ranks"
[[ -s "$W/results/tune.json" && -s "$W/tune/tuned.ini" ]] || { tail -20 "$WORK"/logs/kr-tune-*.out; fail "kr tune wrote no results"; }
[[ -s "$W-tuned/student/model.pt" ]] || { tail -20 "$WORK"/logs/*.out; fail "the tuned final run has no student"; }
$PY - "$W" <<'PY'
import json, sys
w = sys.argv[1]
for step in ("teacher", "pool", "student"):
    options = json.load(open(f"{w}-tuned/{step}/run.json"))["config"]
    assert options["config"] == f"{w}/tune/tuned.ini", (step, options["config"])
    assert options["workdir"] == f"{w}-tuned", (step, options["workdir"])
chosen = json.load(open(f"{w}/results/tune.json"))["chosen"]
pool = json.load(open(f"{w}-tuned/pool/run.json"))["config"]
assert float(pool["z-scale"]) == float(chosen["generate"]["z-scale"]), (pool["z-scale"], chosen)
PY
pass "--tune: kr tune as a job, the final run after it on tuned.ini (${tj[*]})"
