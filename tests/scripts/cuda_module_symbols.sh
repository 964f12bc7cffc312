#!/usr/bin/env bash
# tests/scripts/cuda_module_symbols.sh BUILD_DIR: the CUDA module (libheadsweep_cuda.so, backend/cuda_module.hpp)
# loads into every program of the build (ctest cuda_module_symbols; skipped in a build without CUDA).
#   1. The module exports its entry point headsweep_cuda_module and nothing else (src/backend/cuda/module.map).
#   2. Every symbol it takes from the program (an undefined symbol without a library version: not from libc,
#      libstdc++, cudart or cuBLAS) is exported by each program that can load it (those that contain the loader,
#      hs::load_cuda_module: ld --dynamic-list src/backend/cuda/host_symbols.list), so that dlopen(RTLD_NOW) of the
#      module succeeds in each of them.
#   3. No program links cuBLAS or the CUDA runtime itself (they would be mapped at start-up in CPU runs too).
set -euo pipefail
BUILD="$(cd "${1:?usage: cuda_module_symbols.sh BUILD_DIR}" && pwd)"
MODULE="$BUILD/libheadsweep_cuda.so"
command -v nm > /dev/null || { echo "cuda_module_symbols.sh: no nm; skipped"; exit 77; }
[ -f "$MODULE" ] || { echo "cuda_module_symbols.sh: no $MODULE (a build without CUDA); skipped"; exit 77; }
status=0

exported="$(nm -D --defined-only "$MODULE" | awk '{ print $3 }' | sed 's/@.*//' | sort -u)"
if [ "$exported" != "headsweep_cuda_module" ]; then
    echo "cuda_module_symbols.sh: the module exports more than its entry point:"
    echo "$exported" | head -20
    status=1
else
    echo "cuda_module_symbols.sh: the module exports headsweep_cuda_module only"
fi

needed="$(nm -D --undefined-only "$MODULE" | awk '$1 == "U" && $2 !~ /@/ { print $2 }' | sort -u)"
echo "cuda_module_symbols.sh: from the program: $(echo "$needed" | c++filt | tr '\n' ';' | sed 's/;/; /g')"
n_programs=0
for prog in "$BUILD"/headsweep*; do
    [ -f "$prog" ] && [ -x "$prog" ] || continue
    case "$(basename "$prog")" in *.so|*.a) continue ;; esac
    head -c 4 "$prog" | grep -q "ELF" || continue
    nm -D --defined-only "$prog" > /dev/null 2>&1 || continue
    if readelf -d "$prog" | grep -E "NEEDED.*(libcublas|libcublasLt|libcudart)" > /dev/null; then
        echo "cuda_module_symbols.sh: $(basename "$prog") links cuBLAS/cudart itself:"
        readelf -d "$prog" | grep -E "NEEDED.*(libcublas|libcudart)" | sed 's/^/  /'
        status=1
    fi
    # A program without the loader (no make_backend: a file-format benchmark, say) never loads the module.
    nm "$prog" 2> /dev/null | awk '$3 == "_ZN2hs16load_cuda_moduleEv" { f = 1 } END { exit !f }' || continue
    n_programs=$((n_programs + 1))
    have="$(nm -D --defined-only "$prog" | awk '{ print $3 }' | sed 's/@.*//' | sort -u)"
    missing="$(comm -23 <(echo "$needed") <(echo "$have"))"
    if [ -n "$missing" ]; then
        echo "cuda_module_symbols.sh: $(basename "$prog") does not export what the module needs:"
        echo "$missing" | c++filt | sed 's/^/  /'
        status=1
    else
        echo "cuda_module_symbols.sh: $(basename "$prog") exports it all"
    fi
done
[ "$n_programs" -gt 0 ] || { echo "cuda_module_symbols.sh: no program with the module's loader in $BUILD"; exit 1; }
[ $status -ne 0 ] || echo "cuda_module_symbols.sh: ok ($n_programs programs can load the module; none links cuBLAS/cudart)"
exit $status
