#!/bin/bash
# bench/bench_share_clean_runs.sh BUILD_DIR [OUT_DIR]: wall seconds of the distributed sweep with clean runs shared and not
# (share_clean_runs), 1, 2 and 4 ranks, two interleaved rounds, SmolLM2-135M Q4_1, settings 20x50 and 100x10, items of
# 3 heads, 1 thread per rank; checks that the files are equal (h5diff). README "How big a sweep one job can take".
unset OPENBLAS_CORETYPE SLURM_NTASKS
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1
HS=$(cd "${1:?usage: bench_share_clean_runs.sh BUILD_DIR [OUT_DIR]}" && pwd)/headsweep
M=$(cd "$(dirname "$0")/.." && pwd)/models/SmolLM2-135M-Instruct.Q4_1.gguf
OUT=${2:-$(mktemp -d /tmp/headsweep_share_XXXXXX)}; mkdir -p "$OUT"; cd "$OUT"
for round in 1 2; do
for np in 1 2 4; do
  for share in false true; do
    uptime | sed 's/.*load/load/' > load.txt
    s=$(date +%s.%N)
    if [[ $np == 1 ]]; then cmd=(nice -n 10 $HS sweep --mpi); else cmd=(nice -n 10 mpirun -n $np $HS sweep); fi
    "${cmd[@]}" -m $M --settings 20x50,100x10 --heads-per-item 3 -t 1 --share-clean-runs $share -o np$np-$share.h5 --overwrite > out-$np-$share.txt 2> err-$np-$share.txt
    rc=$?
    e=$(date +%s.%N)
    echo "round $round np $np share $share rc $rc wall $(echo "$e - $s" | bc) s; $(cat load.txt); $(grep -h 'clean runs computed' err-$np-$share.txt)"
  done
  h5diff --exclude-path /run np$np-false.h5 np$np-true.h5 >/dev/null && echo "np $np: shared == unshared file" || echo "np $np: FILES DIFFER"
done
done
h5diff --exclude-path /run np1-false.h5 np4-true.h5 >/dev/null && echo "np1 unshared == np4 shared" || echo "np1 vs np4 DIFFER"
