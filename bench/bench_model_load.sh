#!/usr/bin/env bash
# bench/bench_model_load.sh MODEL.gguf [BUILD_DIR]: model load time with 1, 2 and 4 ranks, the file read by every
# rank against once per node (bench_model_load.cpp), one table.
set -euo pipefail
MODEL=${1:?usage: bench_model_load.sh MODEL.gguf [BUILD_DIR]}
BUILD=${2:-build}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
printf "%-6s %10s %16s %16s %14s %14s\n" ranks file_MB per_rank_read_s per_node_read_s per_rank_MB per_node_MB
for n in 1 2 4; do
    line=$(mpirun --oversubscribe -n $n "$BUILD/headsweep_bench_model_load" "$MODEL" --repeat "${REPEAT:-3}" | tail -1)
    python3 -c "import json,sys; d=json.loads(sys.argv[1]); print('%-6d %10.1f %16.3f %16.3f %14.1f %14.1f' % (d['ranks'], d['file_mb'], d['per_rank_read_s'], d['per_node_read_s'], d['per_rank_read_mb'], d['per_node_read_mb']))" "$line"
done
