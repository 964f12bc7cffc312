#include "eval/text.hpp"

#include <algorithm>
#include <cctype>

namespace hs::eval {

namespace {

bool is_punct(unsigned char c) {  // Python string.punctuation: !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~
    return c < 0x80 && std::ispunct(c);
}
bool is_word(unsigned char c) { return c >= 0x80 || std::isalnum(c) || c == '_'; }
bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string lower(std::string_view s) {
    std::string out(s);
    for (size_t i = 0; i < out.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(out[i]);
        if (c < 0x80) {
            out[i] = char(std::tolower(c));
        } else if (c == 0xC3 && i + 1 < out.size()) {  // Latin-1 capitals U+00C0..U+00DE except U+00D7 (x)
            const unsigned char d = static_cast<unsigned char>(out[i + 1]);
            if (d >= 0x80 && d <= 0x9E && d != 0x97) out[i + 1] = char(d + 0x20);
            ++i;
        }
    }
    return out;
}

}  // namespace

std::string normalize_answer(std::string_view s) {
    // 1. lowercase, 2. remove punctuation
    std::string t;
    for (char ch : lower(s))
        if (!is_punct(static_cast<unsigned char>(ch))) t += ch;
    // 3. articles -> " " (whole word runs only)
    std::string u;
    for (size_t i = 0; i < t.size();) {
        if (is_word(static_cast<unsigned char>(t[i]))) {
            size_t j = i;
            while (j < t.size() && is_word(static_cast<unsigned char>(t[j]))) ++j;
            const std::string_view w(t.data() + i, j - i);
            if (w == "a" || w == "an" || w == "the") u += ' ';
            else u.append(w);
            i = j;
        } else {
            u += t[i++];
        }
    }
    // 4. whitespace
    std::string out;
    for (size_t i = 0; i < u.size();) {
        while (i < u.size() && is_space(static_cast<unsigned char>(u[i]))) ++i;
        size_t j = i;
        while (j < u.size() && !is_space(static_cast<unsigned char>(u[j]))) ++j;
        if (j > i) {
            if (!out.empty()) out += ' ';
            out.append(u, i, j - i);
        }
        i = j;
    }
    return out;
}

double best_subspan_em(std::string_view prediction, const std::vector<std::string>& answers) {
    const std::string p = normalize_answer(prediction);
    for (const std::string& a : answers)
        if (p.find(normalize_answer(a)) != std::string::npos) return 1.0;
    return 0.0;
}

double kv_substring_match(std::string_view prediction, std::string_view value) {
    std::string p(prediction), v(value);
    for (char& c : p) c = char(std::tolower(static_cast<unsigned char>(c)));
    for (char& c : v) c = char(std::tolower(static_cast<unsigned char>(c)));
    return p.find(v) != std::string::npos ? 1.0 : 0.0;
}

bool middle_truncate(std::vector<int32_t>& ids, int64_t max_tokens) {
    if (max_tokens <= 0 || int64_t(ids.size()) <= max_tokens) return false;
    const size_t half = size_t(max_tokens / 2);
    std::vector<int32_t> out(ids.begin(), ids.begin() + std::ptrdiff_t(half));
    out.insert(out.end(), ids.end() - std::ptrdiff_t(half), ids.end());
    ids = std::move(out);
    return true;
}

std::vector<std::string> split_csv_records(std::string_view text) {
    std::vector<std::string> out;
    std::string cur;
    bool quoted = false;
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '"') quoted = !quoted;
        if (!quoted && (c == '\n' || c == '\r')) {
            if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
            if (!cur.empty()) out.push_back(cur);
            cur.clear();
            continue;
        }
        cur += c;
    }
    if (!cur.empty()) out.push_back(cur);
    return out;
}

std::vector<std::string> parse_csv_record(std::string_view line) {
    std::vector<std::string> out;
    std::string cur;
    bool quoted = false;
    for (size_t i = 0; i < line.size(); ++i) {
        const char c = line[i];
        if (quoted) {
            if (c == '"') {
                if (i + 1 < line.size() && line[i + 1] == '"') {
                    cur += '"';
                    ++i;
                } else {
                    quoted = false;
                }
            } else {
                cur += c;
            }
        } else if (c == '"') {
            quoted = true;
        } else if (c == ',') {
            out.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    out.push_back(cur);
    return out;
}

std::string first_line(std::string_view s) {
    const size_t b = s.find_first_not_of(" \t\r\n");
    if (b == std::string_view::npos) return "";
    s = s.substr(b);
    s = s.substr(0, s.find('\n'));
    const size_t e = s.find_last_not_of(" \t\r");
    return std::string(s.substr(0, e + 1));
}

}  // namespace hs::eval
