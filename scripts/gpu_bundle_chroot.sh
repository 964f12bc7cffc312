#!/usr/bin/env bash
# scripts/gpu_bundle_chroot.sh: run the GPU bundle where nothing of this machine's packages is visible except glibc,
# as on a device image without Open MPI, HDF5, OpenBLAS or Boost (scripts/gpu_bundle.sh --verify-chroot calls it).
#
#   scripts/gpu_bundle_chroot.sh [BUNDLE_DIR] [-- TEST_SPEC...]   # default .bundle; default spec below
#
# It unpacks the bundle's payload into a fresh root that holds glibc and the dynamic loader only, binds the
# repository read-only at /repo (fixtures) and models/ at /models (HEADSWEEP_TEST_MODEL_PATH), and runs, inside a private
# mount namespace (needs root): headsweep --help, headsweep info on a random model, a tiny sweep (HDF5 output), and
# headsweep_tests on a CPU subset. cuBLAS and the driver are not there: a build that links cuBLAS gets the
# toolkit's lib64 bound at /cuda-lib (as the device's image would provide it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bundle="$ROOT/.bundle"
# The CPU tests that read fixtures, the model and write HDF5; not the two that call /usr/bin/python3's h5py (none here).
spec=("[tokenizer]~[slow],[gguf]~[slow],[h5]~[slow]~*h5py*,[quant]~[slow],[job]~[slow],[reference]~[slow],[sweep]~[slow]")
if [[ $# -gt 0 && "$1" != -- ]]; then bundle="$(cd "$1" && pwd)"; shift; fi
if [[ $# -gt 0 && "$1" == -- ]]; then shift; spec=("$@"); fi

die() { echo "gpu_bundle_chroot.sh: error: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root (chroot, mount namespace)"
[[ -f "$bundle/payload.tar.xz" ]] || die "$bundle/payload.tar.xz is missing: run scripts/gpu_bundle.sh"

root="$(mktemp -d /tmp/hs-chroot.XXXXXX)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{b,repo,models,tmp,proc,sys,dev,lib64,cuda-lib,usr/lib/x86_64-linux-gnu}
ln -s usr/lib "$root/lib"
chmod 1777 "$root/tmp"
tar -C "$root/b" -xJf "$bundle/payload.tar.xz"

# glibc and the loader, taken from what the bundled programs resolve to here.
for f in "$root"/b/bin/*; do
    LD_LIBRARY_PATH="$root/b/lib" ldd "$f"
done | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/.*ld-linux/ { print $1 }' | sort -u | while read -r p; do
    case "$p" in
        "$root"/*) ;;
        */ld-linux*) cp -L "$p" "$root/lib64/" ;;
        *) n="$(basename "$p")"
           case "$n" in
               libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|libresolv.so.*|libutil.so.*|libanl.so.*|\
               libmvec.so.*) cp -L "$p" "$root/usr/lib/x86_64-linux-gnu/" ;;
               libcublas*|libcuda*) ;;
               *) echo "gpu_bundle_chroot.sh: $n resolves outside the bundle ($p)" >&2; exit 1 ;;
           esac ;;
    esac
done
echo "chroot: $(cd "$root" && find . -type f | grep -v '^./b/' | tr '\n' ' ')+ the bundle"

needs_cublas=0
for f in "$root"/b/bin/*; do readelf -d "$f" | grep -q 'NEEDED.*libcublas' && needs_cublas=1; done
cuda_lib="$(dirname "$(readlink -f /usr/local/cuda/lib64/libcublas.so.13 2>/dev/null || echo /nonexistent/x)")"

run_in_root() {
    local model="/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    unshare -m --propagation private bash -c '
        set -e
        root="$1"; repo="$2"; cuda_lib="$3"; needs="$4"; shift 4
        mount --rbind /dev "$root/dev"
        mount -t proc proc "$root/proc"
        mount --rbind /sys "$root/sys"
        mount --bind "$repo" "$root/repo"
        mount -o remount,bind,ro "$root/repo"
        [[ -d "$repo/models/" ]] && mount --bind "$(readlink -f "$repo/models")" "$root/models"
        [[ $needs == 1 && -d "$cuda_lib" ]] && mount --bind "$cuda_lib" "$root/cuda-lib"
        exec env -i PATH=/b/bin LD_LIBRARY_PATH=/b/lib:/cuda-lib HOME=/tmp TMPDIR=/tmp \
            HEADSWEEP_FIXTURES_DIR=/repo/tests/fixtures HEADSWEEP_REPO_DIR=/repo \
            HEADSWEEP_TEST_MODEL_PATH='"$model"' OPENBLAS_NUM_THREADS=2 \
            /usr/sbin/chroot "$root" "$@"
    ' _ "$root" "$ROOT" "$cuda_lib" "$needs_cublas" "$@"
}

step() { echo "+ (chroot) $*"; run_in_root "$@"; }
step /b/bin/headsweep --help > /dev/null
step /b/bin/headsweep info random:tiny
step /b/bin/headsweep sweep --model random:tiny --settings 4x6 --mode total -q -o /tmp/t.h5 --device cpu
step /b/bin/headsweep sweep --model random:tiny --settings 4x6 --mode path -q -o /tmp/c.h5 --device cuda ||
    echo "(--device cuda fails where there is no GPU: expected here)"
step /b/bin/headsweep_bench_engine random:tiny --tokens 8 --batches 1 --decode 2 --reps 1
if [[ -x "$root/b/bin/headsweep_tests" ]]; then step /b/bin/headsweep_tests "${spec[@]}"; fi
echo "chroot check: ok"
