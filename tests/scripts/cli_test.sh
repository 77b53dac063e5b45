# Command line: usage, unknown steps and options, bad values, config files, prepare errors.
source "$(dirname "$0")/lib.sh"

expect_exit 0 "$KR" --help
expect_output "train-teacher"
expect_exit 2 "$KR"
expect_exit 2 "$KR" no-such-step
expect_output "unknown step 'no-such-step'"
expect_exit 0 "$KR" prepare --help
expect_output "--val-size"
expect_exit 2 "$KR" prepare --no-such-option
expect_output "no-such-option"
expect_exit 2 "$KR" train-teacher --epochs many
expect_output "epochs"
expect_exit 2 "$KR" prepare --umask 999
pass "usage errors exit 2"

printf 'seed = 3\n[train-teacher]\nepochs = 2\n[prepare]\nbogus = 1\n' > "$WORK/bad.ini"
expect_exit 2 "$KR" prepare --config "$WORK/bad.ini"
expect_output "unknown option 'bogus'"
printf '[nonsense]\nx = 1\n' > "$WORK/bad2.ini"
expect_exit 2 "$KR" prepare --config "$WORK/bad2.ini"
expect_output "unknown section"
pass "config file errors name the file and key"

expect_exit 1 "$KR" prepare --workdir "$WORK/w" --source "$WORK/missing"
expect_output "$WORK/missing"
[[ ! -e "$WORK/w/data/data.h5" ]] || fail "output left behind after a failed prepare"

make_tiny_source "$WORK/src"
printf 'train-images-idx3-ubyte.gz is not gzip' > "$WORK/bad_magic"
mkdir -p "$WORK/corrupt" && cp "$WORK/src"/* "$WORK/corrupt/"
python3 -c "import sys; d=bytearray(open(sys.argv[1],'rb').read()); d[3]=1; open(sys.argv[1],'wb').write(d)" \
  "$WORK/corrupt/t10k-labels-idx1-ubyte.gz"
expect_exit 1 "$KR" prepare --workdir "$WORK/c" --source "$WORK/corrupt"
expect_output "t10k-labels-idx1-ubyte.gz"
ls "$WORK/c/data" 2>/dev/null | grep -q "data.h5" && fail "corrupt source left an output file"
pass "bad sources fail cleanly and leave no output"

printf 'val-size = 200\n[prepare]\nsplit-seed = 4\n' > "$WORK/good.ini"
expect_exit 0 "$KR" prepare --workdir "$WORK/w" --source "$WORK/src" --config "$WORK/good.ini" --name tiny
[[ "$(json_field "$WORK/w/data/run.json" status)" == complete ]] || fail "run.json not complete"
python3 - "$WORK/w/data/run.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
assert run["config"]["val-size"] == 200, run["config"]
assert run["config"]["split-seed"] == 4, run["config"]
assert run["results"]["val"] == 200 and run["results"]["train"] == 1000, run["results"]
assert run["world_size"] == 1 and run["hostnames"]
PY
perm=$(stat -c %a "$WORK/w/data/data.h5")
[[ "$perm" == 600 ]] || fail "data.h5 has mode $perm, expected 600"
[[ "$(stat -c %a "$WORK/w/data")" == 700 ]] || fail "data dir is not private"
expect_exit 2 "$KR" prepare --workdir "$WORK/w" --source "$WORK/src"
expect_output "output exists"
expect_exit 0 "$KR" prepare --workdir "$WORK/w" --source "$WORK/src" --overwrite --train-limit 300 --val-size 200
pass "prepare writes a private file, run.json, and refuses to overwrite"

# kr status: the rule kr run skips a step by, for scripts (slurm/run-step).
expect_exit 0 "$KR" status "$WORK/w/data"
expect_output "$WORK/w/data: complete"
expect_exit 1 "$KR" status "$WORK/nowhere"
expect_output "missing"
mkdir -p "$WORK/failed" && printf '{"status": "failed"}\n' > "$WORK/failed/run.json"
expect_exit 1 "$KR" status "$WORK/failed"
expect_output "failed"
printf '{"status": "compl' > "$WORK/failed/run.json"
expect_exit 1 "$KR" status "$WORK/failed"
expect_output "unreadable"
expect_exit 2 "$KR" status
pass "kr status: complete exits 0; missing, failed and unreadable records exit 1"

# kr run --list: the pipeline as kr parses it, for slurm/submit (one parser).
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
expect_exit 0 "$KR" run --list --pipeline "$ROOT/jobs/kr.pipeline"
python3 - "$WORK/out" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.startswith("[")]
assert len(lines) == 1, open(sys.argv[1]).read()
steps = json.loads(lines[0])
assert [s["step"] for s in steps] == ["prepare", "train-teacher", "train-generator", "generate",
                                      "distill", "mia", "report"], steps
assert steps[0]["directory"] == "data" and steps[-1]["directory"] == "-", steps
PY
printf 'prepare data\nno-such-step x\n' > "$WORK/bad.pipeline"
expect_exit 2 "$KR" run --list --pipeline "$WORK/bad.pipeline"
expect_output "bad.pipeline:2"
pass "kr run --list prints the pipeline; a bad line names file:line"

# A kr .h5 as the source: subset it, or merge train+val and re-split with an explicit --val-size.
expect_exit 0 "$KR" prepare --workdir "$WORK/r" --source "$WORK/w/data/data.h5" --val-size 100
python3 - "$WORK/r/data/run.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
assert (r["train"], r["val"], r["name"]) == (300 + 200 - 100, 100, "src"), r
PY
expect_exit 0 "$KR" prepare --workdir "$WORK/s" --source "$WORK/w/data/data.h5" --test-limit 50
python3 - "$WORK/s/data/run.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
assert (r["train"], r["val"], r["test"]) == (300, 200, 50), r
PY
pass "re-split and subset of an existing kr data set"
# Every shipped config is valid for every step it configures: each step gets past option
# parsing and fails only on the missing data of an empty workdir.
for config in "$ROOT"/configs/*.ini; do
  for step in prepare train-teacher train-generator generate distill mia report; do
    echo "$config $step"
  done
done | xargs -P 2 -L 1 bash -c 'out=$("$0" "$3" --config "$2" --workdir "$1/cfg-$(basename "$2")-$3" 2>&1);
  if grep -qiE "unknown (option|section)|invalid|config" <<< "$out"; then echo "FAIL: $2 [$3]: $out" >&2; exit 255; fi' \
  "$KR" "$WORK" || fail "a shipped config does not parse"
pass "every configs/*.ini parses for every step"

# The shipped-scale audit runs the shipped recipe: its step sections equal fashion-mnist.ini's
# ([tune] searches before the run and is not part of it).
"$PY" - "$ROOT/configs/fashion-mnist.ini" "$ROOT/configs/fashion-mnist-shipped-audit.ini" <<'PY' || fail "configs/fashion-mnist-shipped-audit.ini drifted from fashion-mnist.ini"
import configparser, sys
def sections(path):
    p = configparser.ConfigParser(interpolation=None)
    p.read_string("[top]\n" + open(path).read())
    return {s: dict(p.items(s)) for s in p.sections() if s not in ("top", "mia", "tune") and not s.startswith("slurm")}
a, b = sections(sys.argv[1]), sections(sys.argv[2])
assert a == b, (a, b)
PY
pass "the shipped-scale audit config trains the shipped recipe"
# kr dp-accountant: Opacus' published case and its noise search (Note [RDP accountant]).
out=$("$KR" dp-accountant --noise-multiplier 1.5 --sample-rate 0.04 --steps 2250 --delta 1e-5) ||
  fail "kr dp-accountant failed"
"$PY" -c 'import json, sys; r = json.loads(sys.argv[1]); assert abs(r["epsilon"] - 7.32911117143) < 1e-9 and r["steps"] == 2250, r' "$out" ||
  fail "kr dp-accountant: $out"
out=$("$KR" dp-accountant --target-epsilon 8 --sample-rate 0.04 --epochs 90 --delta 1e-5) ||
  fail "kr dp-accountant --target-epsilon failed"
"$PY" -c 'import json, sys; r = json.loads(sys.argv[1]); assert r["noise_multiplier"] == 1.416015625 and r["epsilon"] <= 8 and r["steps"] == 2250, r' "$out" ||
  fail "kr dp-accountant --target-epsilon: $out"
if out=$("$KR" dp-accountant --noise-multiplier 1 --sample-rate 0.01 --steps 10 2>&1); then
  fail "kr dp-accountant without --delta succeeded"
fi
grep -q -- "--delta" <<< "$out" || fail "kr dp-accountant without --delta: $out"
pass "kr dp-accountant: Opacus' epsilon and noise search; a missing delta named"
echo "cli_test: all passed"
