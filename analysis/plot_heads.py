#!/usr/bin/python3
"""Heatmap and top-K table of a PEAR sweep file (headsweep sweep output, docs/file-formats.md).

    /usr/bin/python3 analysis/plot_heads.py OUT.h5 [--png heatmap.png] [--top K] [--partial]

Draws layer x head of the mean delta-pi (the paper's ratio pi_ablated/pi_clean - 1, averaged over the settings)
with a diverging colour map centred at 0, marks the top-K heads, and prints the top-K table: rank, layer, head,
mean delta-pi, N-weighted delta-pi and the delta-pi of every setting. K defaults to the file's top_k.
A file without complete = 1 is refused unless --partial; then the aggregates are computed here from the layers
that are done (cells not yet scored stay blank).
Format version 2 files also give, per head, the standard error of the mean delta-pi, its bootstrap percentile
interval and the fraction of bootstrap resamples with the head in the top K (/stats, written by finish); for
version-1 files these columns say "absent". --md prints the table as Markdown (the README's tables).
"""
import argparse
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", help="sweep output (.h5)")
    ap.add_argument("--png", help="write the heatmap here (default: OUT.h5 with .png)")
    ap.add_argument("--top", type=int, default=0, help="K heads to mark and list (default: the file's top_k)")
    ap.add_argument("--partial", action="store_true", help="accept a file whose sweep is not complete")
    ap.add_argument("--md", action="store_true", help="print the top-K table as Markdown")
    args = ap.parse_args()

    import h5py

    with h5py.File(args.file, "r") as f:
        if f.attrs.get("format") != "headsweep-pear-sweep":
            sys.exit(f"{args.file}: not a headsweep sweep file")
        complete = int(f.attrs.get("complete", 0)) == 1
        if not complete and not args.partial:
            done = f["done"][()]
            sys.exit(f"{args.file}: the sweep is not complete ({int(done.sum())} of {done.size} setting x layer "
                     "cells done); use --partial to look at it anyway")
        N = f["axes/setting_N"][()]
        n = f["axes/setting_n"][()]
        pi_clean = f["pi_clean"][()]
        pi_abl = f["pi_ablated"][()]
        ratio = pi_abl / pi_clean[:, None, None] - 1.0      # NaN where not scored
        if complete:
            ratio = f["ratio"][()]
            mean = f["mean_ratio"][()]
            weighted = f["weighted_ratio"][()]
        else:
            with np.errstate(invalid="ignore"):
                mean = np.nanmean(ratio, axis=0) if ratio.shape[0] > 1 else ratio[0]
                w = N[:, None, None] * ~np.isnan(ratio)
                weighted = np.nansum(ratio * N[:, None, None], axis=0) / np.where(w.sum(0) > 0, w.sum(0), np.nan)
        k = args.top or int(f.attrs.get("top_k", 0)) or max(1, round(0.03 * mean.size))
        model = f.attrs.get("model", "?")
        mode = f.attrs.get("mode", "?")
        version = int(f.attrs.get("format_version", 1))
        stats = None
        if complete and version >= 2 and "stats" in f:
            g = f["stats"]
            stats = dict(se=g["mean_ratio_se"][()], lo=g["mean_ratio_lo"][()], hi=g["mean_ratio_hi"][()],
                         freq=g["top_k_frequency"][()], k=int(g.attrs["top_k"]), B=int(g.attrs["bootstrap_resamples"]),
                         seed=int(g.attrs["bootstrap_seed"]), conf=float(g.attrs["confidence"]))

    L, H = mean.shape
    flat = np.where(np.isnan(mean), -np.inf, mean).ravel()
    order = np.argsort(-flat, kind="stable")[: min(k, np.isfinite(flat).sum())]

    def interval(l, h):
        if stats is None:
            return ["absent", "absent", "absent"]
        return [f"{stats['se'][l, h]:.4f}", f"[{stats['lo'][l, h]:.4f}, {stats['hi'][l, h]:.4f}]",
                f"{stats['freq'][l, h]:.2f}" if stats["k"] == k else f"({stats['freq'][l, h]:.2f} @K={stats['k']})"]

    print(f"# {model}  mode {mode}  {L} layers x {H} heads  top-{len(order)}{'' if complete else '  (PARTIAL)'}"
          f"  format_version {version}")
    if stats is not None:
        print(f"# se: standard error of mean delta-pi; {100 * stats['conf']:.0f}% bootstrap percentile interval and "
              f"top-{stats['k']} frequency over {stats['B']} resamples of the samples (seed {stats['seed']})")
    elif complete:
        print("# per-sample statistics: absent (format version 1 stores no per-sample values)")
    if args.md:
        head = ["rank", "head", "mean Δπ", "se", f"95% interval", f"in top-{k}", "N-weighted Δπ"]
        head += [f"({a},{b})" for a, b in zip(N, n)]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r, idx in enumerate(order):
            l, h = divmod(int(idx), H)
            row = [str(r + 1), f"L{l}H{h}", f"{mean[l, h]:.4f}"] + interval(l, h) + [f"{weighted[l, h]:.4f}"]
            row += [f"{v:.4f}" for v in ratio[:, l, h]]
            print("| " + " | ".join(row) + " |")
    else:
        cols = " ".join(f"{a}x{b:>3}".rjust(10) for a, b in zip(N, n))
        print(f"{'rank':>4} {'layer':>5} {'head':>4} {'mean_dpi':>10} {'se':>8} {'interval':>20} {'in_topK':>8} "
              f"{'N_wt_dpi':>10} {cols}")
        for r, idx in enumerate(order):
            l, h = divmod(int(idx), H)
            per = " ".join(f"{v:10.4f}" for v in ratio[:, l, h])
            se, iv, fr = interval(l, h)
            print(f"{r + 1:>4} {l:>5} {h:>4} {mean[l, h]:10.4f} {se:>8} {iv:>20} {fr:>8} {weighted[l, h]:10.4f} {per}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    finite = mean[np.isfinite(mean)]
    lim = float(np.max(np.abs(finite))) if finite.size else 1.0
    lim = lim if lim > 0 else 1.0
    fig, ax = plt.subplots(figsize=(max(6, 0.4 * H + 3), max(4, 0.22 * L + 1.5)))
    im = ax.imshow(np.ma.masked_invalid(mean), cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -lim, lim),
                   aspect="auto", origin="lower", interpolation="nearest")
    for idx in order:
        l, h = divmod(int(idx), H)
        ax.add_patch(plt.Rectangle((h - 0.5, l - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.5))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    name = str(model).rsplit("/", 1)[-1]
    ax.set_title(f"{name} ({mode})\nmean Δπ, top-{len(order)} boxed" + ("" if complete else " [partial]"),
                 fontsize=9)
    fig.colorbar(im, ax=ax, label="mean Δπ = π̃/π − 1")
    fig.tight_layout()
    png = args.png or args.file.rsplit(".", 1)[0] + ".png"
    fig.savefig(png, dpi=120)
    print(f"# heatmap: {png}", file=sys.stderr)


if __name__ == "__main__":
    main()
