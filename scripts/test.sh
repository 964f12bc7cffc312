#!/usr/bin/env bash
# scripts/test.sh: install everything, build, and run the test suite (this is what CI runs, via .ci/run).
#
#   scripts/test.sh                 # setup.sh, then ctest without the opt-in tests
#   scripts/test.sh --slow          # also the tests tagged [slow]
#   scripts/test.sh --gpu           # also the tests tagged [gpu] (needs a CUDA build and a GPU)
#   scripts/test.sh -- -R h5        # extra arguments after -- go to ctest
#
# Catch tags map to CTest labels (see CMakeLists.txt): [slow] -> slow, [gpu] -> gpu. Both are excluded unless
# asked for, by flag or by HEADSWEEP_TEST_SLOW=1 / HEADSWEEP_TEST_GPU=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

slow="${HEADSWEEP_TEST_SLOW:-0}"
gpu="${HEADSWEEP_TEST_GPU:-0}"
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --slow) slow=1 ;;
        --gpu) gpu=1 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "test.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

start=$SECONDS
"$ROOT/scripts/setup.sh"

exclude=()
[[ "$slow" == 1 ]] || exclude+=(slow)
[[ "$gpu" == 1 ]] || exclude+=(gpu)
label_args=()
if [[ ${#exclude[@]} -gt 0 ]]; then
    label_args=(-LE "^($(IFS='|'; echo "${exclude[*]}"))\$")
fi

build="${HEADSWEEP_BUILD_DIR:-build}"
echo
echo "== tests (excluding labels: ${exclude[*]:-none})"
echo "+ ctest --test-dir $build --output-on-failure -j2 ${label_args[*]} ${extra[*]}"
rc=0
ctest --test-dir "$build" --output-on-failure -j2 "${label_args[@]}" "${extra[@]}" || rc=$?
echo
echo "== test.sh finished in $((SECONDS - start)) s, exit status $rc"
exit $rc
