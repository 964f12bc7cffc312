#!/usr/bin/env python3
"""Write tests/fixtures/tokenizer/smollm2_cases.jsonl: strings and the ids HF gives them, plus chat renderings.

Reference: option (b) of tools/hf_reference.py -- a HF `tokenizers.Tokenizer` built from the GGUF's vocabulary and
merges with SmolLM2-135M-Instruct's tokenizer.json configuration (Digits(individual_digits) + ByteLevel, BPE,
ByteLevel decoder, ids 0..16 special). transformers' own GGUF loader (option (a)) drops the Digits step, so it is only
recorded for comparison ("same_as_transformers_gguf"): it splits e.g. "a  1" into a,Ġ,Ġ,1 where SmolLM2's real
tokenizer gives a,ĠĠ,1, and disagrees with (b) on 9 of the 678 fixture strings (whitespace before digits, and runs of non-ASCII
numerals such as "١٢٣٤" or "½ ¼ ²" that have multi-character tokens which Digits keeps apart).
The smoke value "Hello world! 123" -> [19556, 905, 17, 216, 33, 34, 35] holds for both.

Records, one JSON object per line:
  {"kind": "encode", "text": s, "parse_special": bool, "ids": [...], "same_as_transformers_gguf": bool}
      parse_special=false is HF's encode_special_tokens=True (special-token text is tokenized as plain text).
  {"kind": "chat", "messages": [{"role","content"}...], "add_generation_prompt": bool, "rendered": s}
      rendered by transformers' apply_chat_template(tokenize=False) with the GGUF's tokenizer.chat_template.

A second file, pretokenizer_splits.jsonl, holds the words HF's own regex engine cuts each short string into for every
supported tokenizer.ggml.pre (smollm, gpt2, llama-bpe, qwen2), using the patterns of those models' tokenizer.json.

Strings are generated deterministically (random.Random(SEED)) plus hand-picked edge cases.
Usage: /tmp/refvenv/bin/python tools/gen_tokenizer_fixtures.py [model.gguf]

With --gemma3 [model.gguf] it writes tests/fixtures/tokenizer/gemma3_cases.jsonl instead, for Gemma 3's
SentencePiece tokenizer (reference and cross-check: the Gemma section of tools/hf_reference.py). The strings are the
ones above plus Gemma-specific ones (its control and user-defined tokens, long runs of spaces, tabs and newlines,
characters that need byte fallback, literal "\u2581"). Records as above, plus
  "same_as_spm": whether the sentencepiece library (parse_special=false semantics) gives the same ids,
and chat records with "ids" (apply_chat_template(tokenize=True)), or "error" when the template refuses the
conversation (roles that do not alternate); one {"kind": "template", "text": ...} record holds the template.
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_reference import (DEFAULT_GEMMA3, DEFAULT_MODEL, GEMMA3_CHAT_TEMPLATE, REPO, build_reference,  # noqa: E402
                          build_spm_reference, load_transformers_gguf)

SEED = 20240611
OUT = os.path.join(REPO, "tests", "fixtures", "tokenizer", "smollm2_cases.jsonl")
SPLITS_OUT = os.path.join(REPO, "tests", "fixtures", "tokenizer", "pretokenizer_splits.jsonl")
GEMMA3_OUT = os.path.join(REPO, "tests", "fixtures", "tokenizer", "gemma3_cases.jsonl")

# The regexes of HF tokenizer.json files for the other supported tokenizer.ggml.pre values, run through HF's own
# Split pre-tokenizer (Oniguruma) to record the words each pre-tokenizer cuts a string into.
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")

WORDS = ("the quick brown fox jumps over lazy dog attention head layer model token weight residual stream "
         "language learning neural network transformer embedding vocabulary probability gradient matrix "
         "I you we they it he she is are was were be been have has do does Hello World Python function "
         "return value string number data time year people way day man thing woman life child world school "
         "state family student group country problem hand part place case week company system program question "
         "government night point home water room mother area money story fact month lot right study book eye job "
         "word business issue side kind head house service friend father power hour game line end member law car "
         "city community name president team minute idea kid body information back parent face others level "
         "office door health person art war history party result change morning reason research girl guy moment "
         "air teacher force education").split()

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "Attention heads in transformer models often specialise: some track previous tokens, others copy names.",
    "In 1969, Neil Armstrong became the first person to walk on the Moon. It was July 20th.",
    "She said, \"I don't think we'll make it before 5 p.m.\" -- and she was right.",
    "Mr. O'Neil's dog isn't here; it's at the vet's. They've been waiting since 9:30am.",
    "Once upon a time, in a land far, far away, there lived a king who had three daughters.",
    "E = mc^2 is perhaps the most famous equation in physics (Einstein, 1905).",
    "Prices rose by 3.5% in Q3 2023, compared with 2.1% a year earlier; analysts expect $1,250,000 in revenue.",
    "What's the difference between a list and a tuple? Lists are mutable; tuples aren't.",
    "Dear Sir/Madam,\n\nI am writing to inquire about the position advertised on your website.\n\nBest regards,\nJohn",
]

CODE = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "import numpy as np\n\nx = np.arange(10, dtype=np.float32)\nprint(x.mean(), x.std())  # stats\n",
    "class Foo:\n\tdef __init__(self, a: int = 3) -> None:\n\t\tself.a = a\n\n\tdef __repr__(self):\n\t\treturn f\"Foo({self.a!r})\"\n",
    "#include <iostream>\n#include <vector>\n\nint main() {\n    std::vector<int> v{1, 2, 3};\n    for (auto& x : v) std::cout << x << '\\n';\n    return 0;\n}\n",
    "template <typename T>\nconstexpr T clamp(T x, T lo, T hi) noexcept { return x < lo ? lo : (x > hi ? hi : x); }",
    "auto it = std::find_if(begin(xs), end(xs), [&](const auto& p) { return p->id == 42 && !p->deleted; });",
    "{\"name\": \"headsweep\", \"version\": \"0.1.0\", \"layers\": [0, 1, 2], \"enabled\": true, \"ratio\": 0.75}",
    "{\n  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"vocab\": {\"<|endoftext|>\": 0}\n  }\n}",
    "SELECT id, name FROM users WHERE age >= 18 AND country = 'FR' ORDER BY name DESC LIMIT 10;",
    "<html><body><div class=\"main\">Hello &amp; welcome!</div></body></html>",
    "for i in range(10):\n    if i % 2 == 0:\n        continue\n    print(i ** 2)\n\n\n",
    "$ cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2\n",
    "fn main() { let v: Vec<u32> = (0..10).map(|x| x * x).collect(); println!(\"{:?}\", v); }",
    "    x += 1;\r\n    y -= 2;\r\n",
    "if (a != b || c <= d) { return -1; } else if (e >= f) { return +1; }",
]

UNICODE = [
    "café naïve résumé façade jalapeño Ångström", "Straße, Größe, übermäßig", "Ça va? Très bien, merci!",
    "日本語のテキストを分割します。", "中文分词测试：你好，世界！", "한국어 텍스트입니다", "Привет, мир! Как дела?",
    "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם", "हिन्दी पाठ", "ภาษาไทย", "Tiếng Việt có dấu",
    "👍🏽 👨‍👩‍👧‍👦 🇫🇷🇩🇪 ❤️ 🤖", "e\u0301 a\u0308 n\u0303 o\u0302\u0323", "zero\u200bwidth\u200cjoin\u200dtext\ufeff",
    "non\u00a0breaking\u00a0space", "ideographic\u3000space", "em\u2003space en\u2002space thin\u2009space",
    "½ ¼ ² ³ ⅓ Ⅻ ⅻ ① ٣ ٤ ५ ௫ 𝟘𝟙", "x² + y² = z²", "١٢٣٤ ٥٦٧", "₀₁₂ ⁰¹²", "\u0085next line\u2028line sep\u2029para",
    "mixed العربية and English", "\u202eRTL override\u202c", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙", "ﬁ ﬂ ligatures", "İstanbul ıi",
    "\U0001F600\U0001F601 smile", "ſ long s, K kelvin, Å angstrom", "\x00\x01\x1f control \x7f",
    "\u1c89\ua7cb new letters", "tab\u000bvt\u000cff", "\u180e mongolian vowel separator",
]

WHITESPACE = [
    " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", " \t \n ", "a ", " a", "  a", "a  ", "a  b",
    "a   b", "a\tb", "a\t\tb", "a\nb", "a\n\nb", "a \nb", "a\n b", "a \n b", "   leading", "trailing   ",
    "\n\n\nnewlines\n\n\n", "\t\tindented\n\t\t\tmore", "x\u00a0 y", "x \u00a0y", "end\n", "  1", " 1 2  3   4",
    "a  1", "x\n\n2", "\t7", "1\n", " \r\n\r\n ", "word\r\nword", "    ", "\n\t \n\t ",
]

CONTRACTIONS = [
    "it's", "they're", "we've", "I'm", "you'll", "he'd", "can't", "won't", "IT'S", "THEY'RE", "WE'LL", "I'M",
    "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "''s", "'S'", "rock'n'roll", "o'clock", "y'all'd've",
    "don''t", "'", "' s", "'ss", "the dog's bone", "James' book", "`backtick`", "\u2019s curly", "l'été",
]

CONTRACTIONS_CASED = ["IT'S", "We'Re", "I'M", "THEY'LL", "he'D", "it'S\n\n\nx", "a\r\n\r\n  b", "1234567 12",
                      "!!!\n\n", " !!\r\n", "x\n \n y", "\u017f 's 'ſ"]

PUNCT = [
    "!!!", "???", "...", "!?!?", "--->", "<==>", "===", "+++", "***", "###", "@@@", "$$$", "%%%", "^^^",
    "&&&", "|||", "~~~", "///", "\\\\\\", "(((", ")))", "[[[]]]", "{{}}", "<<>>", ":;:;", ",,,", "\"\"\"",
    "a!b", "a ! b", "hello,world", "(a)", " (a) ", "-1", "+1", "1-2", "#1", "$5", "5$", "…", "—", "«»", "¿¡",
    ". . .", "?!.", "!\n", ":)", ";-)", "<3", "->", "=>", "::", "...\n\n", "*/", "/*", "//", "#!", "@user",
]

SPECIAL_TEXT = [
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>", "<|endoftext|><|endoftext|>", " <|im_end|> ", "<<|im_start|>>", "<|im_start|",
    "im_start|>", "<|im_start|><|im_end|>", "text<|endoftext|>more text", "<filename>main.py\n<file_sep>",
    "<repo_name>headsweep<reponame>x", "<jupyter_code>print(1)<jupyter_output>1<empty_output>",
    "<gh_stars>100", "<issue_start>bug<issue_comment>fix<issue_closed>", "<jupyter_start><jupyter_text>hi",
    "<jupyter_script>", "< |im_start| >", "<|IM_START|>", "<|im_start|>system\nYou are helpful.<|im_end|>",
    "a<|im_end|>b<|im_start|>c",
]


def rand_ascii(rng, n):
    pool = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \t\n.,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`"
    return "".join(rng.choice(pool) for _ in range(n))


def rand_codepoint(rng):
    """A random code point that is valid in a Rust/Python str (no surrogates), weighted towards real scripts."""
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
              (0xE00, 0xE7F), (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x2070, 0x218F), (0x2460, 0x24FF),
              (0x3000, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF), (0x1F300, 0x1FAFF),
              (0x0, 0xD7FF), (0xE000, 0x10FFFF)]
    lo, hi = rng.choice(blocks)
    return chr(rng.randint(lo, hi))


def generated_strings(rng):
    out = []
    for _ in range(80):  # prose-like sentences
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 25))]
        s = " ".join(words)
        if rng.random() < 0.5:
            s = s.capitalize() + rng.choice([".", "!", "?", ",", ";", "...", ""])
        out.append(s)
    for _ in range(60):  # numbers and digit runs
        kind = rng.randrange(8)
        if kind == 0:
            out.append(str(rng.randint(0, 10 ** rng.randint(1, 20))))
        elif kind == 1:
            out.append(f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}")
        elif kind == 2:
            out.append(f"{rng.randint(1, 9999):,} items cost ${rng.randint(1, 10 ** 7):,}.{rng.randint(0, 99):02d}")
        elif kind == 3:
            out.append(f"{rng.randint(1900, 2099)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                       f"T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z")
        elif kind == 4:
            out.append(f"{rng.randint(1, 28)}/{rng.randint(1, 12)}/{rng.randint(0, 99):02d}")
        elif kind == 5:
            out.append(f"+{rng.randint(1, 99)} ({rng.randint(100, 999)}) {rng.randint(100, 999)}-{rng.randint(1000, 9999)}")
        elif kind == 6:
            out.append(f"v{rng.randint(0, 9)}.{rng.randint(0, 99)}.{rng.randint(0, 999)} 0x{rng.randint(0, 2 ** 32):X} {rng.random():e}")
        else:
            out.append(" ".join(str(rng.randint(0, 999)) for _ in range(rng.randint(2, 10))))
    for _ in range(60):  # random ASCII soup
        out.append(rand_ascii(rng, rng.randint(1, 60)))
    for _ in range(120):  # random Unicode soup
        out.append("".join(rand_codepoint(rng) for _ in range(rng.randint(1, 30))))
    for _ in range(50):  # whitespace mixes between words
        parts = []
        for _ in range(rng.randint(1, 8)):
            parts.append(rng.choice(WORDS + ["1", "42", "!", "é", "日本", "'s"]))
            parts.append("".join(rng.choice(" \t\n\r\u00a0\u3000") for _ in range(rng.randint(0, 5))))
        if rng.random() < 0.3:
            parts.insert(0, " " * rng.randint(1, 4))
        out.append("".join(parts))
    for _ in range(40):  # contractions and punctuation in context
        out.append(f"{rng.choice(WORDS)}{rng.choice(CONTRACTIONS)} {rng.choice(PUNCT)}{rng.choice(WORDS)}"
                   f"{rng.choice(PUNCT)} {rng.choice(CONTRACTIONS).upper()}")
    for _ in range(40):  # code-ish lines
        ident = "_".join(rng.choice(WORDS).lower() for _ in range(rng.randint(1, 3)))
        out.append(rng.choice([f"    {ident} = {ident}[{rng.randint(0, 99)}] * {rng.random():.3f}\n",
                               f"\tif ({ident} != nullptr) {{ {ident}->run({rng.randint(0, 9)}); }}\n",
                               f"\"{ident}\": [{rng.randint(0, 9)}, {rng.randint(10, 99)}, \"{rng.choice(WORDS)}\"],",
                               f"#define {ident.upper()} 0x{rng.randint(0, 65535):04x}",
                               f"// TODO({rng.choice(WORDS)}): fix {ident}()  \n"]))
    for _ in range(30):  # special tokens embedded at random places
        specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<filename>", "<empty_output>", "<|im_", "|>"]
        out.append("".join(rng.choice(specials + WORDS + [" ", "\n", "user\n"]) for _ in range(rng.randint(1, 12))))
    return out


def long_strings(rng):
    out = []
    prose = " ".join(PROSE)
    out.append((prose + "\n\n") * 4)
    out.append("\n".join(CODE) * 2)
    out.append(" ".join(rng.choice(WORDS) for _ in range(700)))
    out.append("".join(rand_codepoint(rng) for _ in range(1200)))
    out.append(" ".join(UNICODE) * 2)
    out.append("".join(str(rng.randint(0, 9)) for _ in range(3000)))
    out.append(" " * 1500 + "x" + "\n" * 500)
    return out


def chat_cases():
    conv = [{"role": "user", "content": "Hello! What is 2+2?"},
            {"role": "assistant", "content": "2 + 2 = 4."},
            {"role": "user", "content": "And times 3?"}]
    sys_conv = [{"role": "system", "content": "You are terse."}] + conv
    return [
        (conv[:1], False), (conv[:1], True), (conv, False), (conv, True),
        (sys_conv, False), (sys_conv, True), (sys_conv[:1], True),
        ([{"role": "user", "content": ""}], True),
        ([{"role": "user", "content": "Multi\nline\n\n  content with <|im_end|> inside"}], True),
        ([{"role": "assistant", "content": "I start."}, {"role": "system", "content": "late system"}], True),
        ([{"role": "user", "content": "日本語 😀"}, {"role": "assistant", "content": "ok"}], False),
    ]


def split_pretokenizers():
    from tokenizers import Regex, pre_tokenizers as pt
    split = lambda pattern: pt.Split(Regex(pattern), behavior="isolated", invert=False)
    return {
        "smollm": pt.Sequence([pt.Digits(individual_digits=True), split(GPT2_PATTERN)]),
        "gpt2": split(GPT2_PATTERN),
        "llama-bpe": split(LLAMA3_PATTERN),
        "qwen2": split(QWEN2_PATTERN),
    }


def write_splits(texts):
    """Words per pre-tokenizer for the (short) fixture strings: tests the matchers beyond SmolLM2's own."""
    with open(SPLITS_OUT, "w", encoding="utf-8") as fh:
        for pre, pretok in split_pretokenizers().items():
            for text in texts:
                if len(text) > 300:
                    continue
                words = [w for w, _ in pretok.pre_tokenize_str(text)]
                fh.write(json.dumps({"pre": pre, "text": text, "words": words}, ensure_ascii=True) + "\n")


# ---------------------------------------------------------------- Gemma 3

GEMMA3_SPECIAL_TEXT = [
    "<start_of_turn>user\nHello!<end_of_turn>\n<start_of_turn>model\n", "<bos>", "<bos><bos>hi", "<eos>", "<pad>",
    "<unk>", "<mask>", "<unused0>", "<unused6241>", "<unused99> x", "[multimodal]", "<start_of_image><end_of_image>",
    "<start_of_turn", "start_of_turn>", "< start_of_turn >", "<START_OF_TURN>", "a<end_of_turn>b<start_of_turn>c",
    "<table><tr><td>1</td></tr></table>", "<h1>Title</h1><b>bold</b> <i>it</i><code>x</code>", "<b", "</b >",
    "<div>\n\t<span>x</span>\n</div>", " <bos> ", "text<eos>more", "<start_of_turn><end_of_turn>",
    "<0x41>", "<0x0A> <0xFF>", "\u2581", "\u2581\u2581", "\u2581hello \u2581\u2581world", "a\u2581 b",
    # ">\u2581</" is Gemma's one piece with a "\u2581" after another character: it merges across a word boundary.
    "<td>1</td> </tr>", "x> </y", "a>  </b", "> </", ">> </</", "<p>a</p> <p>b</p>\n> </div>",
]


def gemma3_strings(rng):
    out = []
    for n in list(range(1, 34)) + [40, 47, 62, 63, 64, 65, 80, 100, 150]:  # runs past the longest run token (31)
        out += [" " * n, "x" + " " * n + "y", "\t" * n + "z", "\n" * n, " " * n + "\n"]
    for n in range(1, 10):
        out += ["a" + " \n" * n + "b", "\t \t" * n, "\n\n \t" * n + "end"]
    # Characters Gemma's vocabulary lacks (byte fallback): private use, rare CJK extension B/C, unassigned, controls.
    for _ in range(40):
        cps = [rng.choice([rng.randint(0xE000, 0xF8FF), rng.randint(0x20000, 0x2FFFF), rng.randint(0xF0000, 0x10FFFD),
                           rng.randint(0x0, 0x1F), rng.randint(0x30000, 0x3134F), rng.randint(0x1D400, 0x1D7FF)])
               for _ in range(rng.randint(1, 8))]
        out.append(rng.choice(["", "text ", " "]) + "".join(chr(c) for c in cps) + rng.choice(["", " end", "\n"]))
    specials = ["<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<unused7>", "<b>", "</td>", "\n", "\t",
                "  ", "[multimodal]", "<start_of_image>", "user\n", "model\n", "<start_of", "\u2581"]
    for _ in range(40):
        out.append("".join(rng.choice(specials + WORDS + [" ", "\n\n"]) for _ in range(rng.randint(1, 12))))
    for _ in range(30):  # leading and trailing whitespace around words
        ws = lambda: "".join(rng.choice(" \t\n") for _ in range(rng.randint(0, 4)))
        out.append(ws() + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))) + ws())
    return out


def gemma3_chat_cases():
    conv = [{"role": "user", "content": "Hello! What is 2+2?"},
            {"role": "assistant", "content": "2 + 2 = 4."},
            {"role": "user", "content": "And times 3?"}]
    sys_conv = [{"role": "system", "content": "You are terse."}] + conv
    return [
        (conv[:1], False), (conv[:1], True), (conv, False), (conv, True), (sys_conv, False), (sys_conv, True),
        (sys_conv[:1], True), (sys_conv[:2], True), ([{"role": "user", "content": ""}], True),
        ([{"role": "user", "content": "  \n padded \t\n"}, {"role": "assistant", "content": "\u3000ok\u00a0"}], True),
        ([{"role": "system", "content": "  keep my spaces  "}, {"role": "user", "content": "hi"}], True),
        ([{"role": "user", "content": "Multi\nline\n\n  content with <end_of_turn> inside"}], True),
        ([{"role": "user", "content": "日本語 😀"}, {"role": "assistant", "content": "ok"}], False),
        ([{"role": "assistant", "content": "I start."}], True),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], True),
        ([{"role": "user", "content": "a"}, {"role": "system", "content": "late"}], True),
    ]


def gemma3_main(model):
    hf = load_transformers_gguf(model)
    backend = hf.backend_tokenizer
    sp = build_spm_reference(model)
    rng = random.Random(SEED)
    texts = ([""] + PROSE + CODE + UNICODE + WHITESPACE + CONTRACTIONS + PUNCT + GEMMA3_SPECIAL_TEXT +
             generated_strings(rng) + gemma3_strings(rng) + long_strings(rng))
    records, n_differ = [], 0

    def encode(text, parse_special):
        backend.encode_special_tokens = not parse_special
        return backend.encode(text, add_special_tokens=False).ids

    for parse_special in (True, False):
        for text in texts:
            if not parse_special and "<" not in text and "[" not in text:
                continue  # without control-token text both modes are the same
            ids = encode(text, parse_special)
            plain = ids if not parse_special else encode(text, False)
            same = sp.encode(text) == plain
            n_differ += not same
            records.append({"kind": "encode", "text": text, "parse_special": parse_special, "ids": ids,
                            "same_as_spm": same})
    backend.encode_special_tokens = False
    n_chat = 0
    # The template text itself, so that the C++ test renders with the reference's template, not a copy of its own.
    records.append({"kind": "template", "text": GEMMA3_CHAT_TEMPLATE})
    for messages, gen in gemma3_chat_cases():
        record = {"kind": "chat", "messages": messages, "add_generation_prompt": gen}
        try:
            record["rendered"] = hf.apply_chat_template(messages, chat_template=GEMMA3_CHAT_TEMPLATE, tokenize=False,
                                                        add_generation_prompt=gen)
            ids = hf.apply_chat_template(messages, chat_template=GEMMA3_CHAT_TEMPLATE, tokenize=True,
                                         add_generation_prompt=gen)
            record["ids"] = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        except Exception as e:  # jinja2's raise_exception: TemplateError
            record["error"] = str(e)
        records.append(record)
        n_chat += 1
    with open(GEMMA3_OUT, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=True) + "\n")
    n_encode = len(records) - n_chat - 1
    print(f"wrote {GEMMA3_OUT}: {n_encode} encode cases ({len(set(r['text'] for r in records if 'text' in r))} "
          f"strings), {n_chat} chat cases; the sentencepiece library differs from HF on {n_differ} of {n_encode}")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--gemma3":
        gemma3_main(sys.argv[2] if len(sys.argv) > 2 else DEFAULT_GEMMA3)
        return
    model = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL
    ref, meta = build_reference(model)
    hf_a = load_transformers_gguf(model)
    rng = random.Random(SEED)
    texts = [""] + PROSE + CODE + UNICODE + WHITESPACE + CONTRACTIONS + PUNCT + generated_strings(rng) + long_strings(rng)
    records = []
    n_differ = 0
    for text in texts:
        ids = ref.encode(text, add_special_tokens=False).ids
        same = hf_a.encode(text, add_special_tokens=False) == ids
        n_differ += not same
        records.append({"kind": "encode", "text": text, "parse_special": True, "ids": ids,
                        "same_as_transformers_gguf": same})
    # parse_special=false: HF's encode_special_tokens mode tokenizes special-token text as plain text.
    ref.encode_special_tokens = True
    for text in SPECIAL_TEXT + [t for t in texts if "<" in t][:40]:
        records.append({"kind": "encode", "text": text, "parse_special": False,
                        "ids": ref.encode(text, add_special_tokens=False).ids, "same_as_transformers_gguf": None})
    ref.encode_special_tokens = False
    for text in SPECIAL_TEXT:
        ids = ref.encode(text, add_special_tokens=False).ids
        records.append({"kind": "encode", "text": text, "parse_special": True, "ids": ids,
                        "same_as_transformers_gguf": hf_a.encode(text, add_special_tokens=False) == ids})
    for messages, gen in chat_cases():
        rendered = hf_a.apply_chat_template(messages, chat_template=meta["chat_template"], tokenize=False,
                                            add_generation_prompt=gen)
        records.append({"kind": "chat", "messages": messages, "add_generation_prompt": gen, "rendered": rendered})
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    write_splits(texts + CONTRACTIONS_CASED)
    with open(OUT, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=True) + "\n")
    n_encode = sum(r["kind"] == "encode" for r in records)
    print(f"wrote {OUT}: {n_encode} encode cases, {len(records) - n_encode} chat cases; "
          f"transformers' GGUF loader (a) differs from the reference (b) on {n_differ} of {len(texts)} strings")


if __name__ == "__main__":
    main()
