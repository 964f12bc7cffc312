"""Reference Hugging Face tokenizers rebuilt from GGUF files: SmolLM2-135M-Instruct (byte-level BPE) and Gemma 3
(SentencePiece BPE; see the Gemma section at the end).

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


# ---------------------------------------------------------------- Gemma 3 (tokenizer.ggml.model = "llama")
#
# The reference is transformers' own GGUF loader (option (a) above): for gemma* architectures it builds a
# GemmaTokenizer (BPE with byte fallback, normalizer " " -> "\u2581", no prefix space) from the file, with merges
# derived from the vocabulary in file order, the runs of spaces (user-defined "  ", ...) respelled "\u2581\u2581"...
# as ordinary pieces, control tokens as special added tokens and the other user-defined ones ("\n", tabs, HTML tags)
# as non-special added tokens. The GGUF of google/gemma-3-270m has no tokenizer.chat_template (it is the base
# model), so the chat fixtures render GEMMA3_CHAT_TEMPLATE, the template of the gemma-3 instruction-tuned models.
#
# Cross-check: the sentencepiece library itself (build_spm_reference) over the same vocabulary, its pieces merged in
# vocabulary order (score = -id; Gemma's normal pieces' scores already fall strictly with the id) and the runs of
# spaces as normal "\u2581"-pieces. It cannot parse control tokens from text, so it is compared with HF's
# encode_special_tokens mode (parse_special = false).

DEFAULT_GEMMA3 = os.path.join(REPO, "models", "gemma-3-270m-q4_k_m.gguf")

GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\\n'}}\n{%- endif -%}\n"
)


def read_gguf_spm_vocab(path):
    reader = GGUFReader(path)
    field = lambda key: reader.fields[key].contents()
    return {"tokens": field("tokenizer.ggml.tokens"), "token_type": field("tokenizer.ggml.token_type"),
            "scores": field("tokenizer.ggml.scores"), "unk": field("tokenizer.ggml.unknown_token_id"),
            "add_space_prefix": field("tokenizer.ggml.add_space_prefix")}


def build_spm_reference(path=DEFAULT_GEMMA3):
    """The sentencepiece library over the GGUF vocabulary (see above). Returns a SentencePieceProcessor."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb
    meta = read_gguf_spm_vocab(path)
    proto = pb.ModelProto()
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE
    proto.trainer_spec.byte_fallback = True
    proto.trainer_spec.unk_id = meta["unk"]
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = bool(meta["add_space_prefix"])
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    types = pb.ModelProto.SentencePiece.Type
    for i, (tok, ty) in enumerate(zip(meta["tokens"], meta["token_type"])):
        piece = proto.pieces.add()
        piece.score = -float(i)
        space_run = ty == 4 and tok and not tok.strip(" ")
        piece.piece = "\u2581" * len(tok) if space_run else tok
        # sentencepiece needs its unknown piece typed UNKNOWN; the GGUF types it CONTROL.
        piece.type = (types.UNKNOWN if i == meta["unk"] else types.NORMAL if space_run else
                      {1: types.NORMAL, 2: types.UNKNOWN, 3: types.CONTROL, 4: types.USER_DEFINED, 5: types.UNUSED,
                       6: types.BYTE}[ty])
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(proto.SerializeToString())
    return sp


if __name__ == "__main__":
    tok, _ = build_reference(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL)
    for s in ["Hello world! 123", "a  1", "<|im_start|>user\nhi<|im_end|>"]:
        print(json.dumps(s), tok.encode(s, add_special_tokens=False).ids)
