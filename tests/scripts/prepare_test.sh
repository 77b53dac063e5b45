# kr prepare on Debian's real Fashion-MNIST: split sizes and class counts.
source "$(dirname "$0")/lib.sh"
if [[ ! -d /usr/share/datasets/fashion-mnist ]]; then
  echo "skipped: dataset-fashion-mnist is not installed"; exit 0
fi
expect_exit 0 "${MPIRUN[@]}" -n 2 "$KR" prepare --workdir "$WORK/w"
h5dump -H "$WORK/w/data/data.h5" > "$WORK/header"
grep -q 'DATASET "images"' "$WORK/header" || fail "no images dataset"
python3 - "$WORK/w/data/run.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
assert (r["train"], r["val"], r["test"]) == (55000, 5000, 10000), r
for c in range(10):
    assert r["train_per_class"][c] + r["val_per_class"][c] == 6000, r
    assert r["test_per_class"][c] == 1000, r
    assert r["val_per_class"][c] == 500, r
PY
pass "Fashion-MNIST: 55000/5000/10000, 6000 per class in train+val, 1000 in test"
