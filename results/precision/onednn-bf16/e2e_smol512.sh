M=/work/main/models/SmolLM2-135M-Instruct.Q4_1.gguf
for rep in 1 2; do for on in $ORDER; do
  echo "== SmolLM2 bf16 tokens 512 onednn $on rep $rep"
  HEADSWEEP_ONEDNN=$on build/headsweep_bench_engine $M --threads 2 --tokens 512 --batches 1 --decode 32 --reps 3 --precision bf16 | grep -v '"model"'
done; done
