#!/usr/bin/env bash
# bench/bench_eval_speed.sh smollm2|gemma3|--smoke: evaluation speed per method on 2 CPU threads (issue 19), and where the
# time goes, for the results report's speed section (analysis/results_report.py reads results/speed/<model>/*.h5).
#
# One process with 2 BLAS threads answers a small fixed sample of each task family with every method:
#   gen-mdqa10.h5  mdqa-10docs (2 items per gold position: 10)   vanilla, pear, infiniretri, pear+infiniretri
#   gen-nq.h5      nq-oracle (10 items)                           the same four methods
#   choice.h5      cb (all 56 validation items)                   vanilla, rtd, mh-rtd, icl (5 shots)
#   choice-pear.h5 cb                                             pear, pear+rtd
# Each record holds its wall time and its split (prefill_s/decode_s for generated answers, read_s/answer_s for
# InfiniRetri, forward_s/search_s for RTD), so the report says per method what bounds it. The RTD datastores of
# CB (250 train items; the base model's and PEAR's folded model's) are built first into results/speed/<model>/ds*/.
# Run it on a quiet machine (pause other jobs; the figures are wall times): every file resumes, so delete a file to
# measure it again. Env: HS (default build/headsweep), THREADS (default 2), PEAR_TRAIN (default
# results/report/<model>/train.h5, the report pipeline's PEAR) or PEAR_HEADS ("l:h=tau,..."), OUT (default
# results/speed/<model>). --smoke: random:tiny on the test fixtures at tiny sizes into OUT (tests/scripts/bench_smoke.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: bench/bench_eval_speed.sh smollm2|gemma3|--smoke}
HS=${HS:-build/headsweep}
THREADS=${THREADS:-2}
# per family: data folder and the limits; --smoke: random:tiny on the test fixtures, tiny sizes, into a temporary OUT
GEN_DATA=(); CHOICE_DATA=(); CHOICE_BUILD=(); CHOICE=cb; K=32; MDQA_LIMIT=2; NQ_LIMIT=10; CB_LIMIT=-1; SMALL=(); IR=()
case $model in
    smollm2) GGUF=models/SmolLM2-135M-Instruct.Q4_1.gguf ;;
    gemma3) GGUF=models/gemma-3-270m-q4_k_m.gguf ;;
    --smoke)
        GGUF=random:tiny
        OUT=${OUT:?bench_eval_speed --smoke: set OUT to a scratch folder}
        mkdir -p "$OUT"
        # random:tiny's tokenizer gives CB's labels one first token, so the choice family is a tiny user task
        for i in 0 1 2 3 4 5; do
            echo "{\"query\": \"Which colour is number $i?\", \"choices\": [\"c${i}a\", \"c${i}b\", \"c${i}c\"], \"gold\": $((i % 3))}"
        done > "$OUT/user.jsonl"
        GEN_DATA=(--data-dir tests/fixtures/eval_data); CHOICE=user
        CHOICE_BUILD=(--data-dir tests/fixtures/rtd_data --user-train "$OUT/user.jsonl"); CHOICE_DATA=("${CHOICE_BUILD[@]}" --user-test "$OUT/user.jsonl")
        K=4; MDQA_LIMIT=1; NQ_LIMIT=1; CB_LIMIT=4; SMALL=(--max-new-tokens 4); IR=(--ir-chunk 96 --ir-topk 8)
        PEAR_HEADS=${PEAR_HEADS:-0:1=0.5,1:3=0.8} ;;
    *) echo "bench_eval_speed: unknown model '$model' (smollm2, gemma3 or --smoke)" >&2; exit 2 ;;
esac
OUT=${OUT:-results/speed/$model}
TRAIN=${PEAR_TRAIN:-results/report/$model/train.h5}
[[ -x $HS ]] || { echo "bench_eval_speed: $HS is not built (cmake --build build)" >&2; exit 2; }
[[ $GGUF == random:* || -f $GGUF ]] || { echo "bench_eval_speed: $GGUF missing (scripts/fetch_model.sh)" >&2; exit 2; }
if [[ -n ${PEAR_HEADS:-} ]]; then
    PEAR=(--pear-heads "$PEAR_HEADS")
else
    [[ -f $TRAIN ]] || { echo "bench_eval_speed: $TRAIN missing: PEAR's tau comes from scripts/report_pipeline.sh $model (or set PEAR_TRAIN or PEAR_HEADS)" >&2; exit 2; }
    PEAR=(--pear-train "$TRAIN")
fi
unset OPENBLAS_CORETYPE
export OMP_NUM_THREADS=$THREADS
mkdir -p "$OUT/ds" "$OUT/ds-pear"
echo "bench_eval_speed: $model, $THREADS threads, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) -> $OUT"

resume_if() { [[ -f $1 ]] && echo --resume || true; }
run_eval() {  # file, then eval arguments
    local f=$OUT/$1
    shift
    echo "== $(basename "$f") $(date -u +%H:%M:%S)"
    # shellcheck disable=SC2046
    "$HS" eval -m "$GGUF" -t "$THREADS" -q -o "$f" $(resume_if "$f") "$@"
}

for ds in ds ds-pear; do  # build (or finish) each datastore, then tune its T
    compose=()
    [[ $ds == ds-pear ]] && compose=(--compose pear "${PEAR[@]}")
    echo "== $ds/$CHOICE.h5: datastore $(date -u +%H:%M:%S)"
    # shellcheck disable=SC2046
    "$HS" datastore build -m "$GGUF" --task $CHOICE "${compose[@]}" "${CHOICE_BUILD[@]}" -o "$OUT/$ds/{task}.h5" \
        -t "$THREADS" -q $(resume_if "$OUT/$ds/$CHOICE.h5")
    "$HS" datastore tune -k $K "$OUT/$ds/$CHOICE.h5" > "$OUT/$ds/tune-$CHOICE.txt"
done
GEN=(--methods vanilla,pear,infiniretri,pear+infiniretri "${PEAR[@]}" "${GEN_DATA[@]}" "${SMALL[@]}" "${IR[@]}")
run_eval gen-mdqa10.h5 --tasks mdqa-10docs --limit "$MDQA_LIMIT" "${GEN[@]}"
run_eval gen-nq.h5 --tasks nq-oracle --limit "$NQ_LIMIT" "${GEN[@]}"
run_eval choice.h5 --tasks $CHOICE --limit "$CB_LIMIT" --methods vanilla,rtd,mh-rtd,icl --icl-shots 5 --rtd-k $K \
    --rtd-datastore "$OUT/ds/{task}.h5" "${CHOICE_DATA[@]}"
run_eval choice-pear.h5 --tasks $CHOICE --limit "$CB_LIMIT" --methods pear,pear+rtd "${PEAR[@]}" --rtd-k $K \
    --rtd-datastore "$OUT/ds-pear/{task}.h5" "${CHOICE_DATA[@]}"
echo "== done $(date -u +%H:%M:%S): /usr/bin/python3 analysis/results_report.py --speed '$OUT/*.h5' ..."
