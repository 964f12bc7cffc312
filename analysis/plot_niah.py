#!/usr/bin/python3
"""Needle-in-a-haystack heatmaps (context length x needle depth, one panel per method), as the InfiniRetri paper
draws them, from the records of `headsweep eval --tasks niah` files.

    /usr/bin/python3 analysis/plot_niah.py results/infiniretri/niah-smollm2.h5 --png docs/img/niah-smollm2.png \
        [--md table.md] [--model SUBSTRING]

Cell value: the record's score (fraction of the expected answer's words found in the lower-cased response, the
KVCache-Factory harness's metric); a cell's strict accuracy (all words) is in the record's detail. Missing cells
(a grid still running) are left blank. Prints a Markdown table per method (score, and for infiniretri the fraction
of the input kept) to stdout. Reads a file that `headsweep eval` is still writing (HDF5 file locking is turned off
for reading). Needs h5py and matplotlib (Debian: python3-h5py, python3-matplotlib).
"""
import argparse
import json
import os
import re
import sys

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
import h5py  # noqa: E402

ID = re.compile(r"^niah-(\d+)-d(\d+)$")


def read_cells(paths, model_filter):
    cells = {}  # (model, method) -> {(length, depth): (score, detail)}
    for path in paths:
        with h5py.File(path, "r") as f:
            r = f["records"]
            cols = {k: r[k][()] for k in ("model", "method", "task", "id", "score", "detail", "output") if k in r}
        for i in range(len(cols["id"])):
            dec = lambda k: cols[k][i].decode() if isinstance(cols[k][i], bytes) else str(cols[k][i])
            if dec("task") != "niah":
                continue
            model = dec("model")
            if model_filter and model_filter not in model:
                continue
            m = ID.match(dec("id"))
            if not m:
                continue
            detail = dec("detail") if "detail" in cols else ""
            try:
                det = json.loads(detail) if detail else {}
            except json.JSONDecodeError:
                det = {}
            cells.setdefault((model, dec("method")), {})[(int(m.group(1)), int(m.group(2)))] = (
                float(cols["score"][i]), det, dec("output"))
    return cells


def fmt_len(n):
    return f"{n // 1048576}M" if n % 1048576 == 0 else (f"{n // 1024}K" if n % 1024 == 0 else str(n))


def markdown(cells):
    out = []
    for (model, method), grid in sorted(cells.items()):
        lengths = sorted({l for l, _ in grid})
        depths = sorted({d for _, d in grid})
        out.append(f"**{method}** ({os.path.basename(model)}), mean score "
                   f"{sum(v[0] for v in grid.values()) / len(grid):.3f} over {len(grid)} cells\n")
        out.append("| depth \\ length | " + " | ".join(fmt_len(l) for l in lengths) + " |")
        out.append("|---|" + "---|" * len(lengths))
        for d in depths:
            row = []
            for l in lengths:
                if (l, d) not in grid:
                    row.append("")
                    continue
                s, det, _ = grid[(l, d)]
                kept = det.get("kept_fraction")
                row.append(f"{s:.2f}" + (f" ({100 * kept:.1f}% kept)" if kept is not None else ""))
            out.append(f"| {d}% | " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def plot(cells, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list("niah", ["#F0496E", "#EBB839", "#0CD79F"])  # the harness's colours
    keys = sorted(cells)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        grid = cells[key]
        lengths = sorted({l for l, _ in grid})
        depths = sorted({d for _, d in grid})
        data = [[grid[(l, d)][0] if (l, d) in grid else float("nan") for l in lengths] for d in depths]
        im = ax.imshow(data, cmap=cmap, vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(lengths)), [fmt_len(l) for l in lengths])
        ax.set_yticks(range(len(depths)), [f"{d}%" for d in depths])
        for i, row in enumerate(data):
            for j, v in enumerate(row):
                if v == v:
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
        mean = sum(v[0] for v in grid.values()) / len(grid)
        ax.set_title(f"{key[1]} (mean {mean:.2f})")
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel("needle depth")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="score")
    model = os.path.basename(keys[0][0]) if keys else ""
    fig.suptitle(f"Needle in a haystack, {model}", y=1.02)
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    fig.savefig(png, dpi=120, bbox_inches="tight")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--png", help="write the heatmaps here")
    ap.add_argument("--md", help="also write the Markdown tables here")
    ap.add_argument("--model", help="only models whose spec contains this")
    a = ap.parse_args()
    cells = read_cells(a.files, a.model)
    if not cells:
        sys.exit("no niah records in " + ", ".join(a.files))
    md = markdown(cells)
    print(md)
    if a.md:
        with open(a.md, "w") as f:
            f.write(md + "\n")
    if a.png:
        plot(cells, a.png)


if __name__ == "__main__":
    main()
