#!/usr/bin/env bash
# tests/scripts/gpu_tools.sh: cheap checks of the GPU-machine tooling that need neither a GPU nor a CUDA build
# (ctest gpu_tools; docs/gpu.md):
#   1. the scripts parse (bash -n), and their --help works;
#   2. split_model.sh / join_model.sh round trip on a small file across two simulated device calls, and a
#      corrupted part is refused;
#   3. bench/bench_gpu.py --dry-run builds every item's commands, for both ways of starting ours.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
W="$(mktemp -d /tmp/headsweep_gpu_tools_XXXXXX)"
trap 'rm -rf "$W"' EXIT
fail() { echo "gpu_tools.sh: FAILED: $*" >&2; exit 1; }

# 1.
for s in gpu_bundle.sh gpu_bundle_chroot.sh split_model.sh join_model.sh; do
    bash -n "$ROOT/scripts/$s" || fail "$s does not parse"
done
for s in gpu_bundle.sh split_model.sh join_model.sh; do
    "$ROOT/scripts/$s" --help | grep -q "$s" || fail "$s --help"
done

# 2.
head -c 1000001 /dev/urandom > "$W/m.gguf"
"$ROOT/scripts/split_model.sh" --model "$W/m.gguf" --out "$W/parts" > /dev/null
mkdir -p "$W/call1/1" "$W/call2/2"
cp "$W/parts/1/"* "$W/call1/1/"
cp "$W/parts/2/"* "$W/call2/2/"
j=("$ROOT/scripts/join_model.sh" --stash "$W/stash" --dest "$W/models")
"${j[@]}" --parts "$W/call1" | grep -q "carry .model-parts/2 next" || fail "join after part 1"
[[ ! -e "$W/models/m.gguf" ]] || fail "joined with one part"
"${j[@]}" --parts "$W/call2" | grep -q "joined, sha256 ok" || fail "join after part 2"
cmp -s "$W/m.gguf" "$W/models/m.gguf" || fail "the joined file differs"
rm "$W/models/m.gguf"
printf 'x' | dd of="$W/stash/m.gguf.part2" bs=1 seek=10 conv=notrunc 2> /dev/null
if "${j[@]}" --parts "$W/none" > /dev/null 2>&1; then fail "a corrupted part was accepted"; fi
[[ ! -e "$W/models/m.gguf" ]] || fail "a corrupted join left a file"

# 3.
mkdir -p "$W/bin" "$W/peers"
touch "$W/peers/torch_sweep.py" "$W/peers/torch_path_sweep.py"
all=total-smollm2,total-llama3,path-smollm2,path-llama3,prefill-llama3,prefill-smollm2
out="$(python3 "$ROOT/bench/bench_gpu.py" --dry-run --only "$all" --ours "$W/bin" --peers "$W/peers")"
[[ $(grep -c '^[a-z0-9-]* ours: ' <<< "$out") -eq 6 && $(grep -c '^[a-z0-9-]* peer: ' <<< "$out") -eq 6 ]] || fail "bench_gpu.py: $out"
grep -q "^total-llama3 ours: $W/bin/headsweep sweep --model random:llama3-8b --device cuda --mode total --settings 16x256 " \
    <<< "$out" || fail "bench_gpu.py total-llama3 command: $out"
grep -q "^prefill-llama3 ours: $W/bin/headsweep_bench_engine random:llama3-8b --device cuda " <<< "$out" ||
    fail "bench_gpu.py prefill command: $out"
out="$(python3 "$ROOT/bench/bench_gpu.py" --dry-run --quick --no-peer --ours "$W/run.sh")"
grep -q "^path-smollm2 ours: $W/run.sh headsweep sweep " <<< "$out" || fail "bench_gpu.py through run.sh: $out"
if python3 "$ROOT/bench/bench_gpu.py" --dry-run --only nonsense > /dev/null 2>&1; then fail "unknown item accepted"; fi
echo "gpu_tools: ok"
