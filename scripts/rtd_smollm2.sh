#!/usr/bin/env bash
# RTD on SmolLM2-135M-Instruct (issue 13), or on another model (MODEL, NAME): for each task, build the datastore from its train split (resumable),
# choose T (headsweep datastore tune: leave-item-out on the train datastore), then evaluate zero-shot (vanilla),
# rtd and mh-rtd on its test split (resumable). One BLAS/OpenMP thread; safe to kill and re-run: every step resumes.
#   scripts/rtd_smollm2.sh [task ...]        (default: every task below, in this order)
# Then, for each task, the 5-shot ICL baseline (with zero-shot again on the same items: paired) on ICL_LIMIT items.
# Env: HS (the headsweep binary, default build/headsweep), CAP_BIG (cap of the large train sets ARC-Easy,
#      OpenBookQA, MMLU; default 4096 so that the run fits a 2-core afternoon; the reference cap 20,480 is the
#      default of `headsweep datastore build`), LIMIT (test items per task, default 500; -1 all), ICL_LIMIT (100),
#      OUT (default results/rtd), MODEL (a GGUF; default the SmolLM2 file), NAME (the files' model tag, default
#      smollm2; datastores go to OUT/ds-NAME unless NAME is smollm2, whose datastores stay in OUT/ds).
#   MODEL=models/gemma-3-270m-q4_k_m.gguf NAME=gemma3 scripts/rtd_smollm2.sh cb rte
set -euo pipefail
cd "$(dirname "$0")/.."
HS=${HS:-build/headsweep}
CAP_BIG=${CAP_BIG:-4096}
ICL_LIMIT=${ICL_LIMIT:-100}
LIMIT=${LIMIT:-500}
OUT=${OUT:-results/rtd}
NAME=${NAME:-smollm2}
MODEL_ARGS=()
[[ -n ${MODEL:-} ]] && MODEL_ARGS=(-m "$MODEL")
DS="$OUT/ds"
[[ $NAME == smollm2 ]] || DS="$OUT/ds-$NAME"
export OMP_NUM_THREADS=1
unset OPENBLAS_CORETYPE
tasks=("$@")
[[ ${#tasks[@]} -gt 0 ]] || tasks=(cb sst2 trec rte arc-challenge arc-easy openbookqa mmlu-0shot)
mkdir -p "$DS"
for t in "${tasks[@]}"; do
    cap=20480
    case $t in arc-easy|openbookqa|mmlu-0shot) cap=$CAP_BIG ;; esac
    ds="$DS/$t.h5"
    resume=()
    [[ -f $ds ]] && resume=(--resume)
    echo "== $t: datastore (cap $cap) $(date -u +%H:%M:%S)"
    "$HS" datastore build "${MODEL_ARGS[@]}" --task "$t" --cap "$cap" -o "$DS/{task}.h5" -t 1 "${resume[@]}"
    echo "== $t: tune $(date -u +%H:%M:%S)"
    "$HS" datastore tune "$ds" | tee "$OUT/tune-$([[ $NAME == smollm2 ]] || echo "$NAME-")$t.txt"
    ev="$OUT/eval-$NAME-$t.h5"
    resume=()
    [[ -f $ev ]] && resume=(--resume)
    echo "== $t: eval (limit $LIMIT) $(date -u +%H:%M:%S)"
    "$HS" eval "${MODEL_ARGS[@]}" --tasks "$t" --methods vanilla,rtd,mh-rtd --rtd-datastore "$DS/{task}.h5" --limit "$LIMIT" \
        -o "$ev" -t 1 "${resume[@]}" | tee "$OUT/eval-$NAME-$t.txt"
done
for t in "${tasks[@]}"; do
    ev="$OUT/eval-$NAME-$t-icl.h5"
    resume=()
    [[ -f $ev ]] && resume=(--resume)
    echo "== $t: icl 5-shot (limit $ICL_LIMIT) $(date -u +%H:%M:%S)"
    "$HS" eval "${MODEL_ARGS[@]}" --tasks "$t" --methods vanilla,icl --icl-shots 5 --limit "$ICL_LIMIT" -o "$ev" -t 1 "${resume[@]}" \
        | tee "$OUT/eval-$NAME-$t-icl.txt"
done
echo "== all done $(date -u +%H:%M:%S)"
