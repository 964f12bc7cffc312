#!/usr/bin/env bash
# bench/setup_bench_venv.sh: the benchmark-only Python environment with the peers we compare against.
#   llama-cpp-python  (builds llama.cpp from source: PyPI has no binary wheel; ~10-20 min on 2 cores)
#   torch + transformers (CPU use of the PyTorch peer baselines in shared/bench/)
#   faiss-cpu (the RTD reference code's k-NN library: bench/bench_rtd.py's search peer)
# Usage: bench/setup_bench_venv.sh [VENV_DIR]   (default .venv-bench; git-ignored). The build and the tests never
# need it. Re-running is cheap once everything is installed.
#
# llama.cpp is built for explicit instruction sets read from this CPU's feature flags, never GGML_NATIVE: a native
# build turns on AMX where the CPU has it, and llama-cpp-python 0.3.36 does not ask Linux for the AMX tile state, so
# its first tile instruction dies with SIGILL (measured on Intel Emerald Rapids). AMX stays off; everything else the
# CPU has is on. The flags and the CPU are recorded in VENV_DIR/llama_cpp_build.txt, which bench/bench_engine.py
# prints; a venv built on another CPU (the fleet's machines change) is rebuilt for this one.
set -euo pipefail
VENV=${1:-.venv-bench}
PY=${PYTHON:-python3}
LLAMA_CPP_PYTHON="llama-cpp-python==0.3.36"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[bench-venv] creating $VENV"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
need() { ! "$VENV/bin/python" -c "import $1" 2>/dev/null; }

# ggml's CMake options for the instruction sets this CPU has (cpuinfo flag names), AMX always off.
cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { [[ "$cpu_flags" == *" $1 "* ]]; }
onoff() { if has "$1"; then echo ON; else echo OFF; fi; }
avx512=OFF
if has avx512f && has avx512bw && has avx512vl && has avx512dq && has avx512cd; then avx512=ON; fi
cmake_args="-DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_AVX=$(onoff avx) -DGGML_AVX2=$(onoff avx2)"
cmake_args+=" -DGGML_FMA=$(onoff fma) -DGGML_F16C=$(onoff f16c) -DGGML_BMI2=$(onoff bmi2) -DGGML_AVX_VNNI=$(onoff avx_vnni)"
cmake_args+=" -DGGML_AVX512=$avx512"
if [[ $avx512 == ON ]]; then
  cmake_args+=" -DGGML_AVX512_VBMI=$(onoff avx512vbmi) -DGGML_AVX512_VNNI=$(onoff avx512_vnni)"
  cmake_args+=" -DGGML_AVX512_BF16=$(onoff avx512_bf16)"
else
  cmake_args+=" -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF"
fi
cmake_args+=" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
cpu_model="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
record="$VENV/llama_cpp_build.txt"
built_args="$(sed -n 's/^CMAKE_ARGS=//p' "$record" 2>/dev/null || true)"

if need llama_cpp || [[ "$built_args" != "$cmake_args" ]]; then
  echo "[bench-venv] building $LLAMA_CPP_PYTHON for this CPU ($cpu_model; this takes a while)"
  echo "[bench-venv] CMAKE_ARGS=$cmake_args"
  CMAKE_ARGS="$cmake_args" "$VENV/bin/python" -m pip install -q --force-reinstall --no-deps --no-cache-dir \
    "$LLAMA_CPP_PYTHON"
  "$VENV/bin/python" -m pip install -q "$LLAMA_CPP_PYTHON"  # its pure-Python dependencies
  {
    echo "$LLAMA_CPP_PYTHON built $(date -u +%Y-%m-%dT%H:%MZ) on $cpu_model (AMX off: not requested by this version)"
    echo "CMAKE_ARGS=$cmake_args"
  } > "$record"
fi
if need torch || need transformers; then
  echo "[bench-venv] installing torch and transformers"
  "$VENV/bin/python" -m pip install -q torch transformers
fi
if need faiss; then
  echo "[bench-venv] installing faiss-cpu"
  "$VENV/bin/python" -m pip install -q faiss-cpu numpy
fi
"$VENV/bin/python" -c "import llama_cpp, torch, transformers; print('[bench-venv] ready: llama_cpp', llama_cpp.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
echo "[bench-venv] $(head -1 "$record")"
