#!/usr/bin/env bash
# analysis/results_report.py on two small evaluation files of random:tiny (fixture data): a method run again with
# other settings (PEAR with another tau) is not mixed into one cell with the earlier run -- the cell shows the
# configuration with the most answers and the report says how many answers of the other were left out; the report
# has its reproduction commands and lists both configurations. Exit 77 (skip) without h5py/numpy.
set -uo pipefail
BUILD=$(cd "${1:?usage: results_report.sh BUILD_DIR}" && pwd)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
/usr/bin/python3 -c "import h5py, numpy" 2>/dev/null || { echo "skip: no h5py/numpy for /usr/bin/python3"; exit 77; }
W=$(mktemp -d /tmp/headsweep_report_XXXXXX)
trap 'rm -rf "$W"' EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
HS=$BUILD/headsweep
D=$ROOT/tests/fixtures/eval_data
common=(-m random:tiny --data-dir "$D" --tasks mdqa-3docs --max-new-tokens 4 -q -t 1)
"$HS" eval "${common[@]}" --methods vanilla,pear --pear-heads "0:1=0.5" --limit 1 -o "$W/a.h5" >/dev/null || bad "eval a"
"$HS" eval "${common[@]}" --methods pear --pear-heads "0:1=0.8" --limit 2 -o "$W/b.h5" >/dev/null || bad "eval b"
# a speed file (bench/bench_eval_speed.sh's form): its own section, never counted in the cells
"$HS" eval "${common[@]}" --methods vanilla --limit 2 -o "$W/speed.h5" >/dev/null || bad "eval speed"
# a choice task (mmlu) for the bar figure
"$HS" eval -m random:tiny --data-dir "$D" --tasks mmlu --methods vanilla --limit 2 -q -t 1 -o "$W/c.h5" >/dev/null \
    || bad "eval c"
# needle cells read by InfiniRetri, for the "why cells fail" lines (the needle searched for in each final cache)
"$HS" eval -m random:tiny --data-dir "$D" --tasks niah --niah-lengths 700 --niah-depths 0,100 \
    --methods vanilla,infiniretri --ir-chunk 256 --ir-topk 16 --max-new-tokens 3 -q -t 1 -o "$W/n.h5" >/dev/null \
    || bad "eval n"
# the same cells scored with another layer (--ir-layer): a method of its own, never mixed into infiniretri's cells
"$HS" eval -m random:tiny --data-dir "$D" --tasks niah --niah-lengths 700 --niah-depths 0,100 \
    --methods infiniretri --ir-layer 0 --ir-chunk 256 --ir-topk 16 --max-new-tokens 3 -q -t 1 -o "$W/n0.h5" >/dev/null \
    || bad "eval n0"
/usr/bin/python3 "$ROOT/analysis/results_report.py" "$W/a.h5" "$W/b.h5" "$W/c.h5" "$W/n.h5" "$W/n0.h5" \
    --speed "$W/speed.h5" --md "$W/r.md" --img "$W/img/r" || bad "results_report.py"
grep -q '^\*\*random:tiny, infiniretri-layer0\*\*$' "$W/r.md" && grep -q '^\*\*random:tiny, infiniretri\*\*$' "$W/r.md" \
    && grep -q 'random:tiny, `infiniretri-layer0`: of ' "$W/r.md" \
    && ok "--ir-layer cells are a method of their own (grid and why-lines)" || bad "no infiniretri-layer0 grid"
why=$(grep '^- random:tiny, `infiniretri`: of ' "$W/r.md")
counts=$(echo "$why" | grep -o -E 'of [0-9]+ cells? not fully|missing from the final cache in [0-9]+|in the cache in [0-9]+ \(the|of [0-9]+ fully answered cells?, the needle was in the cache in [0-9]+' | grep -o -E '[0-9]+' | tr '\n' ' ')
read -r nfail nlost nkept nans nans_kept <<< "$counts"
[[ -n $why && $((nfail + nans)) == 2 && $((nlost + nkept)) == "$nfail" && $nans_kept -le $nans ]] \
    && ok "why the needle cells fail: $nfail not answered ($nlost lost while reading, $nkept in the cache), $nans answered" \
    || bad "no consistent 'why cells fail' line: '$why' ($counts)"
# accuracy by gold position: a table per mdqa task (3 positions, the later PEAR run's 2 answers at each) and a figure
grep -q "^random:tiny, mdqa-3docs: accuracy (n) by the gold document's position" "$W/r.md" \
    && grep -q '^| method | 1 | 2 | 3 |$' "$W/r.md" && grep -q '^| pear | [0-9.]* (2) | [0-9.]* (2) | [0-9.]* (2) |$' "$W/r.md" \
    && ok "accuracy by gold position, per method" || bad "no position table"
for fig in positions choice; do
    [[ -s $W/img/r-$fig-random-tiny.png ]] && grep -q "](img/r-$fig-random-tiny.png)" "$W/r.md" \
        && ok "the $fig figure is drawn and linked" || bad "no $fig figure: $(ls "$W/img" 2>&1)"
done
row=$(grep '^| random:tiny | vanilla | mdqa-3docs | 6 |' "$W/r.md" | head -1)
[[ $row == *"prefill "*"%"*"decode "*"%"*"| prefill "*" tok/s"* && $row == *"|"*" |" ]] \
    && ok "the speed table splits the 6 answers' time into prefill and decode, with rates" || bad "speed row: $row"
grep -q '^What bounds it: ' "$W/r.md" && ok "what bounds the speed is said" || bad "no 'What bounds it' line"
/usr/bin/python3 "$ROOT/analysis/results_report.py" "$W/a.h5" --speed "$W/none-*.h5" --md "$W/r0.md" >/dev/null \
    && grep -q 'Not measured yet: `bench/bench_eval_speed.sh' "$W/r0.md" && ok "no speed file: said so" \
    || bad "no speed file: not said"
grep -q 'mdqa-3docs `pear`: 3 answers of an earlier configuration left out' "$W/r.md" \
    && ok "the earlier PEAR run's 3 answers are left out of the cell" || bad "no superseded-config line"
grep -q 'heads=L0H1=0.5$' "$W/r.md" && grep -q 'heads=L0H1=0.8' "$W/r.md" \
    && ok "both configurations are listed" || bad "configurations not listed"
# the papers' claims: PEAR's is checked on the mdqa cell (paired n: vanilla has 3 answers), RTD's was not measured
grep '^- PEAR, ' "$W/r.md" | grep -q -E 'random:tiny: (holds on|not shown on|contradicted on) mdqa-3docs \(n=3\)' \
    && grep '^- RTD, ' "$W/r.md" | grep -q 'random:tiny: not measured yet' \
    && ok "each paper's claim is held against the cells" || bad "claims: $(grep -A4 "Against the papers" "$W/r.md")"
grep -q '^## How to reproduce' "$W/r.md" && ok "reproduction commands" || bad "no How to reproduce section"
grep -q '^| mdqa-3docs | 6 |' "$W/r.md" && ok "the cell has the later run's 6 answers" || bad "cell size: $(grep '^| mdqa-3docs' "$W/r.md")"
[[ $fail == 0 ]] || { cat "$W/r.md"; exit 1; }
