"""Reference Hugging Face tokenizer for SmolLM2-135M-Instruct, rebuilt from the GGUF file.

The HF hub is not reachable from the build machines, so the reference cannot be the downloaded tokenizer.json.
Two ways to get one were tried:

  (a) transformers' own GGUF loader, AutoTokenizer.from_pretrained(dir, gguf_file=name). It produces a
      pre_tokenizer of ByteLevel only: transformers' GGUF converter ignores tokenizer.ggml.pre = "smollm" and drops
      the Digits(individual_digits=True) step that SmolLM2's real tokenizer.json has. Most text still comes out the
      same (the vocabulary has no multi-digit or space+digit tokens), but whitespace before a digit does not:
      "a  1" gives a,Ġ,Ġ,1 = [81, 216, 216, 33] with (a) and a,ĠĠ,1 = [81, 256, 33] with SmolLM2's real
      pipeline, where Digits first cuts "  " away from "1" so the two spaces merge.
  (b) a `tokenizers.Tokenizer` assembled from the GGUF vocabulary and merges with the configuration of SmolLM2's
      tokenizer.json: no normalizer; pre_tokenizer Sequence[Digits(individual_digits=true),
      ByteLevel(add_prefix_space=false, trim_offsets=true, use_regex=true)]; BPE (no dropout, no unk token,
      byte_fallback=false, ignore_merges=false); ByteLevel decoder; ids 0..16 as special added tokens.

(b) reproduces SmolLM2's real behaviour, so it is the reference. tools/gen_tokenizer_fixtures.py records for every
fixture string whether (a) agrees, to document the difference.
"""
import json
import os
import sys

from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(REPO, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def read_gguf_vocab(path):
    """tokens, token types, merges and the chat template from the GGUF metadata."""
    reader = GGUFReader(path)
    field = lambda key: reader.fields[key].contents()
    return {
        "tokens": field("tokenizer.ggml.tokens"),
        "token_type": field("tokenizer.ggml.token_type"),
        "merges": field("tokenizer.ggml.merges"),
        "chat_template": field("tokenizer.chat_template"),
        "pre": field("tokenizer.ggml.pre"),
    }


def split_merge(merge):
    # A merge side can itself start with a (mapped) space, so split at the first space after index 0.
    cut = merge.find(" ", 1)
    return merge[:cut], merge[cut + 1:]


def build_reference(path=DEFAULT_MODEL):
    """Option (b): SmolLM2's tokenizer.json configuration over the GGUF vocabulary. Returns (tokenizer, meta)."""
    meta = read_gguf_vocab(path)
    vocab = {tok: i for i, tok in enumerate(meta["tokens"])}
    merges = [split_merge(m) for m in meta["merges"]]
    bpe = models.BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None, fuse_unk=False,
                     byte_fallback=False, ignore_merges=False)
    tok = Tokenizer(bpe)
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    # Control tokens (type 3) are SmolLM2's added special tokens: <|endoftext|>, <|im_start|>, ... <empty_output>.
    specials = [AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False)
                for t, ty in zip(meta["tokens"], meta["token_type"]) if ty in (3, 4)]
    tok.add_special_tokens(specials)
    return tok, meta


def load_transformers_gguf(path=DEFAULT_MODEL):
    """Option (a): transformers' own GGUF tokenizer loader."""
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))


if __name__ == "__main__":
    tok, _ = build_reference(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL)
    for s in ["Hello world! 123", "a  1", "<|im_start|>user\nhi<|im_end|>"]:
        print(json.dumps(s), tok.encode(s, add_special_tokens=False).ids)
