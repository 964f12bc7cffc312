#!/usr/bin/python3
"""Plot `headsweep compare --json` output: per-head scores of sweep A against sweep B, and the top-K stability.

    build/headsweep compare A.h5 B.h5 [C.h5 ...] --json > cmp.json
    /usr/bin/python3 analysis/plot_compare.py cmp.json [--png compare.png] [--pair I]

Left: a scatter of mean delta-pi of every head, file A (x) against file B (y) for one pair (default the first),
with +-1 standard error bars where both files have per-sample values (format version 2), the diagonal, and the
top-K heads of either file labelled; the title gives Spearman's rho and the top-K Jaccard. Right: for every head in
some file's top K, the fraction of sweeps whose top K holds it and (where every file has per-sample values) the
mean bootstrap top-K frequency. Also prints the pairs as a Markdown table. Reads the JSON line only (no HDF5).
"""
import argparse
import json
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", help="output of `headsweep compare ... --json` (one line), or - for stdin")
    ap.add_argument("--png", help="image to write (default: the JSON file with .png, or compare.png)")
    ap.add_argument("--pair", type=int, default=0, help="which pair to scatter (index into pairs)")
    args = ap.parse_args()
    text = sys.stdin.read() if args.json == "-" else open(args.json).read()
    r = json.loads(text.strip().splitlines()[-1])
    files, pairs, K = r["files"], r["pairs"], r["top_k"]
    L, H = r["n_layer"], r["n_head"]
    if not pairs:
        sys.exit(f"{args.json}: no pairs")
    if not 0 <= args.pair < len(pairs):
        sys.exit(f"--pair {args.pair}: there are {len(pairs)} pairs")

    print(f"| A | B | Spearman ρ | top-{K} Jaccard | largest change (head: A → B) |")
    print("|---|---|---|---|---|")
    for p in pairs:
        a, b = files[p["a"]], files[p["b"]]
        c = p["changes"][0] if p["changes"] else None
        ch = f"L{c['layer']}H{c['head']}: {c['a']:.4f} → {c['b']:.4f}" if c else "-"
        if c and c["se"] is not None:
            ch += f" (se {c['se']:.4f})"
        print(f"| {a['path']} | {b['path']} | {p['spearman']:.3f} | {p['jaccard']:.3f} | {ch} |")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = pairs[args.pair]
    fa, fb = files[p["a"]], files[p["b"]]
    x = np.array([np.nan if v is None else v for v in fa["mean_ratio"]], dtype=float)
    y = np.array([np.nan if v is None else v for v in fb["mean_ratio"]], dtype=float)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.1, 1]})
    if fa["mean_ratio_se"] is not None and fb["mean_ratio_se"] is not None:
        ax.errorbar(x, y, xerr=np.array(fa["mean_ratio_se"], dtype=float), yerr=np.array(fb["mean_ratio_se"], dtype=float),
                    fmt="o", ms=3, lw=0.6, alpha=0.6, color="tab:blue")
    else:
        ax.plot(x, y, "o", ms=3, alpha=0.6, color="tab:blue")
    lo, hi = np.nanmin([x.min(), y.min()]), np.nanmax([x.max(), y.max()])
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.7)
    top = set(np.argsort(-np.nan_to_num(x, nan=-np.inf), kind="stable")[:K]) | \
        set(np.argsort(-np.nan_to_num(y, nan=-np.inf), kind="stable")[:K])
    for i in sorted(top):
        ax.annotate(f"L{i // H}H{i % H}", (x[i], y[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    name = lambda f: f"{f['path'].rsplit('/', 1)[-1]} ({f['mode']}, seed {f['seed']})"
    ax.set_xlabel(f"A: {name(fa)}  mean Δπ", fontsize=8)
    ax.set_ylabel(f"B: {name(fb)}  mean Δπ", fontsize=8)
    ax.set_title(f"{L}x{H} heads: Spearman ρ = {p['spearman']:.3f}, top-{K} Jaccard = {p['jaccard']:.3f}", fontsize=9)

    st = r["stability"]
    labels = [f"L{h['layer']}H{h['head']}" for h in st]
    pos = np.arange(len(st))
    ax2.barh(pos - 0.2, [h["file_frequency"] for h in st], height=0.4, label=f"fraction of {len(files)} sweeps")
    if st and all(h["bootstrap_frequency"] is not None for h in st):
        ax2.barh(pos + 0.2, [h["bootstrap_frequency"] for h in st], height=0.4, label="bootstrap (mean over sweeps)")
    ax2.set_yticks(pos, labels, fontsize=7)
    ax2.invert_yaxis()
    ax2.set_xlim(0, 1)
    ax2.set_xlabel(f"fraction in top-{K}")
    ax2.legend(fontsize=7, loc="lower right")
    ax2.set_title(f"top-{K} stability", fontsize=9)
    fig.tight_layout()
    png = args.png or (args.json.rsplit(".", 1)[0] + ".png" if args.json != "-" else "compare.png")
    fig.savefig(png, dpi=120)
    print(f"# plot: {png}", file=sys.stderr)


if __name__ == "__main__":
    main()
