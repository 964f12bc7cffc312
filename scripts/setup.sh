#!/usr/bin/env bash
# scripts/setup.sh: set up headsweep on a fresh Debian 12 machine (idempotent; re-runs are fast).
#
#   scripts/setup.sh               # apt packages, CMake configure into build/ (Release), build, fetch the models
#   scripts/setup.sh --no-build    # packages (and the models) only
#   scripts/setup.sh --no-model    # skip the model downloads
#
# Environment:
#   HEADSWEEP_CUDA=OFF        build the CPU backend only, even when nvcc is installed (default: auto-detect)
#   HEADSWEEP_BUILD_DIR=dir   build directory (default: build)
#   HEADSWEEP_JOBS=n          parallel build jobs (default: nproc)
# apt runs as root, or through sudo when that exists; it is skipped when every package is installed already.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

do_build=1
do_model=1
for arg in "$@"; do
    case "$arg" in
        --no-build) do_build=0 ;;
        --no-model) do_model=0 ;;
        -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

step=0
total=$((1 + 2 * do_build + do_model))
say() { step=$((step + 1)); echo; echo "== setup [$step/$total] $*"; }
die() { echo "setup.sh: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- 1. packages
PACKAGES=(
    build-essential cmake pkg-config unzip
    libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools
    libboost-dev libboost-mpi-dev libboost-serialization-dev libboost-context-dev
    catch2 libcli11-dev libopenblas-dev libtomlplusplus-dev libfaiss-dev libdnnl-dev
    nlohmann-json3-dev libpcre2-dev libicu-dev zlib1g-dev
    python3 python3-pip python3-h5py python3-matplotlib python3-numpy
    slurm-wlm munge
)
say "system packages (${#PACKAGES[@]})"
missing=()
for p in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)"
    [[ "$status" == ii* ]] || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    echo "all installed; skipping apt"
else
    echo "missing: ${missing[*]}"
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: ${missing[*]}"
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    echo "+ apt-get update"
    "${SUDO[@]}" apt-get update -q || die "apt-get update failed"
    echo "+ apt-get install -y --no-install-recommends ${missing[*]}"
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" < /dev/null \
        || die "apt-get install failed for: ${missing[*]}"
fi

# ---------------------------------------------------------------- 2-3. configure and build
if [[ $do_build -eq 1 ]]; then
    build="${HEADSWEEP_BUILD_DIR:-build}"
    cuda="${HEADSWEEP_CUDA:-ON}"
    case "${cuda^^}" in
        OFF|0|NO|FALSE) cuda=OFF ;;
        *) cuda=ON ;;
    esac
    if [[ $cuda == ON ]] && ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
        export PATH="/usr/local/cuda/bin:$PATH"   # a CUDA toolkit that is installed but not on PATH
    fi
    if [[ $cuda == ON ]]; then
        if command -v nvcc >/dev/null 2>&1; then cuda_note="auto: nvcc at $(command -v nvcc)"
        else cuda_note="auto: no nvcc, CPU backend only"; fi
    else
        cuda_note="off (HEADSWEEP_CUDA=OFF)"
    fi
    say "configure $build/ (Release; CUDA $cuda_note)"
    echo "+ cmake -S . -B $build -DCMAKE_BUILD_TYPE=Release -DHEADSWEEP_ENABLE_CUDA=$cuda"
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHEADSWEEP_ENABLE_CUDA="$cuda" \
        || die "CMake configure failed. If it found a serial HDF5, remove $build/ and re-run (the choice is cached)."

    jobs="${HEADSWEEP_JOBS:-$(nproc)}"
    say "build (-j$jobs)"
    echo "+ cmake --build $build -j$jobs"
    cmake --build "$build" -j"$jobs" || die "build failed"
fi

# ---------------------------------------------------------------- 4. model
if [[ $do_model -eq 1 ]]; then
    say "models (SmolLM2-135M-Instruct Q4_1, the default; Gemma 3 270M Q4_K_M, which the tests also read)"
    "$ROOT/scripts/fetch_model.sh" || die "could not fetch the default model (see above)"
    "$ROOT/scripts/fetch_model.sh" --gemma3 || die "could not fetch the Gemma 3 model (see above)"
fi

echo
echo "== setup done"
