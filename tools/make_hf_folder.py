"""Hugging Face checkpoint folders of the shipped GGUF models, written by transformers itself (issue 18).

For each model (SmolLM2-135M-Instruct Q4_1, Gemma 3 270M Q4_K_M) transformers loads the GGUF file
(from_pretrained(dir, gguf_file=...): it dequantises every tensor to fp32, undoes llama.cpp's Q/K interleaving and
Gemma's stored 1 + w), and save_pretrained writes the folder as any HF checkpoint: config.json, safetensors sharded at
--max-shard-size (so that model.safetensors.index.json is exercised), the tokenizer files. Two folders per model:
<out>/<name>-f32 (float32) and <out>/<name>-bf16 (bfloat16).

It also writes a small reference fixture (tests/fixtures/hf_reference_logits.json by default): for a few fixed token
sequences, transformers' own fp32 forward of the model, per position the log-sum-exp of the logits and the logits of
a fixed set of ids (the top 8 of that position and 24 spread ids). The [hf][slow] C++ test compares the engine on the
folders against the GGUF models and against these numbers.

Usage (in a throwaway venv: pip install torch transformers gguf safetensors accelerate sentencepiece protobuf):
    /work/venv-hf/bin/python tools/make_hf_folder.py [--out models/hf] [--models smollm2,gemma3]
        [--max-shard-size 50MB] [--fixture tests/fixtures/hf_reference_logits.json] [--no-bf16]
The folders are large (SmolLM2: 0.5 GB in f32; Gemma 3: 1.1 GB) and git-ignored under models/; only the fixture is
committed.
"""
import argparse
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

transformers.utils.logging.disable_progress_bar()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {
    "smollm2": ("SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3": ("gemma-3-270m", "gemma-3-270m-q4_k_m.gguf"),
}
# Fixed token sequences (ids, so that no tokenizer difference enters the reference): a BOS-led run of ordinary ids,
# and a repeated random block (the proxy task's shape: the second half copies the first).
SEQUENCES = {
    "smollm2": [[1, 504, 3458, 282, 4649, 314, 260, 1345, 28, 6511, 30, 378, 3390, 1225, 22, 216],
                [1] + [812, 9301, 44, 17012, 613, 2200, 77] * 2],
    "gemma3": [[2, 818, 5279, 529, 7001, 563, 9079, 236761, 1030, 1144, 5692, 3017, 236764, 107, 2094, 236743],
               [2] + [1812, 90301, 404, 17012, 6130, 22000, 777] * 2],
}
N_SPREAD = 24
N_TOP = 8


def reference(model, seqs, n_vocab):
    out = []
    spread = [int(i * (n_vocab - 1) / (N_SPREAD - 1)) for i in range(N_SPREAD)]
    for ids in seqs:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()  # [T, V]
        rows = []
        for t in range(len(ids)):
            row = logits[t]
            top = torch.topk(row, N_TOP).indices.tolist()
            picked = sorted(set(top + spread))
            rows.append({"lse": float(torch.logsumexp(row.double(), 0)),
                         "ids": picked, "logits": [float(row[i]) for i in picked]})
        out.append({"ids": ids, "positions": rows})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "models", "hf"))
    ap.add_argument("--models", default="smollm2,gemma3")
    ap.add_argument("--max-shard-size", default="50MB")
    ap.add_argument("--fixture", default=os.path.join(REPO, "tests", "fixtures", "hf_reference_logits.json"))
    ap.add_argument("--no-bf16", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(0)
    fixture = {"transformers": transformers.__version__, "torch": torch.__version__, "models": {}}
    if os.path.exists(a.fixture):
        with open(a.fixture) as f:
            fixture["models"] = json.load(f).get("models", {})
    for key in a.models.split(","):
        name, gguf = MODELS[key]
        path = os.path.join(REPO, "models", gguf)
        if not os.path.exists(path):
            print(f"{path} is missing (scripts/fetch_model.sh{' --gemma3' if key == 'gemma3' else ''})", file=sys.stderr)
            continue
        print(f"loading {path} with transformers {transformers.__version__}", file=sys.stderr)
        loaded = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=gguf, dtype=torch.float32)
        # transformers marks a GGUF-loaded model as "quantized with gguf" and refuses to save it, although its weights
        # are already dequantised fp32: move them into a plain model of the same config.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
        assert not unexpected and set(missing) <= tied, (missing, unexpected)
        if tied:
            model.tie_weights()
        del loaded
        model.eval()
        tok = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=gguf)
        n_vocab = model.config.vocab_size
        fixture["models"][key] = {"folder": f"{name}-f32", "gguf": gguf, "n_vocab": n_vocab,
                                  "sequences": reference(model, SEQUENCES[key], n_vocab)}
        for tag, dtype in [("f32", torch.float32)] + ([] if a.no_bf16 else [("bf16", torch.bfloat16)]):
            out = os.path.join(a.out, f"{name}-{tag}")
            print(f"writing {out}", file=sys.stderr)
            model.to(dtype).save_pretrained(out, max_shard_size=a.max_shard_size, safe_serialization=True)
            tok.save_pretrained(out)
        del model
    os.makedirs(os.path.dirname(a.fixture), exist_ok=True)
    with open(a.fixture, "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(f"wrote {a.fixture}", file=sys.stderr)


if __name__ == "__main__":
    main()
