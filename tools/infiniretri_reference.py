#!/usr/bin/env python3
"""Runs the authors' `infini-retri` package (PyPI 0.0.3) on the same niah cells as our `infiniretri` method and
compares them chunk by chunk (README "InfiniRetri and needle in a haystack", issue 12).

Input: trace files written by `build/headsweep_bench_infiniretri MODEL --tokens N --depth D --trace FILE` (our
context, question, per-step kept sentences, final cache and greedy answer). For each, the package reads the SAME
context/question text with topk 300, window 1024, phrase 8 (its defaults), on HF transformers (eager attention, fp32)
loaded from the same GGUF (dequantised to fp32, as our CPU engine does). Output: one JSON line per item with the
per-chunk Jaccard of kept sentence sets, the answers and the times, plus a summary.

Patches to the package (monkeypatched here, the installed package is not modified):
  1. `seaborn` / `matplotlib` are only used for attention plots (record_attention_path=None): stubbed in sys.modules
     so the import works without them.
  2. Greedy decoding for the comparison: model.generate is called with do_sample=False (the package passes
     temperature=0.5 and leaves do_sample to the model's generation_config); max_new_tokens = our niah cell's.
  3. Recording: Retrieval.pre_process / select_sentence are wrapped to record each chunk's kept sentences
     (index among the step's context sentences, decoded text). No computation is changed.
  4. (--pretokenizer original, the default) the tokenizer transformers builds from the GGUF has a plain ByteLevel
     pre-tokenizer; SmolLM2's own tokenizer.json (and llama.cpp's "smollm" pre-type, which our tokenizer follows) is
     Sequence[Digits(individual_digits=True), ByteLevel]. They differ on spaces before a newline that precedes a digit
     (" \n1984": original one token " \n" = 3717, GGUF-built " " + "\n"). With --pretokenizer gguf the
     GGUF-built one is kept.
Usage: /work/.venv-ref/bin/python tools/infiniretri_reference.py MODEL.gguf TRACE.json... [-o results.jsonl]
       python3 tools/infiniretri_reference.py --summarize results.jsonl   (a markdown table of a results file)
"""
import argparse
import json
import os
import sys
import time
import types


def summarize(path):
    print("| length | depth | pre-tokenizer | chunks (ours/theirs) | chunks with equal kept sentences | mean Jaccard "
          "| min Jaccard | answers equal | ours s | theirs s | theirs/ours |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for line in open(path):
        r = json.loads(line)
        js = [p["jaccard_text"] for p in r["steps"]]
        print(f"| {r['length']} | {r['depth']} | {r.get('pretokenizer', 'gguf')} | {r['chunks_ours']}/{r['chunks_theirs']} "
              f"| {r['steps_equal']}/{len(r['steps'])} | {sum(js) / len(js):.3f} | {min(js):.3f} "
              f"| {'yes' if r['answers_equal'] else 'no'} | {r['ours_s']:.1f} | {r['theirs_s']:.1f} "
              f"| {r['theirs_s'] / r['ours_s']:.2f} |")


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

STEPS = []  # per chunk: {"kept_index": [...], "kept_text": [...]}
_last = {}

_orig_pre = Retrieval.pre_process
_orig_sel = Retrieval.select_sentence


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
    STEPS.append({"kept_index": idx, "kept_text": text, "input_tokens": len(ids)})
    return out


Retrieval.pre_process = _pre
Retrieval.select_sentence = _sel


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
        t0 = time.time()
        answer = ir.generate(ours["context"], question=ours["question"], max_new_tokens=ours["max_new_tokens"])
        total_s = time.time() - t0
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
        rec = {"length": ours["length"], "depth": ours["depth"], "pretokenizer": args.pretokenizer, "chunks_ours": len(ours["steps"]),
               "chunks_theirs": len(STEPS), "steps_equal": sum(p["equal"] for p in per),
               "mean_jaccard": sum(p["jaccard_text"] for p in per) / len(per),
               "answer_ours": ours["answer"], "answer_theirs": answer,
               "answers_equal": ours["answer"].strip() == answer.strip(),
               "ours_s": ours["read_s"] + ours["answer_s"], "theirs_s": total_s, "steps": per}
        line = json.dumps(rec, ensure_ascii=False)
        print(json.dumps({k: v for k, v in rec.items() if k != "steps"}, ensure_ascii=False), flush=True)
        if out:
            out.write(line + "\n")
            out.flush()


if __name__ == "__main__":
    main()
