#!/usr/bin/python3
"""RTD results table (issue 13) from the files scripts/rtd_smollm2.sh writes:
  results/rtd/eval-smollm2-TASK.h5      zero-shot (vanilla), rtd, mh-rtd on the test split (/summary: accuracy, 95%
                                        percentile-bootstrap interval, paired difference to vanilla)
  results/rtd/eval-smollm2-TASK-icl.h5  vanilla and 5-shot icl on the first ICL_LIMIT items (paired)
  results/rtd/ds/TASK.h5                the datastore (entries, tuned T); optional (git-ignored)
and a lambda sweep, lambda*r + (1-lambda)*p_LM, recomputed from the per-answer r and p_LM that rtd records in the
`detail` column (exactly what a run with --rtd-lambda would answer, without re-running the model).
Usage: /usr/bin/python3 analysis/rtd_report.py [--dir results/rtd] [--name smollm2|gemma3] [--lambda-task rte] [--md out.md]
(--name: the files' model tag, as scripts/rtd_smollm2.sh's NAME: eval-NAME-TASK.h5, datastores in ds/ for smollm2,
ds-NAME/ otherwise)"""
import argparse, json, os

import h5py
import numpy as np

TASKS = ["arc-easy", "arc-challenge", "openbookqa", "mmlu-0shot", "sst2", "trec", "rte", "cb"]
SEED, RESAMPLES = 20240917, 10000


def strs(ds):
    return [x.decode() if isinstance(x, bytes) else x for x in ds[:]]


def summary(path):
    """{method: row} of the file's /summary."""
    out = {}
    if not os.path.exists(path):
        return out
    try:
        f = h5py.File(path, "r")
    except OSError:  # being written by a running evaluation (locked): not finished, left out
        return out
    with f:
        if "summary" not in f:
            return out
        s = f["summary"]
        for i, m in enumerate(strs(s["method"])):
            out[m] = {k: s[k][i] for k in ("n", "n_paired", "accuracy", "ci_low", "ci_high", "diff", "diff_low", "diff_high")}
    return out


def recorded_T(path):
    """(T of rtd, T of mh-rtd) as the answers recorded them in their detail (when the datastore file is not kept)."""
    T = {}
    try:
        with h5py.File(path, "r") as f:
            r = f["records"]
            for m, d in zip(strs(r["method"]), strs(r["detail"])):
                if m in ("rtd", "mh-rtd") and m not in T and d:
                    T[m] = json.loads(d).get("T")
    except (OSError, KeyError):
        pass
    return T


def cell(row, diff=True):
    if not row:
        return "–"
    s = f"{row['accuracy']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    if diff and not np.isnan(row["diff"]):
        s += f"; {row['diff']:+.3f} [{row['diff_low']:+.3f}, {row['diff_high']:+.3f}]"
    return s


def boot(x, rng):
    """95% percentile-bootstrap interval of the mean (numpy linear quantiles), as the eval summary."""
    idx = rng.integers(0, len(x), size=(RESAMPLES, len(x)))
    m = x[idx].mean(axis=1)
    return np.quantile(m, 0.025), np.quantile(m, 0.975)


LABELS = {"sst2": ["negative", "positive"], "trec": ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"],
          "rte": ["entailment", "not_entailment"], "cb": ["entailment", "contradiction", "neutral"]}


def gold_indices(task, method, ids, output, score):
    """{id: gold label index} from the records: a right answer names the gold label, a wrong one excludes its label;
    an id whose gold stays ambiguous (every method wrong, more than two labels) is left out."""
    names = LABELS.get(task, ["A", "B", "C", "D"])
    cand = {}
    for m, i, o, s in zip(method, ids, output, score):
        c = cand.setdefault(i, set(range(len(names))))
        if o not in names:
            continue
        j = names.index(o)
        c &= {j} if s == 1 else c - {j}
    return {i: next(iter(c)) for i, c in cand.items() if len(c) == 1}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="results/rtd")
    ap.add_argument("--lambda-task", default="rte")
    ap.add_argument("--name", default="smollm2", help="model tag of the files (eval-NAME-TASK.h5)")
    ap.add_argument("--md")
    a = ap.parse_args()
    L = []
    L.append("| task | n | zero-shot | ICL 5-shot (n; paired diff) | RTD (diff to zero-shot) | MH-RTD (diff to zero-shot) | datastore | T (rtd / mh-rtd) |")
    L.append("|---|---|---|---|---|---|---|---|")
    for t in TASKS:
        s = summary(os.path.join(a.dir, f"eval-{a.name}-{t}.h5"))
        if not s:
            continue
        icl = summary(os.path.join(a.dir, f"eval-{a.name}-{t}-icl.h5"))
        ds = os.path.join(a.dir, "ds" if a.name == "smollm2" else f"ds-{a.name}", f"{t}.h5")
        size, T = "–", "–"
        if os.path.exists(ds):
            with h5py.File(ds, "r") as f:
                size = f"{int(f.attrs['n_written'])} x {int(f.attrs['d'])}"
                T = f"{float(f.attrs['tuned_T']):.4g} / {float(f.attrs['tuned_T_mh']):.4g}"
        else:
            rec = recorded_T(os.path.join(a.dir, f"eval-{a.name}-{t}.h5"))
            if rec:
                size = "(file not kept)"
                T = " / ".join(f"{rec[m]:.4g}" if rec.get(m) else "–" for m in ("rtd", "mh-rtd")) + " (from the answers)"
        icl_s = f"{cell(icl.get('icl'), False)} (n={int(icl['icl']['n'])}; {icl['icl']['diff']:+.3f} [{icl['icl']['diff_low']:+.3f}, {icl['icl']['diff_high']:+.3f}])" if icl.get("icl") else "–"
        n = int(s["vanilla"]["n"]) if "vanilla" in s else 0
        L.append(f"| {t} | {n} | {cell(s.get('vanilla'), False)} | {icl_s} | {cell(s.get('rtd'))} | {cell(s.get('mh-rtd'))} | {size} | {T} |")
    path = os.path.join(a.dir, f"eval-{a.name}-{a.lambda_task}.h5")
    if os.path.exists(path):
        grid = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
        with h5py.File(path, "r") as f:
            r = f["records"]
            method, ids, score = strs(r["method"]), strs(r["id"]), r["score"][:]
            detail, output = strs(r["detail"]), strs(r["output"])
        van = {i: s for m, i, s in zip(method, ids, score) if m == "vanilla"}
        gold = gold_indices(a.lambda_task, method, ids, output, score)
        for m, i, d in zip(method, ids, detail):  # files written since the detail records the gold index
            if m == "rtd" and json.loads(d).get("gold", -1) >= 0:
                gold[i] = json.loads(d)["gold"]
        recs = sorted((i, json.loads(d)) for m, i, d in zip(method, ids, detail) if m == "rtd" and i in gold and i in van)
        L.append("")
        L.append(f"λ sweep on {a.lambda_task}: λ·r + (1−λ)·p_LM, recomputed from the r and p_LM each rtd answer recorded "
                 f"({len(recs)} items; λ = 1 is RTD, λ = 0 is zero-shot):")
        L.append("")
        L.append("| λ | accuracy [95% CI] | diff to zero-shot [95% CI] |")
        L.append("|---|---|---|")
        rng = np.random.default_rng(SEED)
        for lam in grid:
            acc = np.array([1.0 if int(np.argmax(lam * np.array(d["r"]) + (1 - lam) * np.array(d["p_lm"]))) == gold[i]
                            else 0.0 for i, d in recs])
            diff = acc - np.array([van[i] for i, _ in recs])
            lo, hi = boot(acc, rng)
            dlo, dhi = boot(diff, rng)
            L.append(f"| {lam:g} | {acc.mean():.3f} [{lo:.3f}, {hi:.3f}] | {diff.mean():+.3f} [{dlo:+.3f}, {dhi:+.3f}] |")
    text = "\n".join(L) + "\n"
    if a.md:
        with open(a.md, "w") as f:
            f.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
