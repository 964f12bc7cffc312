// tokenizer/pretokenizer.cpp: the pre-tokenizer regexes as small matchers over classified code points.
//
// Every matcher takes the code points of one piece [begin, end) and a position, and returns where the regex's match
// starting there ends, trying the alternatives in the regex's order (leftmost alternative wins, as in Oniguruma).
// The end of the piece is the end of the string for look-aheads such as \s+(?!\S): HF runs the regex on each piece
// that the previous pre-tokenizer step produced.
#include "tokenizer/pretokenizer.hpp"

#include <cstdint>

#include "tokenizer/unicode_tables.hpp"
#include "util/error.hpp"

namespace hs::pretok {
namespace {

using unicode::DIGIT;
using unicode::LETTER;
using unicode::NUMBER;
using unicode::SPACE;

struct CodePoint {
    uint32_t cp;
    uint32_t offset;  // byte offset of its first byte in the text
    uint8_t flags;
};

constexpr uint32_t kInvalid = 0xFFFFFFFF;  // stands for one byte that is not valid UTF-8 (class: punctuation-like)

// Decodes one UTF-8 sequence at text[i]; returns the code point and sets len. Overlong forms, surrogates and
// values above U+10FFFF are invalid: such a lead byte decodes alone as kInvalid with len 1.
uint32_t decode_utf8(std::string_view text, size_t i, size_t& len) {
    const auto byte = [&](size_t k) { return static_cast<uint8_t>(text[k]); };
    const uint8_t b0 = byte(i);
    len = 1;
    if (b0 < 0x80) return b0;
    size_t n = 0;
    uint32_t cp = 0, min = 0;
    if ((b0 & 0xE0) == 0xC0) { n = 2; cp = b0 & 0x1F; min = 0x80; }
    else if ((b0 & 0xF0) == 0xE0) { n = 3; cp = b0 & 0x0F; min = 0x800; }
    else if ((b0 & 0xF8) == 0xF0) { n = 4; cp = b0 & 0x07; min = 0x10000; }
    else return kInvalid;
    if (i + n > text.size()) return kInvalid;
    for (size_t k = 1; k < n; ++k) {
        if ((byte(i + k) & 0xC0) != 0x80) return kInvalid;
        cp = (cp << 6) | (byte(i + k) & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return kInvalid;
    len = n;
    return cp;
}

std::vector<CodePoint> decode_text(std::string_view text) {
    std::vector<CodePoint> cps;
    cps.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        size_t len = 0;
        const uint32_t cp = decode_utf8(text, i, len);
        const uint8_t flags = cp == kInvalid ? 0 : unicode::codepoint_flags(cp);
        cps.push_back({cp, static_cast<uint32_t>(i), flags});
        i += len;
    }
    return cps;
}

// Position-wise predicates over one piece; out-of-piece positions match nothing.
struct Piece {
    const std::vector<CodePoint>& cps;
    size_t end;

    bool has(size_t i, uint8_t flag) const { return i < end && (cps[i].flags & flag); }
    bool letter(size_t i) const { return has(i, LETTER); }
    bool number(size_t i) const { return has(i, NUMBER); }
    bool space(size_t i) const { return has(i, SPACE); }
    // [^\s\p{L}\p{N}]: punctuation, symbols, marks, controls that are not whitespace, invalid bytes.
    bool other(size_t i) const { return i < end && !(cps[i].flags & (LETTER | NUMBER | SPACE)); }
    bool is(size_t i, uint32_t c) const { return i < end && cps[i].cp == c; }
    bool newline(size_t i) const { return is(i, '\r') || is(i, '\n'); }
    uint32_t lower_ascii(size_t i) const {
        if (i >= end) return 0;
        const uint32_t c = cps[i].cp;
        return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    }
    template <typename Pred>
    size_t run(size_t i, Pred pred) const {
        while (pred(i)) ++i;
        return i;
    }
};

// 's|'t|'re|'ve|'m|'ll|'d at i (case-insensitive for the Llama 3 family); returns i when there is none.
size_t match_contraction(const Piece& p, size_t i, bool ignore_case) {
    if (!p.is(i, '\'')) return i;
    const auto at = [&](size_t k) { return ignore_case ? p.lower_ascii(k) : (k < p.end ? p.cps[k].cp : 0); };
    const uint32_t a = at(i + 1), b = at(i + 2);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return i;
}

// \s+(?!\S)|\s+ at a whitespace position: a whitespace run followed by a non-space gives its last character to
// the next word (so " word" keeps its space), unless the run is that single character.
size_t match_trailing_space(const Piece& p, size_t i) {
    const size_t j = p.run(i, [&](size_t k) { return p.space(k); });
    if (j == p.end || j - i == 1) return j;
    return j - 1;
}

// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
size_t match_gpt2(const Piece& p, size_t i) {
    if (size_t j = match_contraction(p, i, false); j != i) return j;
    const size_t s = p.is(i, ' ') ? i + 1 : i;  // the optional leading space
    if (p.letter(s)) return p.run(s, [&](size_t k) { return p.letter(k); });
    if (p.number(s)) return p.run(s, [&](size_t k) { return p.number(k); });
    if (p.other(s)) return p.run(s, [&](size_t k) { return p.other(k); });
    return match_trailing_space(p, i);
}

// Llama 3 / Qwen2: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
//                  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
size_t match_llama3(const Piece& p, size_t i, size_t max_digits) {
    if (size_t j = match_contraction(p, i, true); j != i) return j;
    const auto letters = [&](size_t k) { return p.letter(k); };
    if (p.letter(i)) return p.run(i, letters);
    if (!p.newline(i) && !p.number(i) && p.letter(i + 1)) return p.run(i + 1, letters);
    if (p.number(i)) {
        size_t j = i;
        while (j - i < max_digits && p.number(j)) ++j;
        return j;
    }
    const size_t s = p.is(i, ' ') ? i + 1 : i;
    if (p.other(s)) {
        const size_t j = p.run(s, [&](size_t k) { return p.other(k); });
        return p.run(j, [&](size_t k) { return p.newline(k); });
    }
    // \s*[\r\n]+: the whitespace run up to and including its last newline.
    const size_t j = p.run(i, [&](size_t k) { return p.space(k); });
    for (size_t k = j; k > i; --k)
        if (p.newline(k - 1)) return k;
    return match_trailing_space(p, i);
}

size_t match(Kind kind, const Piece& p, size_t i) {
    switch (kind) {
        case Kind::SMOLLM:
        case Kind::GPT2: return match_gpt2(p, i);
        case Kind::LLAMA3: return match_llama3(p, i, 3);
        case Kind::QWEN2: return match_llama3(p, i, 1);
    }
    return p.end;
}

void split_piece(Kind kind, std::string_view text, const std::vector<CodePoint>& cps, size_t begin, size_t end,
                 std::vector<std::string_view>& words) {
    const Piece piece{cps, end};
    const auto offset = [&](size_t k) { return k < cps.size() ? cps[k].offset : text.size(); };
    for (size_t i = begin; i < end;) {
        size_t j = match(kind, piece, i);
        if (j <= i) j = i + 1;  // cannot happen (every code point matches some alternative); never loop forever
        words.push_back(text.substr(offset(i), offset(j) - offset(i)));
        i = j;
    }
}

}  // namespace

Kind kind_from_name(std::string_view name, std::string_view source) {
    // llama.cpp gives SmolLM's pattern also to these names (same regex entry in llm_tokenizer_bpe).
    if (name == "smollm" || name == "starcoder" || name == "refact") return Kind::SMOLLM;
    // "gpt-2" is the name llama.cpp's converter writes (and the only GPT-2 spelling llama.cpp loads).
    if (name == "gpt-2" || name == "gpt2" || name == "default") return Kind::GPT2;
    if (name == "llama-bpe" || name == "llama3") return Kind::LLAMA3;
    if (name == "qwen2") return Kind::QWEN2;
    fail(source, ": unsupported tokenizer.ggml.pre \"", name,
         "\" (supported: smollm, starcoder, refact, gpt-2, gpt2, llama-bpe, qwen2)");
}

void split(Kind kind, std::string_view text, std::vector<std::string_view>& words) {
    const std::vector<CodePoint> cps = decode_text(text);
    if (kind != Kind::SMOLLM) {
        split_piece(kind, text, cps, 0, cps.size(), words);
        return;
    }
    // HF Digits(individual_digits=true): every numeric code point is a piece of its own; the runs between them
    // are pre-tokenized by the GPT-2 pattern independently (so "  1" gives "  " and "1", not " " and " 1").
    size_t run_begin = 0;
    for (size_t i = 0; i < cps.size(); ++i) {
        if (!(cps[i].flags & DIGIT)) continue;
        split_piece(kind, text, cps, run_begin, i, words);
        split_piece(kind, text, cps, i, i + 1, words);
        run_begin = i + 1;
    }
    split_piece(kind, text, cps, run_begin, cps.size(), words);
}

}  // namespace hs::pretok
