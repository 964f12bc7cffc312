#!/usr/bin/env python3
"""Engine throughput and memory against llama.cpp, same GGUF, same thread count, one invocation.

Runs build/headsweep_bench_engine (ours) and llama.cpp through llama-cpp-python (in the bench venv made by
bench/setup_bench_venv.sh) as two child processes, each reporting its own peak resident memory, and prints
prefill tokens/s at 512 tokens (batch 1 and 16), decode tokens/s, and the ratios ours / llama.cpp.

llama.cpp has no batch of independent sequences in llama-cpp-python's high-level API: its "batch 16" figure is
16 sequential 512-token prefills (the same throughput as batch 1). Our batch 16 is one forward of 16 x 512 tokens.

Usage: .venv-bench/bin/python bench/bench_engine.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf] [--threads 2]
       python3 bench/bench_engine.py --smoke   (CI: a few tokens; llama.cpp stubbed where llama_cpp is absent)
The header names the CPU, the BLAS core ours ran, and how llama.cpp was built (bench/setup_bench_venv.sh records
its instruction sets in the venv).
"""
import argparse, json, os, subprocess, sys, textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import have, machine, one, peer_json, run_json  # noqa: E402

LLAMA_CHILD = textwrap.dedent(r"""
    import json, resource, sys, time, random
    from llama_cpp import Llama
    path, threads, tokens, decode, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    kv = dict(a.split("=", 1) for a in sys.argv[6:])  # metadata overrides (strings), e.g. tokenizer.ggml.pre=gpt-2
    llm = Llama(model_path=path, n_ctx=tokens + decode + 8, n_threads=threads, n_threads_batch=threads,
                n_batch=tokens, n_ubatch=tokens, verbose=False, kv_overrides=kv or None)
    rng = random.Random(1)
    ids = [rng.randrange(100, llm.n_vocab()) for _ in range(tokens)]
    def prefill():
        llm.reset(); t = time.perf_counter(); llm.eval(ids); return time.perf_counter() - t
    prefill()
    times = sorted(prefill() for _ in range(reps))
    med = times[len(times) // 2]
    print(json.dumps(dict(engine="llama.cpp", test="prefill", batch=1, tokens=tokens, seconds=med, tokens_per_s=tokens / med)))
    llm.reset(); llm.eval(ids)
    t = time.perf_counter()
    for i in range(decode):
        llm.eval([rng.randrange(100, llm.n_vocab())])
    dt = time.perf_counter() - t
    print(json.dumps(dict(engine="llama.cpp", test="decode", context=tokens, tokens=decode, seconds=dt, tokens_per_s=decode / dt)))
    print(json.dumps(dict(engine="llama.cpp", test="memory", peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
""")



def llama_cpp_build():
    """How the bench venv's llama.cpp was compiled (written by bench/setup_bench_venv.sh next to the venv)."""
    path = os.path.join(sys.prefix, "llama_cpp_build.txt")
    if not os.path.exists(path):
        return "build unknown (not made by bench/setup_bench_venv.sh)" if have("llama_cpp") else "absent (stub)"
    with open(path) as f:
        return f.read().strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ours", default="build/headsweep_bench_engine")
    ap.add_argument("--precision", default="native", help="our host weights: native (the GGUF's blocks, as llama.cpp "
                                                          "keeps them; default) | bf16 | f32")
    ap.add_argument("--cpu-kernels", default="auto", help="our bf16/native kernels: auto | scalar | avx2 | avx512 | avx512-vnni")
    ap.add_argument("--native-prefill", default="auto", help="our prefill on quantised blocks: auto (int8 tiles for "
                                                              "short prompts) | int8 | f32 (dequantise + SGEMM)")
    ap.add_argument("--batches", default="1,16", help="our prefill batch sizes (the 8B file: 1)")
    ap.add_argument("--llama-kv-override", action="append", default=[], metavar="KEY=VALUE",
                    help="llama.cpp metadata override (a string), e.g. tokenizer.ggml.pre=gpt-2 for GGUFs written "
                         "with the pre-tokenizer name 'gpt2', which llama.cpp refuses")
    ap.add_argument("--smoke", action="store_true", help="32 tokens, 4 decode steps, 1 repetition; stub llama.cpp "
                                                         "where llama_cpp is absent")
    a = ap.parse_args()
    if a.smoke:
        a.tokens, a.decode, a.reps = 32, 4, 1
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    prec = ["--precision", a.precision, "--cpu-kernels", a.cpu_kernels, "--native-prefill", a.native_prefill]
    batches = [int(b) for b in a.batches.split(",")]
    ours = run_json([a.ours, a.model, "--threads", str(a.threads), "--tokens", str(a.tokens), "--batches", a.batches,
                "--decode", str(a.decode), "--reps", str(a.reps)] + prec, env)
    # Our memory figure at batch 1 (the 16 x 512 forward needs activations for 8192 tokens).
    ours_b1 = ours if batches == [1] else run_json(
        [a.ours, a.model, "--threads", str(a.threads), "--tokens", str(a.tokens), "--batches", "1", "--decode", "0",
         "--reps", "1"] + prec, env)
    stub = [dict(engine="llama.cpp", test="prefill", tokens_per_s=1.0), dict(engine="llama.cpp", test="decode", tokens_per_s=1.0),
            dict(engine="llama.cpp", test="memory", peak_rss_mib=1.0)]
    peer = peer_json([sys.executable, "-c", LLAMA_CHILD, a.model, str(a.threads), str(a.tokens), str(a.decode), str(a.reps)]
                     + a.llama_kv_override,
                     "llama_cpp", stub, a.smoke, env)
    lp = one(peer, test="prefill")["tokens_per_s"]
    print(f"model {a.model}; machine: {machine(a.threads)}")
    print(f"headsweep: {next(r['backend'] for r in ours if 'backend' in r)}, {a.precision} weights")
    print(f"llama.cpp: {llama_cpp_build()}")
    if any(r.get("stub") for r in peer):
        print("(smoke test: llama.cpp is a stub, its figures mean nothing)")
    print(f"{'':28s}{'headsweep':>12s}{'llama.cpp':>12s}{'ratio':>8s}")
    for b in batches:
        o = one(ours, test="prefill", batch=b)["tokens_per_s"]
        print(f"prefill {a.tokens} tok, batch {b:<2d} tok/s{o:12.1f}{lp:12.1f}{o / lp:8.2f}")
    od, ld = one(ours, test="decode")["tokens_per_s"], one(peer, test="decode")["tokens_per_s"]
    print(f"decode at {a.tokens} ctx     tok/s{od:12.1f}{ld:12.1f}{od / ld:8.2f}")
    m1 = one(ours_b1, test="memory")
    mb16 = one(ours, test="memory")
    bmax = max(batches)
    print(f"peak RSS batch 1      MiB{m1['peak_rss_mib']:14.1f}{one(peer, test='memory')['peak_rss_mib']:12.1f}"
          f"   ours / our weights = {m1['ratio']:.2f}")
    print(f"peak RSS batch {bmax:<2d}     MiB{mb16['peak_rss_mib']:14.1f}{'':12s}   ours / our weights = {mb16['ratio']:.2f}")
    print(json.dumps(dict(ours=ours, ours_batch1=ours_b1, llama_cpp=peer)))


if __name__ == "__main__":
    main()
