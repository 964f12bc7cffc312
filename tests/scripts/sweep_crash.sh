#!/usr/bin/env bash
# tests/scripts/sweep_crash.sh BUILD_DIR: crash safety of the sweep file as a guarantee (ctest sweep_crash).
#
# The writer is ended (_exit, test hook HEADSWEEP_TEST_EXIT_AT_WRITE=k) at its k-th write boundary, for every k of
# a small sweep (file and journal made; per commit: before the journal sync, after it, after the HDF5 writes, after
# the flush; finish: before and after its flush), then resumed; every resumed file must equal the uninterrupted
# run's bit for bit (h5diff --exclude-path /run) and leave no journal behind.
#   1. single process, items of 2 heads; each crashed run is resumed once with the same hook (a crash during the
#      resume, when it reaches boundary k) and then to the end.
#   2. MPI, 2 ranks (rank 0 writes one commit per message), each k resumed once.
set -uo pipefail
BUILD=$(cd "${1:?usage: sweep_crash.sh BUILD_DIR}" && pwd)
HS=$BUILD/headsweep
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
unset SLURM_NTASKS HEADSWEEP_TEST_EXIT_AT_WRITE
W=$(mktemp -d /tmp/headsweep_crash_XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W"
fails=0
bad() { echo "FAIL - $*"; fails=$((fails + 1)); }
same() { h5diff --exclude-path /run "$1" "$2" >/dev/null 2>&1; }

JOB=(-m random:tiny --settings 3x4,4x3 --seed 9 --heads-per-item 2 -t 1 -q)
"$HS" sweep "${JOB[@]}" -o ref.h5 >/dev/null 2>ref.err || { cat ref.err; echo "FAIL - reference run"; exit 1; }
[[ -e ref.h5.journal ]] && bad "the complete reference file left its journal"

check_resumed() {  # name file
    same ref.h5 "$2" || bad "$1: resumed file differs from the uninterrupted run"
    [[ -e "$2.journal" ]] && bad "$1: a journal is left beside the complete file"
}

# -- 1: single process
k=1
while :; do
    rm -f sp.h5 sp.h5.*
    HEADSWEEP_TEST_EXIT_AT_WRITE=$k "$HS" sweep "${JOB[@]}" -o sp.h5 >/dev/null 2>run.err
    rc=$?
    if [[ $rc == 0 ]]; then break; fi  # k is past the last boundary: the run completed
    [[ $rc == 86 ]] || { bad "single process, boundary $k: exit status $rc, not the hook's 86"; tail -3 run.err; }
    HEADSWEEP_TEST_EXIT_AT_WRITE=$k "$HS" sweep "${JOB[@]}" -o sp.h5 --resume >/dev/null 2>run.err
    rc=$?
    [[ $rc == 0 || $rc == 86 ]] || { bad "single process, boundary $k: first resume exit status $rc"; tail -3 run.err; }
    "$HS" sweep "${JOB[@]}" -o sp.h5 --resume >/dev/null 2>run.err || { bad "single process, boundary $k: resume failed"; tail -3 run.err; }
    check_resumed "single process, boundary $k" sp.h5
    k=$((k + 1))
    [[ $k -gt 500 ]] && { bad "single process: the hook never let the run finish"; break; }
done
n_sp=$((k - 1))
[[ $n_sp -ge 20 ]] || bad "single process: only $n_sp write boundaries (expected one per commit step)"
echo "single process: killed at each of $n_sp write boundaries, every resume equal to the uninterrupted run"

# -- 2: MPI, 2 ranks
k=1
while :; do
    rm -f mp.h5 mp.h5.*
    HEADSWEEP_TEST_EXIT_AT_WRITE=$k mpirun -x HEADSWEEP_TEST_EXIT_AT_WRITE -n 2 "$HS" sweep "${JOB[@]}" -o mp.h5 \
        >/dev/null 2>run.err
    rc=$?
    if [[ $rc == 0 ]]; then break; fi
    mpirun -n 2 "$HS" sweep "${JOB[@]}" -o mp.h5 --resume >/dev/null 2>run.err || { bad "mpi, boundary $k: resume failed"; tail -3 run.err; }
    check_resumed "mpi, boundary $k" mp.h5
    k=$((k + 1))
    [[ $k -gt 500 ]] && { bad "mpi: the hook never let the run finish"; break; }
done
n_mp=$((k - 1))
[[ $n_mp -ge 6 ]] || bad "mpi: only $n_mp write boundaries"
echo "mpi (2 ranks): killed at each of $n_mp write boundaries, every resume equal to the uninterrupted run"
[[ $fails == 0 ]] && echo "sweep_crash: all passed" || echo "sweep_crash: $fails failed"
exit $((fails > 0))
