// tokenizer/unicode.cpp: code-point class lookup over the generated ranges.
#include <algorithm>

#include "tokenizer/unicode_tables.hpp"

namespace hs::unicode {

uint8_t codepoint_flags(uint32_t cp) {
    // ASCII is most of real text: answer it without searching.
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return LETTER;
        if (cp >= '0' && cp <= '9') return NUMBER | DIGIT;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return SPACE;
        return 0;
    }
    const CodepointRange* begin = kCodepointRanges;
    const CodepointRange* end = kCodepointRanges + kCodepointRangeCount;
    // First range whose last code point is >= cp; cp is in it when its first is <= cp.
    const CodepointRange* it =
        std::lower_bound(begin, end, cp, [](const CodepointRange& r, uint32_t v) { return r.last < v; });
    return (it != end && it->first <= cp) ? it->flags : 0;
}

}  // namespace hs::unicode
