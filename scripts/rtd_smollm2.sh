#!/usr/bin/env bash
# RTD on SmolLM2-135M-Instruct (issue 13): for each task, build the datastore from its train split (resumable),
# choose T (headsweep datastore tune: leave-item-out on the train datastore), then evaluate zero-shot (vanilla),
# rtd and mh-rtd on its test split (resumable). One BLAS/OpenMP thread; safe to kill and re-run: every step resumes.
#   scripts/rtd_smollm2.sh [task ...]        (default: every task below, in this order)
# Then, for each task, the 5-shot ICL baseline (with zero-shot again on the same items: paired) on ICL_LIMIT items.
# Env: HS (the headsweep binary, default build/headsweep), CAP_BIG (cap of the large train sets ARC-Easy,
#      OpenBookQA, MMLU; default 4096 so that the run fits a 2-core afternoon; the reference cap 20,480 is the
#      default of `headsweep datastore build`), LIMIT (test items per task, default 500; -1 all), ICL_LIMIT (100),
#      OUT (default results/rtd).
set -euo pipefail
cd "$(dirname "$0")/.."
HS=${HS:-build/headsweep}
CAP_BIG=${CAP_BIG:-4096}
ICL_LIMIT=${ICL_LIMIT:-100}
LIMIT=${LIMIT:-500}
OUT=${OUT:-results/rtd}
export OMP_NUM_THREADS=1
unset OPENBLAS_CORETYPE
tasks=("$@")
[[ ${#tasks[@]} -gt 0 ]] || tasks=(cb sst2 trec rte arc-challenge arc-easy openbookqa mmlu-0shot)
mkdir -p "$OUT/ds"
for t in "${tasks[@]}"; do
    cap=20480
    case $t in arc-easy|openbookqa|mmlu-0shot) cap=$CAP_BIG ;; esac
    ds="$OUT/ds/$t.h5"
    resume=()
    [[ -f $ds ]] && resume=(--resume)
    echo "== $t: datastore (cap $cap) $(date -u +%H:%M:%S)"
    "$HS" datastore build --task "$t" --cap "$cap" -o "$OUT/ds/{task}.h5" -t 1 "${resume[@]}"
    echo "== $t: tune $(date -u +%H:%M:%S)"
    "$HS" datastore tune "$ds" | tee "$OUT/tune-$t.txt"
    ev="$OUT/eval-smollm2-$t.h5"
    resume=()
    [[ -f $ev ]] && resume=(--resume)
    echo "== $t: eval (limit $LIMIT) $(date -u +%H:%M:%S)"
    "$HS" eval --tasks "$t" --methods vanilla,rtd,mh-rtd --rtd-datastore "$OUT/ds/{task}.h5" --limit "$LIMIT" \
        -o "$ev" -t 1 "${resume[@]}" | tee "$OUT/eval-smollm2-$t.txt"
done
for t in "${tasks[@]}"; do
    ev="$OUT/eval-smollm2-$t-icl.h5"
    resume=()
    [[ -f $ev ]] && resume=(--resume)
    echo "== $t: icl 5-shot (limit $ICL_LIMIT) $(date -u +%H:%M:%S)"
    "$HS" eval --tasks "$t" --methods vanilla,icl --icl-shots 5 --limit "$ICL_LIMIT" -o "$ev" -t 1 "${resume[@]}" \
        | tee "$OUT/eval-smollm2-$t-icl.txt"
done
echo "== all done $(date -u +%H:%M:%S)"
