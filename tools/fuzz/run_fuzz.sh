#!/usr/bin/env bash
# tools/fuzz/run_fuzz.sh: build a file-format fuzzer with clang-14 (libFuzzer + ASan + UBSan) and run it.
# Not part of CI. Usage: tools/fuzz/run_fuzz.sh [gguf|safetensors] [seconds=60] [extra libFuzzer args...]
# (the target defaults to gguf). Work files go to build-fuzz/ (git-ignored via /build*/): the binaries, one corpus
# per target, and any crash-* reproducers. Reproduce a finding: build-fuzz/<target>_fuzz build-fuzz/crash-<hash>
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=gguf
if [[ "${1:-}" == gguf || "${1:-}" == safetensors ]]; then TARGET="$1"; shift; fi
SECONDS_TO_RUN="${1:-60}"
shift || true
OUT=build-fuzz
CXX="${CXX:-clang++-14}"
CORPUS="$OUT/corpus-$TARGET"
[[ "$TARGET" == gguf && -d "$OUT/corpus" ]] && CORPUS="$OUT/corpus"  # the GGUF corpus of earlier runs
mkdir -p "$CORPUS"

FLAGS=(-std=c++20 -O1 -g -fno-omit-frame-pointer -Isrc)
if [[ "$TARGET" == gguf ]]; then
    SOURCES=(src/gguf/*.cpp src/util/*.cpp)
    SEEDS=tools/fuzz/make_seeds.cpp
else
    # The safetensors reader uses gguf/quant (16-bit float decoding) and util; JSON is nlohmann's (header-only).
    SOURCES=(src/safetensors/*.cpp src/gguf/quant.cpp src/util/mapped_file.cpp)
    SEEDS=tools/fuzz/make_safetensors_seeds.cpp
fi
echo "building $OUT/${TARGET}_fuzz with $CXX"
"$CXX" "${FLAGS[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    "${SOURCES[@]}" "tools/fuzz/${TARGET}_fuzz.cpp" -o "$OUT/${TARGET}_fuzz"
"$CXX" "${FLAGS[@]}" "${SOURCES[@]}" "$SEEDS" -o "$OUT/make_${TARGET}_seeds"

# Seeds: small writer-made files, plus the first 4 KiB of a real model when present (real key layout).
"$OUT/make_${TARGET}_seeds" "$CORPUS"
if [[ "$TARGET" == gguf ]]; then
    MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
    if [[ -f "$MODEL" ]]; then head -c 4096 "$MODEL" > "$CORPUS/model_head_4k.gguf"; fi
fi

echo "fuzzing $TARGET for ${SECONDS_TO_RUN}s"
# -rss_limit_mb: the reader must not allocate absurdly; -max_len keeps inputs small enough to mutate quickly.
"$OUT/${TARGET}_fuzz" "$CORPUS" -max_total_time="$SECONDS_TO_RUN" -max_len=16384 -rss_limit_mb=1024 \
    -timeout=10 -artifact_prefix="$OUT/" -print_final_stats=1 "$@"
