#!/usr/bin/env bash
# scripts/join_model.sh: on the device, keep the model parts that scripts/split_model.sh made and rebuild the file
# once both have arrived (docs/gpu.md). Each call copies the parts it finds under .model-parts/ to a stash that
# outlives the call (/tmp stays while the machine is warm); when both parts are in the stash, it joins them,
# checks the sha256 of the whole and writes the model.
#
#   scripts/join_model.sh                  # call 1 (carry .model-parts/1): stash part 1
#                                          # call 2 (carry .model-parts/2): stash part 2, join, check, write
#   scripts/join_model.sh --dest DIR       # where the model goes (default: the repo's models/)
#   scripts/join_model.sh --stash DIR      # default /tmp/headsweep-model-parts
#
# Exit status: 0 when the model is there (joined now or earlier) or when a part was stashed and the other is still
# to come (it says which); 1 on a checksum mismatch or a missing input.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
parts="$ROOT/.model-parts"
stash=/tmp/headsweep-model-parts
dest="$ROOT/models"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --parts) parts="$2"; shift ;;
        --stash) stash="$2"; shift ;;
        --dest) dest="$2"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "join_model.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
die() { echo "join_model.sh: error: $*" >&2; exit 1; }
if [[ -L "$dest" && ! -e "$dest" ]]; then   # a link that points off this machine (a worktree's models/ link)
    echo "$dest is a dangling link; writing to /tmp/headsweep-model instead (.bundle/run.sh looks there too)"
    dest=/tmp/headsweep-model
fi

mkdir -p "$stash"
# Stash what this call carried (a part is copied when it is new or differs from the stashed one).
for d in 1 2; do
    for f in "$parts/$d"/*.part"$d" "$parts/$d"/*.sha256; do
        [[ -f "$f" ]] || continue
        t="$stash/$(basename "$f")"
        if ! cmp -s "$f" "$t"; then
            cp "$f" "$t.tmp" && mv "$t.tmp" "$t"
            echo "stashed $(basename "$f") in $stash"
        fi
    done
done

shopt -s nullglob
sums=("$stash"/*.sha256)
[[ ${#sums[@]} -gt 0 ]] || die "no part found under $parts/1 or $parts/2 and none stashed in $stash"
rc=0
for s in "${sums[@]}"; do
    read -r sha name < "$s"
    if [[ -f "$dest/$name" ]] && [[ "$(sha256sum "$dest/$name" | cut -d' ' -f1)" == "$sha" ]]; then
        echo "$dest/$name: present, sha256 ok"
        continue
    fi
    p1="$stash/$name.part1"
    p2="$stash/$name.part2"
    if [[ ! -f "$p1" || ! -f "$p2" ]]; then
        echo "$name: have $([[ -f "$p1" ]] && echo part 1 || echo part 2); carry .model-parts/$([[ -f "$p1" ]] && echo 2 || echo 1) next"
        continue
    fi
    mkdir -p "$dest"
    cat "$p1" "$p2" > "$dest/$name.tmp"
    got="$(sha256sum "$dest/$name.tmp" | cut -d' ' -f1)"
    if [[ "$got" != "$sha" ]]; then
        rm -f "$dest/$name.tmp"
        echo "join_model.sh: error: $name joined to sha256 $got, expected $sha (parts from different files?)" >&2
        rc=1
        continue
    fi
    mv "$dest/$name.tmp" "$dest/$name"
    echo "$dest/$name: joined, sha256 ok ($(stat -c %s "$dest/$name") bytes)"
done
exit $rc
