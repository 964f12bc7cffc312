#!/usr/bin/env bash
# tests/scripts/matmul_blocks_symbols.sh BUILD_DIR: each per-instruction-set kernel object of matmul_blocks exports
# its table accessor and nothing else (ctest matmul_blocks_symbols). An external or weak symbol there (an inline
# function or template instantiation with external linkage) could be merged by the linker with a copy from another
# translation unit, so that code compiled for AVX-512 would run where only the scalar or AVX2 variant may: the
# per-ISA files keep everything in anonymous namespaces, and this checks that they still do.
set -euo pipefail
BUILD="$(cd "${1:?usage: matmul_blocks_symbols.sh BUILD_DIR}" && pwd)"
command -v nm > /dev/null || { echo "matmul_blocks_symbols.sh: no nm; skipped"; exit 77; }
DIR="$BUILD/CMakeFiles/headsweep_core.dir/src/backend/cpu"
status=0
for isa in avx2 avx512 avx512_vnni; do
    obj="$DIR/matmul_blocks_$isa.cpp.o"
    [ -f "$obj" ] || { echo "matmul_blocks_symbols.sh: $obj not built"; exit 1; }
    syms="$(nm -C --defined-only --extern-only "$obj" | awk '{ $1 = ""; print substr($0, 2) }')"
    if [ "$syms" != "T hs::cpu::detail::gemv_kernels_$isa()" ]; then
        echo "matmul_blocks_symbols.sh: $isa object exports more than its accessor:"
        echo "$syms"
        status=1
    else
        echo "matmul_blocks_symbols.sh: $isa ok"
    fi
done
exit $status
