#!/bin/bash
unset OPENBLAS_CORETYPE
export OPENBLAS_NUM_THREADS=2
cd /work/wt/decode
M=/work/models-big/random-llama3-8b-q4_0.gguf
echo "=== smollm2 harness $(uptime)"
nice -n 10 /work/main/.venv-bench/bin/python bench/bench_engine.py --ours /tmp/decode-bin/headsweep_bench_engine
echo "=== smollm2 f32 vs auto at 512, interleaved"
for P in f32 auto f32 auto; do
  echo "T=512 P=$P load=$(cut -d' ' -f1 /proc/loadavg) $(nice -n 10 /tmp/decode-bin/headsweep_bench_engine models/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2 --tokens 512 --batches 1 --decode 0 --reps 3 --precision native --native-prefill $P 2>/dev/null | tr '\n' ' ')"
done
for T in 32 128; do
  echo "=== harness 8B T=$T $(uptime)"
  nice -n 10 /work/main/.venv-bench/bin/python bench/bench_engine.py --model $M --ours /tmp/decode-bin/headsweep_bench_engine --tokens $T --decode 8 --reps 1 --batches 1 --native-prefill auto --llama-kv-override tokenizer.ggml.pre=gpt-2
  echo "=== end $(uptime)"
done
