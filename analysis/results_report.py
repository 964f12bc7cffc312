#!/usr/bin/python3
"""docs/results.md from the evaluation files alone (issue 19): every method, both models, with intervals.

    /usr/bin/python3 analysis/results_report.py [FILES or GLOBS ...] [--md docs/results.md] [--img docs/img/results]

Reads every `headsweep eval` file given (default: DEFAULT_FILES below; other HDF5 files are skipped) through its
/records, /methods and root attributes, and writes one Markdown report:
  1. the questions the report answers, answered from the data (a paired interval that excludes 0, or not);
  2. per model and task: accuracy of every method with its 95% percentile-bootstrap interval and the paired
     difference to vanilla (the same examples), the number of examples, and whether the interval is within the
     issue's +-0.05 target; for the tasks that place the gold document (mdqa, kv) accuracy per gold position (a
     table, and with --img a figure with intervals); for the choice tasks a bar figure of every method (--img);
  3. PEAR's sensitivity grid (methods pear-k<K>-s<steps> of scripts/pear_sensitivity.sh), each setting paired with
     vanilla on the same items, kept out of the main tables;
  4. needle in a haystack: score per (length, depth) cell and method, and the cells of the issue's grid still missing;
  5. evaluation speed: examples per second per method on 2 threads from the files of bench/bench_eval_speed.sh
     (--speed, default results/speed/*/*.h5; never counted in the cells), each answer's time split into the parts
     the engine timed (prefill/decode, InfiniRetri's reading/answer, RTD's forward/search) and what bounds it; then
     the same per method from the report's own runs' records, and the machines the files name;
  6. what is missing, so a partial result is never presented as complete.
Intervals are recomputed here from the per-example scores (10,000 resamples, seed 20240917, numpy linear quantiles:
the same procedure `headsweep eval` writes into /summary, over all gold positions of a task at once).
A file still being written is read without HDF5's lock (HDF5_USE_FILE_LOCKING=FALSE): every record in it was
flushed when written, and the report says the file may be incomplete. Needs h5py, numpy, matplotlib (Debian:
python3-h5py, python3-numpy, python3-matplotlib).
"""
import argparse
import glob
import json
import math
import os
import re
import sys
from collections import OrderedDict, defaultdict

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
import h5py  # noqa: E402
import numpy as np  # noqa: E402

# The report's files: PEAR's evaluations per model, RTD's per task, InfiniRetri's needle grids (results/precision holds
# precision comparisons, not report cells).
DEFAULT_FILES = ["results/smollm2/*.h5", "results/gemma3/*.h5", "results/report/*/eval-*.h5", "results/rtd/eval-*.h5", "results/infiniretri/niah-*.h5",
                 "results/infiniretri/tasks-*.h5", "results/pear-sensitivity/*.h5"]
# Evaluation speed on 2 threads (bench/bench_eval_speed.sh): read for the speed section only, never for the cells
SPEED_FILES = ["results/speed/*/*.h5"]
# PEAR sensitivity grid (issue 19; scripts/pear_sensitivity.sh names the methods pear-k<K>-s<steps>)
SENSITIVITY_KS = [2, 4, 8, 16]
SENSITIVITY_STEPS = [60, 300]
SENSITIVITY_METHOD = re.compile(r"^pear-k(\d+)-s(\d+)$")
RESAMPLES = 10000
SEED = 20240917
TARGET_HALF_WIDTH = 0.05
NIAH_LENGTHS = [4096, 16384, 65536, 262144, 1048576]
NIAH_DEPTHS = [0, 25, 50, 75, 100]
NIAH_MIN_DEPTHS_1M = 3
# Task families: which question each task answers.
FAMILIES = OrderedDict([
    ("RAG and long context (PEAR's tasks)", re.compile(r"^(mdqa|nq|kv|longbench)")),
    ("Multiple choice and classification (RTD's tasks)",
     re.compile(r"^(arc|openbookqa|mmlu|sst2|trec|rte|cb|piqa|boolq|user-)")),
])


def s(x):
    return x.decode() if isinstance(x, bytes) else str(x)


def model_label(spec):
    base = os.path.basename(spec.rstrip("/"))
    low = base.lower()
    if "smollm2" in low:
        return "SmolLM2-135M"
    if "gemma-3" in low or "gemma3" in low:
        return "Gemma 3 270M"
    return base


def read_eval_file(path):
    """(records, file facts) or None when the file is not an evaluation file."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        print(f"{path}: skipped ({e})", file=sys.stderr)
        return None
    with f:
        if s(f.attrs.get("format", "")) != "headsweep-eval" or "records" not in f:
            return None
        r = f["records"]
        n = len(r["score"])
        cols = {k: r[k][()] for k in ("model", "method", "task", "id", "gold_position", "score", "latency_s",
                                      "truncated")}
        detail = r["detail"][()] if "detail" in r else [b""] * n
        tokens = {k: (r[k][()] if k in r else np.zeros(n, dtype=int)) for k in ("prompt_tokens", "new_tokens")}
        configs = {k: s(v) for k, v in f["methods"].attrs.items()} if "methods" in f else {}
        facts = {"path": path, "cpu": s(f.attrs.get("cpu", "")), "blas_core": s(f.attrs.get("blas_core", "")),
                 "settings": s(f.attrs.get("settings", "")), "complete": "summary" in f, "n": n}
    recs = []
    for i in range(n):
        m = s(cols["method"][i])
        config = configs.get(m, "")
        # InfiniRetri scoring with another layer than the last (--ir-layer, an extension) is another method
        layer = re.search(r" layer=(\d+)", config) if m.endswith("infiniretri") else None
        recs.append({"model": s(cols["model"][i]), "method": m + (f"-layer{layer.group(1)}" if layer else ""),
                     "config": config,
                     "task": s(cols["task"][i]), "id": s(cols["id"][i]), "pos": int(cols["gold_position"][i]),
                     "score": float(cols["score"][i]), "latency": float(cols["latency_s"][i]),
                     "truncated": bool(cols["truncated"][i]), "prompt_tokens": int(tokens["prompt_tokens"][i]),
                     "new_tokens": int(tokens["new_tokens"][i]),
                     "detail": s(detail[i]), "file": path})
    return recs, facts


def method_names(recs):
    """A label per (method, config): the method's name. Configs differ by task (RTD's tuned T, PEAR's trained
    coefficients per model), so one name stands for several configs; the report lists them per model and task."""
    return {(r["method"], r["config"]): r["method"] for r in recs}


def config_list(recs):
    """Markdown lines: each (model, method)'s configs and the tasks each was used for."""
    by = defaultdict(lambda: defaultdict(set))
    for r in recs:
        by[(model_label(r["model"]), r["method"])][r["config"]].add(r["task"])
    out = []
    for (model, m), cs in sorted(by.items()):
        for c, tasks in sorted(cs.items()):
            out.append(f"- {model}, `{m}` on {', '.join(sorted(tasks))}: {c or '(no config recorded)'}")
    return out


def bootstrap(values, rng_seed=SEED):
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(rng_seed)
    idx = rng.integers(0, len(v), size=(RESAMPLES, len(v)))
    means = v[idx].mean(axis=1)
    return float(v.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def fmt(est, lo, hi, signed=False):
    if est is None or math.isnan(est):
        return "–"
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(est)} [{f.format(lo)}, {f.format(hi)}]"


def significant(lo, hi):
    return not (math.isnan(lo) or math.isnan(hi)) and (lo > 0 or hi < 0)


def family_of(task):
    for name, rx in FAMILIES.items():
        if rx.match(task):
            return name
    return "niah" if task == "niah" else "Other tasks"


def chosen_configs(recs):
    """(model, task, method) -> the config whose answers fill the cell: the one with the most answers. A method run
    again with other settings (e.g. PEAR trained again for the large-sample pipeline) is another method; its answers
    are not mixed into one cell with the earlier run's."""
    n = defaultdict(int)
    for r in recs:
        n[(r["model"], r["task"], r["method"], r["config"])] += 1
    best = {}
    for (model, task, method, config), k in n.items():
        key = (model, task, method)
        if key not in best or k > n[(model, task, method, best[key])]:
            best[key] = config
    return best


def cell_table(recs, label, superseded=None):
    """{(model, family, task): {method: {key: score}}} with key = (id, gold position); `superseded` counts the
    answers left out because another config of the same method has more answers on that task."""
    cells = defaultdict(lambda: defaultdict(dict))
    dup = 0
    best = chosen_configs(recs)
    for r in recs:
        if r["task"] == "niah" or SENSITIVITY_METHOD.match(r["method"]):  # the grid has its own section
            continue
        if best[(r["model"], r["task"], r["method"])] != r["config"]:
            if superseded is not None:
                superseded[(model_label(r["model"]), r["task"], r["method"])] += 1
            continue
        m = label[(r["method"], r["config"])]
        key = (r["id"], r["pos"])
        by = cells[(model_label(r["model"]), family_of(r["task"]), r["task"])][m]
        if key in by:  # the same answer in two files (e.g. vanilla beside ICL): only a different score is a conflict
            dup += by[key] != r["score"]
            continue
        by[key] = r["score"]
    return cells, dup


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def save_figure(fig, path):
    import matplotlib.pyplot as plt
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def position_tables(model, keys, cells):
    """Accuracy per gold position for the tasks that place the answer's document (mdqa): one table per task, a
    row per method, 'accuracy (n)' per position. Position -1 (no gold document) is left out."""
    out = []
    for k in keys:
        by = cells[k]
        positions = sorted({pos for m in by for (_, pos) in by[m] if pos >= 0})
        if len(positions) < 2:
            continue
        methods = sorted(by, key=lambda m: (m != "vanilla", m))
        out.append(f"\n{model}, {k[2]}: accuracy (n) by the gold document's position\n")
        out.append("| method | " + " | ".join(str(p) for p in positions) + " |")
        out.append("|---|" + "---|" * len(positions))
        for m in methods:
            row = []
            for p in positions:
                v = [sc for (_, pos), sc in by[m].items() if pos == p]
                row.append(f"{np.mean(v):.2f} ({len(v)})" if v else "–")
            out.append(f"| {m} | " + " | ".join(row) + " |")
    return out


def position_plot(model, keys, cells, prefix):
    """One panel per task with gold positions, a line per method, 95% bootstrap intervals per position."""
    keys = [k for k in keys if len({pos for m in cells[k] for (_, pos) in cells[k][m] if pos >= 0}) >= 2]
    if not keys:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(keys), figsize=(4.4 * len(keys), 3.4), squeeze=False)
    for ax, k in zip(axes[0], keys):
        by = cells[k]
        for m in sorted(by, key=lambda m: (m != "vanilla", m)):
            pts = defaultdict(list)
            for (_, pos), sc in by[m].items():
                if pos >= 0:
                    pts[pos].append(sc)
            xs = sorted(pts)
            if not xs:
                continue
            est = [bootstrap(pts[x]) for x in xs]
            ys = [e[0] for e in est]
            err = [[e[0] - e[1] for e in est], [e[2] - e[0] for e in est]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=f"{m} (n={len(by[m])})")
        ax.set_xticks(sorted({pos for m in by for (_, pos) in by[m] if pos >= 0}))
        ax.set_title(f"{model}: {k[2]}", fontsize=9)
        ax.set_xlabel("gold document position")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, f"{prefix}-positions-{slug(model)}.png")


def choice_bars(model, keys, cells, prefix):
    """Grouped bars: accuracy of every method on every choice task, with 95% bootstrap intervals (RTD's figure)."""
    if not keys:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    methods = sorted({m for k in keys for m in cells[k]}, key=lambda m: (m != "vanilla", m))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(keys) * max(1, len(methods) / 3)), 3.6))
    for j, m in enumerate(methods):
        xs, ys, lo, hi = [], [], [], []
        for i, k in enumerate(keys):
            if m in cells[k]:
                e = bootstrap(list(cells[k][m].values()))
                xs.append(i + (j - (len(methods) - 1) / 2) * width)
                ys.append(e[0])
                lo.append(e[0] - e[1])
                hi.append(e[2] - e[0])
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=m)
    ax.set_xticks(range(len(keys)), [k[2] for k in keys], fontsize=8)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{model}: multiple choice and classification", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save_figure(fig, f"{prefix}-choice-{slug(model)}.png")


def main_tables(cells, findings, missing, img_prefix=None, md_dir="."):
    out = []
    models = sorted({k[0] for k in cells})
    for model in models:
        out.append(f"\n## {model}\n")
        for fam in list(FAMILIES) + ["Other tasks"]:
            keys = sorted(k for k in cells if k[0] == model and k[1] == fam)
            if not keys:
                continue
            methods = sorted({m for k in keys for m in cells[k]}, key=lambda m: (m != "vanilla", m))
            out.append(f"\n### {fam}\n")
            out.append("| task | n | " + " | ".join(methods) + " | paired difference to vanilla |")
            out.append("|---|---|" + "---|" * len(methods) + "---|")
            for k in keys:
                by = cells[k]
                n = max(len(v) for v in by.values())
                accs, diffs = [], []
                base = by.get("vanilla", {})
                for m in methods:
                    if m not in by:
                        accs.append("–")
                        continue
                    est, lo, hi = bootstrap(list(by[m].values()))
                    wide = (hi - lo) / 2 > TARGET_HALF_WIDTH
                    accs.append(fmt(est, lo, hi) + (" ⚠" if wide else ""))
                    if wide:
                        missing.append(f"{model} {k[2]} {m}: n = {len(by[m])}, interval ±{(hi - lo) / 2:.3f} "
                                       f"(target ±{TARGET_HALF_WIDTH})")
                    if m != "vanilla" and base:
                        shared = [key for key in by[m] if key in base]
                        if shared:
                            d = [by[m][key] - base[key] for key in shared]
                            est_d, lo_d, hi_d = bootstrap(d)
                            mark = " **sig**" if significant(lo_d, hi_d) else ""
                            diffs.append(f"{m}: {fmt(est_d, lo_d, hi_d, True)}{mark}")
                            findings.append({"model": model, "family": fam, "task": k[2], "method": m,
                                             "n": len(shared), "diff": est_d, "lo": lo_d, "hi": hi_d})
                out.append(f"| {k[2]} | {n} | " + " | ".join(accs) + " | " + "; ".join(diffs) + " |")
            if fam.startswith("RAG"):
                out += position_tables(model, keys, cells)
            figure = None
            if img_prefix:
                figure = (position_plot(model, keys, cells, img_prefix) if fam.startswith("RAG")
                          else choice_bars(model, keys, cells, img_prefix) if fam.startswith("Multiple") else None)
            if figure:
                out.append(f"\n![{model}: {fam}]({os.path.relpath(figure, md_dir)})\n")
    return out


def sensitivity_section(recs, findings):
    """PEAR's sensitivity grid (scripts/pear_sensitivity.sh): one row per setting pear-k<K>-s<steps> and task, its
    accuracy beside vanilla's on the same items, and the paired difference. Vanilla comes from any file (the grid's
    own or the pipeline's: the same items score the same); each setting is paired only on the items both answered."""
    by = defaultdict(lambda: defaultdict(dict))  # (model, task) -> method -> {key: score}
    for r in recs:
        if r["method"] == "vanilla" or SENSITIVITY_METHOD.match(r["method"]):
            by[(model_label(r["model"]), r["task"])][r["method"]].setdefault((r["id"], r["pos"]), r["score"])
    rows = []
    for (model, task), methods in sorted(by.items()):
        base = methods.get("vanilla", {})
        for m in methods:
            got = SENSITIVITY_METHOD.match(m)
            if got:
                rows.append((model, task, int(got.group(2)), int(got.group(1)), m, methods[m], base))
    if not rows:
        return []
    out = ["\n## PEAR sensitivity: heads re-weighted (K) x training steps\n",
           "`scripts/pear_sensitivity.sh`: PEAR trained on the top K heads of the model's path-mode sweep for each "
           "number of steps (60 and 300 by default; a longer run continues the shorter one), each setting evaluated "
           "beside vanilla on the same items. "
           "The paper's small models are not its 7B ones: does any setting give a significant gain?", "",
           "| model | task | K | steps | n | pear setting | vanilla, same items | paired difference |",
           "|---|---|---|---|---|---|---|---|"]
    for model, task, steps, k, m, scores, base in sorted(rows, key=lambda x: (x[0], x[1], x[2], x[3])):
        shared = [key for key in scores if key in base]
        acc = fmt(*bootstrap(list(scores.values())))
        if shared:
            van = fmt(*bootstrap([base[key] for key in shared]))
            d, lo, hi = bootstrap([scores[key] - base[key] for key in shared])
            diff = fmt(d, lo, hi, True) + (" **sig**" if significant(lo, hi) else "")
            findings.append({"model": model, "family": "sensitivity", "task": task, "method": m, "n": len(shared),
                             "diff": d, "lo": lo, "hi": hi})
        else:
            van, diff = "–", "no vanilla answers on these items"
        out.append(f"| {model} | {task} | {k} | {steps} | {len(scores)} | {acc} | {van} | {diff} |")
    return out


def niah_needle(settings):
    """The needle of a niah run from its file's settings line (NiahOptions::settings: needle="..." question="...",
    newlines written as \\n); None when the line has none."""
    got = re.search(r' needle="(.*)" question="', settings)
    return got.group(1).replace("\\n", "\n") if got else None


def words(text):
    return " ".join(text.split())


def niah_failures(rows, needles):
    """Why InfiniRetri's needle cells fail, from the records alone: is the needle in the final cache (the kept text
    in detail.cache)? Missing = lost while reading (retrieval); present = the answer from the cache missed it
    (generation). One line per (model, method) with a cache, or []."""
    tally = defaultdict(lambda: defaultdict(list))
    for r in rows:
        needle = needles.get(r["file"])
        try:
            cache = json.loads(r["detail"]).get("cache")
        except (ValueError, AttributeError):
            cache = None
        if needle is None or cache is None:
            continue
        strict = '"strict":1' in r["detail"]
        kept = words(needle) in words(cache)
        tally[(model_label(r["model"]), r["method"])][(strict, kept)].append(r["id"])
    out = []
    for (model, m), t in sorted(tally.items()):
        failed = len(t[(False, True)]) + len(t[(False, False)])
        answered = len(t[(True, True)]) + len(t[(True, False)])
        line = (f"- {model}, `{m}`: of {failed} cell{'s' if failed != 1 else ''} not fully answered, the needle was missing from the final cache "
                f"in {len(t[(False, False)])} (lost while reading: a retrieval failure) and in the cache in "
                f"{len(t[(False, True)])} (the answer from the cache missed it: a generation failure)")
        if t[(False, True)]:
            line += " (" + ", ".join(sorted(t[(False, True)])) + ")"
        line += f"; of {answered} fully answered cell{'s' if answered != 1 else ''}, the needle was in the cache in {len(t[(True, True)])}."
        out.append(line)
    if out:
        out = ["\n**Why InfiniRetri cells fail** (the needle's sentence searched for in each record's final cache, "
               "`detail.cache`):\n"] + out
    return out


def niah_section(recs, label, missing, img_prefix, md_dir, needles=None):
    out = []
    rows = [r for r in recs if r["task"] == "niah"]
    if not rows:
        missing.append("needle in a haystack: no records at all")
        return out
    out.append("\n## Needle in a haystack (InfiniRetri vs vanilla)\n")
    out.append("Score = fraction of the expected answer's words in the response (KVCache-Factory's metric); "
               "✓ = every word (strict). Rows: context length in tokens; columns: needle depth in %.\n")
    by_model = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        mt = re.match(r"niah-(\d+)-d(\d+)", r["id"])
        if not mt:
            continue
        strict = '"strict":1' in r["detail"]
        by_model[model_label(r["model"])][label[(r["method"], r["config"])]][(int(mt.group(1)), int(mt.group(2)))] = \
            (r["score"], strict)
    for model, methods in sorted(by_model.items()):
        for m, cells in sorted(methods.items()):
            lengths = sorted({k[0] for k in cells} | set(NIAH_LENGTHS))
            depths = sorted({k[1] for k in cells} | set(NIAH_DEPTHS))
            out.append(f"\n**{model}, {m}**\n")
            out.append("| length | " + " | ".join(f"{d}%" for d in depths) + " | mean |")
            out.append("|---|" + "---|" * len(depths) + "---|")
            for L in lengths:
                vals = [cells.get((L, d)) for d in depths]
                got = [v[0] for v in vals if v]
                shown = [("–" if v is None else f"{v[0]:.2f}{' ✓' if v[1] else ''}") for v in vals]
                mean = f"{np.mean(got):.2f}" if got else "–"
                label_len = f"{L // 1048576}M" if L % 1048576 == 0 else f"{L // 1024}K" if L % 1024 == 0 else str(L)
                out.append(f"| {label_len} | " + " | ".join(shown) + f" | {mean} |")
                have = sum(v is not None for v, d in zip(vals, depths) if d in NIAH_DEPTHS)
                need = NIAH_MIN_DEPTHS_1M if L == 1048576 else len(NIAH_DEPTHS)
                if L in NIAH_LENGTHS and have < need:
                    missing.append(f"{model} niah {label_len} {m}: {have} of the grid's {need} depths")
        if img_prefix:
            path = niah_plot(model, methods, img_prefix)
            if path:
                out.append(f"\n![NIH {model}]({os.path.relpath(path, md_dir)})\n")
    out += niah_failures(rows, needles or {})
    return out


def niah_plot(model, methods, prefix):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ms = sorted(methods)
    lengths = sorted({k[0] for m in ms for k in methods[m]})  # the same axes for every method
    depths = sorted({k[1] for m in ms for k in methods[m]})
    fig, axes = plt.subplots(1, len(ms), figsize=(4.6 * len(ms) + 1, 3.4), squeeze=False)
    for ax, m in zip(axes[0], ms):
        cells = methods[m]
        grid = np.full((len(depths), len(lengths)), np.nan)
        for (L, d), (v, _) in cells.items():
            grid[depths.index(d), lengths.index(L)] = v
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        ax.set_xticks(range(len(lengths)), [f"{L // 1024}K" for L in lengths], fontsize=8)
        ax.set_yticks(range(len(depths)), [f"{d}%" for d in depths], fontsize=8)
        ax.set_title(f"{model}: {m}", fontsize=9)
        ax.set_xlabel("context length")
        ax.set_ylabel("depth")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    return save_figure(fig, f"{prefix}-niah-{slug(model)}.png")


def speed_section(recs, label, files):
    out = ["\n### Speed of the report's own runs\n",
           "Examples per second per method, from the records' wall time per answer (its rank's, one process per "
           "rank and 1 thread each, on a machine shared with the other runs, so slower than above and noisier; an "
           "answer's time includes any pause of its process).\n",
           "| model | method | task family | examples | examples/s | median s per example |", "|---|---|---|---|---|---|"]
    acc = defaultdict(list)
    for r in recs:
        acc[(model_label(r["model"]), label[(r["method"], r["config"])], family_of(r["task"]))].append(r["latency"])
    for (model, m, fam), lat in sorted(acc.items()):
        tot = sum(lat)
        out.append(f"| {model} | {m} | {fam} | {len(lat)} | {len(lat) / tot if tot > 0 else float('nan'):.3g} | "
                   f"{np.median(lat):.3g} |")
    machines = sorted({(f["cpu"], f["blas_core"]) for f in files if f["cpu"]})
    if machines:
        out.append("\nMachines named by the files: " + "; ".join(f"{c} (OpenBLAS {b})" for c, b in machines) + ".")
    return out


def detail_numbers(detail):
    """The numeric members of a record's detail JSON ({} when it has none or is not JSON)."""
    try:
        d = json.loads(detail) if detail else {}
    except ValueError:
        return {}
    return {k: float(v) for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# The parts of an answer's time a method's records name (detail members, seconds), with the work each part counts.
TIME_PARTS = [("prefill_s", "prefill"), ("decode_s", "decode"), ("read_s", "reading chunks"),
              ("answer_s", "answer from the cache"), ("forward_s", "forward"), ("search_s", "k-NN search")]


def speed_rows(recs):
    """Per (model, method, task): examples, examples/s, mean tokens and the share of wall time of each part."""
    groups = defaultdict(list)
    for r in recs:
        groups[(model_label(r["model"]), r["method"], r["task"])].append(r)
    rows = []
    for (model, method, task), rs in sorted(groups.items()):
        lat = sum(r["latency"] for r in rs)
        if lat <= 0:
            continue
        nums = [detail_numbers(r["detail"]) for r in rs]
        parts = OrderedDict()
        for key, name in TIME_PARTS:
            if any(key in d for d in nums):
                parts[name] = sum(d.get(key, 0.0) for d in nums)
        prompt = sum(r["prompt_tokens"] for r in rs)
        new = sum(r["new_tokens"] for r in rs)
        if not parts:  # a choice answer without a split (vanilla, pear, icl): one forward over the prompt
            parts["forward"] = lat
        rates = []
        if parts.get("prefill", 0) > 0:
            rates.append(f"prefill {prompt / parts['prefill']:,.0f} tok/s")
        if parts.get("decode", 0) > 0 and new > 0:
            rates.append(f"decode {new / parts['decode']:,.1f} tok/s")
        if "forward" in parts and parts["forward"] > 0:
            rates.append(f"forward {prompt / parts['forward']:,.0f} tok/s")
        if parts.get("reading chunks", 0) > 0:
            processed = sum(d.get("tokens_processed", 0.0) for d in nums)
            rates.append(f"read {processed / parts['reading chunks']:,.0f} tok/s")
        other = lat - sum(parts.values())
        shares = [f"{name} {100 * t / lat:.0f}%" for name, t in parts.items()]
        if other > 0.005 * lat:
            shares.append(f"other {100 * other / lat:.0f}%")
        bound = max(parts.items(), key=lambda kv: kv[1])[0]
        rows.append({"model": model, "method": method, "task": task, "n": len(rs), "per_s": len(rs) / lat,
                     "prompt": prompt / len(rs), "new": new / len(rs), "shares": ", ".join(shares),
                     "rates": ", ".join(rates), "bound": bound})
    return rows


BOUND_WHY = {
    "prefill": "prefill: the prompt's tokens through fp32 SGEMM (compute-bound)",
    "decode": "decode: one token at a time, each step reads every weight (memory-bandwidth-bound GEMV)",
    "forward": "one forward over the prompt (SGEMM, compute-bound)",
    "reading chunks": "reading: a forward per 1,024-token chunk plus the cached sentences (SGEMM)",
    "answer from the cache": "the answer generated from the kept sentences",
    "k-NN search": "the neighbour search over the datastore",
}


def measured_speed_section(recs, files):
    if not recs:
        return ["\n## Evaluation speed on 2 threads\n",
                "Not measured yet: `bench/bench_eval_speed.sh smollm2` and `... gemma3` (a quiet machine, 2 threads) "
                "write results/speed/<model>/*.h5."]
    machines = sorted({(f["cpu"], f["blas_core"]) for f in files if f["cpu"]})
    out = ["\n## Evaluation speed on 2 threads\n",
           "`bench/bench_eval_speed.sh <model>`: one process, 2 BLAS threads, a fixed small sample per task "
           "(mdqa-10docs: 10 items, nq-oracle: 10, CB: 56), every method; the machine quiet (other jobs paused). "
           "Each answer's wall time is split by what the engine timed (prefill and decode of a generated answer, "
           "InfiniRetri's chunk reading and final answer, RTD's forward and neighbour search); *other* is the rest "
           "(tokenisation, sentence splitting, scoring). Machine: "
           + "; ".join(f"{c} (OpenBLAS {b})" for c, b in machines) + ".\n",
           "| model | method | task | examples | examples/s | prompt tokens | new tokens | where the time goes | rates | bound by |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    rows = speed_rows(recs)
    for r in rows:
        out.append(f"| {r['model']} | {r['method']} | {r['task']} | {r['n']} | {r['per_s']:.3g} | {r['prompt']:,.0f} | "
                   f"{r['new']:.1f} | {r['shares']} | {r['rates']} | {r['bound']} |")
    bounds = sorted({r["bound"] for r in rows})
    out.append("\nWhat bounds it: " + "; ".join(BOUND_WHY.get(b, b) for b in bounds) + ".")
    return out


def niah_verdict(recs, model, ir="infiniretri"):
    """InfiniRetri (or a variant, e.g. infiniretri-layer15) against vanilla on the needle cells longer than the
    model's window (vanilla had to truncate)."""
    what = "InfiniRetri" if ir == "infiniretri" else f"`{ir}` (InfiniRetri scoring with another layer: --ir-layer)"
    cells = defaultdict(dict)
    for r in recs:
        if r["task"] == "niah" and model_label(r["model"]) == model and "+" not in r["method"]:
            cells[r["id"]][r["method"]] = r
    past = {i: c for i, c in cells.items() if "vanilla" in c and ir in c and c["vanilla"]["truncated"]}
    if not past:
        return f"- Does {what} read past the context window: not measured yet."
    n = len(past)
    strict = {m: sum('"strict":1' in c[m]["detail"] for c in past.values()) for m in (ir, "vanilla")}
    mean = {m: np.mean([c[m]["score"] for c in past.values()]) for m in (ir, "vanilla")}
    d, lo, hi = bootstrap([c[ir]["score"] - c["vanilla"]["score"] for c in past.values()])
    # the longest length with a record of the method (ids niah-<length>-d<depth>): a claim to 1M needs 1M cells
    lengths = [int(i.split("-")[1]) for i, c in cells.items() if ir in c and i.count("-") >= 2
               and i.split("-")[1].isdigit()]
    longest = max(lengths) if lengths else 0
    longest_s = f"{longest // 1048576}M" if longest >= 1048576 else f"{longest // 1024}K"
    if strict[ir] < n:
        claim = "is not reproduced with this model."
    elif longest >= 1048576:
        claim = "holds for this model."
    else:
        claim = f"holds in every cell measured so far, up to {longest_s} tokens (the longer cells are not in yet)."
    return (f"- Does {what} read past the context window: on the {n} needle cells longer than the window "
            f"(vanilla truncated), every word found in {strict[ir]}/{n} cells by {ir} and "
            f"{strict['vanilla']}/{n} by vanilla; mean score {mean[ir]:.2f} vs {mean['vanilla']:.2f} "
            f"(paired {fmt(d, lo, hi, True)}{', **sig**' if significant(lo, hi) else ''}). The paper's claim, 100% to "
            "1M tokens (with Qwen2.5-0.5B), " + claim)


def answers(findings, recs):
    out = ["\n## The questions, answered from these files\n"]

    def verdict(rows, what):
        if not rows:
            return f"- {what}: not measured yet."
        sig = [r for r in rows if significant(r["lo"], r["hi"])]
        pos = [r for r in sig if r["diff"] > 0]
        neg = [r for r in sig if r["diff"] < 0]
        parts = [f"{len(rows)} task comparison{'s' if len(rows) != 1 else ''}"]
        if pos:
            parts.append("significant gains: " + ", ".join(f"{r['method']} on {r['task']} ({r['diff']:+.3f} "
                                                            f"[{r['lo']:+.3f}, {r['hi']:+.3f}], n={r['n']})"
                                                            for r in pos))
        if neg:
            parts.append("significant losses: " + ", ".join(f"{r['method']} on {r['task']} ({r['diff']:+.3f}, "
                                                             f"n={r['n']})" for r in neg))
        if not sig:
            parts.append("no interval excludes 0")
        return f"- {what}: " + "; ".join(parts) + "."

    models = sorted({f["model"] for f in findings} | {model_label(r["model"]) for r in recs if r["task"] == "niah"})
    for model in models:
        fm = [f for f in findings if f["model"] == model]
        out.append(f"**{model}**")
        out.append(verdict([f for f in fm if f["method"] == "pear" and "RAG" in f["family"]],
                           "Does PEAR help RAG and long-context tasks"))
        out.append(niah_verdict(recs, model))
        for variant in sorted({r["method"] for r in recs if r["task"] == "niah" and model_label(r["model"]) == model
                               and r["method"].startswith("infiniretri-layer")}):
            out.append(niah_verdict(recs, model, variant))
        out.append(verdict([f for f in fm if f["method"] == "infiniretri" and "RAG" in f["family"]],
                           "Does InfiniRetri help the RAG and long-context tasks (beside the needle)"))
        out.append(verdict([f for f in fm if f["method"] in ("rtd", "mh-rtd")], "Do RTD / MH-RTD beat zero-shot"))
        out.append(verdict([f for f in fm if f["method"] == "icl"], "Does k-shot ICL beat zero-shot"))
        out.append(verdict([f for f in fm if "+" in f["method"]], "Do the compositions (pear+X) beat vanilla"))
        sens = [f for f in fm if f["family"] == "sensitivity"]
        if sens:
            out.append(verdict(sens, "Does any PEAR setting (K heads x training steps) beat vanilla"))
        out.append("")
    out += against_the_papers(findings, models)
    return out


# The papers' claims the report can check (../shared/docs/methods.md), and the tasks each claim is about.
PAPER_CLAIMS = [
    ("PEAR", lambda f: f["method"] == "pear" and "RAG" in f["family"],
     "re-weighting the suppression heads beats vanilla on multi-document and long-context QA (7B models; numbers "
     "not available to us)"),
    ("RTD", lambda f: f["method"] == "rtd" and re.match(r"^(mmlu|arc|piqa|openbookqa)", f["task"]),
     "nearest neighbours over the hidden states beat zero-shot on MMLU, ARC-E/C, PIQA and OBQA, competitive with "
     "LoRA (numbers not available to us)"),
    ("InfiniRetri", lambda f: f["method"] == "infiniretri" and f["task"].startswith("longbench"),
     "large LongBench gains (best +288% on HotpotQA) keeping about 4.5% of the input"),
]


def against_the_papers(findings, models):
    """One line per paper claim: for each model, the tasks where the claim holds (a significant gain), where it is
    not shown (the interval includes 0) and where it is contradicted (a significant loss)."""
    out = ["**Against the papers' claims** (`../shared/docs/methods.md`; the needle-in-a-haystack claim is answered "
           "per model above)"]
    for name, about, claim in PAPER_CLAIMS:
        parts = []
        for model in models:
            rows = [f for f in findings if f["model"] == model and about(f)]
            if not rows:
                parts.append(f"{model}: not measured yet")
                continue
            named = {id(f): f"{f['task']} (n={f['n']})" for f in rows}
            holds = [named[id(f)] for f in rows if significant(f["lo"], f["hi"]) and f["diff"] > 0]
            against = [named[id(f)] for f in rows if significant(f["lo"], f["hi"]) and f["diff"] < 0]
            unshown = [named[id(f)] for f in rows if not significant(f["lo"], f["hi"])]
            said = []
            if holds:
                said.append("holds on " + ", ".join(holds))
            if unshown:
                said.append("not shown on " + ", ".join(unshown))
            if against:
                said.append("contradicted on " + ", ".join(against))
            parts.append(f"{model}: " + "; ".join(said))
        out.append(f"- {name}, {claim}. " + ". ".join(parts) + ".")
    out.append("")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", default=DEFAULT_FILES)
    ap.add_argument("--md", help="write the report here (default: stdout)")
    ap.add_argument("--img", help="figure prefix, e.g. docs/img/results (no figures without it)")
    ap.add_argument("--speed", nargs="*", default=SPEED_FILES,
                    help="evaluation-speed files of bench/bench_eval_speed.sh (default: results/speed/*/*.h5)")
    a = ap.parse_args()
    paths = sorted({p for g in a.files for p in (glob.glob(g, recursive=True) or ([] if "*" in g else [g]))})
    recs, files = [], []
    for p in paths:
        got = read_eval_file(p)
        if got:
            recs += got[0]
            files.append(got[1])
    if not recs:
        sys.exit("results_report: no evaluation records in " + " ".join(a.files))
    label = method_names(recs)
    superseded = defaultdict(int)
    cells, dup = cell_table(recs, label, superseded)
    findings, missing = [], []
    md_dir = os.path.dirname(os.path.abspath(a.md)) if a.md else "."
    body = main_tables(cells, findings, missing, a.img, md_dir)
    body += sensitivity_section(recs, findings)
    needles = {f["path"]: niah_needle(f["settings"]) for f in files}
    body += niah_section(recs, label, missing, a.img, md_dir, needles)
    speed_recs, speed_files = [], []
    for p in sorted({p for g in a.speed for p in (glob.glob(g) or ([] if "*" in g else [g]))}):
        got = read_eval_file(p)
        if got:
            speed_recs += got[0]
            speed_files.append(got[1])
    body += measured_speed_section(speed_recs, speed_files)
    body += speed_section(recs, label, files)
    out = ["# Results: every method, both models",
           "",
           "Generated by `analysis/results_report.py` from the evaluation files alone (listed at the end); do not edit "
           "by hand. Accuracy: mean score with its 95% percentile-bootstrap interval; the paired difference is over the "
           "examples both methods answered; **sig** = the interval excludes 0; ⚠ = the interval is wider than the "
           f"±{TARGET_HALF_WIDTH} the report aims for (more examples needed)."]
    out += answers(findings, recs)
    out += body
    out.append("\n## What is missing\n")
    incomplete = [f["path"] for f in files if not f["complete"]]
    if incomplete:
        out.append("- files without a summary (a run in progress or stopped; their records are shown): "
                   + ", ".join(f"`{p}`" for p in incomplete))
    if dup:
        out.append(f"- {dup} answers appear in more than one file with different scores (the first file's is used)")
    for (model, task, method), k in sorted(superseded.items()):
        out.append(f"- {model} {task} `{method}`: {k} answers of an earlier configuration left out (the cell shows the "
                   "configuration with the most answers)")
    have = {r["method"] for r in recs}
    grid = [f"pear-k{k}-s{st}" for k in SENSITIVITY_KS for st in SENSITIVITY_STEPS]
    lacking = [g for g in grid if g not in have]
    if lacking:
        missing.append(f"PEAR sensitivity (`scripts/pear_sensitivity.sh`): {len(grid) - len(lacking)} of the {len(grid)} "
                       f"settings K x steps have records; missing: {', '.join(lacking)}")
    out += [f"- {m}" for m in missing] or ["- nothing the report checks for"]
    out.append("\n## How to reproduce\n")
    out += ["Every step resumes, so each command can be stopped and run again (files as listed under Files):", "",
            "```",
            "scripts/report_pipeline.sh smollm2      # sweep -> train -> eval (RAG: mdqa 100 per gold position; NQ 400)",
            "scripts/report_pipeline.sh gemma3       #   through slurm/submit --kind pipeline (a local SLURM if none)",
            "scripts/rtd_smollm2.sh                  # RTD, MH-RTD, zero-shot and 5-shot ICL on the choice tasks",
            "MODEL=models/gemma-3-270m-q4_k_m.gguf NAME=gemma3 scripts/rtd_smollm2.sh",
            "headsweep eval --tasks niah --niah-lengths 4k,16k,64k,256k,1m --niah-depths 0,25,50,75,100 \\",
            "    --methods vanilla,infiniretri -o results/infiniretri/niah-smollm2.h5 --resume -t 1   # (-m ... for Gemma)",
            "scripts/pear_sensitivity.sh             # PEAR K in {2,4,8,16} x {60,300} steps on mdqa-10docs",
            "bench/bench_eval_speed.sh smollm2       # speed per method on 2 threads (quiet machine; also gemma3)",
            "/usr/bin/python3 analysis/results_report.py --md docs/results.md --img docs/img/results",
            "```"]
    out.append("\n## Methods (configs as recorded)\n")
    out += config_list(recs)
    out.append("\n## Files\n")
    for f in files:
        out.append(f"- `{f['path']}`: {f['n']} records{'' if f['complete'] else ' (no summary yet)'}")
    md = "\n".join(out) + "\n"
    if a.md:
        os.makedirs(os.path.dirname(a.md) or ".", exist_ok=True)
        with open(a.md, "w") as fh:
            fh.write(md)
    else:
        sys.stdout.write(md)


if __name__ == "__main__":
    main()
