M=/work/models-big/random-llama3-8b-q4_0.gguf
on=$1; t=$2; reps=$3
echo "== 8B bf16 tokens $t onednn $on"
HEADSWEEP_ONEDNN=$on /usr/bin/time -f "wall %e s, maxrss %M KB" build/headsweep_bench_engine $M --threads 2 --tokens $t --batches 1 --decode 2 --reps $reps --precision bf16
