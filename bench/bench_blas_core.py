#!/usr/bin/env python3
"""The main job with the BLAS core this CPU allows, against the same job on OpenBLAS's slow fallback, in one
invocation.

Debian's OpenBLAS 0.3.21 picks its kernels from a table of CPU model numbers and runs its Prescott (SSE3) kernels on
CPUs newer than the table (measured on Intel Emerald Rapids). headsweep compares that choice with the cpuid feature
bits at start-up and re-executes itself with the best core (src/backend/cpu/cpu_runtime.hpp). This driver runs
`headsweep sweep JOB` three times, each writing its own output file:

  fallback  OPENBLAS_CORETYPE=Prescott, kept as a user's choice: the slow case, forced on any CPU
  fixed     OPENBLAS_CORETYPE=Prescott with HEADSWEEP_BLAS_CORETYPE=best: headsweep replaces the fallback
  default   no variable set: what a user gets on this machine

and prints each wall time, the core each run recorded in its file (root attribute blas_core), the ratio
fallback / fixed, and whether the top-K heads of the three runs agree.

Usage: python3 bench/bench_blas_core.py [--job jobs/smollm2-pear.toml] [--threads 2]
       python3 bench/bench_blas_core.py --smoke   (CI: random:tiny, one small setting)"""
import argparse, os, subprocess, sys, tempfile, time

import h5py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import machine  # noqa: E402

RUNS = (
    ("fallback", {"OPENBLAS_CORETYPE": "Prescott", "HEADSWEEP_BLAS_CORETYPE": "auto"}),
    ("fixed", {"OPENBLAS_CORETYPE": "Prescott", "HEADSWEEP_BLAS_CORETYPE": "best"}),
    ("default", {}),
)


def attr(f, key):
    v = f.attrs.get(key, b"?")
    return v.decode() if isinstance(v, bytes) else str(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job", default="jobs/smollm2-pear.toml")
    ap.add_argument("--headsweep", default="build/headsweep")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="random:tiny with one setting of 4 x 6 (seconds)")
    a = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as d:
        for name, extra in RUNS:
            env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "HEADSWEEP_BLAS_CORETYPE")}
            env.update(extra, OPENBLAS_NUM_THREADS=str(a.threads))
            out = os.path.join(d, name + ".h5")
            cmd = [a.headsweep, "sweep", a.job, "--output", out, "--threads", str(a.threads), "--quiet"]
            if a.smoke:
                cmd = [a.headsweep, "sweep", "--model", "random:tiny", "--settings", "4x6", "--output", out,
                       "--threads", str(a.threads), "--quiet"]
            t = time.perf_counter()
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            secs = time.perf_counter() - t
            if r.returncode != 0:
                raise SystemExit(f"bench_blas_core: {name} run failed ({r.returncode}): {r.stderr.strip()}")
            with h5py.File(out, "r") as f:
                results[name] = dict(seconds=secs, core=attr(f, "blas_core"), complete=int(f.attrs["complete"]),
                                     top=[(int(l), int(h)) for l, h in zip(f["top_k/layer"][()],
                                                                          f["top_k/head"][()])])
    job = "random:tiny 4x6" if a.smoke else a.job
    print(f"machine: {machine(a.threads)}; job {job}")
    print(f"{'run':10s}{'seconds':>10s}  blas core (as recorded in the output file)")
    for name, _ in RUNS:
        r = results[name]
        print(f"{name:10s}{r['seconds']:10.1f}  {r['core']}")
    ratio = results["fallback"]["seconds"] / results["fixed"]["seconds"]
    print(f"fallback / fixed = {ratio:.2f}x")
    same = results["fallback"]["top"] == results["fixed"]["top"] == results["default"]["top"]
    print(f"top-{len(results['fixed']['top'])} heads identical across the three runs: {'yes' if same else 'NO'}")
    if not all(r["complete"] for r in results.values()) or not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
