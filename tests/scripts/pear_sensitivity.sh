#!/usr/bin/env bash
# tests/scripts/pear_sensitivity.sh BUILD_DIR: scripts/pear_sensitivity.sh on random:tiny (fixture data), a grid of
# K in {1, 2} x {2, 3} steps:
#   - every K at the shorter training runs before any longer one (a stopped grid already compares K);
#   - the 3-step run continues the 2-step one (its first two logged losses are that run's);
#   - the evaluation file holds vanilla once and each setting under its own name, on the same items;
#   - running it again adds nothing;
#   - analysis/results_report.py gives the grid its own section (one row per setting, paired with vanilla on the
#     same items) and keeps the settings out of the main task table.
# Exit 77 (skip) without h5py/numpy for /usr/bin/python3.
set -uo pipefail
BUILD=$(cd "${1:?usage: pear_sensitivity.sh BUILD_DIR}" && pwd)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
/usr/bin/python3 -c "import h5py, numpy" 2>/dev/null || { echo "skip: no h5py/numpy for /usr/bin/python3"; exit 77; }
W=$(mktemp -d /tmp/headsweep_sensitivity_XXXXXX)
trap 'rm -rf "$W"' EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
HS=$BUILD/headsweep
"$HS" sweep -m random:tiny --settings 2x3 -q -t 1 -o "$W/sweep.h5" >/dev/null || { bad "sweep"; exit 1; }
export HS MODEL=random:tiny SWEEP=$W/sweep.h5 KS="1 2" STEPS="2 3" TASK=mdqa-3docs LIMIT=1 RUNS=$W/runs \
    OUT=$W/eval.h5 TRAIN_ARGS="--n 4 --batch 2 --eval-batch 0" \
    EVAL_ARGS="--data-dir $ROOT/tests/fixtures/eval_data --max-new-tokens 4 -q"
"$ROOT/scripts/pear_sensitivity.sh" > "$W/log" 2>&1 || { cat "$W/log"; bad "the grid run"; exit 1; }

order=$(grep -o '^== K=[0-9]* steps=[0-9]*: train' "$W/log" | sed 's/^== //; s/: train//' | tr '\n' ',')
[[ $order == "K=1 steps=2,K=2 steps=2,K=1 steps=3,K=2 steps=3," ]] \
    && ok "every K at 2 steps, then every K at 3" || bad "training order: $order"

/usr/bin/python3 - "$W" <<'EOF' || fail=1
import sys
from collections import Counter
import h5py, numpy as np
w = sys.argv[1]
bad = 0
for k in (1, 2):
    with h5py.File(f"{w}/runs/k{k}-s2.h5", "r") as a, h5py.File(f"{w}/runs/k{k}-s3.h5", "r") as b:
        la, lb = a["log/loss"][()], b["log/loss"][()]
        if len(la) == 2 and len(lb) == 3 and np.array_equal(la, lb[:2]) and len(b["tau"]) == k:
            print(f"ok: K={k}: the 3-step run continues the 2-step one ({k} coefficients)")
        else:
            print(f"FAIL: K={k}: losses {la} then {lb}, tau {b['tau'][()]}"); bad = 1
with h5py.File(f"{w}/eval.h5", "r") as f:
    r = f["records"]
    per = Counter(m.decode() for m in r["method"][()])
    ids = {}
    for m, i, p in zip(r["method"][()], r["id"][()], r["gold_position"][()]):
        ids.setdefault(m.decode(), set()).add((i, p))
want = {"vanilla", "pear-k1-s2", "pear-k2-s2", "pear-k1-s3", "pear-k2-s3"}
if set(per) == want and len(set(per.values())) == 1 and len({frozenset(v) for v in ids.values()}) == 1:
    print(f"ok: vanilla once and four settings, {per['vanilla']} answers each on the same items")
else:
    print(f"FAIL: records per method {dict(per)}"); bad = 1
sys.exit(bad)
EOF

n_before=$(h5dump -H "$W/eval.h5" | grep -m1 -A3 'DATASET "score"' | grep -o 'DATASPACE  SIMPLE { ( [0-9]*' | grep -o '[0-9]*$')
"$ROOT/scripts/pear_sensitivity.sh" > "$W/log2" 2>&1 || { cat "$W/log2"; bad "the second run"; }
n_after=$(h5dump -H "$W/eval.h5" | grep -m1 -A3 'DATASET "score"' | grep -o 'DATASPACE  SIMPLE { ( [0-9]*' | grep -o '[0-9]*$')
[[ -n $n_before && $n_before == "$n_after" ]] && ok "a second run adds nothing ($n_after records)" \
    || bad "records $n_before then $n_after"

/usr/bin/python3 "$ROOT/analysis/results_report.py" "$W/eval.h5" --speed "$W/none-*.h5" --md "$W/r.md" >/dev/null \
    || bad "results_report.py"
grep -q '^## PEAR sensitivity' "$W/r.md" && ok "the grid has its own section" || bad "no sensitivity section"
rows=$(grep -c '^| random:tiny | mdqa-3docs | [12] | [23] | 3 | ' "$W/r.md")
[[ $rows == 4 ]] && ok "one row per setting, 3 answers each" || bad "$rows setting rows"
grep '^| random:tiny | mdqa-3docs | 2 | 3 | ' "$W/r.md" | grep -q ' | [+-][0-9.]* \[' \
    && ok "each row has its paired difference to vanilla" || bad "no paired difference"
grep -q 'Does any PEAR setting (K heads x training steps) beat vanilla: 4 task comparisons' "$W/r.md" \
    && ok "the question is answered at the top" || bad "no answer line"
grep '^| task | n |' "$W/r.md" | grep -q 'pear-k' && bad "a setting in the main table" \
    || ok "the settings stay out of the main table"
[[ $fail == 0 ]] || { cat "$W/r.md"; exit 1; }
