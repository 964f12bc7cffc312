#!/usr/bin/env bash
# scripts/run_main_job.sh: set up, then run the main job, the PEAR sweep of the default model.
#
#   scripts/run_main_job.sh                    # jobs/smollm2-pear.toml
#   scripts/run_main_job.sh jobs/other.toml    # another job file
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
job="${1:-jobs/smollm2-pear.toml}"
build="${HEADSWEEP_BUILD_DIR:-build}"

"$ROOT/scripts/setup.sh"

[[ -f "$job" ]] || { echo "run_main_job.sh: job file $job not found" >&2; exit 2; }

echo "+ $build/headsweep sweep $job"
exec "$build/headsweep" sweep "$job"
