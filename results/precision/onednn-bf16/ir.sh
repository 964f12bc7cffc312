M=/work/main/models/SmolLM2-135M-Instruct.Q4_1.gguf
for cfg in "bf16 on" "bf16 off" "f32 on"; do set -- $cfg
  echo "== infiniretri 8192 precision $1 onednn $2"
  HEADSWEEP_ONEDNN=$2 build/headsweep_bench_infiniretri $M --tokens 8192 --threads 2 --precision $1 --prefill-reps 1
done
