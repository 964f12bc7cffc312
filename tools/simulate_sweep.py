#!/usr/bin/env python3
"""Discrete-event simulation of the distributed sweep protocol (docs/protocol.md) at 1,000 and 10,000 ranks.

    python3 tools/simulate_sweep.py [--costs analysis/sweep_costs.json] [--ranks 1000,10000] [--shapes llama3-8b,llama3-70b]

What is simulated (src/dist/protocol.cpp, src/dist/sweep_mpi.cpp):
  * rank 0 coordinates only (more than 4 ranks); W - 1 workers ask for work; a worker's message carries the results
    of its last batch and its next request (one round trip per batch).
  * rank 0 is one server: each message costs it t_message (receive, unpack, answer) plus c1 per result; the writer's
    commit (journal fdatasync + one flush: c0, measured by bench/bench_sweep_writer.cpp) runs when no message waits or
    after 64 messages (group commit); messages wait in arrival order.
  * assignment as in take_batch(): setting affinity (a worker keeps its setting while it has items, else the setting
    with the most items per worker on it), items in plan order, batch = target 50 ms / mean item time so far, capped
    by max_batch 4 and by half a fair share of what is left (guided self-scheduling), at least 1.
  * clean runs, as built (job key share_clean_runs = true, the default): the first worker that takes a setting up
    computes its clean run (one forward of N x 2n tokens with caches) and sends the state (SettingRun::export_state,
    clean_state_bytes() below) to rank 0 at once; a worker that takes the setting up later gets the state from rank 0
    with its assignment (rank 0 busy bytes / bandwidth per send, the worker bytes / bandwidth + the import), or waits
    for it while it is being computed. `--each-computes` simulates the former protocol (every worker that takes a
    setting up computes its clean run). `--split-clean K` (what-if, NOT built): the clean run's N sequences split
    over K ranks (time / min(K, N)); not bit-identical unless the forward's rows do not depend on the batch.
  * items: one setting x one layer x a head range (heads_per_item_for(): >= 8 items per worker, else single heads).

Item and clean-run costs: PATH mode. An item of layer l with h heads runs h*N rows through W_O of layer l and the MLPs
of layers l..L-1 (plus the final norm and the pi readout): flops = 2 h N (q_dim d + (L - l) * 3 d d_ff) (+ small terms);
with tens of rows it is bound as much by streaming those layers' weights: seconds = a + bytes * s_b + flops * s_f.
The clean run is a forward of N * 2n tokens with full logits (copy accuracy). Cost files:
  analysis/sweep_costs_8b_q4_0.json (the default --costs) and analysis/sweep_costs_70b_q4_0.json (the 70B's, used
    for llama3-70b unless --costs is given): items and clean runs timed with bench_item_costs --precision native
    (1 thread, CPU seconds) on the Llama-3-8B shape and on a 4-layer slice of the Llama-3-70B shape
    (`headsweep write-random llama3-70b/4`, label llama3-70b/4), each fitted with --fit --regimes --cpu-seconds
    --weight-bytes 0.5625: the model above per kernel regime (int8 tiles below INT8_MAX_ROWS rows, dequantised
    tiles + fp32 SGEMM from it), so the 70B's 80 layers follow from its per-layer costs.
  analysis/sweep_costs.json: the earliest fit on the SmolLM2-135M and Qwen2.5-0.5B shapes in fp32 (clean runs:
    flops / rate + a per-sequence term), scaled to the 8B and 70B shapes. `--speedup` scales every compute cost
    down (a GPU rank or a faster node), which makes the coordinator relatively more expensive.

Prints per shape and rank count: makespan, parallel efficiency (useful item work / (ranks x makespan)), the work
lost to clean runs, rank 0's busy fraction, and the bound that limits scaling (items per rank, the longest item,
the coordinator).
"""
import argparse
import heapq
import json
import math
import os
import sys

# Published configs (Meta Llama 3): layers, d_model, heads, kv heads, d_ff, vocab
SHAPES = {
    "llama3-8b": dict(L=32, d=4096, H=32, Hkv=8, dff=14336, vocab=128256),
    "llama3-70b": dict(L=80, d=8192, H=64, Hkv=8, dff=28672, vocab=128256),
    "smollm2-135m": dict(L=30, d=576, H=9, Hkv=3, dff=1536, vocab=49152),
    "qwen2.5-0.5b": dict(L=24, d=896, H=14, Hkv=2, dff=4864, vocab=151936),
}
PAPER_SETTINGS = [(20, 50), (40, 25), (80, 15), (100, 10)]


def shape_of(name):
    """A shape by name; "<shape>/<k>" is its first k layers (the slice `headsweep write-random <shape>/<k>` writes,
    on which a model too large to hold here is timed)."""
    base, _, k = name.partition("/")
    if base not in SHAPES:
        sys.exit(f"simulate_sweep: unknown shape '{name}' (known: {', '.join(SHAPES)}; <shape>/<k> for a slice)")
    sh = dict(SHAPES[base])
    if k:
        if not k.isdigit() or not 1 <= int(k) <= sh["L"]:
            sys.exit(f"simulate_sweep: shape '{name}': the layer count after '/' must be 1..{sh['L']}")
        sh["L"] = int(k)
    return sh


def item_flops(shape, layer, heads, N):
    d, dff, L = shape["d"], shape["dff"], shape["L"]
    q_dim = d  # d_head * n_head = d for these shapes
    return 2.0 * heads * N * (q_dim * d + (L - layer) * 3 * d * dff + 2 * d)


def item_bytes(shape, layer, weight_bytes=4.0):
    """Weights an item streams (fp32: 4 bytes each; GGUF Q4_0 kept native: 18 bytes per 32): the MLPs of layers
    l..L-1 and W_O of layer l (small row counts make an item bound by reading weights more than by its flops)."""
    d, dff, L = shape["d"], shape["dff"], shape["L"]
    return weight_bytes * ((L - layer) * 3 * d * dff + d * d)


def clean_bytes(shape, weight_bytes=4.0):
    """Weights a clean run streams: every layer's attention and MLP matrices and the output head twice (the mean
    unembedding row and the logits)."""
    d, dff, L, H, Hkv = shape["d"], shape["dff"], shape["L"], shape["H"], shape["Hkv"]
    dh = d // H
    return weight_bytes * (L * (d * (H * dh + 2 * Hkv * dh) + H * dh * d + 3 * d * dff) + 2 * shape["vocab"] * d)


def clean_flops(shape, N, n):
    d, dff, L, H, Hkv = shape["d"], shape["dff"], shape["L"], shape["H"], shape["Hkv"]
    dh = d // H
    per_token = L * (d * (H * dh + 2 * Hkv * dh) + H * dh * d + 3 * d * dff)
    T = 2 * n
    attn = L * 2 * T * T * H * dh  # scores and weighted sum, per sequence
    logits = 2.0 * N * n * shape["vocab"] * d  # full logits over the second half (copy accuracy)
    return 2.0 * N * T * per_token + N * attn + logits


def heads_per_item_for(S, L, H, min_items):
    layer_items = S * L
    if layer_items >= min_items:
        return H
    per_layer = min(H, -(-min_items // layer_items))
    return max(1, H // per_layer)


def plan(shape, settings, hpi):
    items = []  # (setting, layer, heads)
    for s in range(len(settings)):
        for l in range(shape["L"]):
            h = 0
            while h < shape["H"]:
                items.append((s, l, min(hpi, shape["H"] - h)))
                h += hpi
    return items


def clean_state_bytes(shape, N):
    """PATH mode's per-setting state (SettingRun::export_state, pear::state_bytes): z, the residual after attention and
    the attention output at p for every layer [L][N, q_dim | d | d] fp32, the mean unembedding row [d] f64, the
    per-sample clean values [N] f32 and a 64-byte header (q_dim = d for these shapes)."""
    return 4 * shape["L"] * N * (shape["d"] + 2 * shape["d"]) + 8 * shape["d"] + 4 * N + 64 + 16


def simulate(shape, settings, ranks, costs, speedup=1.0, hpi=None, max_batch=4, target=0.05, latency=5e-6,
             share=True, split_clean=1, bandwidth=10e9):
    """share: the built protocol (each setting's clean run computed once by the first worker that takes it up, its
    state relayed by rank 0 at `bandwidth` bytes/s to each later worker; rank 0 is busy for every send and receive).
    split_clean = K > 1 (what-if, not built): that clean run takes clean / min(K, N)."""
    W = ranks - 1  # rank 0 only coordinates beyond 4 ranks
    S = len(settings)
    if hpi is None:
        hpi = heads_per_item_for(S, shape["L"], shape["H"], 8 * W)
    items = plan(shape, settings, hpi)
    t_cost = [item_seconds(costs, shape, l, h, settings[s][0]) / speedup for (s, l, h) in items]
    clean_cost = [clean_seconds(costs, shape, N, n) / speedup for (N, n) in settings]
    t_msg = costs["message_s"]
    c0, c1 = costs["commit_s"], costs["commit_per_result_s"]

    state_b = [clean_state_bytes(shape, N) for (N, n) in settings]
    import_s = costs.get("import_s_per_byte", 4e-9)  # the worker's from_state (copies) per byte
    share_of = ["none"] * S  # none -> making -> ready
    waiting = [[] for _ in range(S)]
    needs_state = [False] * (W + 1)
    sends, sent_bytes, wait_s = 0, 0, 0.0
    queues = [[] for _ in range(S)]
    for i, (s, l, h) in enumerate(items):
        queues[s].append(i)
    heads = [0] * S  # next index into queues[s]
    unassigned = len(items)
    on_group = [0] * S
    cur = [-1] * (W + 1)
    sum_t, n_done = 0.0, 0

    def take(r, now=0.0):
        """(items, action) with action None / "make" / "follows", or (None, "wait")."""
        nonlocal unassigned
        if unassigned == 0:
            return [], None
        g = cur[r]
        takes_up = needs_state[r]
        if g < 0 or heads[g] >= len(queues[g]):
            takes_up = True
            best, score = -1, -1.0
            for k in range(S):
                left = len(queues[k]) - heads[k]
                if left <= 0:
                    continue
                sc = left / (1 + on_group[k])
                if sc > score:
                    best, score = k, sc
            if g >= 0:
                on_group[g] -= 1
            g = best
            cur[r] = g
            on_group[g] += 1
        action = "make" if takes_up else None
        if share and takes_up:
            if share_of[g] == "making":
                needs_state[r] = True
                waiting[g].append((r, now))
                return None, "wait"
            needs_state[r] = False
            if share_of[g] == "none":
                share_of[g] = "making"
            else:
                action = "follows"
        n = 1
        if n_done > 0:
            per = sum_t / n_done
            n = int(target / per) if per > 0 else max_batch
        n = min(n, max(1, unassigned // (2 * max(1, W))))
        n = max(1, min(n, max_batch))
        b = queues[g][heads[g]:heads[g] + n]
        heads[g] += len(b)
        unassigned -= len(b)
        return b, action

    # events: (time, seq, kind, rank, payload)
    ev = []
    seq = 0
    for r in range(1, W + 1):  # every worker starts with an empty request
        heapq.heappush(ev, (latency, seq, "arrive", r, [])); seq += 1
    server_free = 0.0
    busy0 = 0.0
    pending, commits = 0, 0
    holds = [-1] * (W + 1)  # setting whose clean run the worker holds
    clean_work = 0.0
    finished = 0
    end = 0.0
    def assign(r, b, action, at):
        """rank 0 answers r at time `at` (its server free): the send of a state keeps rank 0 busy."""
        nonlocal seq, server_free, busy0, sends, sent_bytes
        if action == "follows":
            s = items[b[0]][0]
            server_free = at + state_b[s] / bandwidth
            busy0 += state_b[s] / bandwidth
            sends += 1
            sent_bytes += state_b[s]
        heapq.heappush(ev, (server_free + latency, seq, "assign", r, (b, action))); seq += 1

    while ev:
        t, _, kind, r, payload = heapq.heappop(ev)
        if kind == "state":  # a clean state reaches rank 0: kept, then sent to whoever waits for it
            s = payload
            start = max(t, server_free)
            server_free = start + state_b[s] / bandwidth
            busy0 += state_b[s] / bandwidth
            share_of[s] = "ready"
            w, waiting[s] = waiting[s], []
            for (rr, since) in w:
                wait_s += server_free - since
                b, action = take(rr, server_free)
                if action == "wait":
                    continue
                if b:
                    assign(rr, b, action, server_free)
            continue
        if kind == "arrive":  # message at rank 0: served in arrival order
            start = max(t, server_free)
            m = len(payload)
            service = t_msg + c1 * m
            if m:
                pending += 1
            # group commit (protocol.cpp): the commit's fixed cost when no message waits, or after 64 messages
            more_waiting = bool(ev) and ev[0][2] == "arrive" and ev[0][0] <= start + service
            if pending and (not more_waiting or pending >= 64):
                service += c0
                pending = 0
                commits += 1
            server_free = start + service
            busy0 += service
            for i in payload:
                sum_t += t_cost[i]
                n_done += 1
            finished += m
            if finished == len(items):
                end = server_free
            b, action = take(r, server_free)
            if action != "wait" and b:
                assign(r, b, action, server_free)
        else:  # a worker computes its batch
            b, action = payload
            s = items[b[0]][0]
            work = 0.0
            if action == "make":
                c = clean_cost[s] / min(split_clean, settings[s][0])
                work += c
                clean_work += c
                if share:  # the state goes to rank 0 at once (the worker's send takes bytes / bandwidth)
                    work += state_b[s] / bandwidth
                    heapq.heappush(ev, (t + work + latency, seq, "state", r, s)); seq += 1
            elif action == "follows":  # received with the assignment, then installed
                c = state_b[s] / bandwidth + state_b[s] * import_s
                work += c
                clean_work += c
            for i in b:
                work += t_cost[i]
            heapq.heappush(ev, (t + work + latency, seq, "arrive", r, b)); seq += 1
    useful = sum(t_cost)
    eff = useful / (W * end) if end > 0 else 0.0
    eff_ranks = useful / (ranks * end) if end > 0 else 0.0
    return dict(shape=shape["name"], ranks=ranks, heads_per_item=hpi, items=len(items), makespan_s=end,
                efficiency=eff_ranks, efficiency_workers=eff, serial_s=useful, clean_s=clean_work,
                longest_item_s=max(t_cost), rank0_busy=busy0 / end if end else 0.0,
                bound_items=len(items) / W, state_sends=sends, state_gb_sent=sent_bytes / 1e9, state_wait_s=wait_s,
                longest_clean_s=max(c / min(split_clean, N) for c, (N, n) in zip(clean_cost, settings)),
                bound_longest=useful / (W * (max(t_cost) + max(c / min(split_clean, N)
                                                                for c, (N, n) in zip(clean_cost, settings)))))


def solve(A, b):
    """Least squares by the normal equations (a few unknowns), Gaussian elimination."""
    n = len(A[0])
    M = [[sum(r[i] * r[j] for r in A) for j in range(n)] + [sum(r[i] * y for r, y in zip(A, b))] for i in range(n)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(M[r][c]))
        M[c], M[p] = M[p], M[c]
        for r in range(n):
            if r != c:
                f = M[r][c] / M[c][c]
                M[r] = [x - f * y for x, y in zip(M[r], M[c])]
    return [M[i][n] / M[i][i] for i in range(n)]


def seq_size(shape):
    return shape["L"] * shape["d"] ** 2


# The CPU engine multiplies quantised weights by two kernels (backend/cpu/matmul_blocks.hpp, native prefill "auto"):
# 8-bit activations and integer block dots below this many input rows (matrices of >= 2048 columns, as here), the
# dequantised tiles + fp32 SGEMM from it; their rates differ ~2-3x, so the "regimes" cost model fits each apart.
INT8_MAX_ROWS = 256


def regime(rows):
    return "int8" if rows < INT8_MAX_ROWS else "f32"


def solve_nonneg(A, b):
    """Least squares with every unknown >= 0: unknowns that come out negative are fixed at 0 and the rest solved
    again (enough for the 2-3 unknowns here)."""
    free = list(range(len(A[0])))
    while True:
        x = solve([[r[i] for i in free] for r in A], b) if free else []
        if all(v >= 0 for v in x):
            out = [0.0] * len(A[0])
            for i, v in zip(free, x):
                out[i] = v
            return out
        free = [i for i, v in zip(free, x) if v >= 0] if any(v > 0 for v in x) else free[:-1]


def clean_seconds(costs, shape, N, n):
    if costs.get("model") == "regimes":  # the regime of its N x 2n rows
        c = costs["regimes"][regime(N * 2 * n)]
        wb = costs["weight_bytes"]
        return clean_bytes(shape, wb) * c["s_per_byte"] + clean_flops(shape, N, n) * c["s_per_flop"]
    if costs.get("model") == "joint":  # the items' constants: weights streamed once, flops
        wb = costs["weight_bytes"]
        return clean_bytes(shape, wb) * costs["item_s_per_byte"] + clean_flops(shape, N, n) * costs["item_s_per_flop"]
    return clean_flops(shape, N, n) * costs["clean_s_per_flop"] + N * seq_size(shape) * costs["clean_s_per_seq_unit"]


def item_seconds(costs, shape, layer, heads, N):
    if costs.get("model") == "regimes":  # the regime of its heads x N rows
        c = costs["regimes"][regime(heads * N)]
        return (c["overhead_s"] + item_bytes(shape, layer, costs["weight_bytes"]) * c["s_per_byte"]
                + item_flops(shape, layer, heads, N) * c["s_per_flop"])
    return (costs["item_overhead_s"] + item_bytes(shape, layer, costs.get("weight_bytes", 4.0)) * costs["item_s_per_byte"]
            + item_flops(shape, layer, heads, N) * costs["item_s_per_flop"])


def fit_line(xs, ys):
    """Least squares y = a + x / rate (a >= 0)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx > 0 else my / mx
    a = my - b * mx
    if a < 0:  # through the origin
        a, b = 0.0, sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)
    return a, 1.0 / b


def finish_fit(args, costs, rows, record_predictions=False):
    """The end of a joint fit: each timing's relative error under `costs` (with record_predictions, each row keeps
    its prediction as predicted_s), the worker's import cost per byte of state, the writer and message costs, the
    source and the timings; written to --costs. Returns the relative errors."""
    errs = []
    for r in rows:
        sh = shape_of(r["shape"])
        pred = (item_seconds(costs, sh, r["layer"], r["heads"], r["N"]) if r["kind"] == "item"
                else clean_seconds(costs, sh, r["N"], r["n"]))
        if record_predictions:
            r["predicted_s"] = pred
        errs.append(abs(pred - r["seconds"]) / r["seconds"])
    state = [r for r in rows if r["kind"] == "clean" and r.get("state_bytes")]
    if state:  # the worker's import (SettingRun::from_state) per byte of state
        costs["import_s_per_byte"] = max(r["import_s"] / r["state_bytes"] for r in state)
    costs.update(message_s=args.message_s, commit_s=args.commit_s, commit_per_result_s=args.commit_per_result_s,
                 item_fit_worst_rel_error=max(errs), clean_fit_worst_rel_error=max(errs), source=args.source,
                 measured=rows)
    with open(args.costs, "w") as f:
        json.dump(costs, f, indent=1)
    return errs


def fit_joint(args, rows):
    """One model for items and clean runs of one kind of weights (e.g. the 8B's Q4_0 kept native): seconds =
    [item: a] + weight bytes streamed * s_b + flops * s_f, fitted in relative error over every row."""
    wb = args.weight_bytes
    A, names = [], []
    for r in rows:
        sh = shape_of(r["shape"])
        if r["kind"] == "item":
            A.append([1.0 / r["seconds"], item_bytes(sh, r["layer"], wb) / r["seconds"],
                      item_flops(sh, r["layer"], r["heads"], r["N"]) / r["seconds"]])
        else:
            A.append([0.0, clean_bytes(sh, wb) / r["seconds"], clean_flops(sh, r["N"], r["n"]) / r["seconds"]])
    a_i, s_b, s_f = solve(A, [1.0] * len(A))
    costs = dict(model="joint", weight_bytes=wb, item_overhead_s=a_i, item_s_per_byte=s_b, item_s_per_flop=s_f)
    errs = finish_fit(args, costs, rows)
    print(f"joint fit ({wb} bytes per weight): items {a_i:.3f} s + bytes / {1/s_b/1e9:.3f} GB/s + flops / "
          f"{1/s_f/1e9:.2f} GFLOP/s; clean runs the same without the constant (worst relative error {max(errs):.0%}) "
          f"-> {args.costs}")


def fit_regimes(args, rows):
    """Per kernel regime (int8 below INT8_MAX_ROWS rows, f32 SGEMM from it): seconds = [item: a] + weight bytes
    streamed * s_b + flops * s_f, all >= 0, fitted in relative error over the regime's items and clean runs."""
    wb = args.weight_bytes
    costs = dict(model="regimes", weight_bytes=wb, int8_max_rows=INT8_MAX_ROWS, regimes={})
    for name in ("int8", "f32"):
        A = []
        for r in rows:
            sh = shape_of(r["shape"])
            if r["kind"] == "item" and regime(r["heads"] * r["N"]) == name:
                A.append([1.0 / r["seconds"], item_bytes(sh, r["layer"], wb) / r["seconds"],
                          item_flops(sh, r["layer"], r["heads"], r["N"]) / r["seconds"]])
            elif r["kind"] == "clean" and regime(r["N"] * 2 * r["n"]) == name:
                A.append([0.0, clean_bytes(sh, wb) / r["seconds"], clean_flops(sh, r["N"], r["n"]) / r["seconds"]])
        if len(A) < 3:
            sys.exit(f"simulate_sweep: --fit --regimes needs >= 3 timings in the {name} regime (got {len(A)})")
        a, s_b, s_f = solve_nonneg(A, [1.0] * len(A))
        costs["regimes"][name] = dict(overhead_s=a, s_per_byte=s_b, s_per_flop=s_f, timings=len(A))
    errs = finish_fit(args, costs, rows, record_predictions=True)
    for name, c in costs["regimes"].items():
        gbs = f"{1 / c['s_per_byte'] / 1e9:.2f} GB/s" if c["s_per_byte"] > 0 else "no byte term"
        gfs = f"{1 / c['s_per_flop'] / 1e9:.1f} GFLOP/s" if c["s_per_flop"] > 0 else "no flop term"
        print(f"{name} regime ({c['timings']} timings): items {c['overhead_s']:.3f} s + bytes / {gbs} + flops / {gfs}")
    print(f"worst relative error {max(errs):.0%} -> {args.costs}")


def fit(args):
    rows = [json.loads(l) for l in open(args.fit) if l.strip().startswith("{")]
    if args.cpu_seconds:  # the process's CPU seconds (1 BLAS thread): what a rank with a core of its own takes
        for r in rows:
            r["wall_s"], r["seconds"] = r["seconds"], r["cpu_s"]
    if args.regimes:
        fit_regimes(args, rows)
        return
    if args.joint:
        fit_joint(args, rows)
        return
    items = [r for r in rows if r["kind"] == "item"]
    cleans = [r for r in rows if r["kind"] == "clean"]
    # items: seconds = a + bytes * s_per_byte + flops * s_per_flop, fitted in relative error (rows scaled by 1/t)
    A = [[1.0 / r["seconds"], item_bytes(shape_of(r["shape"]), r["layer"]) / r["seconds"],
          item_flops(shape_of(r["shape"]), r["layer"], r["heads"], r["N"]) / r["seconds"]] for r in items]
    a_i, s_b, s_f = solve(A, [1.0] * len(items))
    costs = dict(item_overhead_s=a_i, item_s_per_byte=s_b, item_s_per_flop=s_f)
    # clean runs: seconds = flops * s_flop + N * L * d^2 * s_seq (a per-sequence cost that grows with the model:
    # the measured (100, 10) costs twice the (20, 50) at the same token count)
    Ac = [[clean_flops(shape_of(r["shape"]), r["N"], r["n"]) / r["seconds"],
           r["N"] * seq_size(shape_of(r["shape"])) / r["seconds"]] for r in cleans]
    s_cf, s_cs = solve(Ac, [1.0] * len(cleans))
    costs.update(clean_s_per_flop=s_cf, clean_s_per_seq_unit=s_cs)
    worst = max(abs(item_seconds(costs, shape_of(r["shape"]), r["layer"], r["heads"], r["N"]) - r["seconds"])
                / r["seconds"] for r in items)
    worst_c = max(abs(clean_seconds(costs, shape_of(r["shape"]), r["N"], r["n"]) - r["seconds"]) / r["seconds"]
                  for r in cleans)
    costs.update(message_s=args.message_s, commit_s=args.commit_s, commit_per_result_s=args.commit_per_result_s,
                 item_fit_worst_rel_error=worst, clean_fit_worst_rel_error=worst_c, source=args.source,
                 measured=rows)
    with open(args.costs, "w") as f:
        json.dump(costs, f, indent=1)
    print(f"items: {a_i*1e3:.2f} ms + bytes / {1/s_b/1e9:.2f} GB/s + flops / {1/s_f/1e9:.2f} GFLOP/s (worst relative "
          f"error {worst:.0%}); clean runs: flops / {1/s_cf/1e9:.2f} GFLOP/s + N x {s_cs*1e9:.2f} ns x L d^2 (worst "
          f"{worst_c:.0%}) "
          f"-> {args.costs}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fit", help="JSON lines of bench/bench_item_costs.cpp: fit the cost model, write --costs")
    ap.add_argument("--message-s", type=float, default=20e-6, help="with --fit: rank 0's cost per message")
    ap.add_argument("--commit-s", type=float, default=1e-3, help="with --fit: the writer's cost per commit")
    ap.add_argument("--commit-per-result-s", type=float, default=1e-4, help="with --fit: and per result in it")
    ap.add_argument("--source", default="", help="with --fit: where the figures come from (machine, date)")
    ap.add_argument("--joint", action="store_true",
                    help="with --fit: one model (weight bytes + flops) for items and clean runs (one model's rows)")
    ap.add_argument("--regimes", action="store_true",
                    help="with --fit: one joint model per kernel regime (int8 below %d rows, f32 SGEMM from it)"
                         % INT8_MAX_ROWS)
    ap.add_argument("--cpu-seconds", action="store_true",
                    help="with --fit: fit the rows' cpu_s (CPU time of the 1-thread process) instead of wall seconds "
                         "(a loaded machine inflates wall time)")
    ap.add_argument("--weight-bytes", type=float, default=4.0,
                    help="with --fit --joint: bytes per weight as the engine holds them (f32 4; Q4_0 native 0.5625)")
    ap.add_argument("--costs", default=os.path.join(os.path.dirname(__file__), "..", "analysis",
                                                    "sweep_costs_8b_q4_0.json"))
    ap.add_argument("--shape-costs", default="",
                    help="shape=file,...: a shape's own cost file (default: llama3-70b from "
                         "analysis/sweep_costs_70b_q4_0.json when it exists and --costs is not given)")
    ap.add_argument("--ranks", default="1000,10000")
    ap.add_argument("--shapes", default="llama3-8b,llama3-70b")
    ap.add_argument("--speedup", type=float, default=1.0, help="compute costs divided by this (faster ranks)")
    ap.add_argument("--heads-per-item", type=int, default=0, help="0: automatic (8 items per worker)")
    ap.add_argument("--scan", action="store_true", help="also scan rank counts to find where efficiency falls below 50%%")
    ap.add_argument("--each-computes", action="store_true",
                    help="the former protocol (share_clean_runs = false): every worker computes the clean run of "
                         "each setting it takes up")
    ap.add_argument("--split-clean", type=int, default=1, metavar="K",
                    help="what-if (not built): a clean run's N sequences split over K ranks")
    ap.add_argument("--bandwidth", type=float, default=10e9,
                    help="network bytes/s of one link (rank 0's relay of clean states); default 10e9 (~100 Gb/s)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.costs_given = any(a == "--costs" or a.startswith("--costs=") for a in sys.argv[1:])
    if args.fit:
        fit(args)
        return
    shape_costs = {}  # shape -> its own cost file (--shape-costs; by default the 70B's, measured on its slice)
    default_70b = os.path.join(os.path.dirname(__file__), "..", "analysis", "sweep_costs_70b_q4_0.json")
    if os.path.exists(default_70b) and not args.costs_given:
        shape_costs["llama3-70b"] = default_70b
    for pair in filter(None, args.shape_costs.split(",")):
        name, eq, path = pair.partition("=")
        if not eq or name not in SHAPES:
            sys.exit(f"simulate_sweep: --shape-costs wants shape=file pairs (got '{pair}')")
        shape_costs[name] = path
    sources = {}
    out = []
    for name in args.shapes.split(","):
        with open(shape_costs.get(name, args.costs)) as f:
            costs = json.load(f)
        sources[costs.get("source", shape_costs.get(name, args.costs))] = sources.get(
            costs.get("source", shape_costs.get(name, args.costs)), []) + [name]
        shape = dict(shape_of(name), name=name)
        for W in [int(x) for x in args.ranks.split(",")]:
            out.append(simulate(shape, PAPER_SETTINGS, W, costs, args.speedup, args.heads_per_item or None,
                                share=not args.each_computes, split_clean=args.split_clean,
                                bandwidth=args.bandwidth))
        if args.scan:
            for W in [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]:
                r = simulate(shape, PAPER_SETTINGS, W, costs, args.speedup, args.heads_per_item or None,
                             share=not args.each_computes, split_clean=args.split_clean, bandwidth=args.bandwidth)
                r["scan"] = True
                out.append(r)
    if args.json:
        print(json.dumps(out, indent=1))
        return
    for src, names in sources.items():
        print(f"costs of {', '.join(names)}: {src}")
    print(f"compute speedup x{args.speedup:g}; PATH mode, paper settings; "
          + ("clean runs: every worker computes its own (former protocol)" if args.each_computes else
             f"clean runs shared (built): computed once, state relayed by rank 0 at {args.bandwidth/1e9:g} GB/s")
          + (f"; WHAT-IF: each clean run split over {args.split_clean} ranks" if args.split_clean > 1 else ""))
    print(f"{'shape':12} {'ranks':>6} {'h/item':>6} {'items':>6} {'makespan':>10} {'effic.':>7} {'rank0':>6} "
          f"{'serial':>9} {'clean':>8} {'longest':>8} {'states':>7}  limit")
    for r in out:
        lim = []
        if r["bound_items"] < 4:
            lim.append(f"{r['bound_items']:.1f} items/worker")
        if r["bound_longest"] < 0.9:
            lim.append(f"longest item+clean ({r['longest_clean_s']:.0f} s) bounds eff. at {r['bound_longest']:.0%}")
        if r["rank0_busy"] > 0.8:
            lim.append(f"coordinator {r['rank0_busy']:.0%} busy")
        print(f"{r['shape']:12} {r['ranks']:>6} {r['heads_per_item']:>6} {r['items']:>6} {r['makespan_s']:>9.1f}s "
              f"{r['efficiency']:>6.1%} {r['rank0_busy']:>5.0%} {r['serial_s']/3600:>8.1f}h {r['clean_s']/3600:>7.1f}h "
              f"{r['longest_item_s']:>7.1f}s {r['state_gb_sent']:>5.0f}GB  {'; '.join(lim)}")


if __name__ == "__main__":
    main()
