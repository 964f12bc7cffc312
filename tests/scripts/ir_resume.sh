#!/usr/bin/env bash
# tests/scripts/ir_resume.sh BUILD_DIR: an InfiniRetri answer stopped in the middle of its document goes on from its
# saved reading state with `eval --resume`, to the record an uninterrupted run writes (ctest ir_resume).
#
# A niah cell on random:tiny read in many small chunks (a state every 32 chunks). The process is ended (_exit 86, test
# hook HEADSWEEP_TEST_IR_EXIT_AFTER_STATE=k) right after saving its k-th state, for k = 1, 2 and once more during the
# resume; each resumed file must hold the uninterrupted run's answers (output, score, and detail but its times), its
# detail must say where it went on from, and no state may be left beside the complete file.
set -uo pipefail
BUILD=$(cd "${1:?usage: ir_resume.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
HS=$BUILD/headsweep
unset HEADSWEEP_TEST_IR_EXIT_AFTER_STATE SLURM_NTASKS
W=$(mktemp -d /tmp/headsweep_ir_resume_XXXXXX)
trap 'rm -rf "$W"' EXIT
cd "$W"
fails=0
bad() { echo "FAIL - $*"; fails=$((fails + 1)); }

JOB=(eval -m random:tiny --tasks niah --niah-lengths 9000 --niah-depths 50 --methods infiniretri,vanilla
     --ir-chunk 96 --ir-topk 8 --data-dir "$SRC/tests/fixtures/eval_data" --max-new-tokens 3 -t 1)
# the answers without their times (and without where a resumed answer went on from)
answers() {
    for d in method id output score detail; do h5dump -d /records/$d "$1" | sed -n '/DATA {/,/}/p'; done |
        sed -E 's/"(read_s|answer_s|prefill_s|decode_s|resumed_from_chunk)":[0-9.eE+-]*,//g'
}
"$HS" "${JOB[@]}" -o ref.h5 >/dev/null 2>ref.err || { cat ref.err; echo "FAIL - reference run"; exit 1; }
answers ref.h5 > ref.txt
chunks=$(grep -o '"chunks":[0-9]*' ref.txt | head -1 | grep -o '[0-9]*$')
[[ ${chunks:-0} -gt 70 ]] || bad "the reference cell read ${chunks:-no} chunks; the test needs > 70 (states after 32 and 64)"
[[ -e ref.h5.state ]] && bad "the complete reference file left a state folder"

for k in 1 2; do
    rm -rf run.h5 run.h5.*
    HEADSWEEP_TEST_IR_EXIT_AFTER_STATE=$k "$HS" "${JOB[@]}" -o run.h5 >/dev/null 2>run.err
    rc=$?
    [[ $rc == 86 ]] || { bad "state $k: exit status $rc, not the hook's 86"; tail -3 run.err; continue; }
    ls run.h5.state/infiniretri-*.state >/dev/null 2>&1 || bad "state $k: no state file after the stop"
    if [[ $k == 1 ]]; then  # stopped again during the resume, after the resume's own first state
        HEADSWEEP_TEST_IR_EXIT_AFTER_STATE=1 "$HS" "${JOB[@]}" -o run.h5 --resume >/dev/null 2>run.err
        rc=$?
        [[ $rc == 86 ]] || { bad "state $k: the hooked resume's exit status $rc"; tail -3 run.err; }
    fi
    "$HS" "${JOB[@]}" -o run.h5 --resume >/dev/null 2>run.err || { bad "state $k: resume failed"; tail -3 run.err; continue; }
    grep -q "going on from chunk" run.err || bad "state $k: the resume did not go on from the saved state"
    answers run.h5 > run.txt
    h5dump -d /records/detail run.h5 | grep -q '"resumed_from_chunk":64' || bad "state $k: the record does not say it went on from chunk 64"
    cmp -s ref.txt run.txt || { bad "state $k: the resumed answers differ from the uninterrupted run"; diff ref.txt run.txt | head -5; }
    [[ -e run.h5.state ]] && bad "state $k: a state folder is left beside the complete file"
done

# a damaged state is reported and the document read from its start, to the same answer
rm -rf run.h5 run.h5.*
HEADSWEEP_TEST_IR_EXIT_AFTER_STATE=1 "$HS" "${JOB[@]}" -o run.h5 >/dev/null 2>&1
for f in run.h5.state/infiniretri-*.state; do head -c 90 "$f" > "$f.cut" && mv "$f.cut" "$f"; done
"$HS" "${JOB[@]}" -o run.h5 --resume >/dev/null 2>run.err || { bad "damaged state: resume failed"; tail -3 run.err; }
grep -q "InfiniRetri state" run.err || bad "damaged state: no warning naming it"
answers run.h5 > run.txt
cmp -s ref.txt run.txt || bad "damaged state: the answers differ from the uninterrupted run"

[[ $fails == 0 ]] && echo "ir_resume: all passed" || echo "ir_resume: $fails failed"
exit $((fails > 0))
