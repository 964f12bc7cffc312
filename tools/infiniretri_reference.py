#!/usr/bin/env python3
"""Runs the authors' `infini-retri` package (PyPI 0.0.3) on the same niah cells as our `infiniretri` method and
compares them chunk by chunk (README "InfiniRetri and needle in a haystack", issue 12).

Input: trace files written by `build/headsweep_bench_infiniretri MODEL --tokens N --depth D --trace FILE` (a niah
cell) or `... --task longbench-hotpotqa --item I --trace FILE` (any eval task's example, with the context/question
split the eval uses): our context, question, per-step kept sentences and scores near the top-K threshold, final cache
and greedy answer. For each, the package reads the SAME
context/question text with topk 300, window 1024, phrase 8 (its defaults), on HF transformers (eager attention, fp32)
loaded from the same GGUF (dequantised to fp32, as our CPU engine does). Output: one JSON line per item with the
per-chunk Jaccard of kept sentence sets, the answers and the times, plus a summary.

Patches to the package (monkeypatched here, the installed package is not modified):
  1. `seaborn` / `matplotlib` are only used for attention plots (record_attention_path=None): stubbed in sys.modules
     so the import works without them.
  2. Greedy decoding for the comparison: model.generate is called with do_sample=False (the package passes
     temperature=0.5 and leaves do_sample to the model's generation_config); max_new_tokens = our niah cell's.
  3. Recording: Retrieval.pre_process / select_sentence / Thoughts.get_focus_index are wrapped to record each
     chunk's kept sentences (index among the step's context sentences, decoded text), the K-th and (K+1)-th largest
     token scores and every context sentence's highest token score. No computation is changed.
  4. (--pretokenizer original, the default) the tokenizer transformers builds from the GGUF has a plain ByteLevel
     pre-tokenizer; SmolLM2's own tokenizer.json (and llama.cpp's "smollm" pre-type, which our tokenizer follows) is
     Sequence[Digits(individual_digits=True), ByteLevel]. They differ on spaces before a newline that precedes a digit
     (" \n1984": original one token " \n" = 3717, GGUF-built " " + "\n"). With --pretokenizer gguf the
     GGUF-built one is kept.
Times: wall seconds and CPU seconds of the process (read + answer); the machine is shared, so the CPU ratio is the
one to compare.
Usage: /work/venv-hf/bin/python tools/infiniretri_reference.py MODEL.gguf TRACE.json... [-o results.jsonl]
       python3 tools/infiniretri_reference.py --summarize results.jsonl   (a markdown table of a results file)
       python3 tools/infiniretri_reference.py --margins TRACE.json...    (how close each chunk's choice was)
"""
import argparse
import json
import os
import sys
import time
import types


def f4(v):
    return "-" if v is None else f"{v:.4f}"


def summarize(path):
    print("| input | context tokens | pre-tokenizer | chunks (ours/theirs) | chunks with equal kept sentences "
          "| mean Jaccard | min Jaccard | answers equal | ours s | theirs s | theirs/ours (wall) | theirs/ours (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    tot = [0, 0, 0, 0]
    for line in open(path):
        r = json.loads(line)
        js = [p["jaccard_text"] for p in r["steps"]]
        task = r.get("task", "niah")
        name = f"niah {r['length']} d{r['depth']}" if task == "niah" else f"{task} {r.get('id', '')}"
        if r.get("note"):
            name += f" ({r['note']})"
        cpu = (f"{r['theirs_cpu_s'] / r['ours_cpu_s']:.2f}" if r.get("ours_cpu_s") and r.get("theirs_cpu_s") else "-")
        print(f"| {name} | {r.get('context_tokens') or '-'} | {r.get('pretokenizer', 'gguf')} "
              f"| {r['chunks_ours']}/{r['chunks_theirs']} "
              f"| {r['steps_equal']}/{len(r['steps'])} | {sum(js) / len(js):.3f} | {min(js):.3f} "
              f"| {'yes' if r['answers_equal'] else 'no'} | {r['ours_s']:.1f} | {r['theirs_s']:.1f} "
              f"| {r['theirs_s'] / r['ours_s']:.2f} | {cpu} |")
        tot[0] += r["steps_equal"]
        tot[1] += len(r["steps"])
        tot[2] += int(r["answers_equal"])
        tot[3] += 1
    print(f"\nAll: {tot[0]}/{tot[1]} chunks with equal kept sentences, {tot[2]}/{tot[3]} answers equal.")
    sc = [p for line in open(path) for p in json.loads(line)["steps"] if "score_max_rel_diff" in p]
    if sc:
        print(f"Scores compared in {len(sc)} chunks (those recorded): largest relative difference of a sentence's best "
              f"token score ours vs theirs {max(p['score_max_rel_diff'] for p in sc):.2e}, of the K-th score "
              f"{max(p['kth_rel_diff'] for p in sc):.2e}; smallest relative gap between the K-th and (K+1)-th score "
              f"(theirs) {min(p['kth_next_rel_gap'] for p in sc):.2e}.")
    # Every chunk whose kept sentences differ, with each differing sentence's best token score against the K-th
    # largest token score of that side (margin = score - K-th; a kept sentence has margin >= 0).
    diffs = [(json.loads(line), p) for line in open(path) for p in json.loads(line)["steps"] if not p["equal"]]
    if diffs:
        print("\n| input | chunk | kept (ours/theirs) | input tokens (ours/theirs) | K-th score ours / theirs "
              "| sentence: kept only by, best score ours (margin) / theirs (margin) |")
        print("|---|---|---|---|---|---|")
    for r, p in diffs:
        task = r.get("task", "niah")
        name = f"niah {r['length']} d{r['depth']} ({r.get('pretokenizer', 'gguf')})" if task == "niah" else f"{task} {r.get('id', '')}"
        if "near" not in p:
            print(f"| {name} | {p['step']} | {p['ours_n']}/{p['theirs_n']} | {p['ours_input_tokens']}/{p['theirs_input_tokens']} "
                  f"| (not recorded) | only ours {len(p['only_ours'])}, only theirs {len(p['only_theirs'])} |")
            continue
        cells = []
        for n in p["near"]:
            def m(v, k):
                return "-" if v is None or k is None else f"{v:.4f} ({v - k:+.2e})"
            cells.append(f"#{n['sentence']} {n['kept_only_by']}: {m(n['ours_score'], p['ours_kth'])} / "
                         f"{m(n['theirs_score'], p['theirs_kth'])}")
        print(f"| {name} | {p['step']} | {p['ours_n']}/{p['theirs_n']} | {p['ours_input_tokens']}/{p['theirs_input_tokens']} "
              f"| {f4(p['ours_kth'])} / {f4(p['theirs_kth'])} | {'; '.join(cells) or 'same indices, different text'} |")


def margins(paths):
    """Decision margins of our traces: how far (relative to the K-th score) the scores would have to move for a
    sentence to enter or leave the kept set. A sentence is kept iff its best token is in the top K, so it can flip
    only when its best score is within that distance of the K-th score (for the sentence whose best token IS the K-th:
    when the K-th and (K+1)-th scores are within it)."""
    rows = []
    for path in paths:
        d = json.load(open(path))
        for i, s in enumerate(d["steps"]):
            k, n, ms = s.get("kth_score", 0.0), s.get("next_score", 0.0), s.get("sentence_max_score", [])
            if k <= 0 or not ms:
                continue  # <= K context tokens (all kept) or a trace without scores
            m = min([abs(v - k) / k for v in ms if v != k] + [(k - n) / k if k in ms else 1.0])
            rows.append((m, (k - n) / k, d.get("task", "niah"), d.get("id", ""), i))
    rows.sort()
    print(f"{len(rows)} chunks; the smallest decision margins (relative), with the K-th/(K+1)-th gap:")
    for r in rows[:8]:
        print(f"  {r[0]:.2e} (gap {r[1]:.2e})  {r[2]} {r[3]} chunk {r[4]}")


if __name__ == "__main__" and len(sys.argv) >= 3 and sys.argv[1] == "--margins":
    margins(sys.argv[2:])
    sys.exit(0)

if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--summarize":
    summarize(sys.argv[2])
    sys.exit(0)

for name in ("seaborn", "matplotlib", "matplotlib.gridspec", "matplotlib.pyplot", "matplotlib.patches"):
    m = types.ModuleType(name)
    m.Rectangle = object
    sys.modules[name] = m

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

import infini_retri  # noqa: E402
from infini_retri.retrieval import Retrieval  # noqa: E402
from infini_retri.thoughts import thoughts as Thoughts  # noqa: E402

STEPS = []  # per chunk: {"kept_index": [...], "kept_text": [...]}
_last = {}

_orig_pre = Retrieval.pre_process
_orig_sel = Retrieval.select_sentence
_orig_focus = Thoughts.get_focus_index


def _focus(self, PREFIX_PROMPT_TOKEN_NUM, process_info, output_attentions, topk, *a, **k):
    out = _orig_focus(self, PREFIX_PROMPT_TOKEN_NUM, process_info, output_attentions, topk, *a, **k)
    _last["scores"], _last["prefix"], _last["topk"] = out[2], PREFIX_PROMPT_TOKEN_NUM, topk
    return out


def _pre(self, *a, **k):
    model_inputs, info = _orig_pre(self, *a, **k)
    _last["info"], _last["ids"] = info, model_inputs["input_ids"][0].tolist()
    return model_inputs, info


def _sel(self, selected, index_split):
    out = _orig_sel(self, selected, index_split)
    info, ids = _last["info"], _last["ids"]
    first = next(i for i, s in enumerate(index_split) if s and s[0] == info["context_start_index"])
    start_of = {s[0]: i for i, s in enumerate(index_split) if s}
    idx = [start_of[s[0]] - first for s in out]
    text = [self.tokenizer.decode([ids[t] for t in s]) for s in out]
    rec = {"kept_index": idx, "kept_text": text, "input_tokens": len(ids)}
    if "scores" in _last:  # scores near the threshold (patch 3)
        sc, prefix, k = _last.pop("scores"), _last["prefix"], _last["topk"]
        srt = sorted((float(x) for x in sc), reverse=True)
        rec["kth_score"], rec["next_score"] = (srt[k - 1], srt[k]) if len(srt) > k else (0.0, 0.0)
        end = info["context_end_index"]
        rec["sentence_max_score"] = [max((float(sc[t - prefix]) for t in s if prefix <= t < end), default=-1e300)
                                     for s in index_split[first:] if s and s[0] < end]
    STEPS.append(rec)
    return out


Retrieval.pre_process = _pre
Retrieval.select_sentence = _sel
Thoughts.get_focus_index = _focus


def jaccard(a, b):
    a, b = set(a), set(b)
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("traces", nargs="+")
    ap.add_argument("-o", "--out", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pretokenizer", choices=["original", "gguf"], default="original")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d, f = os.path.dirname(os.path.abspath(args.model)), os.path.basename(args.model)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    if args.pretokenizer == "original":  # patch 4
        from tokenizers import pre_tokenizers as P
        tok.backend_tokenizer.pre_tokenizer = P.Sequence(
            [P.Digits(individual_digits=True), P.ByteLevel(add_prefix_space=False, use_regex=True)])
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    gen = model.generate

    def greedy(*a, **k):  # patch 2
        k.pop("temperature", None)
        k["do_sample"] = False
        k["max_new_tokens"] = greedy.max_new
        return gen(*a, **k)

    model.generate = greedy
    ir = infini_retri.InfiniRetri(model, tok, topk=300, answer_length=8, window_length=1024)
    out = open(args.out, "a") if args.out else None
    for path in args.traces:
        ours = json.load(open(path))
        assert (ours["chunk"], ours["topk"], ours["window"]) == (1024, 300, 8)
        STEPS.clear()
        greedy.max_new = ours["max_new_tokens"]
        t0, c0 = time.time(), time.process_time()
        answer = ir.generate(ours["context"], question=ours["question"], max_new_tokens=ours["max_new_tokens"])
        total_s, cpu_s = time.time() - t0, time.process_time() - c0
        per = []
        for i in range(max(len(STEPS), len(ours["steps"]))):
            a = ours["steps"][i] if i < len(ours["steps"]) else {"kept_index": [], "kept_text": []}
            b = STEPS[i] if i < len(STEPS) else {"kept_index": [], "kept_text": []}
            per.append({"step": i, "jaccard_index": jaccard(a["kept_index"], b["kept_index"]),
                        "jaccard_text": jaccard([t.strip() for t in a["kept_text"]], [t.strip() for t in b["kept_text"]]),
                        "equal": a["kept_text"] == b["kept_text"],
                        "ours_n": len(a["kept_text"]), "theirs_n": len(b["kept_text"]),
                        "ours_input_tokens": a.get("input_tokens"), "theirs_input_tokens": b.get("input_tokens"),
                        "only_ours": [t for t in a["kept_text"] if t not in b["kept_text"]][:5],
                        "only_theirs": [t for t in b["kept_text"] if t not in a["kept_text"]][:5]})
            so, st = a.get("sentence_max_score"), b.get("sentence_max_score")
            if so and st and len(so) == len(st):  # how far apart the two sides' scores are, against the K-th's gap
                per[-1]["score_max_rel_diff"] = max(abs(x - y) / max(abs(y), 1e-30) for x, y in zip(so, st) if y > -1e300)
                per[-1]["kth_rel_diff"] = abs(a["kth_score"] - b["kth_score"]) / max(abs(b["kth_score"]), 1e-30)
                per[-1]["kth_next_rel_gap"] = (b["kth_score"] - b["next_score"]) / max(abs(b["kth_score"]), 1e-30)
            if not per[-1]["equal"]:  # why: each differing sentence's best token score against both thresholds
                near = []
                for who, idxs in (("ours", set(a["kept_index"]) - set(b["kept_index"])),
                                  ("theirs", set(b["kept_index"]) - set(a["kept_index"]))):
                    for j in sorted(idxs):
                        so, st = a.get("sentence_max_score", []), b.get("sentence_max_score", [])
                        near.append({"kept_only_by": who, "sentence": j,
                                     "ours_score": so[j] if j < len(so) else None,
                                     "theirs_score": st[j] if j < len(st) else None})
                per[-1].update({"ours_kth": a.get("kth_score"), "ours_next": a.get("next_score"),
                                "theirs_kth": b.get("kth_score"), "theirs_next": b.get("next_score"),
                                "ours_sentences": len(a.get("sentence_max_score", [])),
                                "theirs_sentences": len(b.get("sentence_max_score", [])), "near": near})
        rec = {"task": ours.get("task", "niah"), "id": ours.get("id", ""), "context_tokens": ours.get("context_tokens"),
               "length": ours["length"], "depth": ours["depth"], "pretokenizer": args.pretokenizer, "chunks_ours": len(ours["steps"]),
               "chunks_theirs": len(STEPS), "steps_equal": sum(p["equal"] for p in per),
               "mean_jaccard": sum(p["jaccard_text"] for p in per) / len(per),
               "answer_ours": ours["answer"], "answer_theirs": answer,
               "answers_equal": ours["answer"].strip() == answer.strip(),
               "gold": ours.get("gold"),
               "ours_s": ours["read_s"] + ours["answer_s"], "theirs_s": total_s,
               "ours_cpu_s": ours["read_cpu_s"] + ours["answer_cpu_s"] if "read_cpu_s" in ours else None,
               "theirs_cpu_s": cpu_s, "load_1min": os.getloadavg()[0], "steps": per}
        line = json.dumps(rec, ensure_ascii=False)
        print(json.dumps({k: v for k, v in rec.items() if k != "steps"}, ensure_ascii=False), flush=True)
        if out:
            out.write(line + "\n")
            out.flush()


if __name__ == "__main__":
    main()
