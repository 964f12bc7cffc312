#!/usr/bin/env bash
# tests/scripts/cpu_runtime.sh BUILD_DIR: the BLAS core check end to end, through the real program (ctest
# cpu_runtime). A fallback is forced with OPENBLAS_CORETYPE=Prescott (what Debian's OpenBLAS 0.3.21 picks by itself on
# Intel Emerald Rapids), then:
#   1. kept as the user's choice: `info --machine` says WEAKER and a warning names the better core;
#   2. HEADSWEEP_BLAS_CORETYPE=best: the program re-executes itself and runs the best core, saying it replaced Prescott;
#   3. HEADSWEEP_BLAS_CORETYPE=off: no warning, Prescott stays; a bad value is named in a warning;
#   4. the same re-execution under mpiexec with 2 ranks, through a tiny sweep whose file records the core;
#   5. the unforced program runs a core as strong as the CPU allows (unless OPENBLAS_CORETYPE is set around us).
# Exit 77 (skipped) on a CPU without AVX, where nothing beats Prescott.
set -euo pipefail
BUILD="$(cd "${1:?usage: cpu_runtime.sh BUILD_DIR}" && pwd)"
HS="$BUILD/headsweep"
W="$(mktemp -d /tmp/headsweep_cpu_runtime_XXXXXX)"
trap 'rm -rf "$W"' EXIT
fail() { echo "cpu_runtime.sh: FAILED: $*" >&2; exit 1; }
core_line() { grep '^blas core' "$1" | sed 's/^blas core *//'; }

env -u HEADSWEEP_BLAS_CORETYPE -u OPENBLAS_CORETYPE "$HS" info --machine > "$W/plain" 2> "$W/plain.err" \
    || fail "info --machine: $(cat "$W/plain.err")"
cat "$W/plain"
best=$(grep -o 'WEAKER than this CPU allows: [A-Za-z]*' "$W/plain" | awk '{print $NF}' || true)
[[ -n "$best" ]] || best=$(core_line "$W/plain" | awk '{print $1}')
case "$best" in
    Cooperlake|SkylakeX|Haswell|Zen|Sandybridge) ;;
    *) echo "cpu_runtime.sh: SKIPPED: no core better than Prescott for this CPU ($(core_line "$W/plain"))"; exit 77 ;;
esac
echo "best core for this CPU: $best"

# 1. The user's choice is kept, and said to be weaker.
OPENBLAS_CORETYPE=Prescott env -u HEADSWEEP_BLAS_CORETYPE "$HS" info --machine > "$W/user" 2> "$W/user.err"
core_line "$W/user" | grep -q "^Prescott (OPENBLAS_CORETYPE from the environment; WEAKER than this CPU allows: " \
    || fail "forced Prescott: $(core_line "$W/user")"
grep -q "warning: OPENBLAS_CORETYPE=Prescott (set in the environment)" "$W/user.err" || fail "no warning: $(cat "$W/user.err")"

# 2. best: re-executed with the best core.
OPENBLAS_CORETYPE=Prescott HEADSWEEP_BLAS_CORETYPE=best "$HS" info --machine > "$W/best" 2> "$W/best.err"
core_line "$W/best" | grep -Eq "^[A-Za-z]+ \(chosen by headsweep, replacing the library's Prescott, the best for this CPU\)" \
    || fail "best: $(core_line "$W/best") / $(cat "$W/best.err")"
[[ ! -s "$W/best.err" ]] || fail "best printed: $(cat "$W/best.err")"

# 3. off, and a bad value.
OPENBLAS_CORETYPE=Prescott HEADSWEEP_BLAS_CORETYPE=off "$HS" info --machine > "$W/off" 2> "$W/off.err"
core_line "$W/off" | grep -q "^Prescott" || fail "off: $(core_line "$W/off")"
[[ ! -s "$W/off.err" ]] || fail "off printed: $(cat "$W/off.err")"
HEADSWEEP_BLAS_CORETYPE=fastest "$HS" info --machine > /dev/null 2> "$W/bad.err"
grep -q "HEADSWEEP_BLAS_CORETYPE=fastest is not one of auto, off, best" "$W/bad.err" || fail "bad value: $(cat "$W/bad.err")"

# 4. Under MPI: both ranks re-execute before MPI_Init; the sweep file records the core that computed it.
cat > "$W/job.toml" <<EOF
model = "random:tiny"
settings = [{N = 4, n = 6}]
output = "$W/sweep.h5"
EOF
OPENBLAS_CORETYPE=Prescott HEADSWEEP_BLAS_CORETYPE=best OMPI_MCA_rmaps_base_oversubscribe=1 \
    mpiexec -n 2 "$HS" sweep "$W/job.toml" --threads 1 > "$W/mpi.out" 2>&1 || fail "mpi sweep: $(cat "$W/mpi.out")"
grep -q "blas $best" "$W/mpi.out" || fail "the progress lines do not name the core: $(cat "$W/mpi.out")"
h5dump -a /blas_core "$W/sweep.h5" > "$W/attr" || fail "no blas_core attribute in the sweep file"
grep -q "$best (chosen by headsweep, replacing the library's Prescott" "$W/attr" || fail "attribute: $(cat "$W/attr")"

# 5. Unforced: the library's own choice, or ours, is as strong as the CPU allows.
if [[ -z "${OPENBLAS_CORETYPE:-}" ]]; then
    core_line "$W/plain" | grep -q WEAKER && fail "unforced run is weaker than the CPU allows: $(core_line "$W/plain")"
fi
echo "cpu_runtime.sh: all checks passed"
