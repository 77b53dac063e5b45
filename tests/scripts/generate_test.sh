# kr generate: rank-count and block-size independence, restart that remakes only
# what is broken, random access through index.h5, truncated shards named; then
# kr distill on the pool (disjoint parts per epoch, exhausted pool refused).
source "$(dirname "$0")/lib.sh"
make_tiny_source "$WORK/src"
"$KR" prepare --source "$WORK/src" --workdir "$WORK/w" --val-size 200 > /dev/null
"$KR" train-teacher --workdir "$WORK/w" --epochs 1 --batch 50 --width 8 --progress-every 0 > /dev/null
"$KR" train-generator --workdir "$WORK/w" --epochs 1 --batch 50 --g-width 16 --d-width 16 \
  --eval-samples 100 --sample-batch 50 --grid-per-class 3 --progress-every 0 > /dev/null
"$PY" - "$WORK/w/generator/samples.png" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "sample grid is not a PNG"
PY
pass "teacher and generator trained; grid written"

gen=(generate --workdir "$WORK/w" --count 600 --pool-epochs 2 --sample-batch 100)
# Same intra-op threads per rank as the 2-rank runs: oneDNN may round differently with
# another thread count (Note [Batch-independent sampling]).
"$KR" "${gen[@]}" --out "$WORK/p1" --block 200 --threads 1 > /dev/null
"${MPIRUN[@]}" -n 2 "$KR" "${gen[@]}" --out "$WORK/p2" --block 200 > /dev/null
"${MPIRUN[@]}" -n 2 "$KR" "${gen[@]}" --out "$WORK/p3" --block 400 > /dev/null
"$PY" - "$WORK" <<'PY'
import h5py, numpy, sys
work = sys.argv[1]
def load(name):
    with h5py.File(f"{work}/{name}/index.h5", "r") as f:
        return f["images"][...], f["labels"][...]
i1, l1 = load("p1")
assert i1.shape == (1200, 1, 28, 28) and i1.dtype == numpy.uint8, i1.shape
assert (l1 == numpy.arange(1200) % 10).all()
for other in ("p2", "p3"):
    i, l = load(other)
    assert numpy.array_equal(i, i1) and numpy.array_equal(l, l1), other + " differs from the 1-rank pool"
assert i1.std() > 5, "images are blank"
PY
pass "1 rank, 2 ranks and 2 ranks with another block give byte-identical pools"

# Shard files are reproducible to the byte (Note [Reproducible files]): at one thread per
# rank, 1, 2 and 3 ranks write files with equal sha256 (block 200: 6 blocks, 2 per rank at
# 3 ranks; block 300: 4 blocks, dealt 2 + 1 + 1 at 3 ranks and 2 + 2 at 2).
"${MPIRUN[@]}" -n 3 "$KR" "${gen[@]}" --out "$WORK/p4" --block 200 --threads 1 > /dev/null
"${MPIRUN[@]}" -n 3 "$KR" "${gen[@]}" --out "$WORK/p5" --block 300 --threads 1 > /dev/null
"${MPIRUN[@]}" -n 2 "$KR" "${gen[@]}" --out "$WORK/p7" --block 300 > /dev/null
file_sums() { (cd "$1" && sha256sum shard_*.h5); }
[[ "$(file_sums "$WORK/p1")" == "$(file_sums "$WORK/p2")" ]] || fail "1-rank and 2-rank shard files differ"
[[ "$(file_sums "$WORK/p1")" == "$(file_sums "$WORK/p4")" ]] || fail "1-rank and 3-rank shard files differ"
[[ "$(file_sums "$WORK/p5")" == "$(file_sums "$WORK/p7")" ]] || fail "3-rank (uneven) and 2-rank shard files differ"
# Who wrote a shard is in the manifest, with the layout, never in the shard.
"$PY" - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
m = json.load(open(f"{work}/p4/manifest.json"))
assert m["layout"]["world_size"] == 3 and m["layout"]["threads_per_rank"] == 1, m["layout"]
assert [s["written_by_rank"] for s in m["shards"]] == [0, 1, 2, 0, 1, 2], m["shards"]
PY
pass "1, 2 and 3 ranks write byte-identical shard files; the manifest names the writers"

# Another intra-op thread count is another layout (README "Reproducibility"): 1 rank x 2
# threads may round a few pixels differently; its manifest says so, labels are equal.
"$KR" "${gen[@]}" --out "$WORK/p6" --block 200 --threads 2 > /dev/null
"$PY" - "$WORK" <<'PY'
import h5py, json, numpy, sys
work = sys.argv[1]
assert json.load(open(f"{work}/p6/manifest.json"))["layout"]["threads_per_rank"] == 2
with h5py.File(f"{work}/p1/index.h5", "r") as a, h5py.File(f"{work}/p6/index.h5", "r") as b:
    assert numpy.array_equal(a["labels"][...], b["labels"][...])
    x, y = a["images"][...].astype(int), b["images"][...].astype(int)
    assert numpy.abs(x - y).max() <= 1 and (x != y).mean() < 1e-3, ((x != y).sum(), numpy.abs(x - y).max())
PY
pass "1 x 2 threads: layout recorded, pool within one grey level of 2 x 1 (at most 0.1 % of pixels)"

# Random global indices through the index equal regenerating just those indices.
"$KR" sample --checkpoint "$WORK/w/generator" --indices 7,250,999,1199 --sample-batch 100 --seed 0 \
  --out "$WORK/single.h5" > /dev/null
"$PY" - "$WORK" <<'PY'
import h5py, numpy, sys
work = sys.argv[1]
with h5py.File(f"{work}/p2/index.h5", "r") as pool, h5py.File(f"{work}/single.h5", "r") as single:
    for k, index in enumerate([7, 250, 999, 1199]):
        assert numpy.array_equal(pool["images"][index], single["images"][k]), index
        assert pool["labels"][index] == single["labels"][k]
PY
pass "random access through index.h5 returns the regenerated samples"

# Restart: corrupt one shard, delete another; a rerun remakes exactly those.
# Data of every shard (HDF5 files also hold modification times, so compare contents).
sums() {
  "$PY" - "$WORK/p2" <<'PY'
import glob, hashlib, h5py, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "shard_*.h5"))):
    with h5py.File(path, "r") as f:
        digest = hashlib.sha256(f["images"][...].tobytes() + f["labels"][...].tobytes()).hexdigest()
    print(os.path.basename(path), digest)
PY
}
before=$(sums)
"$PY" -c "import sys; p=sys.argv[1]; d=bytearray(open(p,'rb').read()); d[len(d)//2]^=0xff; open(p,'wb').write(d)" \
  "$WORK/p2/shard_400_200.h5"
rm "$WORK/p2/shard_1000_200.h5"
"${MPIRUN[@]}" -n 2 "$KR" "${gen[@]}" --out "$WORK/p2" --block 200 > "$WORK/restart.log" 2>&1
made=$("$PY" -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["made"]))' "$WORK/w/results/generate.json")
[[ "$made" == "shard_1000_200.h5 shard_400_200.h5" ]] || { cat "$WORK/restart.log"; fail "rerun made '$made'"; }
[[ "$(sums)" == "$before" ]] || fail "restored shards differ from the originals"
grep -q "remaking shard_400_200.h5" "$WORK/restart.log" || fail "corrupt shard not reported"
pass "restart remade exactly the corrupt and the missing shard, byte-identical"

# Other settings into the same directory are refused.
expect_exit 2 "$KR" "${gen[@]}" --out "$WORK/p2" --block 200 --seed 9
expect_output "different settings"
pass "rerun with other settings refused"

# Confidence filter (Note [Confidence filter]; its pool logic is tested under MPI in
# test_generator.cpp). This 1-epoch generator makes no sample the teacher accepts for some
# class: a clear error naming it, and no manifest or index that would look like a pool.
expect_exit 1 "${MPIRUN[@]}" -n 2 "$KR" generate --workdir "$WORK/w" --count 300 --sample-batch 100 \
  --block 200 --filter-tau 0.25 --out "$WORK/f1"
expect_output "candidates accepted; lower --filter-tau"
[[ ! -e "$WORK/f1/manifest.json" && ! -e "$WORK/f1/index.h5" ]] || fail "failed filter left a pool behind"
expect_exit 2 "$KR" generate --workdir "$WORK/w" --count 305 --filter-tau 0.25 --out "$WORK/f2"
expect_output "class-balanced"
pass "filter: unreachable class and unbalanced count refused clearly"

# Distillation on the pool: parts are disjoint across epochs; an exhausted pool is refused.
dist=(distill --workdir "$WORK/w" --pool "$WORK/p2" --epoch-size 600 --batch 50 --width 8 --progress-every 0)
"${MPIRUN[@]}" -n 2 "$KR" "${dist[@]}" --epochs 2 > /dev/null
"$PY" - "$WORK/w/results/distill.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
firsts = [p["first"] for p in r["parts"]]
assert firsts == [0, 600], firsts
assert r["unique_synthetic_images"] == 1200 and r["regenerations"] == 2, r
assert 0 <= r["test_accuracy"] <= 1 and "val_teacher_agreement" in r["history"][-1]
PY
pass "distill read disjoint pool parts [0,600) and [600,1200)"
expect_exit 2 "$KR" "${dist[@]}" --epochs 3 --out "$WORK/w/student3"
expect_output "generate-online"
"$KR" "${dist[@]}" --epochs 3 --out "$WORK/w/student-online" --generate-online --checkpoint-every-minutes 0 > "$WORK/online.log" 2>&1 \
  || { cat "$WORK/online.log"; fail "online generation failed"; }
pass "exhausted pool refused; --generate-online samples the third part"

# Online parts continue the pool exactly: a student reading a 3-part pool and one reading
# a 2-part pool plus an online third part (pool seed 3 and z-scale 1.7, the run's seed 5)
# train the same third epoch.
zgen=(generate --workdir "$WORK/w" --count 600 --sample-batch 100 --block 200 --seed 3 --z-scale 1.7)
"${MPIRUN[@]}" -n 2 "$KR" "${zgen[@]}" --pool-epochs 3 --out "$WORK/z3" > /dev/null
"${MPIRUN[@]}" -n 2 "$KR" "${zgen[@]}" --pool-epochs 2 --out "$WORK/z2" > /dev/null
zdist=(distill --workdir "$WORK/w" --epoch-size 600 --batch 50 --width 8 --progress-every 0 --epochs 3
       --seed 5 --checkpoint-every-minutes 0)
"${MPIRUN[@]}" -n 2 "$KR" "${zdist[@]}" --pool "$WORK/z3" --out "$WORK/w/s-stored" --results-name z3 > /dev/null
"${MPIRUN[@]}" -n 2 "$KR" "${zdist[@]}" --pool "$WORK/z2" --out "$WORK/w/s-online" --results-name z2 \
  --generate-online > /dev/null
"$PY" - "$WORK/w/results" <<'PY'
import json, sys
a = json.load(open(sys.argv[1] + "/z3.json"))
b = json.load(open(sys.argv[1] + "/z2.json"))
assert [p["online"] for p in b["parts"]] == [False, False, True], b["parts"]
# params_sha256 names the best-on-val weights, perhaps from before the third part: compare
# the third epoch itself.
last = lambda r: (r["history"][-1]["train_loss"], r["history"][-1]["val_loss"])
assert last(a) == last(b), ("online part differs from the pool's third part", last(a), last(b))
PY
pass "an online part equals the part kr generate makes (pool seed and z-scale, not the run's)"

# kr audit (Note [Memorisation audit]): the samples split over 1, 2 and 3 ranks give the
# same figures; real train images are all exact copies; a bad source is refused by name and
# writes no results.
aud=(audit --workdir "$WORK/w" --pool "$WORK/p1" --strip 4)
"$KR" "${aud[@]}" --name a1 --threads 1 > /dev/null
"${MPIRUN[@]}" -n 2 "$KR" "${aud[@]}" --name a2 --threads 1 > /dev/null
"${MPIRUN[@]}" -n 3 "$KR" "${aud[@]}" --name a3 --threads 1 --query-block 70 --reference-block 130 > /dev/null
"${MPIRUN[@]}" -n 2 "$KR" audit --workdir "$WORK/w" --real-split train --samples 50 > /dev/null
"$PY" - "$WORK/w/results" <<'PY'
import json, sys
r = lambda n: json.load(open(f"{sys.argv[1]}/audit-{n}.json"))
a1, a2, a3 = r("a1"), r("a2"), r("a3")
assert a1["samples"] == 600, a1["samples"]  # one regeneration of the 2-part pool
assert set(a1["spaces"]) == {"pixels_l2", "features_cosine"}, a1["spaces"].keys()
strip = lambda s: {k: v for k, v in s.items() if k not in ("timing", "strip")}
for other in (a2, a3):
    for space in a1["spaces"]:
        assert strip(other["spaces"][space]) == strip(a1["spaces"][space]), space
assert (a2["world_size"], a3["world_size"]) == (2, 3)
t = r("real-train")
for space, f in t["spaces"].items():
    assert f["exact_copies"] == 50 and f["normalised_under_threshold"] == 50, (space, f)
    assert f["train_distance_quantiles"][-1] == 0, f
for space, f in a1["spaces"].items():
    assert 0 <= f["closer_to_train_share"] <= 1 and len(f["closest"]) == 4, f
    open(f["strip"], "rb").read(8) == b"\x89PNG\r\n\x1a\n" or sys.exit("strip not a PNG")
PY
expect_exit 2 "$KR" audit --workdir "$WORK/w" --real-split test
expect_output "test is the holdout"
expect_exit 1 "$KR" audit --workdir "$WORK/w" --pool "$WORK/nowhere" --name gone
expect_output "$WORK/nowhere"
[[ ! -e "$WORK/w/results/audit-gone.json" ]] || fail "a failed audit left results"
"$KR" report --workdir "$WORK/w" > /dev/null
grep -q "Memorisation (kr audit)" "$WORK/w/results/report.html" || fail "report lacks the audit"
pass "kr audit: 1, 2 and 3 ranks agree; train images are exact copies; bad sources refused; in the report"

# kr generate --reid-filter (Note [Re-identification filter]): the threshold is the median
# of val's nearest-train distances; the pool is class-balanced, the same at 2 and 3 ranks,
# and kr audit finds no sample nearer to train than the threshold. (This 1-epoch generator
# is far from every train image, so nothing is dropped here: the unit test ReidFilter.*
# plants copies that are.)
reid=(generate --workdir "$WORK/w" --count 600 --sample-batch 100 --block 200 --reid-filter 50
      --quality-samples 0 --threads 1)
"${MPIRUN[@]}" -n 2 "$KR" "${reid[@]}" --out "$WORK/r2" > /dev/null
"${MPIRUN[@]}" -n 3 "$KR" "${reid[@]}" --out "$WORK/r3" > /dev/null
[[ "$(file_sums "$WORK/r2")" == "$(file_sums "$WORK/r3")" ]] || fail "reid-filtered pools differ at 2 and 3 ranks"
"${MPIRUN[@]}" -n 2 "$KR" audit --workdir "$WORK/w" --pool "$WORK/r2" --name reid > /dev/null
"$PY" - "$WORK" <<'PY'
import json, sys, h5py, numpy
work = sys.argv[1]
settings = json.load(open(f"{work}/r2/manifest.json"))["settings"]["reid_filter"]
assert settings["space"] == "features_cosine" and settings["percentile"] == 50, settings
g = json.load(open(f"{work}/w/results/generate.json"))["filter"]
assert g["reid_filter"] == settings and "reid_dropped_this_run" in g, g
assert abs(settings["threshold"] - settings["val_nearest_train"]["p50"]) <= 0.5 * settings["threshold"], settings
a = json.load(open(f"{work}/w/results/audit-reid.json"))["spaces"]["features_cosine"]
assert a["train_distance_quantiles"][0] >= settings["threshold"], (a["train_distance_quantiles"], settings)
with h5py.File(f"{work}/r2/index.h5", "r") as f:
    assert (f["labels"][...] == numpy.arange(600) % 10).all()
PY
pass "reid filter: val's threshold recorded; class-balanced, rank-independent, no audited sample under it"

# A truncated shard is named by every reader.
"$PY" -c "import sys; p=sys.argv[1]; d=open(p,'rb').read(); open(p,'wb').write(d[:len(d)//3])" "$WORK/p2/shard_600_200.h5"
expect_exit 1 "$KR" "${dist[@]}" --epochs 1 --out "$WORK/w/student4"
expect_output "shard_600_200.h5"
pass "truncated shard named"
