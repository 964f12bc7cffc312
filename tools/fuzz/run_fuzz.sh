#!/usr/bin/env bash
# tools/fuzz/run_fuzz.sh: build the GGUF reader fuzzer with clang-14 (libFuzzer + ASan + UBSan) and run it.
# Not part of CI. Usage: tools/fuzz/run_fuzz.sh [seconds=60] [extra libFuzzer args...]
# Work files go to build-fuzz/ (git-ignored via /build*/): the binary, the corpus, and any crash-* reproducers.
# Reproduce a finding: build-fuzz/gguf_fuzz build-fuzz/crash-<hash>
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN="${1:-60}"
shift || true
OUT=build-fuzz
CXX="${CXX:-clang++-14}"
mkdir -p "$OUT/corpus"

SOURCES=(src/gguf/*.cpp src/util/*.cpp)
FLAGS=(-std=c++20 -O1 -g -fno-omit-frame-pointer -Isrc)
echo "building $OUT/gguf_fuzz with $CXX"
"$CXX" "${FLAGS[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    "${SOURCES[@]}" tools/fuzz/gguf_fuzz.cpp -o "$OUT/gguf_fuzz"
"$CXX" "${FLAGS[@]}" "${SOURCES[@]}" tools/fuzz/make_seeds.cpp -o "$OUT/make_seeds"

# Seeds: small writer-made files, plus the first 4 KiB of the real model when present (real key layout).
"$OUT/make_seeds" "$OUT/corpus"
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [[ -f "$MODEL" ]]; then head -c 4096 "$MODEL" > "$OUT/corpus/model_head_4k.gguf"; fi

echo "fuzzing for ${SECONDS_TO_RUN}s"
# -rss_limit_mb: the reader must not allocate absurdly; -max_len keeps inputs small enough to mutate quickly.
"$OUT/gguf_fuzz" "$OUT/corpus" -max_total_time="$SECONDS_TO_RUN" -max_len=16384 -rss_limit_mb=1024 \
    -timeout=10 -artifact_prefix="$OUT/" -print_final_stats=1 "$@"
