#!/usr/bin/env bash
# scripts/split_model.sh: cut a model file into two halves small enough for two device calls (docs/gpu.md).
#
#   scripts/split_model.sh                       # models/SmolLM2-135M-Instruct.Q4_1.gguf -> .model-parts/
#   scripts/split_model.sh --model FILE --out DIR
#
# Writes DIR/1/<name>.part1 and DIR/2/<name>.part2 (each < 60 MiB; a file larger than 2 x 60 MiB is refused) and
# DIR/{1,2}/<name>.sha256, the sha256 of the whole file, next to each part. .model-parts/ is git-ignored: carry
# ".model-parts/1" in one call and ".model-parts/2" in the next, then scripts/join_model.sh rebuilds the file there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model="$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"
out="$ROOT/.model-parts"
max_part=$((60 * 1048576))
while [[ $# -gt 0 ]]; do
    case "$1" in
        --model) model="$2"; shift ;;
        --out) out="$2"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "split_model.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
die() { echo "split_model.sh: error: $*" >&2; exit 1; }

[[ -f "$model" ]] || die "$model is missing (scripts/fetch_model.sh fetches the default model)"
name="$(basename "$model")"
size=$(stat -L -c %s "$model")
half=$(( (size + 1) / 2 ))
(( half < max_part )) || die "$name is $size bytes: two parts would be over 60 MiB each"
sha="$(sha256sum "$model" | cut -d' ' -f1)"

rm -rf "$out/1" "$out/2"
mkdir -p "$out/1" "$out/2"
head -c "$half" "$model" > "$out/1/$name.part1"
tail -c +"$((half + 1))" "$model" > "$out/2/$name.part2"
for d in 1 2; do echo "$sha  $name" > "$out/$d/$name.sha256"; done
# Check here what join_model.sh will check there.
[[ "$(cat "$out/1/$name.part1" "$out/2/$name.part2" | sha256sum | cut -d' ' -f1)" == "$sha" ]] ||
    die "the parts do not rebuild the file"
echo "$name: $size bytes, sha256 $sha"
for f in "$out/1/$name.part1" "$out/2/$name.part2"; do printf '  %10d  %s\n' "$(stat -c %s "$f")" "$f"; done
echo "carry \"$(realpath --relative-to="$ROOT" "$out")/1\" in one device call and \"$(realpath --relative-to="$ROOT" "$out")/2\" in the next (docs/gpu.md)"
