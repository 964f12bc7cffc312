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
  * a worker that takes up a setting first computes its clean run (one forward of N x 2n tokens with caches).
  * items: one setting x one layer x a head range (heads_per_item_for(): >= 8 items per worker, else single heads).

Item and clean-run costs: PATH mode. An item of layer l with h heads runs h*N rows through W_O of layer l and the MLPs
of layers l..L-1 (plus the final norm and the pi readout): flops = 2 h N (q_dim d + (L - l) * 3 d d_ff) (+ small terms);
with tens of rows it is bound as much by streaming those layers' fp32 weights: seconds = a + bytes * s_b + flops * s_f.
The clean run is a forward of N * 2n tokens with full logits (copy accuracy): seconds = a + flops / rate. The constants
are fitted to items and clean runs timed on smaller shapes on this machine (bench/bench_item_costs.cpp: SmolLM2-135M
and Qwen2.5-0.5B shapes, 1 thread; an 8B in fp32 does not fit here) and scaled to the 8B and 70B shapes. `--speedup` scales every compute cost down (a GPU rank or a faster node), which makes the
coordinator relatively more expensive.

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


def item_flops(shape, layer, heads, N):
    d, dff, L = shape["d"], shape["dff"], shape["L"]
    q_dim = d  # d_head * n_head = d for these shapes
    return 2.0 * heads * N * (q_dim * d + (L - layer) * 3 * d * dff + 2 * d)


def item_bytes(shape, layer):
    """fp32 weights an item streams: the MLPs of layers l..L-1 and W_O of layer l (small row counts make an item
    bound by reading weights more than by its flops)."""
    d, dff, L = shape["d"], shape["dff"], shape["L"]
    return 4.0 * ((L - layer) * 3 * d * dff + d * d)


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
    """PATH mode's per-setting state an item needs (z, mid and attention output at p for every layer), fp32."""
    return 4 * shape["L"] * N * (shape["d"] + 2 * shape["d"])


def simulate(shape, settings, ranks, costs, speedup=1.0, hpi=None, max_batch=4, target=0.05, latency=5e-6,
             shared_clean=0, bandwidth=10e9):
    """shared_clean = K > 0 (what-if, not implemented): each setting's clean run is computed once, its N sequences
    split over K ranks (time / min(K, N)), and its state sent to the workers that take the setting up (a worker
    waits for it, then receives clean_state_bytes at `bandwidth`)."""
    W = ranks - 1  # rank 0 only coordinates beyond 4 ranks
    S = len(settings)
    if hpi is None:
        hpi = heads_per_item_for(S, shape["L"], shape["H"], 8 * W)
    items = plan(shape, settings, hpi)
    t_cost = [item_seconds(costs, shape, l, h, settings[s][0]) / speedup for (s, l, h) in items]
    clean_cost = [clean_seconds(costs, shape, N, n) / speedup for (N, n) in settings]
    t_msg = costs["message_s"]
    c0, c1 = costs["commit_s"], costs["commit_per_result_s"]

    queues = [[] for _ in range(S)]
    for i, (s, l, h) in enumerate(items):
        queues[s].append(i)
    heads = [0] * S  # next index into queues[s]
    unassigned = len(items)
    on_group = [0] * S
    cur = [-1] * (W + 1)
    sum_t, n_done = 0.0, 0

    def take(r):
        nonlocal unassigned
        if unassigned == 0:
            return []
        g = cur[r]
        if g < 0 or heads[g] >= len(queues[g]):
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
        n = 1
        if n_done > 0:
            per = sum_t / n_done
            n = int(target / per) if per > 0 else max_batch
        n = min(n, max(1, unassigned // (2 * max(1, W))))
        n = max(1, min(n, max_batch))
        b = queues[g][heads[g]:heads[g] + n]
        heads[g] += len(b)
        unassigned -= len(b)
        return b

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
    while ev:
        t, _, kind, r, payload = heapq.heappop(ev)
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
            b = take(r)
            if b:
                heapq.heappush(ev, (server_free + latency, seq, "assign", r, b)); seq += 1
        else:  # a worker computes its batch
            s = items[payload[0]][0]
            work = 0.0
            if holds[r] != s:
                if shared_clean:
                    # computed once from t = 0 by K ranks, alongside the other work
                    ready = clean_cost[s] / min(shared_clean, settings[s][0]) + latency
                    wait = max(0.0, ready - t) + clean_state_bytes(shape, settings[s][0]) / bandwidth
                    work += wait
                    clean_work += wait
                else:
                    work += clean_cost[s]
                    clean_work += clean_cost[s]
                holds[r] = s
            for i in payload:
                work += t_cost[i]
            heapq.heappush(ev, (t + work + latency, seq, "arrive", r, payload)); seq += 1
    useful = sum(t_cost)
    eff = useful / (W * end) if end > 0 else 0.0
    eff_ranks = useful / (ranks * end) if end > 0 else 0.0
    return dict(shape=shape["name"], ranks=ranks, heads_per_item=hpi, items=len(items), makespan_s=end,
                efficiency=eff_ranks, efficiency_workers=eff, serial_s=useful, clean_s=clean_work,
                longest_item_s=max(t_cost), rank0_busy=busy0 / end if end else 0.0,
                bound_items=len(items) / W,
                bound_longest=useful / (W * (max(t_cost) + max(c / (min(shared_clean, N) if shared_clean else 1)
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


def clean_seconds(costs, shape, N, n):
    return clean_flops(shape, N, n) * costs["clean_s_per_flop"] + N * seq_size(shape) * costs["clean_s_per_seq_unit"]


def item_seconds(costs, shape, layer, heads, N):
    return (costs["item_overhead_s"] + item_bytes(shape, layer) * costs["item_s_per_byte"]
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


def fit(args):
    rows = [json.loads(l) for l in open(args.fit) if l.strip().startswith("{")]
    items = [r for r in rows if r["kind"] == "item"]
    cleans = [r for r in rows if r["kind"] == "clean"]
    # items: seconds = a + bytes * s_per_byte + flops * s_per_flop, fitted in relative error (rows scaled by 1/t)
    A = [[1.0 / r["seconds"], item_bytes(SHAPES[r["shape"]], r["layer"]) / r["seconds"],
          item_flops(SHAPES[r["shape"]], r["layer"], r["heads"], r["N"]) / r["seconds"]] for r in items]
    a_i, s_b, s_f = solve(A, [1.0] * len(items))
    costs = dict(item_overhead_s=a_i, item_s_per_byte=s_b, item_s_per_flop=s_f)
    # clean runs: seconds = flops * s_flop + N * L * d^2 * s_seq (a per-sequence cost that grows with the model:
    # the measured (100, 10) costs twice the (20, 50) at the same token count)
    Ac = [[clean_flops(SHAPES[r["shape"]], r["N"], r["n"]) / r["seconds"],
           r["N"] * seq_size(SHAPES[r["shape"]]) / r["seconds"]] for r in cleans]
    s_cf, s_cs = solve(Ac, [1.0] * len(cleans))
    costs.update(clean_s_per_flop=s_cf, clean_s_per_seq_unit=s_cs)
    worst = max(abs(item_seconds(costs, SHAPES[r["shape"]], r["layer"], r["heads"], r["N"]) - r["seconds"])
                / r["seconds"] for r in items)
    worst_c = max(abs(clean_seconds(costs, SHAPES[r["shape"]], r["N"], r["n"]) - r["seconds"]) / r["seconds"]
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
    ap.add_argument("--costs", default=os.path.join(os.path.dirname(__file__), "..", "analysis", "sweep_costs.json"))
    ap.add_argument("--ranks", default="1000,10000")
    ap.add_argument("--shapes", default="llama3-8b,llama3-70b")
    ap.add_argument("--speedup", type=float, default=1.0, help="compute costs divided by this (faster ranks)")
    ap.add_argument("--heads-per-item", type=int, default=0, help="0: automatic (8 items per worker)")
    ap.add_argument("--scan", action="store_true", help="also scan rank counts to find where efficiency falls below 50%%")
    ap.add_argument("--shared-clean", type=int, default=0, metavar="K",
                    help="what-if: each clean run computed once, its sequences split over K ranks, and its state "
                         "sent to the workers (1: computed by one rank)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.fit:
        fit(args)
        return
    with open(args.costs) as f:
        costs = json.load(f)
    out = []
    for name in args.shapes.split(","):
        shape = dict(SHAPES[name], name=name)
        for W in [int(x) for x in args.ranks.split(",")]:
            out.append(simulate(shape, PAPER_SETTINGS, W, costs, args.speedup, args.heads_per_item or None,
                                shared_clean=args.shared_clean))
        if args.scan:
            for W in [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]:
                r = simulate(shape, PAPER_SETTINGS, W, costs, args.speedup, args.heads_per_item or None,
                             shared_clean=args.shared_clean)
                r["scan"] = True
                out.append(r)
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"costs: {costs.get('source', args.costs)}; compute speedup x{args.speedup:g}; PATH mode, paper settings"
          + (f"; WHAT-IF: clean runs computed once over {args.shared_clean} ranks and sent" if args.shared_clean else ""))
    print(f"{'shape':12} {'ranks':>6} {'h/item':>6} {'items':>6} {'makespan':>10} {'effic.':>7} {'rank0':>6} "
          f"{'serial':>9} {'clean':>8} {'longest':>8}  limit")
    for r in out:
        lim = []
        if r["bound_items"] < 4:
            lim.append(f"{r['bound_items']:.1f} items/worker")
        if r["bound_longest"] < 0.9:
            lim.append(f"longest item+clean bounds eff. at {r['bound_longest']:.0%}")
        if r["rank0_busy"] > 0.8:
            lim.append(f"coordinator {r['rank0_busy']:.0%} busy")
        print(f"{r['shape']:12} {r['ranks']:>6} {r['heads_per_item']:>6} {r['items']:>6} {r['makespan_s']:>9.1f}s "
              f"{r['efficiency']:>6.1%} {r['rank0_busy']:>5.0%} {r['serial_s']/3600:>8.1f}h {r['clean_s']/3600:>7.1f}h "
              f"{r['longest_item_s']:>7.1f}s  {'; '.join(lim)}")


if __name__ == "__main__":
    main()
