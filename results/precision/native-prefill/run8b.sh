#!/bin/bash
# 8B native prefill: our auto (int8 below 128 tokens) vs llama.cpp via the harness, then our f32 prefill path
unset OPENBLAS_CORETYPE
export OPENBLAS_NUM_THREADS=2
cd /work/wt/decode
M=/work/models-big/random-llama3-8b-q4_0.gguf
for T in 8 128 64; do
  echo "=== harness T=$T $(uptime)"
  nice -n 10 /work/main/.venv-bench/bin/python bench/bench_engine.py --model $M --ours /tmp/decode-bin/headsweep_bench_engine --tokens $T --decode 4 --reps 1 --batches 1 --native-prefill auto --llama-kv-override tokenizer.ggml.pre=gpt-2
  echo "=== end $(uptime)"
done
for T in 32 8 64 128; do
  for P in f32 int8; do
    echo "T=$T P=$P load=$(cut -d' ' -f1 /proc/loadavg) $(nice -n 10 /tmp/decode-bin/headsweep_bench_engine $M --threads 2 --tokens $T --batches 1 --decode 0 --reps 1 --precision native --native-prefill $P 2>/dev/null | tr '\n' ' ')"
  done
done
echo "=== done $(uptime)"
