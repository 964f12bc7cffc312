#include "util/json.hpp"

#include <cstdio>

#include <cstdlib>
#include <fstream>

#include "util/error.hpp"

namespace hs::json {

namespace {

class Parser {
public:
    Parser(std::string_view s, std::string_view where) : s_(s), where_(where) {}
    Value parse() {
        Value v = value();
        ws();
        if (i_ != s_.size()) err("trailing characters");
        return v;
    }

private:
    std::string_view s_, where_;
    size_t i_ = 0;

    [[noreturn]] void err(const char* what) { fail(where_, ": JSON: ", what, " at byte ", i_); }
    void ws() {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
    }
    char peek() {
        ws();
        if (i_ >= s_.size()) err("unexpected end");
        return s_[i_];
    }
    void expect(char c) {
        if (peek() != c) err("unexpected character");
        ++i_;
    }
    bool literal(std::string_view w) {
        if (s_.substr(i_, w.size()) == w) {
            i_ += w.size();
            return true;
        }
        return false;
    }
    Value value() {
        Value v;
        const char c = peek();
        if (c == '{') {
            v.kind = Value::OBJECT;
            ++i_;
            if (peek() == '}') return ++i_, v;
            for (;;) {
                if (peek() != '"') err("expected a key");
                std::string key = string();
                expect(':');
                v.obj[key] = value();
                if (peek() == ',') {
                    ++i_;
                    continue;
                }
                expect('}');
                return v;
            }
        }
        if (c == '[') {
            v.kind = Value::ARRAY;
            ++i_;
            if (peek() == ']') return ++i_, v;
            for (;;) {
                v.arr.push_back(value());
                if (peek() == ',') {
                    ++i_;
                    continue;
                }
                expect(']');
                return v;
            }
        }
        if (c == '"') {
            v.kind = Value::STRING;
            v.str = string();
            return v;
        }
        if (literal("true")) {
            v.kind = Value::BOOL;
            v.b = true;
            return v;
        }
        if (literal("false")) {
            v.kind = Value::BOOL;
            return v;
        }
        if (literal("null")) return v;
        const size_t start = i_;
        while (i_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[i_])) || s_[i_] == '-' ||
                                  s_[i_] == '+' || s_[i_] == '.' || s_[i_] == 'e' || s_[i_] == 'E'))
            ++i_;
        if (i_ == start) err("unexpected character");
        v.kind = Value::NUMBER;
        v.str = std::string(s_.substr(start, i_ - start));
        char* end = nullptr;
        v.num = std::strtod(v.str.c_str(), &end);
        if (!end || *end) err("bad number");
        return v;
    }
    uint32_t hex4() {
        if (i_ + 4 > s_.size()) err("short \\u escape");
        uint32_t v = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = s_[i_++];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
            else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
            else err("bad \\u escape");
        }
        return v;
    }
    static void utf8(std::string& out, uint32_t cp) {
        if (cp < 0x80) {
            out += char(cp);
        } else if (cp < 0x800) {
            out += char(0xC0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += char(0xE0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        } else {
            out += char(0xF0 | (cp >> 18));
            out += char(0x80 | ((cp >> 12) & 0x3F));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        }
    }
    std::string string() {
        expect('"');
        std::string out;
        for (;;) {
            if (i_ >= s_.size()) err("unterminated string");
            const char c = s_[i_++];
            if (c == '"') return out;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (i_ >= s_.size()) err("unterminated string");
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
                    if (cp >= 0xD800 && cp < 0xDC00 && literal("\\u")) {
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

Value parse(std::string_view text, std::string_view where) { return Parser(text, where).parse(); }

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
    std::string out;
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += char(c);
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(c));
            out += buf;
        } else {
            out += char(c);
        }
    }
    return out;
}

}  // namespace hs::json
