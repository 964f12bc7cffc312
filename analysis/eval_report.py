#!/usr/bin/python3
"""Turn `headsweep eval` output files into a Markdown table and accuracy-vs-gold-position plots.

    /usr/bin/python3 analysis/eval_report.py results/smollm2/eval-smollm2-trained-tau.h5 --md docs/eval-smollm2.md \
        --plots docs/img/eval-smollm2

Reads each file's /summary (written by `headsweep eval`, see docs/file-formats.md "Evaluation output (HDF5)"):
one row per (model, method, task, gold position) with accuracy, its 95% bootstrap interval and the paired
difference to the baseline. Needs h5py and matplotlib (Debian: python3-h5py, python3-matplotlib).
"""
import argparse
import math
import os
import sys

import h5py


def read_summary(path):
    with h5py.File(path, "r") as f:
        if "summary" not in f:
            sys.exit(f"{path}: no /summary (the run did not finish; `headsweep eval --summary-only -o {path}`)")
        s = f["summary"]
        cols = {k: s[k][()] for k in s.keys()}
        meta = {k: s.attrs[k] for k in s.attrs.keys()}
        settings = f.attrs.get("settings", "")
        methods = {k: f["methods"].attrs[k] for k in f["methods"].attrs.keys()}
    rows = []
    for i in range(len(cols["task"])):
        r = {}
        for k, v in cols.items():
            x = v[i]
            r[k] = x.decode() if isinstance(x, bytes) else (x.item() if hasattr(x, "item") else x)
        r["file"] = path
        r["settings"] = settings.decode() if isinstance(settings, bytes) else settings
        rows.append(r)
    return rows, meta, methods


def fmt_ci(est, lo, hi, signed=False):
    if est is None or (isinstance(est, float) and math.isnan(est)):
        return ""
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(est)} [{f.format(lo)}, {f.format(hi)}]"


def markdown(rows, meta, methods):
    out = []
    out.append(f"Accuracy with 95% percentile-bootstrap intervals ({meta.get('bootstrap_resamples', '?')} resamples, "
               f"seed {meta.get('bootstrap_seed', '?')}); diff = method − {rows[0]['baseline'] if rows else 'vanilla'}, "
               "paired over the same examples. pos: gold document number (mdqa) / gold index (kv); – none.\n")
    out.append("| model | task | pos | n | " + " | ".join(
        f"{m}" for m in sorted({r['method'] for r in rows})) + " | diff (paired) |")
    ms = sorted({r["method"] for r in rows})
    out.append("|---|---|---|---|" + "---|" * len(ms) + "---|")
    cells = {}
    for r in rows:
        cells.setdefault((os.path.basename(r["model"]), r["task"], r["gold_position"]), {})[r["method"]] = r
    for (model, task, pos), by in sorted(cells.items()):
        n = max(r["n"] for r in by.values())
        accs = [fmt_ci(by[m]["accuracy"], by[m]["ci_low"], by[m]["ci_high"]) if m in by else "" for m in ms]
        diffs = "; ".join(f"{m}: {fmt_ci(r['diff'], r['diff_low'], r['diff_high'], True)}"
                          for m, r in sorted(by.items()) if not math.isnan(r["diff"]))
        out.append(f"| {model} | {task} | {'–' if pos < 0 else pos} | {n} | " + " | ".join(accs) + f" | {diffs} |")
    out.append("")
    for m, c in sorted(methods.items()):
        out.append(f"- `{m}`: {c.decode() if isinstance(c, bytes) else c}")
    return "\n".join(out) + "\n"


def plots(rows, prefix):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tasks = sorted({r["task"] for r in rows if r["gold_position"] >= 0})
    made = []
    if not tasks:
        return made
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for m in sorted({r["method"] for r in rows}):
            rs = sorted((r for r in rows if r["task"] == task and r["method"] == m), key=lambda r: r["gold_position"])
            if not rs:
                continue
            x = [r["gold_position"] for r in rs]
            y = [r["accuracy"] for r in rs]
            err = [[r["accuracy"] - r["ci_low"] for r in rs], [r["ci_high"] - r["accuracy"] for r in rs]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"{m}")
        n = max(r["n"] for r in rows if r["task"] == task)
        ax.set_title(f"{task} (n={n} per point)", fontsize=10)
        ax.set_xlabel("gold position")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = f"{prefix}-positions.png"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    made.append(path)
    return made


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--md", help="write the Markdown table here (default: stdout)")
    ap.add_argument("--plots", help="plot file prefix, e.g. docs/img/eval-smollm2")
    a = ap.parse_args()
    rows, meta, methods = [], {}, {}
    for p in a.files:
        r, m, ms = read_summary(p)
        rows += r
        meta = meta or m
        methods.update(ms)
    md = markdown(rows, meta, methods)
    if a.md:
        os.makedirs(os.path.dirname(a.md) or ".", exist_ok=True)
        with open(a.md, "w") as f:
            f.write(md)
    else:
        sys.stdout.write(md)
    if a.plots:
        for p in plots(rows, a.plots):
            print(p, file=sys.stderr)


if __name__ == "__main__":
    main()
