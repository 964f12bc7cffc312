#!/usr/bin/python3
"""Plot a `headsweep train` output file: loss and copy accuracy per step, and tau of every head per step.

usage: analysis/plot_train.py runs/smollm2-train.h5 [-o train.png]
"""
import argparse

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("-o", "--output", default=None, help="image file (default: <file>.png)")
    a = ap.parse_args()
    with h5py.File(a.file, "r") as f:
        loss = f["log/loss"][()]
        acc = f["log/accuracy"][()]
        tau = f["log/tau"][()]
        layers = f["heads/layer"][()]
        heads = f["heads/head"][()]
        model = f.attrs.get("model", "")
        ev = {k: float(f["eval"][k][0]) for k in f["eval"]} if "eval" in f else {}
    steps = range(1, len(loss) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax1.plot(steps, loss, color="C0", label="loss (mean CE, second copy)")
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss", color="C0")
    ax1b = ax1.twinx()
    ax1b.plot(steps, acc, color="C1", label="copy accuracy")
    ax1b.set_ylabel("copy accuracy", color="C1")
    title = "training batch loss and copy accuracy"
    if "loss_before" in ev and "loss_after" in ev:
        title += "\neval: loss %.3f -> %.3f, acc %.3f -> %.3f" % (
            ev["loss_before"], ev["loss_after"], ev["accuracy_before"], ev["accuracy_after"])
    ax1.set_title(title, fontsize=10)
    for k in range(tau.shape[1]):
        ax2.plot(steps, tau[:, k], label="L%d H%d" % (layers[k], heads[k]))
    ax2.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax2.set_xlabel("step")
    ax2.set_ylabel("tau")
    ax2.set_title("re-weighting coefficients", fontsize=10)
    ax2.legend(fontsize=8, ncol=2)
    fig.suptitle(str(model), fontsize=9)
    fig.tight_layout()
    out = a.output or a.file.rsplit(".", 1)[0] + ".png"
    fig.savefig(out, dpi=120)
    print("wrote", out)


if __name__ == "__main__":
    main()
