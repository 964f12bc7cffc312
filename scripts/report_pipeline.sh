#!/usr/bin/env bash
# scripts/report_pipeline.sh: the results report's pipeline for one model (sweep -> train -> eval steps) through
# slurm/submit --kind pipeline, on a local one-node SLURM when none is reachable (slurm/local/start.sh; root).
#
#   scripts/report_pipeline.sh smollm2|gemma3 [-n RANKS] [--dry-run]
#
# Jobs: jobs/report/<model>-{sweep,train,eval-rag,eval-nq}.toml; outputs under results/report/<model>/. Every step
# resumes (sweep and eval from their files, train from its checkpoint), so re-running this after a stop -- a killed
# job, a lost cluster, a new session -- continues the work; a finished step is left as it is.
# Env: SLURM_BASE (the local cluster's directory, default /tmp/headsweep-slurm), HEADSWEEP (default build/headsweep).
# Then: squeue; the steps' logs are hs-*-<jobid>.out in the directory this ran from; docs/results.md from
# /usr/bin/python3 analysis/results_report.py --md docs/results.md --img docs/img/results.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: scripts/report_pipeline.sh smollm2|gemma3 [-n RANKS] [--dry-run]}
shift
[[ $model == smollm2 || $model == gemma3 ]] || { echo "report_pipeline: unknown model '$model' (smollm2 or gemma3)" >&2; exit 2; }
ranks=2; dry=()
while [[ $# -gt 0 ]]; do
    case $1 in
        -n) ranks=$2; shift ;;
        --dry-run) dry=(--dry-run) ;;
        *) echo "report_pipeline: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
done
J=jobs/report/$model
for f in $J-sweep.toml $J-train.toml $J-eval-rag.toml $J-eval-nq.toml; do
    [[ -f $f ]] || { echo "report_pipeline: $f missing" >&2; exit 2; }
done
mkdir -p results/report/$model
if [[ ${#dry[@]} -eq 0 ]] && ! sinfo -h >/dev/null 2>&1; then
    export SLURM_BASE=${SLURM_BASE:-/tmp/headsweep-slurm}
    if [[ -f $SLURM_BASE/env.sh ]]; then source "$SLURM_BASE/env.sh"; fi
    if ! sinfo -h >/dev/null 2>&1; then
        echo "report_pipeline: starting a local SLURM under $SLURM_BASE" >&2
        NODE_CPUS=${NODE_CPUS:-$ranks} slurm/local/start.sh
        source "$SLURM_BASE/env.sh"
    fi
fi
if [[ ${#dry[@]} -eq 0 ]]; then
    queued=$(squeue -h -n "hs-report-$model" -o %i 2>/dev/null | tr '\n' ' ')
    [[ -z $queued ]] || { echo "report_pipeline: the $model pipeline is already queued or running (jobs $queued); wait for it, or scancel them first" >&2; exit 2; }
fi
unset OPENBLAS_CORETYPE
slurm/submit --kind pipeline -n "$ranks" --job-name "hs-report-$model" "${dry[@]}" --train-job $J-train.toml \
    --eval-job $J-eval-rag.toml --eval-job $J-eval-nq.toml $J-sweep.toml
