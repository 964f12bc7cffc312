#!/usr/bin/env bash
# bench/bench_eval_speed.sh smollm2|gemma3: evaluation speed per method on 2 CPU threads (issue 19), and where the
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
# results/report/<model>/train.h5, the report pipeline's PEAR), OUT (default results/speed/<model>).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: bench/bench_eval_speed.sh smollm2|gemma3}
case $model in
    smollm2) GGUF=models/SmolLM2-135M-Instruct.Q4_1.gguf ;;
    gemma3) GGUF=models/gemma-3-270m-q4_k_m.gguf ;;
    *) echo "bench_eval_speed: unknown model '$model' (smollm2 or gemma3)" >&2; exit 2 ;;
esac
HS=${HS:-build/headsweep}
THREADS=${THREADS:-2}
TRAIN=${PEAR_TRAIN:-results/report/$model/train.h5}
OUT=${OUT:-results/speed/$model}
[[ -x $HS ]] || { echo "bench_eval_speed: $HS is not built (cmake --build build)" >&2; exit 2; }
[[ -f $GGUF ]] || { echo "bench_eval_speed: $GGUF missing (scripts/fetch_model.sh)" >&2; exit 2; }
[[ -f $TRAIN ]] || { echo "bench_eval_speed: $TRAIN missing: PEAR's tau comes from scripts/report_pipeline.sh $model (or set PEAR_TRAIN)" >&2; exit 2; }
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
    [[ $ds == ds-pear ]] && compose=(--compose pear --pear-train "$TRAIN")
    echo "== $ds/cb.h5: datastore $(date -u +%H:%M:%S)"
    # shellcheck disable=SC2046
    "$HS" datastore build -m "$GGUF" --task cb "${compose[@]}" -o "$OUT/$ds/{task}.h5" -t "$THREADS" -q \
        $(resume_if "$OUT/$ds/cb.h5")
    "$HS" datastore tune "$OUT/$ds/cb.h5" > "$OUT/$ds/tune-cb.txt"
done
run_eval gen-mdqa10.h5 --tasks mdqa-10docs --limit 2 --methods vanilla,pear,infiniretri,pear+infiniretri \
    --pear-train "$TRAIN"
run_eval gen-nq.h5 --tasks nq-oracle --limit 10 --methods vanilla,pear,infiniretri,pear+infiniretri \
    --pear-train "$TRAIN"
run_eval choice.h5 --tasks cb --methods vanilla,rtd,mh-rtd,icl --icl-shots 5 --rtd-datastore "$OUT/ds/{task}.h5"
run_eval choice-pear.h5 --tasks cb --methods pear,pear+rtd --pear-train "$TRAIN" \
    --rtd-datastore "$OUT/ds-pear/{task}.h5"
echo "== done $(date -u +%H:%M:%S): /usr/bin/python3 analysis/results_report.py --md docs/results.md --img docs/img/results"
