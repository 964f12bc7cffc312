#!/usr/bin/python3
"""How stable a sweep's top-K heads are across seeds: pairwise top-K Jaccard and Spearman rank correlation of the
mean delta-pi between sweep files of one model (headsweep sweep outputs, docs/file-formats.md).

    /usr/bin/python3 analysis/seed_jaccard.py A.h5 B.h5 [C.h5 ...] [--top K]

`headsweep compare A.h5 B.h5 ...` does this and more (largest changes, standard errors and bootstrap top-K
frequencies from format-version-2 files; analysis/plot_compare.py plots it); this script stays for the h5py-only
route. K defaults to the first file's top_k. Every file must be complete and have the same model (sha256), mode and head
grid; seeds (and settings) may differ -- that is the point. Prints one line per pair and the mean Jaccard.
"""
import argparse, itertools, sys

import h5py
import numpy as np


def attr(f, key):
    v = f.attrs[key]
    return v.decode() if isinstance(v, bytes) else v


def load(path):
    with h5py.File(path, "r") as f:
        if attr(f, "format") != "headsweep-pear-sweep":
            sys.exit(f"{path}: not a headsweep sweep file")
        if int(f.attrs["complete"]) != 1:
            sys.exit(f"{path}: the sweep is not complete")
        return dict(path=path, sha=attr(f, "model_sha256"), mode=attr(f, "mode"), seed=int(f.attrs["seed"]),
                    top_k=int(f.attrs["top_k"]), mean=np.asarray(f["mean_ratio"][()], dtype=float),
                    ranking=np.asarray(f["ranking"][()]))


def spearman(a, b):
    ra = np.argsort(np.argsort(a))
    rb = np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--top", type=int, default=0)
    a = ap.parse_args()
    if len(a.files) < 2:
        sys.exit("give at least two sweep files")
    runs = [load(p) for p in a.files]
    for r in runs[1:]:
        for key in ("sha", "mode"):
            if r[key] != runs[0][key]:
                sys.exit(f"{r['path']}: {key} differs from {runs[0]['path']} ({r[key]} vs {runs[0][key]})")
        if r["mean"].shape != runs[0]["mean"].shape:
            sys.exit(f"{r['path']}: head grid {r['mean'].shape} differs from {runs[0]['mean'].shape}")
    K = a.top or runs[0]["top_k"]
    jac = []
    for x, y in itertools.combinations(runs, 2):
        tx, ty = set(x["ranking"][:K].tolist()), set(y["ranking"][:K].tolist())
        j = len(tx & ty) / len(tx | ty)
        jac.append(j)
        ok = np.isfinite(x["mean"]).ravel() & np.isfinite(y["mean"]).ravel()
        rho = spearman(x["mean"].ravel()[ok], y["mean"].ravel()[ok])
        print(f"seed {x['seed']} vs {y['seed']}: top-{K} Jaccard {j:.3f} ({len(tx & ty)} shared), "
              f"Spearman {rho:.3f} over {int(ok.sum())} heads")
    print(f"mean top-{K} Jaccard over {len(jac)} pairs of {len(runs)} seeds: {np.mean(jac):.3f}")


if __name__ == "__main__":
    main()
