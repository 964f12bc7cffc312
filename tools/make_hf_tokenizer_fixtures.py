#!/usr/bin/env python3
"""Hugging Face tokenizer.json references for Tokenizer::from_hf_folder (tests tagged [hf_tokenizer]).

Writes:
  tests/fixtures/tokenizer/hf_small_bytelevel/tokenizer.json   small hand-specified tokenizers (committed): a
  tests/fixtures/tokenizer/hf_small_spm/tokenizer.json(+config)  byte-level BPE with a Split regex and added tokens,
  tests/fixtures/tokenizer/hf_small_splits/, hf_small_metaspace/ a SentencePiece-style BPE with byte fallback, and
                                                                 variants for the other Split behaviours, Digits,
                                                                 Regex Replace, Metaspace, NFC/NFKC/NFD
  tests/fixtures/tokenizer/hf_small_cases.jsonl                 HF tokenizers' ids/decodes on them (committed)
  models/hf-tokenizers/<name>/                                  transformers' tokenizer made from each shipped GGUF
                                                                 (AutoTokenizer.from_pretrained(models, gguf_file=..)
                                                                 .save_pretrained): git-ignored, ~2-30 MB
  tests/fixtures/tokenizer/hf_tokenizer_cases.jsonl             HF tokenizers' ids on those files for the hard
                                                                 cases below (committed, small)

Records: {"tokenizer": name, "text": s, "parse_special": bool, "add_special_tokens": bool, "ids": [...],
          "decoded": tokenizer.decode(ids, skip_special_tokens=True)}
parse_special=false is HF's encode_special_tokens=True. The ids are those of tokenizers.Tokenizer.from_file(
<folder>/tokenizer.json), i.e. HF tokenizers itself on the very file the C++ test loads.

The larger fixtures smollm2_cases.jsonl / gemma3_cases.jsonl (tools/gen_tokenizer_fixtures.py) hold the GGUF
tokenizer tests' strings; transformers' Gemma 3 GGUF tokenizer is their reference, so the C++ test runs them on
models/hf-tokenizers/gemma3 too. For SmolLM2 transformers' GGUF converter drops the Digits step (see
tools/hf_reference.py): the C++ test checks the strings marked same_as_transformers_gguf on that folder, and all of
them on a tokenizer.json with SmolLM2's real pre-tokenizer that the test writes itself from the GGUF vocabulary.

Usage: a venv with tokenizers, transformers, gguf, sentencepiece, protobuf and torch (transformers' GGUF loader
imports torch), e.g. /work/venv-hf/bin/python tools/make_hf_tokenizer_fixtures.py [--small-only]
"""
import json
import os
import sys

from tokenizers import Tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(REPO, "tests", "fixtures", "tokenizer")
MODELS = os.path.join(REPO, "models")
HF_OUT = os.path.join(MODELS, "hf-tokenizers")

SHIPPED = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}

# Hard cases on top of the GGUF tokenizer tests' strings (those are in smollm2_cases/gemma3_cases.jsonl).
HARD = [
    "", " ", "  ", "Hello world! 123", "a  1", "12345678901234567890", "3.14159 and 2,718", "x1y22z333",
    "I'm sure you've seen it; they'll say we'd DON'T", "it's 'quoted' ''", "\u4f60\u597d\uff0c\u4e16\u754c\u3002 \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "emoji \U0001F600\U0001F44D\U0001F3FD family \U0001F468\u200D\U0001F469\u200D\U0001F467", "caf\u00e9 na\u00efve \u00c5ngstr\u00f6m",
    "multiple   spaces    here", "tabs\tand\t\ttabs", "new\nline\n\nand\n\n\nmore\r\n", "   leading spaces",
    "trailing spaces   ", " leading space", "\n\nleading newlines", "<|im_start|>user\nhi<|im_end|>",
    "text<|im_end|>text <|endoftext|> x", "<start_of_turn>user\nhi<end_of_turn>\n", "<bos>x<eos>",
    "def f(x):\n    return x ** 2  # square\n", "\u0661\u0662\u0663\u0664 \u00bd \u00b2", "\u2581already\u2581spaced",
    "<table><tr>cell</tr></table>", "MiXeD CaSe WORDS", "a\u00a0b\u2003c\u3000d", "\x00\x01 control",
]

# ---------------------------------------------------------------- small hand-specified tokenizers


def small_bytelevel():
    """Byte-level BPE: Split(Regex, Isolated) then ByteLevel(use_regex=false), as Llama 3 is built, with a few
    merges written as "a b" strings (hf_small_spm has [a, b] pairs; HF refuses a mix), and added tokens exercising special, rstrip, lstrip
    and single_word. Vocabulary: the 256 byte symbols, then the merged tokens."""
    from tokenizers.pre_tokenizers import ByteLevel
    alphabet = ByteLevel.alphabet()
    # GPT-2 bytes_to_unicode order so ids are stable: byte b -> id b.
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_sym = {b: chr(c) for b, c in zip(bs, cs)}
    assert set(byte_sym.values()) == set(alphabet)
    vocab = {byte_sym[b]: b for b in range(256)}
    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), ("\u0120", "w"), ("o", "r"), ("\u0120w", "or"),
              ("\u0120wor", "l"), ("\u0120worl", "d"), ("1", "2"), ("\u0120", "\u0120"), ("'", "s"), ("i", "t"),
              ("\u00c3", "\u00a9")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    specials = ["<s>", "</s>", "<|user|>", "<pad>"]
    added = [
        {"id": len(vocab) + 0, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True},
        {"id": len(vocab) + 1, "content": "</s>", "single_word": False, "lstrip": True, "rstrip": False,
         "normalized": False, "special": True},
        {"id": len(vocab) + 2, "content": "<|user|>", "single_word": False, "lstrip": False, "rstrip": True,
         "normalized": False, "special": True},
        {"id": len(vocab) + 3, "content": "[x]", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": False},
        {"id": len(vocab) + 4, "content": "word", "single_word": True, "lstrip": False, "rstrip": False,
         "normalized": False, "special": False},
    ]
    del specials
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": r"\p{N}{1,2}| ?\p{L}+|\s+(?!\S)|\s+|[^\s\p{L}\p{N}]+"},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [added[0]["id"]], "tokens": ["<s>"]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab,
                  "merges": [f"{a} {b}" for a, b in merges]},
    }
    config = {"bos_token": "<s>", "eos_token": {"content": "</s>", "lstrip": True}, "add_bos_token": True,
              "chat_template": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                               "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"}
    return tok, config


def small_spm():
    """SentencePiece-style BPE: normalizer Sequence[Prepend("\u2581"), Replace(" " -> "\u2581")], pre-tokenizer
    Split(" "... here "\u2581", MergedWithNext), byte fallback with the 256 <0xNN> pieces, <unk> with fuse_unk,
    decoder Sequence[Replace, ByteFallback, Fuse, Strip]; chat_template as a list of named templates."""
    S = "\u2581"
    vocab = {"<unk>": 0, "<bos>": 1, "<eos>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for ch in [S, "a", "b", "c", "d", "e", "h", "l", "o", "r", "w", "t", "s", "\u00e9", "1", "2"]:
        vocab[ch] = len(vocab)
    merges = [(S, "h"), ("l", "l"), (S + "h", "e"), ("ll", "o"), (S + "he", "llo"), (S, "w"), ("o", "r"),
              (S + "w", "or"), ("l", "d"), (S + "wor", "ld"), (S, S), (S + S, S), ("c", "a"), ("ca", "t"),
              (S, "cat"), ("t", "s")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    added = [{"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for t in ["<unk>", "<bos>", "<eos>"]]
    added.append({"id": len(vocab), "content": "\n", "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": False})
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": S}, {"type": "Replace", "pattern": {"String": " "}, "content": S}]},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": S}, "behavior": "MergedWithNext", "invert": False},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<bos>": {"id": "<bos>", "ids": [1], "tokens": ["<bos>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": S}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }
    config = {"bos_token": "<bos>", "eos_token": "<eos>", "add_bos_token": True,
              "chat_template": [{"name": "tool_use", "template": "{{ tools }}"},
                                {"name": "default", "template": "{{ bos_token }}{% for message in messages %}"
                                 "{{ '<start_of_turn>' + message['role'] + '\\n' + message['content'] | trim + "
                                 "'<end_of_turn>\\n' }}{% endfor %}"}]}
    return tok, config


def small_splits():
    """Byte-level BPE exercising the other Split behaviours, inverted Splits, Digits in runs, a Regex Replace
    normalizer and ByteLevel(add_prefix_space=true, use_regex=true) -- on the vocabulary of small_bytelevel."""
    tok, _ = small_bytelevel()
    tok["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Replace", "pattern": {"Regex": r"[0-9]{4}"}, "content": "<year>"},
        {"type": "Replace", "pattern": {"String": "\t"}, "content": "  "}]}
    tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": False},
        {"type": "Split", "pattern": {"String": "-"}, "behavior": "Contiguous", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[,;]"}, "behavior": "MergedWithPrevious", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[!?]+"}, "behavior": "Removed", "invert": False},
        {"type": "Split", "pattern": {"Regex": r"\p{L}+"}, "behavior": "MergedWithNext", "invert": True},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}]}
    tok["post_processor"] = None
    return tok, {"bos_token": "<s>", "eos_token": "</s>"}


def small_metaspace():
    """SentencePiece-style BPE with a Metaspace pre-tokenizer (prepend_scheme "first") and decoder, no normalizer."""
    tok, _ = small_spm()
    tok["normalizer"] = None
    tok["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True}
    tok["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True}
    tok["post_processor"] = None
    return tok, {"bos_token": "<bos>", "eos_token": "<eos>"}


QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")


def small_nfc():
    """Qwen2's layout: normalizer NFC, Split(Qwen2 pattern) then ByteLevel(use_regex=false); small_bytelevel's
    vocabulary (its "\u00c3\u00a9" token is the NFC form of e + U+0301)."""
    tok, _ = small_bytelevel()
    tok["normalizer"] = {"type": "NFC"}
    tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
    tok["post_processor"] = None
    return tok, {}


def small_nfkc():
    """Normalizer Sequence[NFKC, NFD] (compatibility forms, then decomposed) with the GPT-2 ByteLevel pre-tokenizer."""
    tok, _ = small_bytelevel()
    tok["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "NFD"}]}
    tok["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tok["post_processor"] = None
    return tok, {}


SMALL_TEXTS = ["hello world", "hello  world", "Hello world 12345", "it's hello's", "<s>hello</s>",
               "hi   </s>", "<|user|>   hello", "a [x] b[x]c", "word words sword word", "caf\u00e9 \u00e9\u00e9",
               "tab\there\n\nnewline", "\U0001F600 emoji", "cat cats  scat", "   ", "", "hello\nworld",
               "\u4f60\u597d hello", "zzz qqq", "<bos>hello<eos>", "\u2581hello", "in 1969--1972, hello; world!! ok?",
               "a-b--c---d", "x,y;;z,,", "wow!?! what", "year 2024 and 12345 and 1 2", "hello<bos> world",
               "hello <eos>world", "cafe\u0301 caf\u00e9", "\ufb01ne \uff21\uff22\uff23\uff11\uff12 \u00bd x\u00b2",
               "\u212b \u00c5 A\u030a", "\u1e9b\u0323 \uac00 \u1100\u1161", "\u2460\u2461 \u33a1"]


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


ALL_MODES = ((True, False), (False, False), (True, True))  # (parse_special, add_special_tokens)


def cases(name, tok, texts, out, modes=ALL_MODES):
    for text in texts:
        for parse_special, add_special in modes:
                tok.encode_special_tokens = not parse_special
                ids = tok.encode(text, add_special_tokens=add_special).ids
                out.append({"tokenizer": name, "text": text, "parse_special": parse_special,
                            "add_special_tokens": add_special, "ids": ids,
                            "decoded": tok.decode(ids, skip_special_tokens=True)})
    tok.encode_special_tokens = False


def main():
    small_only = "--small-only" in sys.argv
    records = []
    for name, make in (("hf_small_bytelevel", small_bytelevel), ("hf_small_spm", small_spm),
                       ("hf_small_splits", small_splits), ("hf_small_metaspace", small_metaspace),
                       ("hf_small_nfc", small_nfc), ("hf_small_nfkc", small_nfkc)):
        tok_json, config = make()
        write_json(os.path.join(FIX, name, "tokenizer.json"), tok_json)
        write_json(os.path.join(FIX, name, "tokenizer_config.json"), config)
        tok = Tokenizer.from_file(os.path.join(FIX, name, "tokenizer.json"))
        cases(name, tok, SMALL_TEXTS, records)
        cases(name, tok, HARD, records, modes=ALL_MODES[:1])
    with open(os.path.join(FIX, "hf_small_cases.jsonl"), "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"hf_small_cases.jsonl: {len(records)} records")
    if small_only:
        return

    from transformers import AutoTokenizer
    records = []
    for name, gguf in SHIPPED.items():
        folder = os.path.join(HF_OUT, name)
        AutoTokenizer.from_pretrained(MODELS, gguf_file=gguf).save_pretrained(folder)
        tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        texts = list(HARD)
        if name == "smollm2":  # the GGUF fixture strings where transformers' converter differs (no Digits step)
            with open(os.path.join(FIX, "smollm2_cases.jsonl"), encoding="utf-8") as f:
                for line in f:
                    c = json.loads(line)
                    if c["kind"] == "encode" and not c["same_as_transformers_gguf"] and c["text"] not in texts:
                        texts.append(c["text"])
        cases(name, tok, texts, records)
    with open(os.path.join(FIX, "hf_tokenizer_cases.jsonl"), "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"hf_tokenizer_cases.jsonl: {len(records)} records; tokenizers in {HF_OUT}")


if __name__ == "__main__":
    main()
