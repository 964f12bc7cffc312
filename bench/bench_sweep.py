#!/usr/bin/env python3
"""PEAR sweep speed against the PyTorch peer, in one invocation (CPU).

Path mode: the paper's 4 settings on the SmolLM2-135M shape; ours runs the whole sweep (the real default model, or
random:smollm2-135m with --random), the peer times --peer-layers layers and extrapolates.
Total mode: mean over the sequence at all positions, 16 samples x n = 64 ([X, X], 128 tokens), the same for both;
ours times --ours-layers layers and extrapolates by downstream cost.
Usage: .venv-bench/bin/python bench/bench_sweep.py [--threads 2] [--peer-layers 1] [--modes path,total]
       python3 bench/bench_sweep.py --smoke   (CI: random:tiny for ours; the peer stubbed where torch is absent)"""
import argparse, json, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import machine, peer_json, run_json  # noqa: E402



def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--random", action="store_true", help="use random:<shape> for ours")
    ap.add_argument("--shape", default="smollm2-135m", help="the peer's model shape: smollm2-135m or gemma3-270m "
                                                             "(match --model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer-layers", type=int, default=1)
    ap.add_argument("--ours-layers", type=int, default=0, help="total mode: layers to time (0: all)")
    ap.add_argument("--modes", default="path,total")
    ap.add_argument("--ours", default="build/headsweep_bench_sweep")
    ap.add_argument("--smoke", action="store_true", help="tiny random model and settings; stub the peer without torch")
    a = ap.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    model = "random:tiny" if a.smoke else f"random:{a.shape}" if a.random else a.model
    here = os.path.dirname(os.path.abspath(__file__))
    peer_cmd = [sys.executable, os.path.join(here, "torch_peers_cpu.py")]
    # ours prints a row per setting, then the summary row with the (extrapolated) whole-sweep time.
    summary = lambda rows: next(r for r in rows if "full_sweep_secs_est" in r)
    rows = []
    for mode in a.modes.split(","):
        stub = [dict(engine="torch", mode=mode, full_sweep_secs_est=1.0)]
        if mode == "path":
            cmd = [a.ours, model, "--mode", "path", "--threads", str(a.threads)]
            if a.smoke:
                cmd += ["--settings", "4x6"]
            ours = run_json(cmd, env)
            peer = peer_json(peer_cmd + ["path", "--shape", a.shape, "--layers", str(a.peer_layers), "--threads", str(a.threads)],
                             "torch", stub, a.smoke, env)
        else:
            B, n = ("4", "6") if a.smoke else ("16", "64")
            cmd = [a.ours, model, "--mode", "total", "--settings", f"{B}x{n}", "--mean-over", "sequence",
                   "--threads", str(a.threads)]
            if a.ours_layers:
                cmd += ["--layers", str(a.ours_layers)]
            ours = run_json(cmd, env)
            peer = peer_json(peer_cmd + ["total", "--shape", a.shape, "--B", B, "--n", n, "--layers", str(a.peer_layers),
                                         "--threads", str(a.threads)], "torch", stub, a.smoke, env)
        rows.append((mode, summary(ours), summary(peer)))
    print(f"machine: {machine(a.threads)}; ours on {model}, {rows[0][1].get('blas', 'blas ?')}")
    if any(p.get("stub") for _, _, p in rows):
        print("(smoke test: the torch peer is a stub, its times mean nothing)")
    print(f"{'mode':8s}{'headsweep s':>14s}{'torch s':>12s}{'speed-up':>10s}")
    for mode, o, p in rows:
        ratio = p['full_sweep_secs_est'] / o['full_sweep_secs_est'] if o['full_sweep_secs_est'] > 0 else float("inf")
        print(f"{mode:8s}{o['full_sweep_secs_est']:14.2f}{p['full_sweep_secs_est']:12.1f}{ratio:10.1f}x")
    print(json.dumps([dict(mode=m, ours=o, peer=p) for m, o, p in rows]))


if __name__ == "__main__":
    main()
