#!/usr/bin/env bash
# tests/scripts/dist_faults.sh BUILD_DIR: fault tests of the distributed sweep (ctest dist_faults).
#
#   1. SIGKILL a worker mid-sweep (test hook HEADSWEEP_TEST_KILL_AT=1:N, with HEADSWEEP_TEST_COORDINATOR_WORKS=0 so
#      that rank 0 cannot finish the sweep before the worker reaches item N): the job fails with a clear error,
#      the file is readable and not complete; a --resume run completes it and equals an uninterrupted run.
#   2. SIGKILL the coordinator just before its N-th write (hook 0:N): same.
#   3. SIGKILL the coordinator from outside at random moments while it writes (twice): the file is readable
#      after each kill, and resume completes it to the uninterrupted run's file.
#   4. Unwritable output (the output directory is a regular file): refused before any work, no file.
#   5. Full disk (a 64 KiB tmpfs, when this machine lets us mount one): refused before any work.
# Every process this script starts is killed by PID on exit.
set -uo pipefail
BUILD=$(cd "${1:?usage: dist_faults.sh BUILD_DIR}" && pwd)
HS=$BUILD/headsweep
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
unset SLURM_NTASKS
W=$(mktemp -d /tmp/headsweep_faults_XXXXXX)
MNT=""
BG=""
cleanup() {
    [[ -n "$BG" ]] && kill -KILL "$BG" 2>/dev/null
    [[ -n "$MNT" ]] && umount "$MNT" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT
cd "$W"
fails=0
ok() { echo "ok   - $*"; }
bad() { echo "FAIL - $*"; fails=$((fails + 1)); }

MODEL=random:smollm2-135m
JOB=(-m "$MODEL" --settings 2x3,3x4 --seed 5)
readable() { h5dump -d /done "$1" >/dev/null 2>&1; }
complete() { [[ "$(h5dump -a /complete "$1" 2>/dev/null | grep -o '(0): [0-9]*')" == "(0): 1" ]]; }
same() { h5diff --exclude-path /run "$1" "$2" >/dev/null 2>&1; }

t0=$SECONDS
"$HS" sweep "${JOB[@]}" -t 1 -q -o ref.h5 >/dev/null 2>ref.err || { cat ref.err; bad "reference run"; exit 1; }
ok "reference run ($((SECONDS - t0)) s)"

# -- 1 and 2: kill hooks
for who in 1 0; do
    name=$([[ $who == 0 ]] && echo coordinator || echo worker)
    out=kill$who.h5
    # (worker case: rank 0 does not score items, so the worker surely reaches its 3rd item)
    HEADSWEEP_TEST_KILL_AT=$who:$([[ $who == 0 ]] && echo 9 || echo 3) HEADSWEEP_TEST_COORDINATOR_WORKS=$who \
        mpirun -x HEADSWEEP_TEST_KILL_AT -x HEADSWEEP_TEST_COORDINATOR_WORKS -n 2 "$HS" sweep "${JOB[@]}" -o $out >run.out 2>run.err
    rc=$?
    if [[ $rc != 0 ]] && grep -qiE "signal 9|killed" run.err; then ok "$name SIGKILL: job failed (rc $rc) naming the signal"
    else bad "$name SIGKILL: rc $rc"; tail -5 run.err; fi
    readable $out && ok "$name SIGKILL: file readable" || bad "$name SIGKILL: file not readable"
    complete $out && bad "$name SIGKILL: file claims complete" || ok "$name SIGKILL: file not marked complete"
    mpirun -n 2 "$HS" sweep "${JOB[@]}" -q -o $out --resume >run.out 2>run.err || { tail -5 run.err; bad "$name resume rc"; }
    grep -q "(resumed)" run.out && ok "$name: resumed" || bad "$name: no '(resumed)' in: $(cat run.out)"
    same ref.h5 $out && ok "$name: resumed file equals the uninterrupted run" || bad "$name: resumed file differs"
done

# -- 3: external SIGKILL of rank 0 at random moments while it writes
out=rand.h5
for delay in 0.3 0.6; do
    extra=()
    [[ -e $out ]] && extra=(--resume)
    mpirun -n 2 "$HS" sweep "${JOB[@]}" -q -o $out "${extra[@]}" >run.out 2>run.err &
    BG=$!
    rank0=""
    for i in $(seq 100); do  # rank 0's pid: the headsweep child whose environment says rank 0
        for p in $(pgrep -P $BG 2>/dev/null); do  # by parent only: a re-executed rank is named "exe"
            grep -qxz OMPI_COMM_WORLD_RANK=0 /proc/$p/environ 2>/dev/null && rank0=$p
        done
        [[ -n $rank0 ]] && break
        sleep 0.05
    done
    # wait for a write into the file (its mtime changes), then kill a moment later, while items keep arriving
    m0=$(stat -c %.9Y $out 2>/dev/null || echo none)
    for i in $(seq 400); do
        m=$(stat -c %.9Y $out 2>/dev/null || echo none); [[ $m != "$m0" && $m != none ]] && break; sleep 0.05
    done
    sleep $delay
    [[ -n $rank0 ]] && kill -KILL $rank0 2>/dev/null
    wait $BG
    rc=$?
    BG=""
    [[ -n $rank0 ]] || bad "random kill: rank 0 not found"
    ndone=$(h5dump -d /done $out 2>/dev/null | sed -n '/DATA {/,/}/p' | grep -o '[01]' | grep -c 1)
    readable $out && ok "coordinator killed after ${delay}s (rc $rc, $ndone of 60 items done): file readable" \
                  || bad "coordinator killed after ${delay}s: file not readable"
done
mpirun -n 2 "$HS" sweep "${JOB[@]}" -q -o $out --resume >run.out 2>run.err || { tail -5 run.err; bad "random kills: resume rc"; }
same ref.h5 $out && ok "random kills: resumed file equals the uninterrupted run" || bad "random kills: file differs"

# -- 4: unwritable output
echo x >not-a-dir
mpirun -n 2 "$HS" sweep "${JOB[@]}" -q -o not-a-dir/out.h5 >run.out 2>run.err
rc=$?
[[ $rc != 0 ]] && grep -q "not-a-dir" run.err && ok "unwritable output refused: $(grep -m1 error run.err)" \
    || bad "unwritable output: rc $rc, $(cat run.err)"

# -- 5: full disk
mkdir -p small && if mount -t tmpfs -o size=64k tmpfs small 2>/dev/null; then
    MNT=$W/small
    head -c 60000 /dev/zero >small/filler 2>/dev/null
    mpirun -n 2 "$HS" sweep "${JOB[@]}" -q -o small/out.h5 >run.out 2>run.err
    rc=$?
    [[ $rc != 0 ]] && grep -q "full disk" run.err && ok "full disk refused before work: $(grep -m1 error run.err)" \
        || bad "full disk: rc $rc, $(cat run.err)"
    [[ -e small/out.h5 ]] && bad "full disk: a file was left" || ok "full disk: no file left"
    umount small && MNT=""
else
    echo "skip - full disk (cannot mount a tmpfs here)"
fi

echo "dist_faults: $fails failure(s) in $((SECONDS - t0)) s"
[[ $fails == 0 ]]
