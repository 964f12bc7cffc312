#!/usr/bin/env bash
# bench/setup_bench_venv.sh: the benchmark-only Python environment with the peers we compare against.
#   llama-cpp-python  (builds llama.cpp from source: PyPI has no binary wheel; ~10-20 min on 2 cores)
#   torch + transformers (CPU use of the PyTorch peer baselines in shared/bench/)
# Usage: bench/setup_bench_venv.sh [VENV_DIR]   (default .venv-bench; git-ignored). The build and the tests never
# need it. Re-running is cheap once everything is installed.
set -euo pipefail
VENV=${1:-.venv-bench}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[bench-venv] creating $VENV"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
need() { ! "$VENV/bin/python" -c "import $1" 2>/dev/null; }
if need llama_cpp; then
  echo "[bench-venv] building llama-cpp-python (llama.cpp for this CPU; this takes a while)"
  CMAKE_ARGS="-DGGML_NATIVE=ON" "$VENV/bin/python" -m pip install -q "llama-cpp-python==0.3.36"
fi
if need torch || need transformers; then
  echo "[bench-venv] installing torch and transformers"
  "$VENV/bin/python" -m pip install -q torch transformers
fi
"$VENV/bin/python" -c "import llama_cpp, torch, transformers; print('[bench-venv] ready: llama_cpp', llama_cpp.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
