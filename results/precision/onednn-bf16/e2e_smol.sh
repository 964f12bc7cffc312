M=/work/main/models/SmolLM2-135M-Instruct.Q4_1.gguf
for rep in 1 2; do
for t in 32 16; do
for on in on off; do
  echo "== tokens $t onednn $on rep $rep"
  HEADSWEEP_ONEDNN=$on build/headsweep_bench_engine $M --threads 2 --tokens $t --batches 1 --decode 8 --reps 5 --precision bf16 | grep -v '"test":"decode"'
done; done; done
for on in on off; do echo "== f32 tokens 32 ($on)"; HEADSWEEP_ONEDNN=$on build/headsweep_bench_engine $M --threads 2 --tokens 32 --batches 1 --decode 8 --reps 5 --precision f32 | grep prefill; done
