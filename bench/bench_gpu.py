#!/usr/bin/env python3
"""GPU benchmarks of headsweep against the PyTorch + HF peers, in one invocation (docs/gpu.md).

Items (--only takes a comma-separated subset; the default is the first five):
  total-smollm2   total-mode sweep, smollm2-135m shape, 16 samples x n = 64, 270 heads   target <= 0.3 s
  total-llama3    total-mode sweep, llama3-8b shape, 16 x 256, 1,024 heads               target <= 100 s, >= 2.4x peer
  path-smollm2    path-mode sweep, the paper's 4 settings, smollm2-135m shape            target <= 0.3 s
  path-llama3     path-mode sweep, the paper's 4 settings, llama3-8b shape               target <= 5 s
  prefill-llama3  one forward (prefill) at the llama3-8b shape, batch 1 and 16 x 512 tokens: tokens/s, TFLOP/s
  prefill-smollm2 the same at the smollm2-135m shape (part of --quick)
Total mode ablates one head at all positions with its mean over the sequence (ours: --mean-over sequence), as the
peer does. Ours: `headsweep sweep --model random:<shape> --device cuda` (time: the sweep's own progress summary, model
creation and upload excluded; the process's wall time and the output file's /run times are reported too) and
`headsweep_bench_engine --device cuda` for prefill. Peers: torch_sweep.main / torch_path_sweep.run from
.bundle/peers (or ../shared/bench), bf16, which time a slice of the 8B model's layers and extrapolate (flagged '*');
the prefill peer is LlamaForCausalLM(...)(ids, logits_to_keep=1) in bf16 on the same shape.

Ours is found as: $HEADSWEEP_BUNDLE_BIN (inside .bundle/run.sh), else .bundle/run.sh, else build-gpu/, else build/
(--ours overrides: a directory of binaries or a path to run.sh). Run it with the device's plain python3 (torch
there); it needs nothing installed and does not import torch itself.

Usage: python3 bench/bench_gpu.py [--only total-smollm2,...] [--quick] [--dry-run] [--json out.json]
                                  [--device cuda] [--gpu-weights bf16] [--peer-layers 2] [--no-peer]
                                  [--prefill-tokens 512] [--prefill-batches 1,16]"""
import argparse, json, os, re, shlex, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from benchlib import run_json  # noqa: E402

# Our random shapes (src/model/random_model.cpp): layers, d_model, heads, kv heads, d_ff, vocab; and the peer's name.
SHAPES = {
    "smollm2-135m": dict(L=30, d=576, H=9, KV=3, ff=1536, V=49152, peer="smollm2-135m"),
    "qwen2.5-0.5b": dict(L=24, d=896, H=14, KV=2, ff=4864, V=151936, peer="qwen2.5-0.5b-shape"),
    "llama3-8b": dict(L=32, d=4096, H=32, KV=8, ff=14336, V=128256, peer="llama3-8b-shape"),
}

ITEMS = {
    "total-smollm2": dict(kind="sweep", shape="smollm2-135m", mode="total", settings="16x64", target_s=0.3),
    "total-llama3": dict(kind="sweep", shape="llama3-8b", mode="total", settings="16x256", target_s=100.0,
                         target_speedup=2.4),
    "path-smollm2": dict(kind="sweep", shape="smollm2-135m", mode="path", settings="paper", target_s=0.3),
    "path-llama3": dict(kind="sweep", shape="llama3-8b", mode="path", settings="paper", target_s=5.0),
    "prefill-llama3": dict(kind="prefill", shape="llama3-8b"),
    "prefill-smollm2": dict(kind="prefill", shape="smollm2-135m"),
}
DEFAULT = ["total-smollm2", "total-llama3", "path-smollm2", "path-llama3", "prefill-llama3"]
QUICK = ["total-smollm2", "path-smollm2", "prefill-smollm2"]

PEER_SWEEP = ("import sys; sys.path.insert(0, sys.argv[1]); import torch_sweep as m; "
              "m.main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))")
PEER_PATH = ("import sys; sys.path.insert(0, sys.argv[1]); import torch_path_sweep as m; "
             "m.run(sys.argv[2], int(sys.argv[3]))")
PEER_PREFILL = r"""
import json, statistics, sys, time, torch
sys.path.insert(0, sys.argv[1])
from torch_sweep import SHAPES
from transformers import LlamaConfig, LlamaForCausalLM
name, batches, T, reps = sys.argv[2], [int(b) for b in sys.argv[3].split(",")], int(sys.argv[4]), int(sys.argv[5])
cfg = LlamaConfig(**SHAPES[name], max_position_embeddings=8192, attn_implementation="sdpa")
torch.manual_seed(0)
torch.set_default_dtype(torch.bfloat16)
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg).eval()
with torch.inference_mode():
    for B in batches:
        ids = torch.randint(100, cfg.vocab_size, (B, T), device="cuda")
        for _ in range(2):
            model(ids, logits_to_keep=1)
        times = []
        for _ in range(reps):
            torch.cuda.synchronize(); t = time.perf_counter()
            model(ids, logits_to_keep=1)
            torch.cuda.synchronize(); times.append(time.perf_counter() - t)
        s = statistics.median(times)
        print(json.dumps(dict(engine="torch", test="prefill", batch=B, tokens=T, seconds=round(s, 5),
                              tokens_per_s=round(B * T / s, 1))), flush=True)
"""


CODE_NAMES = {PEER_SWEEP: "<torch_sweep.main(shape, B, n, layers)>", PEER_PATH: "<torch_path_sweep.run(shape, layers)>",
              PEER_PREFILL: "<prefill: LlamaForCausalLM bf16, (ids, logits_to_keep=1); shape batches T reps>"}


def show(cmd):
    """The command as a shell line, a python -c program replaced by its name."""
    return shlex.join(cmd) if "-c" not in cmd else " ".join(
        CODE_NAMES.get(x, shlex.quote(x)) if i == cmd.index("-c") + 1 else shlex.quote(x) for i, x in enumerate(cmd))


def prefill_flops(shape, B, T):
    """2 x (parameters in the layers' matmuls) x tokens + causal attention 4 T^2 d L / 2 per sequence + the LM head
    at the last position of each sequence (both engines compute logits there only)."""
    c = SHAPES[shape]
    hd = c["d"] // c["H"]
    mm = c["L"] * (c["d"] * c["H"] * hd + 2 * c["d"] * c["KV"] * hd + c["H"] * hd * c["d"] + 3 * c["d"] * c["ff"])
    return 2 * mm * B * T + B * 4 * T * T * c["d"] * c["L"] / 2 + 2 * B * c["d"] * c["V"]


class Ours:
    """How our programs are started: directly from a directory of binaries, or through .bundle/run.sh."""

    def __init__(self, spec):
        self.run_sh = None
        self.bin_dir = None
        if spec == "auto":
            if os.environ.get("HEADSWEEP_BUNDLE_BIN"):
                self.bin_dir = os.environ["HEADSWEEP_BUNDLE_BIN"]
            elif os.path.exists(os.path.join(REPO, ".bundle", "run.sh")):
                self.run_sh = os.path.join(REPO, ".bundle", "run.sh")
            else:
                for b in ("build-gpu", "build"):
                    if os.path.exists(os.path.join(REPO, b, "headsweep")):
                        self.bin_dir = os.path.join(REPO, b)
                        break
                else:
                    self.bin_dir = os.path.join(REPO, "build")
        elif spec.endswith(".sh"):
            self.run_sh = os.path.abspath(spec)
        else:
            self.bin_dir = os.path.abspath(spec)

    def describe(self):
        return f"through {self.run_sh}" if self.run_sh else f"binaries in {self.bin_dir}"

    def cmd(self, prog, *args):
        if self.run_sh:
            return [self.run_sh, prog, *args]
        return [os.path.join(self.bin_dir, prog), *args]


def default_peers():
    for d in (os.path.join(REPO, ".bundle", "peers"), os.path.join(REPO, "..", "shared", "bench")):
        if os.path.exists(os.path.join(d, "torch_sweep.py")):
            return os.path.abspath(d)
    return os.path.abspath(os.path.join(REPO, "..", "shared", "bench"))


def run(cmd, timeout, env=None):
    """Runs cmd; returns (stdout, stderr, wall seconds). Raises RuntimeError with the output's tail on failure."""
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"timed out after {timeout} s: {show(cmd)}") from e
    wall = time.perf_counter() - t
    if p.returncode != 0:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"exit {p.returncode}: {show(cmd)}\n{tail}")
    return p.stdout, p.stderr, wall


SUMMARY = re.compile(r"^sweep \S+ (\w+): done (\d+)(?:/(\d+))? in (\S+) \(([\d.eE+]+) heads/s\)", re.M)
RESULT = re.compile(r"^sweep \S+ (\w+): (\d+) heads \((\d+)x(\d+)\), (\d+) scored in ([\d.]+) s, (\w+)", re.M)


def parse_duration(s):
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:([\d.]+)s)?", s)
    if not m or not s:
        return None
    h, mi, se = m.groups()
    return int(h or 0) * 3600 + int(mi or 0) * 60 + float(se or 0)


def file_run_seconds(path):
    """end_time - start_time of the output file's /run group (whole seconds), when h5py is there."""
    try:
        import h5py  # noqa: PLC0415
        from datetime import datetime  # noqa: PLC0415
        with h5py.File(path, "r") as f:
            a = f["run"].attrs
            fmt = "%Y-%m-%dT%H:%M:%SZ"
            conv = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
            start, end = (datetime.strptime(conv(a[k]), fmt) for k in ("start_time", "end_time"))
            return (end - start).total_seconds()
    except Exception:  # noqa: BLE001 (no h5py, no file: the figure is optional)
        return None


def gpu_weights(a):
    return ["--gpu-weights", a.gpu_weights] if a.device == "cuda" else []


def ours_sweep(a, ours, item, tmp):
    it = ITEMS[item]
    out = os.path.join(tmp, f"{item}.h5")
    cmd = ours.cmd("headsweep", "sweep", "--model", f"random:{it['shape']}", "--device", a.device, "--mode", it["mode"],
                   "--settings", it["settings"], "--output", out, "--overwrite", *gpu_weights(a))
    if it["mode"] == "total":
        cmd += ["--mean-over", "sequence"]
    if a.dry_run:
        return cmd, None
    stdout, stderr, wall = run(cmd, a.timeout)
    r = dict(wall_s=round(wall, 3))
    m = SUMMARY.search(stderr)
    if m:
        done, rate = int(m.group(2)), float(m.group(5))
        r["heads"] = done
        r["sweep_s"] = round(done / rate, 4) if rate > 0 else parse_duration(m.group(4))
    m = RESULT.search(stdout)
    if m:
        r["run_s_incl_model"] = float(m.group(6))
        r["complete"] = m.group(7) == "complete"
    fs = file_run_seconds(out)
    if fs is not None:
        r["file_run_s"] = fs
    r["seconds"] = r.get("sweep_s", r.get("run_s_incl_model", wall))
    return cmd, r


def peer_sweep(a, item):
    it = ITEMS[item]
    c = SHAPES[it["shape"]]
    layers = c["L"] if c["L"] <= 30 else a.peer_layers  # the peers time all of a small model, a slice of the 8B one
    if it["mode"] == "total":
        B, n = (int(x) for x in it["settings"].split("x"))
        cmd = [sys.executable, "-c", PEER_SWEEP, a.peers, c["peer"], str(B), str(n), str(layers)]
    else:
        cmd = [sys.executable, "-c", PEER_PATH, a.peers, c["peer"], str(layers)]
    if a.dry_run:
        return cmd, None
    t = time.perf_counter()
    lines = run_json(cmd)
    wall = time.perf_counter() - t
    r = dict(lines[-1])
    r["seconds"] = r["full_sweep_secs_est"]
    r["layers_timed"] = min(layers, c["L"])
    r["extrapolated"] = layers < c["L"]
    r["wall_s"] = round(wall, 1)
    return cmd, r


def ours_prefill(a, ours, item):
    it = ITEMS[item]
    cmd = ours.cmd("headsweep_bench_engine", f"random:{it['shape']}", "--device", a.device, "--tokens",
                   str(a.prefill_tokens), "--batches", a.prefill_batches, "--decode", "0", "--reps", str(a.reps),
                   *gpu_weights(a))
    if a.dry_run:
        return cmd, None
    return cmd, [x for x in run_json(cmd) if x.get("test") == "prefill"]


def peer_prefill(a, item):
    it = ITEMS[item]
    cmd = [sys.executable, "-c", PEER_PREFILL, a.peers, SHAPES[it["shape"]]["peer"], a.prefill_batches,
           str(a.prefill_tokens), str(a.reps)]
    if a.dry_run:
        return cmd, None
    return cmd, [x for x in run_json(cmd) if x.get("test") == "prefill"]


def gpu_name():
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30).stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def fmt(x, unit="", nd=2):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return f"{x:.{nd}f}{unit}" if abs(x) < 1000 else f"{x:.0f}{unit}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated items (default: " + ",".join(DEFAULT) + ")")
    ap.add_argument("--quick", action="store_true", help="smoke test: " + ",".join(QUICK) + ", fewer repetitions")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--device", default="cuda", help="ours: cuda (default) or cpu")
    ap.add_argument("--gpu-weights", default="bf16", help="ours on cuda: bf16 (default, as the peers), fp16, fp32")
    ap.add_argument("--ours", default="auto", help="directory of our binaries, or .bundle/run.sh (default: auto)")
    ap.add_argument("--peers", default=None, help="directory with torch_sweep.py, torch_path_sweep.py")
    ap.add_argument("--no-peer", action="store_true", help="ours only")
    ap.add_argument("--peer-layers", type=int, default=2, help="layers of the 8B shape the peers time (default 2)")
    ap.add_argument("--prefill-tokens", type=int, default=512)
    ap.add_argument("--prefill-batches", default="1,16")
    ap.add_argument("--reps", type=int, default=None, help="prefill repetitions (median; default 5, --quick 2)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per program run")
    a = ap.parse_args()
    items = a.only.split(",") if a.only else (QUICK if a.quick else DEFAULT)
    for i in items:
        if i not in ITEMS:
            ap.error(f"unknown item '{i}' (known: {', '.join(ITEMS)})")
    a.reps = a.reps or (2 if a.quick else 5)
    a.peers = os.path.abspath(a.peers) if a.peers else default_peers()
    ours = Ours(a.ours)
    if a.dry_run:
        print(f"# ours: {ours.describe()}; peers: {a.peers}{'' if os.path.isdir(a.peers) else ' (missing)'}")

    env_info = dict(host=os.uname().nodename, cpus=os.cpu_count(), gpu=None if a.dry_run else gpu_name(),
                    ours=ours.describe(), peers=None if a.no_peer else a.peers, device=a.device,
                    gpu_weights=a.gpu_weights if a.device == "cuda" else None,
                    date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    results, failed = [], False
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        for item in items:
            it = ITEMS[item]
            row = dict(item=item, shape=it["shape"], kind=it["kind"])
            steps = [("ours", (lambda: ours_sweep(a, ours, item, tmp)) if it["kind"] == "sweep"
                      else (lambda: ours_prefill(a, ours, item)))]
            if not a.no_peer:
                steps.append(("peer", (lambda: peer_sweep(a, item)) if it["kind"] == "sweep"
                              else (lambda: peer_prefill(a, item))))
            for who, step in steps:
                if not a.dry_run:
                    print(f"[{item}] {who} ...", file=sys.stderr, flush=True)
                try:
                    cmd, r = step()
                    row[who + "_cmd"] = show(cmd)
                    if a.dry_run:
                        print(f"{item} {who}: {show(cmd)}")
                    row[who] = r
                except (RuntimeError, subprocess.CalledProcessError, KeyError, IndexError, ValueError) as e:
                    failed = True
                    msg = str(e)
                    if isinstance(e, subprocess.CalledProcessError):
                        msg = f"exit {e.returncode}: {show(e.cmd)}\n" + "\n".join(
                            ((e.stdout or "") + (e.stderr or "")).strip().splitlines()[-15:])
                    row[who + "_error"] = msg
                    print(f"[{item}] {who} failed: {msg}", file=sys.stderr, flush=True)
            if not a.dry_run:
                evaluate(row, it, a)
            results.append(row)
    if a.dry_run:
        return 0
    print_table(results, env_info)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(env=env_info, results=results), f, indent=1)
        print(f"wrote {a.json}")
    return 1 if failed else 0


def evaluate(row, it, a):
    o, p = row.get("ours"), row.get("peer")
    if it["kind"] == "sweep":
        if o and p:
            row["speedup"] = round(p["seconds"] / o["seconds"], 2) if o["seconds"] > 0 else None
        if o:
            met = o["seconds"] <= it["target_s"]
            if "target_speedup" in it:
                met = met and row.get("speedup") is not None and row["speedup"] >= it["target_speedup"]
            row["target"] = f"<= {it['target_s']:g} s"
            if "target_speedup" in it:
                row["target"] += f", >= {it['target_speedup']:g}x peer"
            row["target_met"] = met
    else:
        for side in ("ours", "peer"):
            for x in row.get(side) or []:
                x["tflops"] = float(f'{prefill_flops(it["shape"], x["batch"], x["tokens"]) / x["seconds"] / 1e12:.4g}')
        if o and p:
            pb = {x["batch"]: x for x in p}
            row["speedup_by_batch"] = {x["batch"]: round(x["tokens_per_s"] / pb[x["batch"]]["tokens_per_s"], 2)
                                       for x in o if x["batch"] in pb}


def g3(x):
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def print_table(results, env):
    print(f"\nheadsweep GPU benchmark, {env['date']}: {env['gpu'] or 'no nvidia-smi'}; ours {env['ours']} "
          f"(--device {env['device']}{', ' + env['gpu_weights'] + ' weights' if env['gpu_weights'] else ''})")
    print(f"{'item':16s}{'ours s':>10s}{'peer s':>10s}{'speed-up':>10s}  {'target':24s}{'met':>5s}  notes")
    for r in results:
        o, p = r.get("ours"), r.get("peer")
        if r["kind"] == "sweep":
            notes = []
            if p and p.get("extrapolated"):
                notes.append(f"*peer extrapolated from {p['layers_timed']} of {SHAPES[r['shape']]['L']} layers")
            if o:
                notes.append(f"ours wall {fmt(o['wall_s'], ' s', 1)} incl. model creation")
                if o.get("file_run_s") is not None:
                    notes.append(f"/run {o['file_run_s']:.0f} s")
            if "ours_error" in r:
                notes.append("ours FAILED")
            if "peer_error" in r:
                notes.append("peer FAILED")
            ps = fmt(p["seconds"], "", 2) + ("*" if p and p.get("extrapolated") else "") if p else "-"
            met = "-" if "target_met" not in r else ("yes" if r["target_met"] else "NO")
            print(f"{r['item']:16s}{fmt(o and o['seconds'], '', 3):>10s}{ps:>10s}"
                  f"{fmt(r.get('speedup'), 'x'):>10s}  {r.get('target', '-'):24s}{met:>5s}  {'; '.join(notes)}")
        else:
            pb = {x["batch"]: x for x in (p or [])}
            for x in o or []:
                y = pb.get(x["batch"])
                line = (f"{r['item']:16s} B={x['batch']} x {x['tokens']}: ours {x['tokens_per_s']:.0f} tok/s "
                        f"{g3(x['tflops'])} TFLOP/s")
                if y:
                    line += (f"; peer (bf16) {y['tokens_per_s']:.0f} tok/s {g3(y['tflops'])} TFLOP/s; "
                             f"ours/peer {x['tokens_per_s'] / y['tokens_per_s']:.2f}x")
                print(line)
            if not o:
                print(f"{r['item']:16s} ours FAILED" if "ours_error" in r else f"{r['item']:16s} -")
    print("FLOPs of a prefill: 2 x matmul parameters x tokens + 4 T^2 d L / 2 (causal attention) + LM head at the "
          "last position")


if __name__ == "__main__":
    sys.exit(main())
