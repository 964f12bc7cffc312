// tests/tokenizer_test_util.hpp: helpers shared by the tokenizer tests -- reading the JSONL fixtures made by
// tools/gen_tokenizer_fixtures.py and printing strings and id lists readably in failure messages.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.hpp"
#include "util/json.hpp"

// One JSON value per non-empty line of a fixture file; a missing file fails the test.
inline std::vector<hs::json::Value> load_jsonl(const std::string& path) {
    std::ifstream in(path);
    if (!in) FAIL("fixture " << path << " is missing: run tools/gen_tokenizer_fixtures.py");
    std::vector<hs::json::Value> cases;
    std::string line;
    while (std::getline(in, line))
        if (!line.empty()) cases.push_back(hs::json::parse(line));
    return cases;
}

inline std::vector<int32_t> ids_of(const hs::json::Value& arr) {
    std::vector<int32_t> ids;
    for (const auto& v : arr.arr) ids.push_back(static_cast<int32_t>(v.num));
    return ids;
}

// Printable form of a string for failure messages: escapes control characters and non-ASCII bytes.
inline std::string escaped(const std::string& s, size_t max = 200) {
    std::ostringstream os;
    for (size_t i = 0; i < s.size() && i < max; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '\n') os << "\\n";
        else if (c == '\t') os << "\\t";
        else if (c < 0x20 || c >= 0x7F) os << "\\x" << std::hex << int(c) << std::dec;
        else os << s[i];
    }
    if (s.size() > max) os << "...(" << s.size() << " bytes)";
    return os.str();
}

inline std::string ids_str(const std::vector<int32_t>& ids, size_t from = 0, size_t n = 12) {
    std::ostringstream os;
    os << "[";
    for (size_t i = from; i < ids.size() && i < from + n; ++i) os << (i > from ? ", " : "") << ids[i];
    if (ids.size() > from + n) os << ", ...";
    os << "] (" << ids.size() << " ids)";
    return os.str();
}

inline size_t first_difference(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
    size_t i = 0;
    while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
    return i;
}

// Every "encode" case of a fixture against the tokenizer: a failed check per mismatch (at most 5, with the first
// differing ids), and the counts for the caller's own bounds.
struct EncodeCheck {
    size_t checked = 0, failed = 0, plain = 0;  // plain: cases with parse_special = false
};
inline EncodeCheck check_encode_cases(const hs::Tokenizer& tok, const std::vector<hs::json::Value>& cases) {
    EncodeCheck r;
    for (const auto& c : cases) {
        if (c.at("kind").str != "encode") continue;
        ++r.checked;
        const std::string& text = c.at("text").str;
        const bool parse_special = c.at("parse_special").b;
        r.plain += !parse_special;
        const std::vector<int32_t> expected = ids_of(c.at("ids"));
        const std::vector<int32_t> got = tok.encode(text, parse_special);
        if (got == expected) continue;
        ++r.failed;
        const size_t at = first_difference(got, expected);
        const size_t from = at > 3 ? at - 3 : 0;
        FAIL_CHECK("mismatch on \"" << escaped(text) << "\" (parse_special=" << parse_special
                                    << "): first difference at id index " << at << "\n  HF:   "
                                    << ids_str(expected, from) << "\n  ours: " << ids_str(got, from));
        if (r.failed >= 5) break;
    }
    return r;
}
