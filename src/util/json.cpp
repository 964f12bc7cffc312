// util/json.cpp: hs::json over nlohmann-json (Debian nlohmann-json3-dev): parsing, and string escaping through its
// serializer. The Value tree is a plain copy of nlohmann's, so that call sites keep their small API and errors keep
// naming the source ("file.jsonl:12").
#include "util/json.hpp"

#include <fstream>

#include <nlohmann/json.hpp>

#include "util/error.hpp"

namespace hs::json {

namespace {

Value convert(const nlohmann::json& j) {
    Value v;
    switch (j.type()) {
        case nlohmann::json::value_t::null:
        case nlohmann::json::value_t::discarded: break;
        case nlohmann::json::value_t::boolean:
            v.kind = Value::BOOL;
            v.b = j.get<bool>();
            break;
        case nlohmann::json::value_t::number_integer:
        case nlohmann::json::value_t::number_unsigned:
        case nlohmann::json::value_t::number_float:
            v.kind = Value::NUMBER;
            v.num = j.get<double>();
            v.str = j.dump();  // integers as written; floats in nlohmann's shortest round-trip form
            break;
        case nlohmann::json::value_t::string:
            v.kind = Value::STRING;
            v.str = j.get<std::string>();
            break;
        case nlohmann::json::value_t::array:
            v.kind = Value::ARRAY;
            v.arr.reserve(j.size());
            for (const auto& e : j) v.arr.push_back(convert(e));
            break;
        case nlohmann::json::value_t::object:
            v.kind = Value::OBJECT;
            for (const auto& [key, e] : j.items()) v.obj[key] = convert(e);
            break;
        case nlohmann::json::value_t::binary: fail("JSON: binary values are not JSON");
    }
    return v;
}

}  // namespace

const Value& Value::at(const std::string& key, std::string_view where) const {
    check(kind == OBJECT, where, ": expected a JSON object with key \"", key, "\"");
    const auto it = obj.find(key);
    check(it != obj.end(), where, ": missing key \"", key, "\"");
    return it->second;
}

const std::string& Value::as_string(std::string_view where) const {
    check(kind == STRING, where, ": expected a string");
    return str;
}

std::vector<std::string> Value::as_strings(std::string_view where) const {
    check(kind == ARRAY, where, ": expected an array of strings");
    std::vector<std::string> out;
    for (const Value& v : arr) out.push_back(v.as_string(where));
    return out;
}

nlohmann::json parse_nlohmann(std::string_view text, std::string_view where) {
    try {
        return nlohmann::json::parse(text.begin(), text.end());
    } catch (const nlohmann::json::parse_error& e) {
        // e.what() reads "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..."
        fail(where, ": JSON: ", e.what(), " (at byte ", e.byte, ")");
    }
}

Value parse(std::string_view text, std::string_view where) { return convert(parse_nlohmann(text, where)); }

std::vector<Value> read_jsonl(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    check(bool(in), path, ": cannot open");
    std::vector<Value> out;
    std::string line;
    int64_t n = 0;
    while (std::getline(in, line)) {
        ++n;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        out.push_back(parse(line, path + ":" + std::to_string(n)));
    }
    return out;
}

std::string escape(std::string_view s) {
    // nlohmann's serializer escapes " \ and control bytes (\n \t \r \b \f, others \u00XX) and passes UTF-8 through;
    // bytes that are not UTF-8 become U+FFFD rather than an exception (paths and labels are written, not checked).
    const std::string quoted =
        nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return quoted.substr(1, quoted.size() - 2);
}

}  // namespace hs::json
