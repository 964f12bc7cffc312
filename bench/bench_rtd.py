#!/usr/bin/env python3
"""RTD speed in one invocation, ratios printed (issue 13):
  1. datastore build: prompts/s and tokens/s of the embedding pass against the engine's plain prefill (the same
     prompts: a task's first training items with their rotations);
  2. search: queries/s of our exact index (faiss flat from Debian's libfaiss-dev, one query at a time as at answer
     time, and batched) against faiss-cpu from PyPI (the reference code's library) on the same datastore and queries,
     with the agreement of the ids;
  3. answer time: RTD and MH-RTD over zero-shot (forward + search against the forward alone); goal <= 5%;
  4. scale: a random N x D datastore (default 1M x 4096) sharded over R ranks (default 4): queries/s, and the ids
     against one rank holding everything (exactness). One rank needs N*D*4 bytes of memory (16 GiB at the default).
Usage:
  python3 bench/bench_rtd.py --datastore results/rtd/ds/arc-easy.h5 --task arc-easy [--peer-python .venv-bench/bin/python]
         [--threads 1] [--items 40] [--queries 500] [--scale-n 1000000 --scale-d 4096 --scale-ranks 4 --scale-queries 8]
  python3 bench/bench_rtd.py --smoke   (tiny: random:tiny, a datastore built on the fly; peer stubbed where absent)"""
import argparse, os, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import machine, one, run_json  # noqa: E402

PEER = r"""
import json, sys, time
import numpy as np, faiss
d, nq, k, dump = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
keys = np.fromfile(dump + "/keys.f32", dtype=np.float32).reshape(-1, d)
q = np.fromfile(dump + "/queries.f32", dtype=np.float32).reshape(-1, d)
ours = np.fromfile(dump + "/ids.i64", dtype=np.int64).reshape(nq, k)
faiss.omp_set_num_threads(int(sys.argv[5]))
idx = faiss.IndexFlatL2(d); idx.add(keys)
t = time.perf_counter()
for i in range(nq): idx.search(q[i:i + 1], k)
single = time.perf_counter() - t
t = time.perf_counter(); D, I = idx.search(q, k); batch = time.perf_counter() - t
same = float((np.sort(I, axis=1) == np.sort(ours, axis=1)).mean())
print(json.dumps(dict(peer="faiss-cpu " + faiss.__version__, single_qps=nq / single, batch_qps=nq / batch, same_ids=same)))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", default="build/headsweep_bench_rtd")
    ap.add_argument("--headsweep", default="build/headsweep")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--datastore", help="a built datastore (headsweep datastore build)")
    ap.add_argument("--task", default="arc-easy")
    ap.add_argument("--data-dir", default=os.environ.get("HEADSWEEP_DATA", "../shared/data"))
    ap.add_argument("--peer-python", default=sys.executable, help="a python with faiss-cpu from PyPI")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--scale-n", type=int, default=1_000_000)
    ap.add_argument("--scale-d", type=int, default=4096)
    ap.add_argument("--scale-ranks", type=int, default=4)
    ap.add_argument("--scale-queries", type=int, default=8)
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OMPI_MCA_rmaps_base_oversubscribe="1")
    env.pop("OPENBLAS_CORETYPE", None)
    tmp = tempfile.mkdtemp(prefix="hs_bench_rtd_")
    common = ["--data-dir", a.data_dir, "--threads", str(a.threads)]
    if a.smoke:
        a.model, a.task, a.items, a.queries = "random:tiny", "cb", 4, 20
        a.scale_n, a.scale_d, a.scale_queries, a.scale_ranks = 2000, 32, 3, 2
        a.datastore = os.path.join(tmp, "{task}.h5")
        subprocess.run([a.headsweep, "datastore", "build", "--task", a.task, "-m", a.model, "--limit-items", "60",
                        "-o", a.datastore, "-q", "--data-dir", a.data_dir, "-t", "1"], check=True, env=env,
                       capture_output=True)
        a.datastore = a.datastore.replace("{task}", a.task)
        subprocess.run([a.headsweep, "datastore", "tune", a.datastore, "--k", "8"], check=True, env=env,
                       capture_output=True)
    if not a.datastore:
        raise SystemExit("--datastore FILE is needed (or --smoke)")
    k = "8" if a.smoke else "32"
    print(f"machine: {machine(a.threads)}")
    b = one(run_json([a.ours, "build", a.model, a.task, str(a.items)] + common, env), bench="build")
    print(f"datastore build ({b['prompts']} prompts, {b['tokens']} tokens, {a.task} train with rotations, {b['blas']}):")
    print(f"  embedding  {b['embed_prompts_per_s']:8.2f} prompts/s {b['embed_tokens_per_s']:9.0f} tokens/s")
    print(f"  prefill    {b['prefill_prompts_per_s']:8.2f} prompts/s {b['prefill_tokens_per_s']:9.0f} tokens/s"
          f"   embedding / prefill = {b['embed_tokens_per_s'] / b['prefill_tokens_per_s']:.3f}")
    s = one(run_json([a.ours, "search", a.datastore, str(a.queries), tmp, "--k", k], env), bench="search")
    peer_cmd = [a.peer_python, "-c", PEER, str(s["d"]), str(s["nq"]), k, tmp, str(a.threads)]
    try:
        p = run_json(peer_cmd, env)[0]
    except (subprocess.CalledProcessError, IndexError, FileNotFoundError):
        if not a.smoke:
            raise SystemExit(f"the faiss-cpu peer failed under {a.peer_python}: give --peer-python with faiss-cpu")
        p = dict(peer="(stub: faiss-cpu absent)", single_qps=float("nan"), batch_qps=float("nan"), same_ids=float("nan"))
    print(f"search ({s['n']} keys x d={s['d']}, {s['nq']} queries, k={s['k']}, {a.threads} thread(s)):")
    print(f"  ours (faiss flat, Debian libfaiss)  one at a time {s['single_qps']:10.1f} q/s   batched {s['batch_qps']:10.1f} q/s"
          f"   naive loops {s['naive_qps']:8.1f} q/s (ids equal to flat: {s['naive_equal_ids']:.4f})")
    print(f"  ours (blas: one OpenBLAS GEMM)       one at a time {s['blas_single_qps']:10.1f} q/s   batched {s['blas_batch_qps']:10.1f} q/s"
          f"   ids equal to flat: {s['blas_equal_ids']:.4f}")
    print(f"  {p['peer']:<34}  one at a time {p['single_qps']:10.1f} q/s   batched {p['batch_qps']:10.1f} q/s"
          f"   ids equal to ours: {p['same_ids']:.4f}")
    print(f"  ours / peer: flat one at a time {s['single_qps'] / p['single_qps']:.3f}, batched {s['batch_qps'] / p['batch_qps']:.3f};"
          f" blas one at a time {s['blas_single_qps'] / p['single_qps']:.3f}, batched {s['blas_batch_qps'] / p['batch_qps']:.3f}")
    r = one(run_json([a.ours, "answer", a.model, a.datastore, a.task, str(a.items)] + common + ["--k", k], env), bench="answer")
    print(f"answer time ({r['queries']} test prompts, datastore {r['datastore']} x {r['d']}, k={r['k']}):"
          f" zero-shot {r['zero_shot_s']:.3f} s, rtd {r['rtd_s']:.3f} s, mh-rtd {r['mh_rtd_s']:.3f} s;"
          f" overhead rtd {100 * r['rtd_overhead']:+.2f}%, mh-rtd {100 * r['mh_rtd_overhead']:+.2f}% (goal <= 5%)")
    if a.skip_scale:
        print("scale: skipped (--skip-scale)")
        return
    ids_r, ids_1 = os.path.join(tmp, "ids_r.i64"), os.path.join(tmp, "ids_1.i64")
    sc = [str(a.scale_n), str(a.scale_d), str(a.scale_queries)]
    mr = one(run_json(["mpiexec", "-n", str(a.scale_ranks), a.ours, "scale"] + sc + [ids_r, "--k", k], env), bench="scale")
    m1 = one(run_json([a.ours, "scale"] + sc + [ids_1, "--k", k], env), bench="scale")
    same = open(ids_r, "rb").read() == open(ids_1, "rb").read()
    print(f"scale ({a.scale_n} x {a.scale_d} random keys, {a.scale_queries} queries one at a time, k={k}):"
          f" {a.scale_ranks} ranks {mr['qps']:.3f} q/s ({mr['shard_gib']:.2f} GiB per rank, built in {mr['build_s']:.1f} s),"
          f" 1 rank {m1['qps']:.3f} q/s ({m1['shard_gib']:.2f} GiB); speed-up {mr['qps'] / m1['qps']:.2f};"
          f" ids identical to one rank: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
