#!/usr/bin/env python3
"""Our log-probabilities in f32, bf16 and native precision against llama.cpp's, on the same GGUF and the same ids.

For each text, `headsweep score --json` gives the token ids (our tokenizer, BOS included) and the log-probability of
every token after the first, computed either in one prefill (--step 256: our dequantised-tile GEMM) or token by
token through the KV cache (--step 1: our 8-bit-activation GEMV, as decoding runs). llama.cpp (llama-cpp-python in
the bench venv, logits_all) evaluates the same ids in one batch. Printed per (model, precision, step): the largest and
mean absolute difference of the log-probabilities from llama.cpp's and from our f32 prefill (in nats).

Usage: .venv-bench/bin/python bench/check_llama_cpp_logits.py [--model M ...] [--texts N] [--chars 1500]
The texts are the first N documents of ../shared/data/niah's essays (or --text-file FILE, one text per line).
"""
import argparse, glob, json, os, subprocess, sys, textwrap

import numpy as np

LLAMA_CHILD = textwrap.dedent(r"""
    import json, sys
    import numpy as np
    from llama_cpp import Llama
    path, ids_json = sys.argv[1], sys.argv[2]
    all_ids = json.load(open(ids_json))
    n_ctx = max(len(i) for i in all_ids) + 8
    llm = Llama(model_path=path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True, n_threads=2,
                verbose=False)
    for ids in all_ids:
        llm.reset()
        llm.eval(ids)
        lg = np.array(llm.scores[: len(ids)], dtype=np.float64)
        mx = lg.max(axis=1, keepdims=True)
        lse = mx[:, 0] + np.log(np.exp(lg - mx).sum(axis=1))
        lp = [float(lg[i, ids[i + 1]] - lse[i]) for i in range(len(ids) - 1)]
        print(json.dumps(dict(logprobs=lp)))
""")


def ours(hs, model, text_file, precision, step):
    out = subprocess.run([hs, "score", "-m", model, "-f", text_file, "--json", "--precision", precision,
                          "--step", str(step), "-t", "2"], capture_output=True, text=True,
                         env=dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2"))
    if out.returncode != 0:
        sys.exit(f"headsweep score failed ({model}, {precision}): {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="GGUF file(s); default: both shipped models")
    ap.add_argument("--hs", default="build/headsweep")
    ap.add_argument("--texts", type=int, default=4)
    ap.add_argument("--chars", type=int, default=1500)
    ap.add_argument("--text-file")
    a = ap.parse_args()
    models = a.model or ["models/SmolLM2-135M-Instruct.Q4_1.gguf", "models/gemma-3-270m-q4_k_m.gguf"]
    if a.text_file:
        texts = [l.rstrip("\n") for l in open(a.text_file) if l.strip()][: a.texts]
    else:
        files = sorted(glob.glob("../shared/data/niah/PaulGrahamEssays/*.txt"))[: a.texts]
        texts = [open(f, errors="replace").read()[: a.chars] for f in files]
    os.makedirs("/tmp/hs_llama_check", exist_ok=True)
    rows = []
    for model in models:
        per_text = {}
        for i, t in enumerate(texts):
            tf = f"/tmp/hs_llama_check/text{i}.txt"
            open(tf, "w").write(t)
            for prec, step in (("f32", 256), ("native", 256), ("native", 1), ("bf16", 256)):
                per_text.setdefault((prec, step), []).append(ours(a.hs, model, tf, prec, step))
        ids = [r["ids"] for r in per_text[("f32", 256)]]
        json.dump(ids, open("/tmp/hs_llama_check/ids.json", "w"))
        peer = subprocess.run([sys.executable, "-c", LLAMA_CHILD, model, "/tmp/hs_llama_check/ids.json"],
                              capture_output=True, text=True)
        if peer.returncode != 0:
            sys.exit(f"llama.cpp failed on {model}: {peer.stderr.strip()[-2000:]}")
        ll = [json.loads(l) for l in peer.stdout.strip().splitlines()]
        ref = np.concatenate([r["logprobs"] for r in per_text[("f32", 256)]])
        lref = np.concatenate([r["logprobs"] for r in ll])
        for (prec, step), rs in per_text.items():
            assert [r["ids"] for r in rs] == ids, "tokenisation differs between runs"
            x = np.concatenate([r["logprobs"] for r in rs])
            rows.append(dict(model=os.path.basename(model), precision=prec, step=step, tokens=int(x.size),
                             max_vs_llama=float(np.abs(x - lref).max()), mean_vs_llama=float(np.abs(x - lref).mean()),
                             max_vs_f32=float(np.abs(x - ref).max()), mean_vs_f32=float(np.abs(x - ref).mean())))
        rows.append(dict(model=os.path.basename(model), precision="llama.cpp", step=len(ids[0]), tokens=int(lref.size),
                         max_vs_llama=0.0, mean_vs_llama=0.0, max_vs_f32=float(np.abs(lref - ref).max()),
                         mean_vs_f32=float(np.abs(lref - ref).mean())))
    print(f"{'model':36s}{'weights':>10s}{'step':>6s}{'tokens':>8s}{'max|d| llama':>14s}{'mean|d| llama':>15s}"
          f"{'max|d| f32':>12s}{'mean|d| f32':>13s}")
    for r in rows:
        print(f"{r['model']:36s}{r['precision']:>10s}{r['step']:>6d}{r['tokens']:>8d}{r['max_vs_llama']:14.4f}"
              f"{r['mean_vs_llama']:15.5f}{r['max_vs_f32']:12.4f}{r['mean_vs_f32']:13.5f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
