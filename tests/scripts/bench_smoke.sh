#!/usr/bin/env bash
# tests/scripts/bench_smoke.sh BUILD_DIR: every bench/ driver runs end to end and prints its table (ctest
# bench_smoke), so that a refactor cannot break one unseen. Tiny sizes (--smoke); a peer whose Python module is
# absent (CI has no bench venv) is replaced by a stub marked as such, the rest of the driver runs for real.
# bench/bench_gpu.py is covered by its --dry-run in tests/scripts/gpu_tools.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$(cd "${1:?usage: bench_smoke.sh BUILD_DIR}" && pwd)"
PY=/usr/bin/python3   # Debian's, with python3-h5py (scripts/setup.sh installs it)
cd "$ROOT"
W="$(mktemp -d /tmp/headsweep_bench_smoke_XXXXXX)"
trap 'rm -rf "$W"' EXIT
fail() { echo "bench_smoke.sh: FAILED: $*" >&2; exit 1; }
run() {  # NAME EXPECTED-TEXT COMMAND...
    local name=$1 expect=$2; shift 2
    "$@" > "$W/$name.out" 2> "$W/$name.err" || fail "$name exited $?: $(tail -5 "$W/$name.err")"
    grep -q "$expect" "$W/$name.out" || fail "$name printed no '$expect': $(cat "$W/$name.out")"
    echo "bench_smoke.sh: $name ok"
}
run bench_sweep "speed-up" "$PY" bench/bench_sweep.py --smoke --ours "$BUILD/headsweep_bench_sweep"
run bench_engine "prefill 32 tok, batch 1" "$PY" bench/bench_engine.py --smoke --ours "$BUILD/headsweep_bench_engine"
run bench_fold "decode tok/s" "$PY" bench/bench_fold.py --smoke --headsweep "$BUILD/headsweep" \
    --bench "$BUILD/headsweep_bench_engine"
run bench_blas_core "fallback / fixed = " "$PY" bench/bench_blas_core.py --smoke --headsweep "$BUILD/headsweep"
run bench_rtd "ids identical to one rank: True" "$PY" bench/bench_rtd.py --smoke --ours "$BUILD/headsweep_bench_rtd" \
    --headsweep "$BUILD/headsweep" --data-dir "$ROOT/tests/fixtures/rtd_data"
run bench_matmul_blocks '"op": "gemm"' "$BUILD/headsweep_bench_matmul_blocks" --smoke
run bench_sweep_writer "journal, 16/message" "$BUILD/headsweep_bench_sweep_writer" --layers 4 --heads 4 --results 40 \
    --rounds 1 --dir "$W"
run bench_item_costs '"kind":"item"' "$BUILD/headsweep_bench_item_costs" --shapes tiny --repeat 1
run bench_eval_speed "== done" env OUT="$W/eval_speed" HS="$BUILD/headsweep" bash bench/bench_eval_speed.sh --smoke
run simulate_sweep "llama3-70b" "$PY" tools/simulate_sweep.py --ranks 64,128
echo "bench_smoke.sh: all drivers ran"
