#!/usr/bin/env python3
"""Generate Hugging Face transformers reference fixtures for headsweep.

What it does
------------
Loads a GGUF model (default: SmolLM2-135M-Instruct.Q4_1.gguf) with Hugging Face
transformers, which dequantises every tensor to float32 and undoes llama.cpp's
Q/K row permutation, then runs a fixed, deterministic set of prompts through it
on the CPU in float32 and writes what the C++ engine must reproduce:

* <out>                      (default tests/fixtures/reference/smollm2_hf_logits.h5)
  token ids, logits at every position for 256 fixed vocabulary columns,
  per-row max/min/logsumexp over the full vocabulary, HF argmax at every
  position, a 32-token greedy continuation, and /hf_config (what transformers
  read from the GGUF metadata).
* <out dir>/smollm2_hf_full_rows.h5 (override with --full-rows)
  full-vocabulary logit rows at 3 positions (first, middle, last) per prompt.
  Kept apart because 30 lossless float32 rows of 49152 logits do not compress
  (~4.7 MB with gzip+shuffle), and each file must stay under 5 MB.
* <out dir>/smollm2_hf_intermediates.h5 (override with --intermediates)
  for the two shortest prompts: residual stream after the embedding and after
  layers 0, 1, 14, 29, the final RMSNorm output, and the eager attention
  probabilities of layers 0 and 29 (all heads, all rows).

The format is described in tests/fixtures/reference/README.md.

Gemma 3 (--kind gemma3, chosen automatically when the GGUF's general.architecture
is "gemma3"): the same reference for gemma-3-270m-q4_k_m.gguf, written to
gemma3_hf_logits.h5, gemma3_hf_full_rows.h5 and gemma3_hf_intermediates.h5.
transformers (>= 5) loads this GGUF's gemma3 directly (Gemma3ForCausalLM with a
Gemma3TextConfig read from the metadata; its GGUF loader subtracts the 1 that
llama.cpp's converter added to every *norm.weight, since HF's Gemma RMSNorm
multiplies by 1 + w). What the GGUF does not carry comes from Gemma3TextConfig's
defaults, which are the published 270M values: query_pre_attn_scalar 256, local
RoPE base 10000, a global layer every sixth, no softcapping; the script asserts
them. Differences from the SmolLM2 mode, all because the vocabulary is 262144:
the logits are taken from one model.model(...) forward per prompt (the final-norm
output) through model.lm_head in chunks of positions (what Gemma3ForCausalLM's
forward does, minus a [T, 262144] tensor of up to 4 GB); 128 columns instead
of 256; full rows only for a few prompts. Token ids come from transformers'
GemmaTokenizer built from the GGUF (AutoTokenizer, add_special_tokens=True, so
every prompt starts with <bos>); the chat prompts are written in Gemma's turn
format by hand (the GGUF has no tokenizer.chat_template). One prompt has >= 4000
tokens so that the 512-token sliding window really slides.

Token ids are produced by a `tokenizers.Tokenizer` configured like SmolLM2's
real tokenizer.json (pre-tokenizer Sequence[Digits(individual_digits=True),
ByteLevel(add_prefix_space=False, use_regex=True)], BPE vocab/merges and special
tokens from the GGUF). transformers' GGUF tokenizer conversion drops the Digits
step for tokenizer.ggml.pre = "smollm"; that changes ids when several spaces
precede a digit ("a  1"). The stored ids are authoritative: the C++ test feeds
them directly, so no tokenizer is in the loop. Each prompt records whether
AutoTokenizer-from-GGUF would have given the same ids.

How to run
----------
Neither the build nor CI needs this script or its dependencies; the fixtures it
writes are committed. To regenerate them:

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch transformers gguf h5py accelerate sentencepiece
    /tmp/refvenv/bin/python tools/gen_reference_fixtures.py \\
        /path/to/SmolLM2-135M-Instruct.Q4_1.gguf \\
        tests/fixtures/reference/smollm2_hf_logits.h5
    /tmp/refvenv/bin/python tools/gen_reference_fixtures.py \\
        /path/to/gemma-3-270m-q4_k_m.gguf tests/fixtures/reference/gemma3_hf_logits.h5

(transformers needs `accelerate` to load GGUF files; a CPU-only torch wheel is
enough.) It takes a couple of minutes on 2 CPU cores and needs ~2 GB of RAM
(Gemma 3: ~22 minutes, most of it HF's greedy decoding, and ~5 GB).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import random
import shlex
import sys
import time

import h5py
import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

EXPECTED_SHA256 = {
    "SmolLM2-135M-Instruct.Q4_1.gguf":
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}

N_COLS = 256            # vocabulary columns stored at every position
N_RANDOM_COLS = 128     # of which this many are drawn at random (seeded)
COLS_SEED = 1234
N_GREEDY = 32           # greedy continuation length
INDUCTION_LEN = 50      # [X, X] with |X| = 50
INDUCTION_SEED = 4321
LONG_DOC_TOKENS = 1000  # the long document is cut at the first sentence end past this
INTERMEDIATE_LAYERS = (0, 1, 14, 29)
ATTENTION_LAYERS = (0, 29)
N_INTERMEDIATE_PROMPTS = 2

H5_FLOAT = dict(compression="gzip", compression_opts=9, shuffle=True)


# --------------------------------------------------------------------------
# prompts


def long_document(tok: Tokenizer, min_tokens: int) -> str:
    """Deterministic plain-English 'report' text of at least min_tokens tokens."""
    rng = random.Random(20240611)
    people = ["Ada", "Boris", "Clara", "Dmitri", "Elena", "Farid", "Greta", "Hugo",
              "Ines", "Jonas", "Keiko", "Luis", "Mara", "Nils", "Olga", "Pavel"]
    places = ["the harbour", "the old library", "the northern valley", "the market square",
              "the river bank", "the mountain pass", "the village school", "the lighthouse",
              "the railway station", "the orchard", "the abandoned mill", "the city museum"]
    objects = ["a brass compass", "a faded map", "a wooden box", "a leather notebook",
               "a silver key", "a broken clock", "a bundle of letters", "a small lantern",
               "a glass bottle", "a painted stone", "an iron ring", "a folded umbrella"]
    verbs = ["found", "carried", "repaired", "hid", "examined", "lost", "described",
             "photographed", "measured", "returned", "sketched", "borrowed"]
    times = ["early in the morning", "after lunch", "late in the evening", "just before the storm",
             "on a quiet Sunday", "during the festival", "at midnight", "in the first week of spring"]
    reflections = [
        "Nobody could explain why it mattered so much.",
        "The weather had been unusually calm for the season.",
        "Several neighbours later claimed to have seen the whole thing.",
        "It was the kind of detail that only makes sense much later.",
        "The records from that year are incomplete, but the story survived.",
        "Everyone agreed that the evening had been strangely silent.",
        "Some of the older residents still tell the story differently.",
        "There was no sign of anyone else nearby.",
    ]
    paragraphs: list[str] = []
    text = ""
    n_par = 0
    while True:
        n_par += 1
        sentences = [f"Chapter {n_par}."]
        for _ in range(6):
            p, q = rng.sample(people, 2)
            s = (f"{rng.choice(times).capitalize()}, {p} {rng.choice(verbs)} "
                 f"{rng.choice(objects)} near {rng.choice(places)}, and {q} "
                 f"{rng.choice(verbs)} {rng.choice(objects)} soon afterwards.")
            sentences.append(s)
            if rng.random() < 0.5:
                sentences.append(rng.choice(reflections))
            if rng.random() < 0.3:
                sentences.append(f"By then {rng.randint(2, 97)} people had heard about it, "
                                 f"and {p} wrote it down in {rng.randint(1700, 1999)}.")
            candidate = "\n\n".join(paragraphs + [" ".join(sentences)])
            if len(tok.encode(candidate).ids) >= min_tokens:
                return candidate
        paragraphs.append(" ".join(sentences))


# Prompt texts shared by the SmolLM2 and Gemma 3 fixture sets.
CODE_PY = '''def fibonacci(n):
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    a, b = 0, 1
    for _ in range(n - 1):
        a, b = b, a + b
    return b


class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        return self.items.pop()


if __name__ == "__main__":
    print(fibonacci(10))   # 55
    s = Stack()
    s.push(42)
'''
ENGLISH = ("The history of the bicycle is a story of small improvements. Early machines had no "
           "pedals at all, and riders pushed themselves along with their feet. Later designs "
           "added cranks to the front wheel, which grew enormous so that each turn of the pedals "
           "would carry the rider further. The modern safety bicycle, with two wheels of equal "
           "size and a chain driving the rear wheel, appeared in the 1880s and quickly replaced "
           "the older designs.")
MEDIUM = ("Photosynthesis is the process by which green plants, algae and some bacteria convert "
          "light energy into chemical energy. During this process, carbon dioxide and water are "
          "combined to form glucose and oxygen. The reaction takes place mainly in the leaves, "
          "inside small structures called chloroplasts, which contain the pigment chlorophyll. "
          "Chlorophyll absorbs mostly blue and red light and reflects green light, which is why "
          "leaves appear green to our eyes.\n\n"
          "The process has two main stages. In the light-dependent reactions, energy from "
          "sunlight is used to split water molecules, releasing oxygen and producing the "
          "energy carriers ATP and NADPH. In the second stage, often called the Calvin cycle, "
          "these carriers power the fixation of carbon dioxide into sugars. Although the "
          "Calvin cycle does not need light directly, it depends on the products of the first "
          "stage and therefore stops soon after dark.\n\n"
          "Photosynthesis is essential for almost all life on Earth. It provides the oxygen we "
          "breathe and forms the base of nearly every food chain. Scientists estimate that "
          "plants and algae together fix more than 100 billion tonnes of carbon each year. "
          "Understanding the details of this process may help us design better crops and new "
          "ways to capture energy from the sun.")
NUMBERS = "Order 7731 shipped on 2024-03-15: 12 boxes at $4.99 each,   3 returned; total   $44.91."


def build_prompts(tok: Tokenizer, hf_tok) -> list[dict]:
    """Returns [{name, text, ids}] in a fixed order. ids are a list of ints."""
    chat1 = hf_tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        tokenize=False, add_generation_prompt=True)
    chat2 = hf_tok.apply_chat_template(
        [{"role": "system", "content": "You are a concise assistant who answers in one paragraph."},
         {"role": "user", "content": "Explain why the sky is blue."},
         {"role": "assistant", "content": "Sunlight is scattered by the molecules in the air, and "
          "shorter blue wavelengths are scattered much more strongly than red ones, so blue light "
          "reaches our eyes from every direction of the sky."},
         {"role": "user", "content": "Then why are sunsets red and orange?"}],
        tokenize=False, add_generation_prompt=True)

    code, english, medium, numbers = CODE_PY, ENGLISH, MEDIUM, NUMBERS

    prompts = [
        ("short_en", "The capital of France is"),
        ("short_story", "Once upon a time, there was a little"),
        ("numbers", numbers),
        ("chat_single", chat1),
        ("plain_english", english),
        ("induction_random", None),  # filled below from ids
        ("code_python", code),
        ("chat_multi", chat2),
        ("medium_english", medium),
        ("long_document", long_document(tok, LONG_DOC_TOKENS)),
    ]
    out = []
    for name, text in prompts:
        if name == "induction_random":
            rng = np.random.default_rng(INDUCTION_SEED)
            # ordinary BPE tokens only: skip the 17 special tokens and the 256 byte tokens
            x = rng.choice(np.arange(300, tok.get_vocab_size()), size=INDUCTION_LEN, replace=False)
            ids = [int(i) for i in x] * 2
            text = tok.decode(ids, skip_special_tokens=False)
        else:
            ids = tok.encode(text).ids
        out.append(dict(name=name, text=text, ids=ids))
    return out


# --------------------------------------------------------------------------
# tokenizer


def smollm2_tokenizer(hf_tok) -> Tokenizer:
    """The BPE tokenizer from the GGUF with SmolLM2's real pre-tokenizer."""
    t = Tokenizer.from_str(hf_tok.backend_tokenizer.to_str())
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    return t


# --------------------------------------------------------------------------
# helpers


def run_capturing_layers(model, forward, ids, layers):
    """forward(ids) with every hidden state and attention, capturing the residual stream after each of `layers`
    with forward hooks on model.model.layers[l] (out.hidden_states[-1] is the final-norm output, not a residual).
    Returns (forward's output, {layer: residual})."""
    captured: dict[int, torch.Tensor] = {}
    hooks = [model.model.layers[l].register_forward_hook(
        lambda mod, inp, out, l=l: captured.__setitem__(
            l, (out[0] if isinstance(out, tuple) else out).detach().clone()))
        for l in layers]
    try:
        with torch.no_grad():
            out = forward(input_ids=ids, use_cache=False, output_hidden_states=True, output_attentions=True)
    finally:
        for h in hooks:
            h.remove()
    return out, captured


def write_logits_header(f, common_root, n_prompts, V, rows_path, inter_path, cols, argmax_cols, random_cols):
    """Root attributes of the logits file (naming its two companion files) and the /cols dataset."""
    set_attrs(f, **common_root, n_prompts=n_prompts, vocab_size=V,
              full_rows_file=os.path.basename(rows_path), intermediates_file=os.path.basename(inter_path))
    dc = f.create_dataset("cols", data=cols)
    set_attrs(dc, seed=COLS_SEED, n_argmax=len(argmax_cols), n_random=len(random_cols),
              note="sorted; the most frequent HF argmax ids over all prompts/positions "
                   "(capped) plus ids drawn with numpy default_rng(seed).permutation(V)")


def choose_columns(prompts: list[dict], V: int, n_cols: int, n_random: int):
    """The stored vocabulary columns: the n_cols - n_random most frequent argmax ids over all prompts (ties by id),
    then seeded random ids up to n_cols. Returns (sorted int32 columns, the argmax ids, the random ids)."""
    counts: dict[int, int] = {}
    for p in prompts:
        for a in p["argmax"].tolist():
            counts[a] = counts.get(a, 0) + 1
    by_freq = sorted(counts, key=lambda k: (-counts[k], k))
    argmax_cols = by_freq[: n_cols - n_random]
    rng = np.random.default_rng(COLS_SEED)
    chosen = set(argmax_cols)
    random_cols: list[int] = []
    for c in rng.permutation(V).tolist():
        if len(chosen) >= n_cols:
            break
        if c not in chosen:
            chosen.add(c)
            random_cols.append(c)
    cols = np.array(sorted(chosen), dtype=np.int32)
    assert cols.shape[0] == n_cols
    return cols, argmax_cols, random_cols


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fixed_str(s: str) -> np.bytes_:
    """Fixed-length HDF5 string holding UTF-8 bytes (easy to read from C)."""
    b = s.encode("utf-8")
    return np.bytes_(b) if b else np.bytes_(b"\0")


def set_attrs(obj, **kw):
    for k, v in kw.items():
        if isinstance(v, str):
            obj.attrs[k] = fixed_str(v)
        elif isinstance(v, bool):
            obj.attrs[k] = np.int32(1 if v else 0)
        elif isinstance(v, int):
            obj.attrs[k] = np.int64(v)
        elif isinstance(v, float):
            obj.attrs[k] = np.float64(v)
        else:
            obj.attrs[k] = v


# --------------------------------------------------------------------------


def gguf_architecture(path: str) -> str:
    from gguf import GGUFReader
    return str(GGUFReader(path).fields["general.architecture"].contents())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="path to the .gguf file")
    ap.add_argument("out", nargs="?", default=None,
                    help="output HDF5 file for logits (default: tests/fixtures/reference/"
                         "<kind>_hf_logits.h5)")
    ap.add_argument("--kind", choices=("auto", "smollm2", "gemma3"), default="auto",
                    help="which fixture set: smollm2 (llama GGUF) or gemma3; auto: from the GGUF's "
                         "general.architecture (default: %(default)s)")
    ap.add_argument("--intermediates", default=None,
                    help="output HDF5 file for hidden states / attention "
                         "(default: <kind>_hf_intermediates.h5 next to OUT)")
    ap.add_argument("--full-rows", default=None,
                    help="output HDF5 file for full-vocabulary rows "
                         "(default: <kind>_hf_full_rows.h5 next to OUT)")
    ap.add_argument("--threads", type=int, default=max(1, os.cpu_count() or 1))
    args = ap.parse_args()
    kind = args.kind
    if kind == "auto":
        kind = "gemma3" if gguf_architecture(args.model) == "gemma3" else "smollm2"
    if args.out is None:
        args.out = f"tests/fixtures/reference/{kind}_hf_logits.h5"
    inter_path = args.intermediates or os.path.join(os.path.dirname(os.path.abspath(args.out)),
                                                    f"{kind}_hf_intermediates.h5")
    rows_path = args.full_rows or os.path.join(os.path.dirname(os.path.abspath(args.out)),
                                               f"{kind}_hf_full_rows.h5")
    cmdline = " ".join(shlex.quote(a) for a in ["python3"] + sys.argv)
    if kind == "gemma3":
        return run_gemma3(args, inter_path, rows_path, cmdline)

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    model_dir, model_file = os.path.split(os.path.abspath(args.model))
    t0 = time.time()
    digest = sha256_of(args.model)
    if model_file in EXPECTED_SHA256 and EXPECTED_SHA256[model_file] != digest:
        print(f"WARNING: sha256 {digest} != expected {EXPECTED_SHA256[model_file]}", file=sys.stderr)

    hf_tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=model_file)
    tok = smollm2_tokenizer(hf_tok)
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=model_file,
                                                 dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    cfg = model.config
    print(f"loaded in {time.time() - t0:.1f}s", flush=True)

    prompts = build_prompts(tok, hf_tok)
    for p in prompts:
        p["hf_gguf_ids_equal"] = hf_tok(p["text"], add_special_tokens=True)["input_ids"] == p["ids"]
        print(f"{p['name']:18s} T={len(p['ids']):5d} hf-gguf-tokenizer-agrees={p['hf_gguf_ids_equal']}")

    # ---- forward passes: full logits at every position ----
    t_fwd = 0.0
    for p in prompts:
        ids = torch.tensor([p["ids"]], dtype=torch.long)
        t = time.time()
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits[0].float()
        t_fwd += time.time() - t
        p["logits"] = logits.numpy()
        p["argmax"] = logits.argmax(-1).numpy().astype(np.int32)
    print(f"forward passes: {t_fwd:.1f}s", flush=True)

    # ---- greedy continuation (exactly N_GREEDY tokens, no EOS stopping) ----
    # eos_token_id=None in the GenerationConfig passed to generate() is not enough:
    # transformers fills it back in from model.generation_config, so clear it there.
    model.generation_config.eos_token_id = None
    t_gen = 0.0
    for p in prompts:
        ids = torch.tensor([p["ids"]], dtype=torch.long)
        gc = transformers.GenerationConfig(
            max_new_tokens=N_GREEDY, do_sample=False, num_beams=1, repetition_penalty=1.0,
            eos_token_id=None, pad_token_id=cfg.eos_token_id, use_cache=True)
        t = time.time()
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gc)
        dt = time.time() - t
        t_gen += dt
        g = out[0, ids.shape[1]:].numpy().astype(np.int32)
        assert g.shape[0] == N_GREEDY, g.shape
        p["greedy"] = g
        p["gen_s"] = dt
        # cross-check: greedy tokens == argmax of one uncached forward over prompt+continuation
        full = torch.cat([ids[0], torch.from_numpy(g.astype(np.int64))])[None]
        with torch.no_grad():
            am = model(input_ids=full, use_cache=False).logits[0].argmax(-1).numpy()
        p["greedy_matches_uncached"] = bool((am[len(p["ids"]) - 1:-1] == g).all())
        print(f"{p['name']:18s} generate {dt:5.2f}s uncached-agrees={p['greedy_matches_uncached']} "
              f"-> {hf_tok.decode(g)!r}", flush=True)
    print(f"generation total: {t_gen:.1f}s", flush=True)

    # ---- column set ----
    V = prompts[0]["logits"].shape[1]
    cols, argmax_cols, random_cols = choose_columns(prompts, V, N_COLS, N_RANDOM_COLS)

    # ---- write logits fixture ----
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rope_theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta",
                                                                   getattr(cfg, "rope_theta", None))
    common_root = dict(
        model_file=model_file, model_sha256=digest,
        transformers_version=transformers.__version__, torch_version=torch.__version__,
        dtype="float32", date=date, generator_command=cmdline,
        tokenizer="tokenizers.Tokenizer from the GGUF BPE vocab/merges with pre_tokenizer "
                  "Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, "
                  "use_regex=True)] (SmolLM2's tokenizer.json); no BOS added",
    )
    with h5py.File(args.out, "w") as f:
        write_logits_header(f, common_root, len(prompts), V, rows_path, inter_path, cols, argmax_cols, random_cols)
        hc = f.create_group("hf_config")
        set_attrs(hc,
                  model_type=cfg.model_type,
                  rope_theta=float(rope_theta),
                  rms_norm_eps=float(cfg.rms_norm_eps),
                  num_attention_heads=int(cfg.num_attention_heads),
                  num_key_value_heads=int(cfg.num_key_value_heads),
                  head_dim=int(getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)),
                  hidden_size=int(cfg.hidden_size),
                  intermediate_size=int(cfg.intermediate_size),
                  num_hidden_layers=int(cfg.num_hidden_layers),
                  vocab_size=int(cfg.vocab_size),
                  max_position_embeddings=int(cfg.max_position_embeddings),
                  tie_word_embeddings=bool(cfg.tie_word_embeddings),
                  hidden_act=str(cfg.hidden_act),
                  bos_token_id=int(cfg.bos_token_id if cfg.bos_token_id is not None else -1),
                  eos_token_id=int(cfg.eos_token_id if cfg.eos_token_id is not None else -1),
                  config_json=json.dumps(cfg.to_dict(), sort_keys=True, default=str))
        gp = f.create_group("prompts")
        for i, p in enumerate(prompts):
            T = len(p["ids"])
            L = p["logits"]
            g = gp.create_group(str(i))
            g.create_dataset("ids", data=np.array(p["ids"], dtype=np.int32))
            g.create_dataset("logits_cols", data=L[:, cols].astype(np.float32), **H5_FLOAT)
            rows = np.array(sorted({0, T // 2, T - 1}), dtype=np.int32)
            g.create_dataset("full_row_positions", data=rows)
            p["full_row_positions"] = rows
            g.create_dataset("row_max", data=L.max(-1).astype(np.float32))
            g.create_dataset("row_min", data=L.min(-1).astype(np.float32))
            lse = torch.logsumexp(torch.from_numpy(L).double(), -1).float().numpy()
            g.create_dataset("row_logsumexp", data=lse)
            g.create_dataset("argmax", data=p["argmax"])
            dg = g.create_dataset("greedy_ids", data=p["greedy"])
            set_attrs(dg, method="model.generate(do_sample=False, num_beams=1, "
                                 "repetition_penalty=1.0, max_new_tokens=32, eos_token_id=None, "
                                 "use_cache=True): exactly 32 tokens, no EOS stopping, EOS logits "
                                 "not suppressed",
                      matches_uncached_argmax=p["greedy_matches_uncached"])
            set_attrs(g, name=p["name"], text=p["text"], length=T,
                      hf_gguf_tokenizer_ids_equal=p["hf_gguf_ids_equal"],
                      logit_min=float(L.min()), logit_max=float(L.max()),
                      row_range_min=float((L.max(-1) - L.min(-1)).min()),
                      row_range_max=float((L.max(-1) - L.min(-1)).max()))

    # ---- full-vocabulary rows (separate file, lossless float32) ----
    with h5py.File(rows_path, "w") as f:
        set_attrs(f, **common_root, n_prompts=len(prompts), vocab_size=V)
        for i, p in enumerate(prompts):
            g = f.create_group(f"prompts/{i}")
            rows = p["full_row_positions"]
            g.create_dataset("full_row_positions", data=rows)
            # one chunk per row: h5py's automatic (1, 3072) chunks cost ~5% more space
            g.create_dataset("full_rows", data=p["logits"][rows].astype(np.float32),
                             chunks=(1, V), **H5_FLOAT)
            set_attrs(g, name=p["name"], length=len(p["ids"]))

    # ---- intermediates for the shortest prompts ----
    short = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]["ids"]), i))[:N_INTERMEDIATE_PROMPTS]
    with h5py.File(inter_path, "w") as f:
        set_attrs(f, **common_root, attn_implementation="eager",
                  note="residual stream captured with forward hooks on model.model.layers[i] "
                       "(NOT out.hidden_states[-1], which transformers replaces by the final-norm output)")
        for i in short:
            p = prompts[i]
            ids = torch.tensor([p["ids"]], dtype=torch.long)
            out, captured = run_capturing_layers(model, model, ids, INTERMEDIATE_LAYERS)
            hs = out.hidden_states
            # sanity: hooks agree with hidden_states[l+1] for every layer but the last
            for l in INTERMEDIATE_LAYERS:
                if l + 1 < len(hs) - 1:
                    assert torch.equal(captured[l][0], hs[l + 1][0]), l
            g = f.create_group(f"prompts/{i}")
            g.create_dataset("ids", data=np.array(p["ids"], dtype=np.int32))
            g.create_dataset("hidden_embed", data=hs[0][0].numpy().astype(np.float32), **H5_FLOAT)
            for l in INTERMEDIATE_LAYERS:
                g.create_dataset(f"hidden_after_layer_{l}",
                                 data=captured[l][0].numpy().astype(np.float32), **H5_FLOAT)
            g.create_dataset("final_norm", data=hs[-1][0].numpy().astype(np.float32), **H5_FLOAT)
            for l in ATTENTION_LAYERS:
                g.create_dataset(f"attn_probs_layer_{l}",
                                 data=out.attentions[l][0].numpy().astype(np.float32), **H5_FLOAT)
            g.create_dataset("logits_cols", data=out.logits[0][:, cols].numpy().astype(np.float32),
                             **H5_FLOAT)
            set_attrs(g, name=p["name"], text=p["text"], length=len(p["ids"]),
                      main_file_prompt_index=i)
        f.create_dataset("cols", data=cols)

    # ---- summary ----
    all_ranges = np.concatenate([p["logits"].max(-1) - p["logits"].min(-1) for p in prompts])
    all_absmax = max(float(np.abs(p["logits"]).max()) for p in prompts)
    print(f"row range (max-min over vocab): min {all_ranges.min():.3f} median "
          f"{np.median(all_ranges):.3f} max {all_ranges.max():.3f}; max |logit| {all_absmax:.3f}")
    for p in prompts:
        L = p["logits"]
        print(f"  {p['name']:18s} T={L.shape[0]:5d} logits in [{L.min():8.3f}, {L.max():8.3f}] "
              f"row range [{(L.max(-1) - L.min(-1)).min():.3f}, {(L.max(-1) - L.min(-1)).max():.3f}]")
    for path in (args.out, rows_path, inter_path):
        print(f"{path}: {os.path.getsize(path) / 1e6:.2f} MB")
    print(f"total {time.time() - t0:.1f}s")
    return 0


# --------------------------------------------------------------------------
# Gemma 3 (270M)

GEMMA3_EXPECTED = dict(query_pre_attn_scalar=256, sliding_window=512, head_dim=256,
                       num_key_value_heads=1, final_logit_softcapping=None,
                       attn_logit_softcapping=None, hidden_activation="gelu_pytorch_tanh")
GEMMA3_N_COLS = 128               # 262144-wide rows: fewer stored columns keep the file < 5 MB
GEMMA3_N_RANDOM_COLS = 64
GEMMA3_LONG_TOKENS = 600          # > the 512-token window
GEMMA3_VERY_LONG_TOKENS = 4000    # the window slides over ~3500 positions
GEMMA3_LOGIT_CHUNK = 256          # positions per lm_head call
GEMMA3_INTERMEDIATE_LAYERS = (0, 1, 5, 17)   # 5 and 17 are global layers
GEMMA3_ATTENTION_LAYERS = (0, 5)
GEMMA3_FULL_ROW_PROMPTS = ("short_en", "chat_single", "long_document", "very_long_document")


def gemma3_turns(turns: list[tuple[str, str]], generation_prompt: bool = True) -> str:
    """Gemma's chat format (<bos> is added by the tokenizer): <start_of_turn>role\ntext<end_of_turn>\n ..."""
    text = "".join(f"<start_of_turn>{role}\n{content}<end_of_turn>\n" for role, content in turns)
    return text + ("<start_of_turn>model\n" if generation_prompt else "")


class _IdsOnly:
    """tokenizers-like encode(text).ids over an HF tokenizer (for long_document)."""

    def __init__(self, hf_tok):
        self.hf_tok = hf_tok

    def encode(self, text):
        class R:
            pass
        r = R()
        r.ids = self.hf_tok(text, add_special_tokens=True)["input_ids"]
        return r


def gemma3_prompts(hf_tok, normal_ids: np.ndarray) -> list[dict]:
    """[{name, text, ids}]; ids = HF's GemmaTokenizer with add_special_tokens=True (leading <bos>)."""
    chat1 = gemma3_turns([("user", "What is the capital of France?")])
    chat2 = gemma3_turns([
        ("user", "You are a concise assistant who answers in one paragraph.\n\nExplain why the sky is blue."),
        ("model", "Sunlight is scattered by the molecules in the air, and shorter blue wavelengths are "
                  "scattered much more strongly than red ones, so blue light reaches our eyes from every "
                  "direction of the sky."),
        ("user", "Then why are sunsets red and orange?")])
    enc = _IdsOnly(hf_tok)
    prompts = [
        ("short_en", "The capital of France is"),
        ("short_story", "Once upon a time, there was a little"),
        ("numbers", NUMBERS),
        ("chat_single", chat1),
        ("plain_english", ENGLISH),
        ("induction_random", None),
        ("code_python", CODE_PY),
        ("chat_multi", chat2),
        ("medium_english", MEDIUM),
        ("long_document", long_document(enc, GEMMA3_LONG_TOKENS)),
        ("very_long_document", long_document(enc, GEMMA3_VERY_LONG_TOKENS)),
    ]
    out = []
    for name, text in prompts:
        if name == "induction_random":
            # <bos> + [X, X], X = 50 distinct ordinary (token type 1) ids
            rng = np.random.default_rng(INDUCTION_SEED)
            x = rng.choice(normal_ids, size=INDUCTION_LEN, replace=False)
            ids = [int(hf_tok.bos_token_id)] + [int(i) for i in x] * 2
            text = hf_tok.decode(ids, skip_special_tokens=False)
        else:
            ids = hf_tok(text, add_special_tokens=True)["input_ids"]
        out.append(dict(name=name, text=text, ids=[int(i) for i in ids]))
    return out


def gemma3_logits_chunks(model, hidden: torch.Tensor):
    """Yields (t0, logits[t0:t0+n, V]) = model.lm_head(final-norm output) in chunks of positions."""
    assert model.config.final_logit_softcapping is None
    with torch.no_grad():
        for t0 in range(0, hidden.shape[0], GEMMA3_LOGIT_CHUNK):
            yield t0, model.lm_head(hidden[t0:t0 + GEMMA3_LOGIT_CHUNK]).float()


def run_gemma3(args, inter_path: str, rows_path: str, cmdline: str) -> int:
    from gguf import GGUFReader

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    model_dir, model_file = os.path.split(os.path.abspath(args.model))
    t0 = time.time()
    digest = sha256_of(args.model)
    types = np.asarray(GGUFReader(args.model).fields["tokenizer.ggml.token_type"].contents())
    normal_ids = np.nonzero(types == 1)[0]

    hf_tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=model_file)
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=model_file, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    cfg = model.config
    print(f"loaded {type(model).__name__} in {time.time() - t0:.1f}s", flush=True)
    for k, v in GEMMA3_EXPECTED.items():
        assert getattr(cfg, k) == v, (k, getattr(cfg, k), v)
    n_global = [i for i, t in enumerate(cfg.layer_types) if t == "full_attention"]
    assert n_global == [i for i in range(cfg.num_hidden_layers) if i % 6 == 5], cfg.layer_types
    rope = cfg.rope_parameters
    assert rope["sliding_attention"]["rope_theta"] == 10000.0 and rope["full_attention"]["rope_theta"] == 1e6, rope

    prompts = gemma3_prompts(hf_tok, normal_ids)
    V = int(cfg.vocab_size)

    # ---- pass 1: one forward per prompt (final-norm output kept), per-row statistics over all V logits
    t_fwd = 0.0
    for p in prompts:
        ids = torch.tensor([p["ids"]], dtype=torch.long)
        t = time.time()
        with torch.no_grad():
            hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state[0]
        T = hidden.shape[0]
        p["hidden"] = hidden
        p["row_max"] = np.empty(T, np.float32)
        p["row_min"] = np.empty(T, np.float32)
        p["row_lse"] = np.empty(T, np.float32)
        p["argmax"] = np.empty(T, np.int32)
        for c0, lg in gemma3_logits_chunks(model, hidden):
            n = lg.shape[0]
            p["row_max"][c0:c0 + n] = lg.max(-1).values.numpy()
            p["row_min"][c0:c0 + n] = lg.min(-1).values.numpy()
            p["row_lse"][c0:c0 + n] = torch.logsumexp(lg.double(), -1).float().numpy()
            p["argmax"][c0:c0 + n] = lg.argmax(-1).numpy()
        dt = time.time() - t
        t_fwd += dt
        print(f"{p['name']:20s} T={T:5d} forward+stats {dt:6.1f}s", flush=True)
    print(f"forward passes: {t_fwd:.1f}s", flush=True)

    # ---- greedy continuations (exactly N_GREEDY tokens, no EOS stopping), cross-checked uncached
    model.generation_config.eos_token_id = None
    for p in prompts:
        ids = torch.tensor([p["ids"]], dtype=torch.long)
        gc = transformers.GenerationConfig(
            max_new_tokens=N_GREEDY, do_sample=False, num_beams=1, repetition_penalty=1.0,
            eos_token_id=None, pad_token_id=cfg.pad_token_id, use_cache=True)
        t = time.time()
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gc)
        dt = time.time() - t
        g = out[0, ids.shape[1]:].numpy().astype(np.int32)
        assert g.shape[0] == N_GREEDY, g.shape
        p["greedy"] = g
        full = torch.cat([ids[0], torch.from_numpy(g.astype(np.int64))])[None]
        with torch.no_grad():
            h = model.model(input_ids=full, use_cache=False).last_hidden_state[0, len(p["ids"]) - 1:-1]
        am = torch.cat([lg.argmax(-1) for _, lg in gemma3_logits_chunks(model, h)]).numpy()
        p["greedy_matches_uncached"] = bool((am == g).all())
        print(f"{p['name']:20s} generate {dt:6.1f}s uncached-agrees={p['greedy_matches_uncached']} "
              f"-> {hf_tok.decode(g)!r}", flush=True)

    # ---- columns: the most frequent argmax ids plus seeded random ids
    cols, argmax_cols, random_cols = choose_columns(prompts, V, GEMMA3_N_COLS, GEMMA3_N_RANDOM_COLS)
    cols_t = torch.from_numpy(cols.astype(np.int64))

    # ---- pass 2: the stored columns (and full rows) from the same final-norm outputs
    full_row_names = set(GEMMA3_FULL_ROW_PROMPTS)
    for p in prompts:
        T = len(p["ids"])
        p["logits_cols"] = np.empty((T, len(cols)), np.float32)
        p["full_row_positions"] = np.array([T - 1], dtype=np.int32) if p["name"] in full_row_names else None
        for c0, lg in gemma3_logits_chunks(model, p["hidden"]):
            p["logits_cols"][c0:c0 + lg.shape[0]] = lg[:, cols_t].numpy()
            if p["full_row_positions"] is not None and c0 <= T - 1 < c0 + lg.shape[0]:
                p["full_rows"] = lg[T - 1 - c0:T - c0].numpy().astype(np.float32)

    # ---- write
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    common_root = dict(
        model_file=model_file, model_sha256=digest,
        transformers_version=transformers.__version__, torch_version=torch.__version__,
        dtype="float32", date=date, generator_command=cmdline,
        tokenizer="transformers AutoTokenizer.from_pretrained(dir, gguf_file=...) (GemmaTokenizer built "
                  "from the GGUF's SentencePiece vocabulary), add_special_tokens=True: a leading <bos>",
        logits_method="model.lm_head(model.model(input_ids).last_hidden_state) in chunks of "
                      f"{GEMMA3_LOGIT_CHUNK} positions (Gemma3ForCausalLM.forward without softcap)",
    )
    with h5py.File(args.out, "w") as f:
        write_logits_header(f, common_root, len(prompts), V, rows_path, inter_path, cols, argmax_cols, random_cols)
        hc = f.create_group("hf_config")
        set_attrs(hc,
                  model_type=cfg.model_type,
                  rope_theta=float(cfg.rope_parameters["full_attention"]["rope_theta"]),
                  rope_local_base_freq=float(cfg.rope_parameters["sliding_attention"]["rope_theta"]),
                  rms_norm_eps=float(cfg.rms_norm_eps),
                  num_attention_heads=int(cfg.num_attention_heads),
                  num_key_value_heads=int(cfg.num_key_value_heads),
                  head_dim=int(cfg.head_dim),
                  hidden_size=int(cfg.hidden_size),
                  intermediate_size=int(cfg.intermediate_size),
                  num_hidden_layers=int(cfg.num_hidden_layers),
                  vocab_size=V,
                  max_position_embeddings=int(cfg.max_position_embeddings),
                  tie_word_embeddings=bool(cfg.tie_word_embeddings),
                  hidden_act=str(cfg.hidden_activation),
                  query_pre_attn_scalar=float(cfg.query_pre_attn_scalar),
                  sliding_window=int(cfg.sliding_window),
                  embed_scale=float(model.model.embed_tokens.embed_scale),
                  bos_token_id=int(cfg.bos_token_id),
                  eos_token_id=int(cfg.eos_token_id),
                  config_json=json.dumps(cfg.to_dict(), sort_keys=True, default=str))
        hc.create_dataset("full_attention_layers", data=np.array(n_global, dtype=np.int32))
        gp = f.create_group("prompts")
        for i, p in enumerate(prompts):
            T = len(p["ids"])
            g = gp.create_group(str(i))
            g.create_dataset("ids", data=np.array(p["ids"], dtype=np.int32))
            g.create_dataset("logits_cols", data=p["logits_cols"], **H5_FLOAT)
            g.create_dataset("row_max", data=p["row_max"])
            g.create_dataset("row_min", data=p["row_min"])
            g.create_dataset("row_logsumexp", data=p["row_lse"])
            g.create_dataset("argmax", data=p["argmax"])
            dg = g.create_dataset("greedy_ids", data=p["greedy"])
            set_attrs(dg, method="model.generate(do_sample=False, num_beams=1, "
                                 "repetition_penalty=1.0, max_new_tokens=32, eos_token_id=None, "
                                 "use_cache=True): exactly 32 tokens, no EOS stopping, EOS logits "
                                 "not suppressed",
                      matches_uncached_argmax=p["greedy_matches_uncached"])
            ranges = p["row_max"] - p["row_min"]
            set_attrs(g, name=p["name"], text=p["text"], length=T,
                      logit_min=float(p["row_min"].min()), logit_max=float(p["row_max"].max()),
                      row_range_min=float(ranges.min()), row_range_max=float(ranges.max()))

    with h5py.File(rows_path, "w") as f:
        set_attrs(f, **common_root, n_prompts=len(prompts), vocab_size=V)
        for i, p in enumerate(prompts):
            if p["full_row_positions"] is None:
                continue
            g = f.create_group(f"prompts/{i}")
            g.create_dataset("full_row_positions", data=p["full_row_positions"])
            g.create_dataset("full_rows", data=p["full_rows"], chunks=(1, V), **H5_FLOAT)
            set_attrs(g, name=p["name"], length=len(p["ids"]))

    short = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]["ids"]), i))[:N_INTERMEDIATE_PROMPTS]
    with h5py.File(inter_path, "w") as f:
        set_attrs(f, **common_root, attn_implementation="eager",
                  note="residual stream captured with forward hooks on model.model.layers[i]; "
                       "final_norm = model.model(...).last_hidden_state")
        for i in short:
            p = prompts[i]
            ids = torch.tensor([p["ids"]], dtype=torch.long)
            out, captured = run_capturing_layers(model, model.model, ids, GEMMA3_INTERMEDIATE_LAYERS)
            g = f.create_group(f"prompts/{i}")
            g.create_dataset("ids", data=np.array(p["ids"], dtype=np.int32))
            g.create_dataset("hidden_embed", data=out.hidden_states[0][0].numpy(), **H5_FLOAT)
            for l in GEMMA3_INTERMEDIATE_LAYERS:
                g.create_dataset(f"hidden_after_layer_{l}", data=captured[l][0].numpy(), **H5_FLOAT)
            g.create_dataset("final_norm", data=out.last_hidden_state[0].numpy(), **H5_FLOAT)
            for l in GEMMA3_ATTENTION_LAYERS:
                g.create_dataset(f"attn_probs_layer_{l}", data=out.attentions[l][0].numpy(), **H5_FLOAT)
            set_attrs(g, name=p["name"], text=p["text"], length=len(p["ids"]), main_file_prompt_index=i)
        f.create_dataset("cols", data=cols)

    ranges = np.concatenate([p["row_max"] - p["row_min"] for p in prompts])
    print(f"row range (max-min over vocab): min {ranges.min():.3f} median {np.median(ranges):.3f} "
          f"max {ranges.max():.3f}; logits in [{min(p['row_min'].min() for p in prompts):.3f}, "
          f"{max(p['row_max'].max() for p in prompts):.3f}]")
    cover = np.mean(np.concatenate([np.isin(p["argmax"], cols) for p in prompts]))
    print(f"argmax positions whose argmax is among the columns: {100 * cover:.1f}%")
    for p in prompts:
        print(f"  {p['name']:20s} T={len(p['ids']):5d}")
    for path in (args.out, rows_path, inter_path):
        print(f"{path}: {os.path.getsize(path) / 1e6:.2f} MB")
    print(f"total {time.time() - t0:.1f}s")
    return 0



if __name__ == "__main__":
    sys.exit(main())
