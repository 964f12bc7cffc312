// tests/tokenizer_test_util.hpp: helpers shared by the tokenizer tests -- reading the JSONL fixtures made by
// tools/gen_tokenizer_fixtures.py and printing strings and id lists readably in failure messages.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

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

