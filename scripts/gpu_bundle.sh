#!/usr/bin/env bash
# scripts/gpu_bundle.sh: build headsweep with CUDA on this machine and pack what a GPU machine without our Debian
# packages needs to run it into .bundle/ (git-ignored; carried to the device with carry=[".bundle"]). docs/gpu.md.
#
#   scripts/gpu_bundle.sh                   # build into build-gpu/ (Release, CUDA, sm_90), assemble .bundle/
#   scripts/gpu_bundle.sh --arch "80;90"    # CUDA architectures (CMAKE_CUDA_ARCHITECTURES; default 90)
#   scripts/gpu_bundle.sh --no-build        # re-pack from the existing build-gpu/
#   scripts/gpu_bundle.sh --no-tests        # leave headsweep_tests out (build and bundle)
#   scripts/gpu_bundle.sh --check-only      # check tools, inputs and the budget of the working tree; build nothing
#   scripts/gpu_bundle.sh --verify-chroot   # also run the bundle in a chroot that holds only glibc (needs root)
# Options: --build-dir DIR (build-gpu), --out DIR (.bundle), --jobs N (2), --march ISA (x86-64-v3: the bundle runs
# on another CPU, so not -march=native), --budget-mib N (64: what one device call carries, working tree included).
#
# .bundle/ holds run.sh (the entry point), payload.tar.xz (bin/: the executables and, beside them where the programs
# look for it, the CUDA module libheadsweep_cuda.so, stripped; lib/: every shared library they and the module load
# except glibc, the NVIDIA driver and cuBLAS; libstdc++/libgcc_s included; libcudart of the toolkit we built with,
# which only the module links), peers/ (copies of ../shared/bench/*.py, the PyTorch peers) and MANIFEST.txt.
# The libraries alone are ~60 MiB (OpenBLAS 35 MiB), too much next to the working tree for one 64 MiB transfer,
# so they travel xz-compressed and run.sh unpacks them once into /tmp on the device.
# cuBLAS (libcublasLt.so.13 is 541 MB) is never bundled: run.sh finds it on the device at run time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

arch=90
build=build-gpu
jobs=2
march=x86-64-v3
budget_mib=64
do_build=1
with_tests=1
check_only=0
verify_chroot=0
out=.bundle
while [[ $# -gt 0 ]]; do
    case "$1" in
        --arch) arch="$2"; shift ;;
        --arch=*) arch="${1#*=}" ;;
        --build-dir) build="$2"; shift ;;
        --out) out="$2"; shift ;;
        --jobs) jobs="$2"; shift ;;
        --march) march="$2"; shift ;;
        --budget-mib) budget_mib="$2"; shift ;;
        --no-build) do_build=0 ;;
        --no-tests) with_tests=0 ;;
        --check-only) check_only=1 ;;
        --verify-chroot) verify_chroot=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "gpu_bundle.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

die() { echo "gpu_bundle.sh: error: $*" >&2; exit 1; }
say() { echo; echo "== gpu_bundle: $*"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# Libraries that are never bundled. glibc (with the dynamic loader) must be the device's own; the NVIDIA driver
# libraries must match the device's kernel module; cuBLAS is too large and comes from the device image.
is_glibc() {
    case "$1" in
        linux-vdso.so.*|linux-gate.so.*|ld-linux*.so.*|libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|\
        libresolv.so.*|libutil.so.*|libanl.so.*|libnsl.so.1|libmvec.so.*|libBrokenLocale.so.*|libthread_db.so.*|\
        libnss_*.so.*|libc_malloc_debug.so.*) return 0 ;;
    esac
    return 1
}
is_driver() { case "$1" in libcuda.so*|libnvidia-*.so*|libnvcuvid.so*) return 0 ;; esac; return 1; }
is_cublas() { case "$1" in libcublas.so*|libcublasLt.so*) return 0 ;; esac; return 1; }

# Bytes that travel with every device call: tracked files and untracked files git does not ignore (symbolic links
# travel as links, so their own size counts).
tree_bytes() {
    git -C "$ROOT" ls-files -z -co --exclude-standard | (cd "$ROOT" && xargs -0 -r stat -c '%s' 2>/dev/null) |
        awk '{ s += $1 } END { print s + 0 }'
}
largest_files() {  # the 10 largest files of the working tree and the bundle
    { git -C "$ROOT" ls-files -z -co --exclude-standard | (cd "$ROOT" && xargs -0 -r stat -c '%s %n' 2>/dev/null)
      [[ -d "$ROOT/$out" ]] && (cd "$ROOT" && find "$out" -type f -printf '%s %p\n'); } |
        sort -rn | head -10 | awk '{ printf "  %10.1f MiB  %s\n", $1 / 1048576, $2 }'
}

# ---------------------------------------------------------------- tools
say "tools"
nvcc="$(command -v nvcc || true)"
[[ -n "$nvcc" ]] || { [[ -x /usr/local/cuda/bin/nvcc ]] && nvcc=/usr/local/cuda/bin/nvcc; }
[[ -n "$nvcc" ]] || die "no nvcc on PATH or at /usr/local/cuda/bin/nvcc: install the CUDA toolkit (13.x)"
cuda_version="$("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
cuda_home="$(dirname "$(dirname "$(readlink -f "$nvcc")")")"
echo "nvcc: $nvcc (CUDA $cuda_version); architectures: $arch; host ISA: -march=$march"
for t in cmake ldd strip readelf tar xz sha256sum git; do
    command -v "$t" >/dev/null 2>&1 || die "missing tool: $t"
done
peers_dir="$ROOT/../shared/bench"
if compgen -G "$peers_dir/*.py" >/dev/null; then
    echo "peers: $(cd "$peers_dir" && ls -- *.py | tr '\n' ' ')(from ../shared/bench)"
else
    echo "peers: none ($peers_dir has no *.py; bench/bench_gpu.py will have no peer to run)"
fi
tb=$(tree_bytes)
echo "working tree (travels with every call): $(mib "$tb")"
if [[ $check_only -eq 1 ]]; then
    (( tb < budget_mib * 1048576 )) || die "the working tree alone exceeds the ${budget_mib} MiB budget"
    echo "check only: nothing built"
    exit 0
fi

# ---------------------------------------------------------------- configure and build
bench_targets=()
for src in "$ROOT"/bench/bench_*.cpp; do
    stem="$(basename "$src" .cpp)"
    bench_targets+=("headsweep_bench_${stem#bench_}")
done
targets=(headsweep "${bench_targets[@]}")
[[ $with_tests -eq 0 ]] || targets+=(headsweep_tests)
# The CUDA backend is a module of its own (src/backend/cuda_module.hpp), loaded by the programs from their own
# directory when a CUDA device is asked for: it goes into bin/ beside them.
module=libheadsweep_cuda.so
if [[ $do_build -eq 1 ]]; then
    say "configure $build/ (Release, CUDA ON, CMAKE_CUDA_ARCHITECTURES=$arch, -march=$march)"
    log="$(mktemp)"
    # Without oneDNN (the bf16 CPU prefill of short prompts): libdnnl.so is 40 MB more for the 64 MiB transfer.
    cmake -S "$ROOT" -B "$build" -DCMAKE_BUILD_TYPE=Release -DHEADSWEEP_ENABLE_CUDA=ON -DHEADSWEEP_WITH_ONEDNN=OFF \
        -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES="$arch" -DHEADSWEEP_NATIVE=OFF \
        -DCMAKE_C_FLAGS="-march=$march" -DCMAKE_CXX_FLAGS="-march=$march" 2>&1 | tee "$log" \
        || die "CMake configure failed"
    grep -q "headsweep: CUDA backend ON" "$log" || die "CMake did not enable CUDA (see above)"
    rm -f "$log"
    say "build ${targets[*]} (-j$jobs)"
    cmake --build "$build" -j"$jobs" --target "${targets[@]}" headsweep_cuda || die "build failed"
fi
for t in "${targets[@]}"; do
    [[ -x "$build/$t" ]] || die "$build/$t is missing (run without --no-build)"
done
[[ -f "$build/$module" ]] || die "$build/$module (the CUDA module) is missing (run without --no-build)"
n_cuda_src=$(find "$ROOT/src/backend/cuda" -name '*.cu' -o -name '*.cpp' 2>/dev/null | wc -l)

# ---------------------------------------------------------------- assemble
say "assemble"
tree="$build/bundle-tree"      # the unpacked payload, kept for inspection (build-gpu/ is git-ignored)
rm -rf "$tree" "$out"
mkdir -p "$tree/bin" "$tree/lib" "$out/peers"
for t in "${targets[@]}" "$module"; do
    strip --strip-unneeded -o "$tree/bin/$t" "$build/$t"   # keeps the dynamic symbols the module resolves against
done

declare -A libs=() from_device=()
cudart=""
for t in "${targets[@]}" "$module"; do
    while read -r name arrow path _; do
        [[ "$arrow" == "=>" ]] || continue
        if is_glibc "$name" || is_driver "$name"; then continue; fi
        if is_cublas "$name"; then from_device[$name]=1; continue; fi
        [[ "$path" != "not" ]] || die "$t needs $name, which ldd does not find here"
        if [[ "$name" == libcudart.so* ]]; then   # the runtime of the toolkit we built with, wherever ldd looked
            cudart="$name"
            for d in "$cuda_home/lib64" "$cuda_home/lib" "$cuda_home/targets/x86_64-linux/lib"; do
                [[ -e "$d/$name" ]] && { path="$d/$name"; break; }
            done
        fi
        libs[$name]="$path"
    done < <(ldd "$build/$t")
done
for name in "${!libs[@]}"; do
    cp -L "${libs[$name]}" "$tree/lib/$name"
    chmod u+w "$tree/lib/$name"
    strip --strip-unneeded "$tree/lib/$name" 2>/dev/null || true
done
if [[ -n "$cudart" ]]; then
    echo "libcudart: $cudart from ${libs[$cudart]} (the toolkit we built with; linked by $module only)"
else
    echo "libcudart: not linked (the build has no CUDA code yet: $n_cuda_src source files in src/backend/cuda/)"
fi
if [[ ${#from_device[@]} -gt 0 ]]; then
    echo "from the device at run time: ${!from_device[*]}"
else
    echo "cuBLAS: not linked"
fi

# The newest glibc symbol version that anything bundled needs (the device's glibc must be at least that).
glibc_needed="$(for f in "$tree"/bin/* "$tree"/lib/*; do readelf -V --wide "$f" 2>/dev/null; done |
    grep -o 'GLIBC_2\.[0-9]*' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -u | tail -1)"
echo "glibc needed: >= $glibc_needed (here: $(getconf GNU_LIBC_VERSION))"

say "pack $out/payload.tar.xz"
xz_threads=$(( jobs > 0 ? jobs : 1 ))
tar -C "$tree" --owner=0 --group=0 --sort=name --mtime=@0 -cf - bin lib | xz -T"$xz_threads" -6 > "$out/payload.tar.xz"
payload_sha="$(sha256sum "$out/payload.tar.xz" | cut -d' ' -f1)"
unpacked=$(du -sb "$tree" | cut -f1)
echo "payload: $(mib "$(stat -c %s "$out/payload.tar.xz")") packed, $(mib "$unpacked") unpacked"
if compgen -G "$peers_dir/*.py" >/dev/null; then cp "$peers_dir"/*.py "$out/peers/"; fi

cublas_needed=0
device_libs=""
if [[ ${#from_device[@]} -gt 0 ]]; then cublas_needed=1; device_libs="${!from_device[*]}"; fi
cat > "$out/run.sh" <<'RUNSH'
#!/usr/bin/env bash
# .bundle/run.sh: run a program of this bundle (made by scripts/gpu_bundle.sh; see docs/gpu.md).
#
#   .bundle/run.sh headsweep --help
#   .bundle/run.sh headsweep_tests "[gpu]"
#   .bundle/run.sh headsweep sweep --model random:smollm2-135m --device cuda --mode total ...
#   .bundle/run.sh bash -c 'headsweep --version'    # any command, with the bundle's environment
#   .bundle/run.sh --env                             # print the environment, run nothing
#
# It unpacks payload.tar.xz (bin/, lib/) once into $HEADSWEEP_BUNDLE_CACHE (default /tmp), finds cuBLAS on this
# machine (HEADSWEEP_CUBLAS_DIR, /usr/local/cuda/lib64, /usr/local/cuda-13*/lib64, python3's nvidia packages,
# ldconfig), sets LD_LIBRARY_PATH, PATH and the test-path overrides (HEADSWEEP_FIXTURES_DIR, HEADSWEEP_REPO_DIR,
# HEADSWEEP_TEST_MODEL_PATH; values already set are kept), reports what it found on stderr and execs the command.
# HEADSWEEP_SKIP_CUBLAS=1 skips the cuBLAS search; HEADSWEEP_RUN_QUIET=1 silences the report.
set -euo pipefail
PAYLOAD_SHA256="@PAYLOAD_SHA256@"
CUBLAS_NEEDED=@CUBLAS_NEEDED@
GLIBC_NEEDED="@GLIBC_NEEDED@"
MODEL_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"

BUNDLE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$BUNDLE")"
say() { [[ "${HEADSWEEP_RUN_QUIET:-0}" == 1 ]] || echo "run.sh: $*" >&2; }
die() { echo "run.sh: error: $*" >&2; exit 1; }
ldcache() {  # the dynamic loader's cache (ldconfig is often in /sbin, off a plain user's PATH)
    local l
    for l in "$(command -v ldconfig 2>/dev/null)" /sbin/ldconfig /usr/sbin/ldconfig; do
        [[ -n "$l" && -x "$l" ]] && { "$l" -p 2>/dev/null || true; return 0; }
    done
    return 0
}

# ---- unpack once per payload
dest="${HEADSWEEP_BUNDLE_CACHE:-${TMPDIR:-/tmp}}/headsweep-bundle-${PAYLOAD_SHA256:0:16}"
if [[ ! -f "$dest/.complete" ]]; then
    [[ -f "$BUNDLE/payload.tar.xz" ]] || die "$BUNDLE/payload.tar.xz is missing (carry .bundle whole)"
    if command -v sha256sum >/dev/null 2>&1; then
        sum="$(sha256sum "$BUNDLE/payload.tar.xz" | cut -d' ' -f1)"
        [[ "$sum" == "$PAYLOAD_SHA256" ]] || die "payload.tar.xz has sha256 $sum, expected $PAYLOAD_SHA256"
    fi
    mkdir -p "$(dirname "$dest")"
    tmp="$(mktemp -d "$dest.XXXXXX")"
    if ! tar -C "$tmp" -xJf "$BUNDLE/payload.tar.xz" 2>/dev/null; then
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
            "$BUNDLE/payload.tar.xz" "$tmp" || die "cannot unpack payload.tar.xz (no xz and no python3?)"
    fi
    touch "$tmp/.complete"
    [[ -f "$dest/.complete" ]] || rm -rf "$dest"        # a half-unpacked copy left by a killed run
    mv -T "$tmp" "$dest" 2>/dev/null || rm -rf "$tmp"   # another run got there first
    say "unpacked the payload into $dest"
fi

# ---- glibc
have_glibc="$( (getconf GNU_LIBC_VERSION 2>/dev/null || true) | awk '{ print $2 }')"
if [[ -n "$have_glibc" && -n "$GLIBC_NEEDED" ]] &&
   [[ "$(printf '%s\n%s\n' "$GLIBC_NEEDED" "$have_glibc" | sort -V | awk 'NR == 1')" != "$GLIBC_NEEDED" ]]; then
    die "this machine's glibc is $have_glibc; the bundle needs >= $GLIBC_NEEDED (build it on an older system)"
fi

# ---- cuBLAS
has_cublas() { [[ -e "$1/libcublasLt.so.13" && -e "$1/libcublas.so.13" ]]; }
cublas_dir=""
tried=()
try_dir() {
    tried+=("$1")
    has_cublas "$1" || return 1
    cublas_dir="$(cd "$1" && pwd)"
}
find_cublas() {  # the first directory with both libraries, in the order that docs/gpu.md gives
    local d p
    if [[ -n "${HEADSWEEP_CUBLAS_DIR:-}" ]]; then
        try_dir "$HEADSWEEP_CUBLAS_DIR" && return 0
        die "HEADSWEEP_CUBLAS_DIR=$HEADSWEEP_CUBLAS_DIR has no libcublas.so.13 and libcublasLt.so.13"
    fi
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64 \
             /usr/local/cuda-13*/targets/x86_64-linux/lib; do
        try_dir "$d" && return 0
    done
    if command -v python3 >/dev/null 2>&1; then   # PyTorch's nvidia-cublas wheel
        while IFS= read -r p; do
            [[ -n "$p" ]] || continue
            try_dir "$p/cu13/lib" && return 0
            try_dir "$p/cublas/lib" && return 0
        done < <(python3 -c 'import nvidia; print("\n".join(nvidia.__path__))' 2>/dev/null || true)
    fi
    while IFS= read -r p; do
        try_dir "$(dirname "$p")" && return 0
    done < <(ldcache | awk '/libcublasLt\.so\.13 / { print $NF }')
    return 1
}
if [[ "${HEADSWEEP_SKIP_CUBLAS:-0}" == 1 ]]; then
    say "cuBLAS: search skipped (HEADSWEEP_SKIP_CUBLAS=1)"
elif find_cublas; then
    say "cuBLAS: $cublas_dir$([[ $CUBLAS_NEEDED == 1 ]] || echo ' (not linked by this build)')"
elif [[ $CUBLAS_NEEDED == 1 ]]; then
    die "no directory with libcublas.so.13 and libcublasLt.so.13; looked in: ${tried[*]} (set HEADSWEEP_CUBLAS_DIR)"
else
    say "cuBLAS: not found, and not needed (this build does not link it)"
fi

# ---- driver (information only)
libcuda="$(ldcache | awk '/libcuda\.so\.1 / && !n++ { print $NF }')"
if [[ -z "$libcuda" ]]; then
    IFS=: read -r -a ldp <<< "${LD_LIBRARY_PATH:-}"
    for d in "${ldp[@]}" /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu; do
        [[ -n "$d" && -e "$d/libcuda.so.1" ]] && { libcuda="$d/libcuda.so.1"; break; }
    done
fi
say "driver: ${libcuda:-no libcuda.so.1 found (no NVIDIA driver: --device cuda will fail)}"

# ---- environment
export LD_LIBRARY_PATH="$dest/lib${cublas_dir:+:$cublas_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$dest/bin:$PATH"
export HEADSWEEP_BUNDLE_BIN="$dest/bin"
export HEADSWEEP_REPO_DIR="${HEADSWEEP_REPO_DIR:-$REPO}"
export HEADSWEEP_FIXTURES_DIR="${HEADSWEEP_FIXTURES_DIR:-$REPO/tests/fixtures}"
if [[ -z "${HEADSWEEP_TEST_MODEL_PATH:-}" ]]; then
    HEADSWEEP_TEST_MODEL_PATH="$REPO/models/$MODEL_NAME"
    [[ -e "$HEADSWEEP_TEST_MODEL_PATH" || ! -e "/tmp/headsweep-model/$MODEL_NAME" ]] ||
        HEADSWEEP_TEST_MODEL_PATH="/tmp/headsweep-model/$MODEL_NAME"
    export HEADSWEEP_TEST_MODEL_PATH
fi
# As the CTest tests do: Open MPI refuses root otherwise (MPI itself is initialised only under mpirun and by train).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
say "bundle: $dest; repo: $REPO; fixtures: $HEADSWEEP_FIXTURES_DIR; model: $HEADSWEEP_TEST_MODEL_PATH" \
    "$([[ -e "$HEADSWEEP_TEST_MODEL_PATH" ]] || echo '(absent)')"

if [[ $# -eq 0 || "$1" == --env ]]; then
    for v in LD_LIBRARY_PATH PATH HEADSWEEP_BUNDLE_BIN HEADSWEEP_REPO_DIR HEADSWEEP_FIXTURES_DIR \
             HEADSWEEP_TEST_MODEL_PATH; do
        echo "$v=${!v}"
    done
    [[ $# -eq 0 ]] && { echo "usage: .bundle/run.sh PROGRAM [ARGS...]  (programs: $(ls "$dest/bin" | tr '\n' ' '))" >&2; exit 2; }
    exit 0
fi
if [[ "$1" != */* && -x "$dest/bin/$1" ]]; then
    prog="$dest/bin/$1"; shift
    exec "$prog" "$@"
fi
exec "$@"
RUNSH
sed -i -e "s/@PAYLOAD_SHA256@/$payload_sha/" -e "s/@CUBLAS_NEEDED@/$cublas_needed/" \
    -e "s/@GLIBC_NEEDED@/$glibc_needed/" "$out/run.sh"
chmod +x "$out/run.sh"

{
    echo "headsweep GPU bundle (scripts/gpu_bundle.sh; docs/gpu.md)"
    echo "commit: $(git -C "$ROOT" rev-parse HEAD)$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo ' (with local changes)')"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), CUDA $cuda_version, architectures $arch, -march=$march"
    echo "CUDA sources in the build: $n_cuda_src"
    echo "glibc needed: >= $glibc_needed"
    echo "payload sha256: $payload_sha"
    echo "cuBLAS from the device: ${device_libs:-none (not linked)}"
    echo "bin/:"; (cd "$tree/bin" && ls -l | awk 'NR > 1 { printf "  %10d  %s\n", $5, $NF }')
    echo "lib/:"; (cd "$tree/lib" && ls -l | awk 'NR > 1 { printf "  %10d  %s\n", $5, $NF }')
    echo "peers/: $(ls "$out/peers" | tr '\n' ' ')"
} > "$out/MANIFEST.txt"

# ---------------------------------------------------------------- verify here
say "verify"
# Every bundled binary and library resolves against lib/ and glibc alone (cuBLAS and the driver excepted).
bad=0
for f in "$tree"/bin/* "$tree"/lib/*; do
    while read -r name arrow path _; do
        [[ "$arrow" == "=>" ]] || continue
        if is_glibc "$name" || is_driver "$name" || is_cublas "$name"; then continue; fi
        case "$path" in
            "$tree"/lib/*) ;;
            *) echo "  $(basename "$f"): $name resolves to $path, not to the bundle"; bad=1 ;;
        esac
    done < <(env -i LD_LIBRARY_PATH="$tree/lib" ldd "$f" 2>/dev/null)
done
[[ $bad -eq 0 ]] || die "the bundle is not self-contained (see above)"
echo "ldd: every bin/ and lib/ file resolves against lib/ + glibc (cuBLAS and the driver from the device)"
HEADSWEEP_BUNDLE_CACHE="$(mktemp -d)"
trap 'rm -rf "$HEADSWEEP_BUNDLE_CACHE"' EXIT
env -i PATH=/usr/bin:/bin HOME="${HOME:-/root}" HEADSWEEP_BUNDLE_CACHE="$HEADSWEEP_BUNDLE_CACHE" \
    "$out/run.sh" headsweep --help > /dev/null || die ".bundle/run.sh headsweep --help failed"
echo "run.sh headsweep --help: ok (clean environment, LD_LIBRARY_PATH only the bundle's)"
# The programs find the module beside them and it loads: libcudart from lib/, cuBLAS from this machine's toolkit
# (no driver here, so it reports no device; on the GPU machine it lists the GPUs).
info="$(env -i PATH=/usr/bin:/bin HOME="${HOME:-/root}" HEADSWEEP_BUNDLE_CACHE="$HEADSWEEP_BUNDLE_CACHE" \
    HEADSWEEP_RUN_QUIET=1 "$out/run.sh" headsweep info --machine)" || die ".bundle/run.sh headsweep info --machine failed"
cuda_line="$(grep '^cuda ' <<< "$info" || true)"
grep -q "^cuda  *module .*/$module loads: " <<< "$cuda_line" || die "the bundled CUDA module does not load: $cuda_line"
echo "run.sh headsweep info --machine: $cuda_line"

if [[ $verify_chroot -eq 1 ]]; then
    say "verify in a chroot with only glibc"
    "$ROOT/scripts/gpu_bundle_chroot.sh" "$out" || die "the chroot check failed"
fi

# ---------------------------------------------------------------- budget
say "size"
bb=$(find "$out" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
tb=$(tree_bytes)
total=$((bb + tb))
echo "bundle $out/: $(mib "$bb"); working tree: $(mib "$tb"); together: $(mib "$total") of ${budget_mib} MiB"
if (( total > budget_mib * 1048576 )); then
    echo "the 10 largest files:"; largest_files
    die "bundle + working tree exceed the ${budget_mib} MiB that one device call carries"
fi
echo "done: carry it with carry=[\"$out\"] and run .bundle/run.sh PROGRAM ... on the device (docs/gpu.md)"
