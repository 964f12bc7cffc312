#!/usr/bin/env bash
# PEAR sensitivity (issue 19): K in {2, 4, 8, 16} re-weighted heads x {60, 300} training steps, each evaluated on
# mdqa-10docs (every gold position) beside vanilla on the same items, all in ONE evaluation file (methods named
# pear-k<K>-s<steps>; vanilla is computed once), so every setting's paired difference to vanilla reads from it:
#   python3 analysis/results_report.py ... or headsweep eval's own summary lines in the log.
# The heads are the top K of a path-mode sweep (the paper's four proxy settings). The 300-step run continues a copy
# of the 60-step file (the same learning-rate schedule, planned_steps 2500, so its first 60 steps are that run's).
# Safe to kill and re-run: training resumes from its checkpoints, the evaluation per answer.
#   scripts/pear_sensitivity.sh
# Env: HS (headsweep binary, default build/headsweep), MODEL (default the SmolLM2 file), SWEEP (path-mode sweep that
#      ranks the heads; default results/precision/smollm2-path-f32.h5, the default model's f32 path sweep), KS
#      ("2 4 8 16"), STEPS ("60 300", ascending), TASK (mdqa-10docs), LIMIT (items per gold position, default 60:
#      300 answers per method), RUNS (training files, default runs/pear-sensitivity), OUT (evaluation file, default
#      results/pear-sensitivity/eval-smollm2-mdqa10.h5), THREADS (1), TRAIN_ARGS / EVAL_ARGS (more flags for every
#      train / eval call, e.g. EVAL_ARGS="--data-dir DIR"; split at spaces).
set -euo pipefail
cd "$(dirname "$0")/.."
HS=${HS:-build/headsweep}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
SWEEP=${SWEEP:-results/precision/smollm2-path-f32.h5}
KS=${KS:-2 4 8 16}
STEPS=${STEPS:-60 300}
TASK=${TASK:-mdqa-10docs}
LIMIT=${LIMIT:-60}
RUNS=${RUNS:-runs/pear-sensitivity}
OUT=${OUT:-results/pear-sensitivity/eval-smollm2-mdqa10.h5}
THREADS=${THREADS:-1}
read -r -a train_args <<< "${TRAIN_ARGS:-}"
read -r -a eval_args <<< "${EVAL_ARGS:-}"
unset OPENBLAS_CORETYPE
export OMP_NUM_THREADS=$THREADS

die() { echo "pear_sensitivity.sh: $*" >&2; exit 1; }
[[ -x $HS ]] || die "no headsweep binary at $HS (build first, or set HS)"
[[ $MODEL == random:* || -e $MODEL ]] || die "no model at $MODEL (scripts/fetch_model.sh, or set MODEL)"
[[ -f $SWEEP ]] || die "no path-mode sweep at $SWEEP (run the main job, or set SWEEP)"
mkdir -p "$RUNS" "$(dirname "$OUT")"

# Every K at the shortest training first, so a stopped grid already answers "does K matter" at that length.
prev_s=""
for s in $STEPS; do
    for k in $KS; do
        run="$RUNS/k$k-s$s.h5"
        # a longer run starts from a copy of the shorter one's final checkpoint (only when it has none of its own)
        prev="$RUNS/k$k-s$prev_s.h5"
        if [[ -n $prev_s && ! -f $run ]]; then
            [[ -f $prev ]] || die "$prev missing: the $s-step run continues the $prev_s-step one"
            cp "$prev" "$run.tmp" && mv "$run.tmp" "$run"
        fi
        echo "== K=$k steps=$s: train ($(date -u +%H:%M:%S))"
        "$HS" train -m "$MODEL" --sweep "$SWEEP" --top-k "$k" --steps "$s" -o "$run" --resume -t "$THREADS" \
            "${train_args[@]}"
        echo "== K=$k steps=$s: eval $TASK, $LIMIT items per position ($(date -u +%H:%M:%S))"
        "$HS" eval -m "$MODEL" --tasks "$TASK" --limit "$LIMIT" --methods vanilla,pear --pear-train "$run" \
            --pear-name "pear-k$k-s$s" -o "$OUT" --resume -t "$THREADS" "${eval_args[@]}"
    done
    prev_s=$s
done
echo "== done ($(date -u +%H:%M:%S)): $OUT"
