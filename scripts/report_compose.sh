#!/usr/bin/env bash
# scripts/report_compose.sh smollm2|gemma3 [task ...]: the compositions of the results report (do PEAR and the other
# methods combine?), after the model's report pipeline has trained PEAR (results/report/<model>/train.h5):
#   pear+rtd          per task a datastore of PEAR's folded model (`headsweep datastore build --compose pear`), its T
#                     tuned, then pear and pear+rtd on the task's first LIMIT test items
#                     -> results/report/<model>/eval-compose-<task>.h5 (zero-shot and rtd on the same items are in
#                     results/rtd/eval-<model>-<task>.h5; docs/results.md pairs them by item)
#   pear+infiniretri  NIH at 4K and 16K, every depth, pear and pear+infiniretri
#                     -> results/report/<model>/eval-niah-compose.h5 (vanilla and infiniretri: results/infiniretri/)
# Tasks: default trec sst2 openbookqa cb (the tasks where RTD helps); niah runs when listed or by default.
# Every step resumes: stop it any time and run it again. One BLAS thread. Env: HS (default build/headsweep), LIMIT
# (default 500), CAP_BIG (openbookqa/arc-easy/mmlu datastore cap, default 4096 as scripts/rtd_smollm2.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: scripts/report_compose.sh smollm2|gemma3 [task ...]}
shift
case $model in
    smollm2) GGUF=models/SmolLM2-135M-Instruct.Q4_1.gguf ;;
    gemma3) GGUF=models/gemma-3-270m-q4_k_m.gguf ;;
    *) echo "report_compose: unknown model '$model' (smollm2 or gemma3)" >&2; exit 2 ;;
esac
HS=${HS:-build/headsweep}
LIMIT=${LIMIT:-500}
CAP_BIG=${CAP_BIG:-4096}
R=results/report/$model
TRAIN=$R/train.h5
[[ -f $TRAIN ]] || { echo "report_compose: $TRAIN missing: run scripts/report_pipeline.sh $model first" >&2; exit 2; }
tasks=("$@")
[[ ${#tasks[@]} -gt 0 ]] || tasks=(trec sst2 openbookqa cb niah)
export OMP_NUM_THREADS=1
unset OPENBLAS_CORETYPE
mkdir -p "$R/ds-pear"
for t in "${tasks[@]}"; do
    if [[ $t == niah ]]; then
        out=$R/eval-niah-compose.h5
        resume=(); [[ -f $out ]] && resume=(--resume)
        echo "== niah: pear, pear+infiniretri $(date -u +%H:%M:%S)"
        "$HS" eval -m "$GGUF" --tasks niah --niah-lengths 4k,16k --niah-depths 0,25,50,75,100 \
            --methods pear,pear+infiniretri --pear-train "$TRAIN" -o "$out" -t 1 "${resume[@]}"
        continue
    fi
    cap=20480
    case $t in arc-easy|openbookqa|mmlu-0shot) cap=$CAP_BIG ;; esac
    ds=$R/ds-pear/$t.h5
    resume=(); [[ -f $ds ]] && resume=(--resume)
    echo "== $t: datastore of PEAR's model (cap $cap) $(date -u +%H:%M:%S)"
    "$HS" datastore build -m "$GGUF" --task "$t" --cap "$cap" --compose pear --pear-train "$TRAIN" \
        -o "$R/ds-pear/{task}.h5" -t 1 "${resume[@]}"
    "$HS" datastore tune "$ds" > "$R/tune-pear-$t.txt"
    out=$R/eval-compose-$t.h5
    resume=(); [[ -f $out ]] && resume=(--resume)
    echo "== $t: pear, pear+rtd (limit $LIMIT) $(date -u +%H:%M:%S)"
    "$HS" eval -m "$GGUF" --tasks "$t" --methods pear,pear+rtd --pear-train "$TRAIN" \
        --rtd-datastore "$R/ds-pear/{task}.h5" --limit "$LIMIT" -o "$out" -t 1 "${resume[@]}"
done
echo "== all done $(date -u +%H:%M:%S)"
