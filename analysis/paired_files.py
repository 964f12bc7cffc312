#!/usr/bin/python3
"""Compare two `headsweep eval` files answer by answer: the same items under two runs that differ in something the
records do not name (weight precision, device, BLAS, thread count). Used for issue 16 (f32 vs native weights).

    /usr/bin/python3 analysis/paired_files.py results/precision/eval-smollm2-obqa-f32.h5 \
        results/precision/eval-smollm2-obqa-native.h5 [--md out.md]

Pairs /records rows by (method, task, id, gold_position) -- the model column is ignored, so the same GGUF in two
precisions pairs up -- and prints, per (method, task): n paired, accuracy A and B, the paired difference B - A with
a 95% percentile-bootstrap interval (10,000 resamples, seed 20240917, as the eval summary), and how many answers
are identical. Needs h5py and numpy (Debian: python3-h5py, python3-numpy).
"""
import argparse
import sys

import h5py
import numpy as np


def records(path):
    with h5py.File(path, "r") as f:
        if "records" not in f:
            sys.exit(f"{path}: no /records (not a headsweep eval file)")
        r = f["records"]
        cols = {k: r[k][()] for k in ("method", "task", "id", "gold_position", "score", "output")}
        settings = f.attrs.get("settings", b"")
    dec = lambda x: x.decode() if isinstance(x, bytes) else str(x)
    out = {}
    for i in range(len(cols["score"])):
        key = (dec(cols["method"][i]), dec(cols["task"][i]), dec(cols["id"][i]), int(cols["gold_position"][i]))
        if key in out:
            sys.exit(f"{path}: record {key} appears twice")
        out[key] = (float(cols["score"][i]), dec(cols["output"][i]))
    return out, dec(settings)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--md", help="also write the table here")
    args = ap.parse_args()
    ra, sa = records(args.a)
    rb, sb = records(args.b)
    # The weight precision is part of the settings string (" precision=X" when not f32): the one thing expected to differ.
    strip = lambda t: " ".join(w for w in t.split() if not w.startswith("precision="))
    if strip(sa) != strip(sb):
        sys.exit(f"{args.a} and {args.b} were built with different task settings:\n  {sa}\n  {sb}")
    common = sorted(set(ra) & set(rb))
    if not common:
        sys.exit(f"{args.a} and {args.b} share no (method, task, item) records")
    rng = np.random.default_rng(20240917)
    lines = [f"A = {args.a}, B = {args.b}; {len(common)} paired answers "
             f"({len(ra) - len(common)} only in A, {len(rb) - len(common)} only in B)\n",
             "| method | task | n | accuracy A | accuracy B | B - A [95% CI] | identical answers |",
             "|---|---|---|---|---|---|---|"]
    groups = {}
    for k in common:
        groups.setdefault(k[:2], []).append(k)
    for (method, task), keys in sorted(groups.items()):
        a = np.array([ra[k][0] for k in keys])
        b = np.array([rb[k][0] for k in keys])
        d = b - a
        boot = d[rng.integers(0, len(d), size=(10000, len(d)))].mean(axis=1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        same = sum(ra[k][1] == rb[k][1] for k in keys)
        lines.append(f"| {method} | {task} | {len(keys)} | {a.mean():.3f} | {b.mean():.3f} | "
                     f"{d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] | {same}/{len(keys)} |")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.md:
        open(args.md, "w").write(text)


if __name__ == "__main__":
    main()
