#!/usr/bin/env python3
"""PEAR deployment has zero overhead: the folded model (tau in W_O, written by `headsweep export`) against the
unmodified model, same engine, separate processes: prefill/decode throughput and peak memory. Then llama.cpp
(llama-cpp-python in the bench venv) loads the exported GGUF and generates from it, next to the original.

Usage: .venv-bench/bin/python bench/bench_fold.py --train runs/smollm2-train.h5 [--model models/...gguf]
       python3 bench/bench_fold.py --smoke   (CI: one head, tau 0.5, few tokens; llama.cpp stubbed where absent)"""
import argparse, json, os, subprocess, sys, tempfile, textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import machine, peer_json, run_json  # noqa: E402

LLAMA_CHILD = textwrap.dedent(r"""
    import json, sys
    from llama_cpp import Llama
    out = {}
    for tag, path in (("original", sys.argv[1]), ("folded", sys.argv[2])):
        llm = Llama(model_path=path, n_ctx=256, n_threads=2, verbose=False)
        meta = llm.metadata
        r = llm("The capital of France is", max_tokens=12, temperature=0.0)
        out[tag] = dict(text=r["choices"][0]["text"], pear_heads=meta.get("headsweep.pear.heads"))
    print(json.dumps(out))
""")



def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--train", help="a `headsweep train` output file (heads and tau)")
    ap.add_argument("--heads", help="instead of --train: heads \"l:h,...\" (with --tau)")
    ap.add_argument("--tau", help="instead of --train: tau values \"t1,...\" (with --heads)")
    ap.add_argument("--smoke", action="store_true", help="heads 24:4 tau 0.5 unless given, 32 tokens, 1 repetition; "
                                                         "stub llama.cpp where llama_cpp is absent")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--headsweep", default="build/headsweep")
    ap.add_argument("--bench", default="build/headsweep_bench_engine")
    a = ap.parse_args()
    if a.smoke and not a.train and not a.heads:
        a.heads, a.tau = "24:4", "0.5"
    if bool(a.train) == bool(a.heads and a.tau):
        ap.error("give --train, or --heads with --tau")
    fold = ["--train", a.train] if a.train else ["--heads", a.heads, "--tau", a.tau]
    sizes = ["--tokens", "32", "--decode", "4", "--reps", "1"] if a.smoke else ["--decode", "32", "--reps", "3"]
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads))
    with tempfile.TemporaryDirectory() as d:
        folded = os.path.join(d, "folded.gguf")
        subprocess.run([a.headsweep, "export", "--model", a.model, *fold, "-o", folded], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        rows = {}
        for tag, path in (("original", a.model), ("folded", folded)):
            res = run_json([a.bench, path, "--threads", str(a.threads), "--batches", "1", *sizes], env)
            rows[tag] = {r["test"]: r for r in res if "test" in r}
        stub = dict(original=dict(text="(stub)", pear_heads=None), folded=dict(text="(stub)", pear_heads=a.heads), stub=True)
        peer = peer_json([sys.executable, "-c", LLAMA_CHILD, a.model, folded], "llama_cpp", [stub], a.smoke, env)[0]
    print(f"machine: {machine(a.threads)}")
    if peer.get("stub"):
        print("(smoke test: llama.cpp is a stub)")
    print(f"{'':22s}{'original':>12s}{'folded':>12s}{'ratio':>8s}")
    for test, key, unit in (("prefill", "tokens_per_s", "tok/s"), ("decode", "tokens_per_s", "tok/s"),
                            ("memory", "peak_rss_mib", "MiB")):
        o, f = rows["original"][test][key], rows["folded"][test][key]
        print(f"{test + ' ' + unit:22s}{o:12.1f}{f:12.1f}{f / o:8.3f}")
    print(f"llama.cpp, original: {peer['original']['text']!r}")
    print(f"llama.cpp, folded:   {peer['folded']['text']!r}  (headsweep.pear.heads = {peer['folded']['pear_heads']})")
    print(json.dumps(dict(headsweep=rows, llama_cpp=peer)))


if __name__ == "__main__":
    main()
