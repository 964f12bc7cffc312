// util/json.hpp: JSON for the evaluation data (JSONL files) and fixtures, parsed by nlohmann-json and copied into a
// small tree: objects, arrays, strings, numbers (kept as double and as text), true/false/null.
// Errors are hs::Error naming the source ("file.jsonl:12"), nlohmann's line/column and the byte offset.
// Code that needs the full nlohmann API (tokenizer.json) uses parse_nlohmann, which reports errors the same way.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace hs::json {

struct Value {
    enum Kind { NUL, BOOL, NUMBER, STRING, ARRAY, OBJECT } kind = NUL;
    bool b = false;
    double num = 0;
    std::string str;  // STRING: the text; NUMBER: the literal as written
    std::vector<Value> arr;
    std::map<std::string, Value> obj;

    bool has(const std::string& key) const { return kind == OBJECT && obj.count(key) != 0; }
    // Object member; throws hs::Error("<where>: missing key <key>") when absent or not an object.
    const Value& at(const std::string& key, std::string_view where = "json") const;
    const std::string& as_string(std::string_view where = "json") const;  // throws unless STRING
    std::vector<std::string> as_strings(std::string_view where = "json") const;  // array of strings
};

Value parse(std::string_view text, std::string_view where = "json");
nlohmann::json parse_nlohmann(std::string_view text, std::string_view where = "json");

// Every non-empty line of a JSONL file, parsed. Throws hs::Error naming file:line.
std::vector<Value> read_jsonl(const std::string& path);

// The body of a JSON string literal for s (no surrounding quotes), as nlohmann's dump writes it: " \ and control
// bytes escaped, UTF-8 passed through, bytes that are not UTF-8 replaced by U+FFFD.
std::string escape(std::string_view s);

}  // namespace hs::json
