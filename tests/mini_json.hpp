// tests/mini_json.hpp: just enough JSON to read the test fixtures (objects, arrays, strings with \u escapes
// including surrogate pairs, integers, true/false/null). Throws std::runtime_error on anything else.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mini_json {

struct Value {
    enum Kind { NUL, BOOL, NUMBER, STRING, ARRAY, OBJECT } kind = NUL;
    bool b = false;
    int64_t num = 0;
    std::string str;
    std::vector<Value> arr;
    std::map<std::string, Value> obj;

    const Value& operator[](const std::string& key) const {
        const auto it = obj.find(key);
        if (kind != OBJECT || it == obj.end()) throw std::runtime_error("json: missing key " + key);
        return it->second;
    }
    bool has(const std::string& key) const { return kind == OBJECT && obj.count(key); }
};

class Parser {
public:
    explicit Parser(std::string_view s) : s_(s) {}
    Value parse() {
        Value v = value();
        ws();
        if (i_ != s_.size()) err("trailing characters");
        return v;
    }

private:
    std::string_view s_;
    size_t i_ = 0;

    [[noreturn]] void err(const char* what) { throw std::runtime_error(std::string("json: ") + what + " at " + std::to_string(i_)); }
    void ws() { while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_; }
    char peek() { ws(); if (i_ >= s_.size()) err("unexpected end"); return s_[i_]; }
    void expect(char c) { if (peek() != c) err("unexpected character"); ++i_; }
    bool literal(std::string_view w) { if (s_.substr(i_, w.size()) == w) { i_ += w.size(); return true; } return false; }

    Value value() {
        Value v;
        const char c = peek();
        if (c == '{') {
            v.kind = Value::OBJECT; ++i_;
            if (peek() == '}') { ++i_; return v; }
            for (;;) {
                std::string key = string();
                expect(':');
                v.obj[key] = value();
                if (peek() == ',') { ++i_; continue; }
                expect('}');
                return v;
            }
        }
        if (c == '[') {
            v.kind = Value::ARRAY; ++i_;
            if (peek() == ']') { ++i_; return v; }
            for (;;) {
                v.arr.push_back(value());
                if (peek() == ',') { ++i_; continue; }
                expect(']');
                return v;
            }
        }
        if (c == '"') { v.kind = Value::STRING; v.str = string(); return v; }
        if (literal("true")) { v.kind = Value::BOOL; v.b = true; return v; }
        if (literal("false")) { v.kind = Value::BOOL; return v; }
        if (literal("null")) return v;
        v.kind = Value::NUMBER;
        size_t used = 0;
        v.num = std::stoll(std::string(s_.substr(i_, 24)), &used);
        i_ += used;
        return v;
    }

    uint32_t hex4() {
        if (i_ + 4 > s_.size()) err("short \\u escape");
        const uint32_t v = static_cast<uint32_t>(std::stoul(std::string(s_.substr(i_, 4)), nullptr, 16));
        i_ += 4;
        return v;
    }

    static void utf8(std::string& out, uint32_t cp) {
        if (cp < 0x80) out += static_cast<char>(cp);
        else if (cp < 0x800) { out += static_cast<char>(0xC0 | (cp >> 6)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
        else if (cp < 0x10000) { out += static_cast<char>(0xE0 | (cp >> 12)); out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
        else { out += static_cast<char>(0xF0 | (cp >> 18)); out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F)); out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
    }

    std::string string() {
        expect('"');
        std::string out;
        for (;;) {
            if (i_ >= s_.size()) err("unterminated string");
            const char c = s_[i_++];
            if (c == '"') return out;
            if (c != '\\') { out += c; continue; }
            const char e = s_[i_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t cp = hex4();
                    if (cp >= 0xD800 && cp < 0xDC00 && literal("\\u")) {  // surrogate pair
                        const uint32_t lo = hex4();
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    utf8(out, cp);
                    break;
                }
                default: err("bad escape");
            }
        }
    }
};

inline Value parse(std::string_view s) { return Parser(s).parse(); }

}  // namespace mini_json
