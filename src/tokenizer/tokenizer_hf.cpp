// tokenizer/tokenizer_hf.cpp: read a Hugging Face tokenizer folder (tokenizer.json, tokenizer_config.json) into an
// hf::Spec, and the pipeline steps (PCRE2 Split regexes, normalizers) that tokenizer.cpp runs.
//
// Supported (anything else is refused with the file and the JSON path of the field):
//   model        BPE: vocab, merges ("a b" strings or [a, b] pairs), unk_token, byte_fallback, fuse_unk,
//                ignore_merges; dropout null/0, no continuing_subword_prefix / end_of_word_suffix.
//   normalizer   null, Replace (String or Regex pattern), Prepend, NFC/NFD/NFKC/NFKD (ICU), Sequence of these.
//   pre_tokenizer null, Split (Regex or String; Removed/Isolated/MergedWithPrevious/MergedWithNext/Contiguous;
//                invert), ByteLevel (add_prefix_space, use_regex; last step), Digits (individual_digits),
//                Metaspace (replacement, prepend_scheme, split), Sequence of these.
//   post_processor null, TemplateProcessing (a SpecialToken before $A -> add BOS), ByteLevel, Sequence.
//   decoder      null, ByteLevel, Replace (String), ByteFallback, Fuse, Strip, Metaspace, Sequence.
//   added_tokens id, content, special, lstrip, rstrip, single_word, normalized.
// tokenizer_config.json (optional): chat_template (string, or [{name, template}] taking "default"), add_bos_token,
// bos_token / eos_token / pad_token (a string or {"content": ...}); chat_template.jinja next to it as transformers
// 5 writes it.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "tokenizer/hf_pipeline.hpp"
#include "tokenizer/tokenizer.hpp"
#include "util/error.hpp"
#include "util/json.hpp"

namespace hs {
namespace hf {

// ---------------------------------------------------------------- PCRE2

Regex::Regex(const std::string& pattern, const std::string& where) : pattern_(pattern) {
    int err = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &offset, nullptr);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        fail(where, ": regex /", pattern, "/ does not compile (PCRE2: ", reinterpret_cast<const char*>(msg),
             " at offset ", offset, ")");
    }
    code_ = code;
    jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;  // interpreted when JIT is not available
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
    std::vector<std::pair<size_t, size_t>> out;
    auto* code = static_cast<pcre2_code*>(code_);
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t pos = 0;
    while (pos <= text.size()) {
        int rc = jit_ ? pcre2_jit_match(code, subject, text.size(), pos, 0, md, nullptr)
                      : pcre2_match(code, subject, text.size(), pos, 0, md, nullptr);
        // The JIT's default stack is small; the interpreter keeps its backtracking frames on the heap.
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_JIT, md, nullptr);
        if (rc < 0) {
            if (rc == PCRE2_ERROR_NOMATCH) break;
            pcre2_match_data_free(md);
            fail("regex /", pattern_, "/: PCRE2 match error ", rc);
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const size_t b = ov[0], e = ov[1];
        if (e > b) {
            out.emplace_back(b, e);
            pos = e;
        } else {  // an empty match: move on by one character (a UTF-8 sequence, or one stray byte)
            pos = b + 1;
            while (pos < text.size() && (static_cast<uint8_t>(text[pos]) & 0xC0) == 0x80) ++pos;
        }
    }
    pcre2_match_data_free(md);
    return out;
}

// ---------------------------------------------------------------- pipeline

namespace {

void replace_all(std::string& s, std::string_view from, std::string_view to) {
    if (from.empty()) return;
    std::string out;
    size_t i = 0;
    for (size_t j; (j = s.find(from, i)) != std::string::npos; i = j + from.size()) {
        out.append(s, i, j - i);
        out += to;
    }
    out.append(s, i);
    s = std::move(out);
}

// HF Split: cut `piece` at the pattern's matches (or, inverted, at what lies between them) per `behavior`.
void split_piece(const PreStep& st, const std::string& piece, std::vector<std::string>& out) {
    std::vector<std::pair<size_t, size_t>> matches;
    if (st.regex) {
        matches = st.regex->find_all(piece);
    } else if (!st.literal.empty()) {
        for (size_t i = 0; (i = piece.find(st.literal, i)) != std::string::npos; i += st.literal.size())
            matches.emplace_back(i, i + st.literal.size());
    }
    // The piece as alternating stretches, each marked as a delimiter (matched, unless inverted) or not.
    std::vector<std::pair<std::string_view, bool>> parts;
    const std::string_view p = piece;
    size_t at = 0;
    for (const auto& [b, e] : matches) {
        if (b > at) parts.emplace_back(p.substr(at, b - at), st.invert);
        parts.emplace_back(p.substr(b, e - b), !st.invert);
        at = e;
    }
    if (at < p.size()) parts.emplace_back(p.substr(at), st.invert);

    std::vector<std::string> pieces;
    bool prev_delim = false, pending_next = false;
    for (size_t k = 0; k < parts.size(); ++k) {
        const auto [text, delim] = parts[k];
        switch (st.behavior) {
            case SplitBehavior::REMOVED:
                if (!delim) pieces.emplace_back(text);
                break;
            case SplitBehavior::ISOLATED: pieces.emplace_back(text); break;
            case SplitBehavior::MERGED_WITH_PREVIOUS:
                if (delim && !pieces.empty() && !prev_delim) pieces.back() += text;
                else pieces.emplace_back(text);
                break;
            case SplitBehavior::MERGED_WITH_NEXT:
                // As HF: a delimiter joins the piece after it unless that piece is a delimiter too.
                if (pending_next) pieces.back() += text;
                else pieces.emplace_back(text);
                pending_next = delim && k + 1 < parts.size() && !parts[k + 1].second;
                break;
            case SplitBehavior::CONTIGUOUS:
                if (delim && prev_delim && !pieces.empty()) pieces.back() += text;
                else pieces.emplace_back(text);
                break;
        }
        prev_delim = delim;
    }
    for (auto& s : pieces)
        if (!s.empty()) out.push_back(std::move(s));
}

}  // namespace

// The Unicode normal form `form` ("NFC", "NFD", "NFKC", "NFKD") of `text` through ICU. Bytes that are not UTF-8
// are kept as they are, the valid stretches between them normalized.
static std::string unicode_normalize(std::string_view text, const std::string& form) {
    UErrorCode err = U_ZERO_ERROR;
    const UNormalizer2* norm = form == "NFC"    ? unorm2_getNFCInstance(&err)
                               : form == "NFD"  ? unorm2_getNFDInstance(&err)
                               : form == "NFKC" ? unorm2_getNFKCInstance(&err)
                                                : unorm2_getNFKDInstance(&err);
    check(U_SUCCESS(err), "ICU: no ", form, " normalizer (", u_errorName(err), ")");
    const auto run = [&](std::string_view utf8, std::string& out) {
        if (utf8.empty()) return;
        UErrorCode e = U_ZERO_ERROR;
        int32_t n16 = 0;
        u_strFromUTF8(nullptr, 0, &n16, utf8.data(), int32_t(utf8.size()), &e);
        std::u16string src(size_t(n16), u'\0');
        e = U_ZERO_ERROR;
        u_strFromUTF8(src.data(), n16, nullptr, utf8.data(), int32_t(utf8.size()), &e);
        e = U_ZERO_ERROR;
        const int32_t nn = unorm2_normalize(norm, src.data(), n16, nullptr, 0, &e);
        std::u16string dst(size_t(nn), u'\0');
        e = U_ZERO_ERROR;
        unorm2_normalize(norm, src.data(), n16, dst.data(), nn, &e);
        int32_t n8 = 0;
        e = U_ZERO_ERROR;
        u_strToUTF8(nullptr, 0, &n8, dst.data(), nn, &e);
        const size_t at = out.size();
        out.resize(at + size_t(n8));
        e = U_ZERO_ERROR;
        u_strToUTF8(out.data() + at, n8, nullptr, dst.data(), nn, &e);
        check(U_SUCCESS(e), "ICU: ", form, " normalization failed (", u_errorName(e), ")");
    };
    // Split at bytes that are not UTF-8 (ICU would replace them).
    std::string out;
    size_t start = 0;
    for (size_t i = 0; i < text.size();) {
        const auto b = static_cast<uint8_t>(text[i]);
        const size_t n = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
        bool ok = n > 0 && i + n <= text.size();
        for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<uint8_t>(text[i + k]) & 0xC0) == 0x80;
        if (ok && n > 1) {  // overlong forms, surrogates and values above U+10FFFF are not UTF-8 either
            uint32_t cp = b & (0x7F >> n);
            for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(text[i + k]) & 0x3F);
            static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
            ok = cp >= kMin[n] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
        }
        if (ok) {
            i += n;
            continue;
        }
        run(text.substr(start, i - start), out);
        out += text[i];
        start = ++i;
    }
    run(text.substr(start), out);
    return out;
}

std::string Pipeline::normalize(std::string_view text) const {
    std::string s(text);
    for (const NormStep& st : normalizer) {
        if (st.kind == NormStep::UNICODE) {
            s = unicode_normalize(s, st.form);
        } else if (st.kind == NormStep::PREPEND) {
            if (!s.empty()) s = st.content + s;
        } else if (st.regex) {
            std::string out;
            size_t at = 0;
            for (const auto& [b, e] : st.regex->find_all(s)) {
                out.append(s, at, b - at);
                out += st.content;
                at = e;
            }
            out.append(s, at);
            s = std::move(out);
        } else {
            replace_all(s, st.literal, st.content);
        }
    }
    return s;
}

void Pipeline::pre_tokenize(std::string_view text, bool first, std::vector<std::string>& words) const {
    if (text.empty()) return;
    if (fast) {
        std::vector<std::string_view> views;
        pretok::split(*fast, text, views);
        for (auto v : views) words.emplace_back(v);
        return;
    }
    std::vector<std::string> pieces{std::string(text)}, next;
    for (const PreStep& st : pre) {
        next.clear();
        for (std::string& piece : pieces) {
            switch (st.kind) {
                case PreStep::SPLIT: split_piece(st, piece, next); break;
                case PreStep::BYTE_LEVEL:
                    if (st.add_prefix_space && !piece.starts_with(' ')) piece.insert(0, 1, ' ');
                    if (st.regex) split_piece(st, piece, next);
                    else next.push_back(std::move(piece));
                    break;
                case PreStep::METASPACE: {
                    replace_all(piece, " ", st.replacement);
                    const bool prepend = st.prepend == PreStep::ALWAYS || (st.prepend == PreStep::FIRST && first);
                    if (prepend && !piece.starts_with(st.replacement)) piece.insert(0, st.replacement);
                    if (!st.split) {
                        next.push_back(std::move(piece));
                        break;
                    }
                    PreStep cut;
                    cut.literal = st.replacement;
                    cut.behavior = SplitBehavior::MERGED_WITH_NEXT;
                    split_piece(cut, piece, next);
                    break;
                }
            }
        }
        // HF's "first" is about the input's first piece only.
        first = false;
        pieces.swap(next);
    }
    for (auto& p : pieces) words.push_back(std::move(p));
}

// ---------------------------------------------------------------- reading tokenizer.json

namespace {

using nlohmann::json;

// The GPT-2 pattern that ByteLevel(use_regex = true) runs.
constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|)"
    R"(\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A JSON value with its path in the file, for errors that say where ("<dir>/tokenizer.json: model.merges[3]: ...").
struct Node {
    const json& j;
    std::string path;
    const std::string& file;

    [[noreturn]] void bad(const std::string& what) const {
        fail(file, ": ", path.empty() ? "(top level)" : path, ": ", what);
    }
    bool has(const char* key) const { return j.is_object() && j.contains(key) && !j.at(key).is_null(); }
    Node at(const char* key) const {
        if (!j.is_object()) bad("expected an object");
        if (!j.contains(key)) fail(file, ": missing field ", path.empty() ? "" : path + ".", key);
        return {j.at(key), path.empty() ? key : path + "." + key, file};
    }
    Node operator[](size_t i) const { return {j.at(i), path + "[" + std::to_string(i) + "]", file}; }
    std::string str() const {
        if (!j.is_string()) bad("expected a string");
        return j.get<std::string>();
    }
    bool boolean() const {
        if (!j.is_boolean()) bad("expected true or false");
        return j.get<bool>();
    }
    int64_t integer() const {
        if (!j.is_number_integer()) bad("expected an integer");
        return j.get<int64_t>();
    }
    size_t size() const {
        if (!j.is_array()) bad("expected an array");
        return j.size();
    }
    std::string get_str(const char* key, const std::string& dflt) const { return has(key) ? at(key).str() : dflt; }
    bool get_bool(const char* key, bool dflt) const { return has(key) ? at(key).boolean() : dflt; }
    std::string type() const { return at("type").str(); }
};

json read_json(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    check(bool(in), path, ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    return hs::json::parse_nlohmann(ss.str(), path);
}

[[noreturn]] void unknown_type(const Node& n, const std::string& type, const char* supported) {
    fail(n.file, ": ", n.path, ".type: unsupported ", n.path, " type \"", type, "\" (supported: ", supported, ")");
}

// {"Regex": p} or {"String": s}: a compiled regex, or the literal (regex null).
std::pair<std::shared_ptr<const Regex>, std::string> read_pattern(const Node& n) {
    if (n.has("Regex")) {
        const Node r = n.at("Regex");
        return {std::make_shared<const Regex>(r.str(), n.file + ": " + r.path), {}};
    }
    if (n.has("String")) return {nullptr, n.at("String").str()};
    n.bad("expected {\"Regex\": ...} or {\"String\": ...}");
}

void read_normalizer(const Node& n, Pipeline& p) {
    if (n.j.is_null()) return;
    const std::string type = n.type();
    if (type == "Sequence") {
        const Node list = n.at("normalizers");
        for (size_t i = 0; i < list.size(); ++i) read_normalizer(list[i], p);
    } else if (type == "Replace") {
        NormStep st;
        std::tie(st.regex, st.literal) = read_pattern(n.at("pattern"));
        st.content = n.at("content").str();
        p.normalizer.push_back(std::move(st));
    } else if (type == "Prepend") {
        NormStep st;
        st.kind = NormStep::PREPEND;
        st.content = n.at("prepend").str();
        p.normalizer.push_back(std::move(st));
    } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
        NormStep st;
        st.kind = NormStep::UNICODE;
        st.form = type;
        p.normalizer.push_back(std::move(st));
    } else {
        unknown_type(n, type, "Replace, Prepend, NFC, NFD, NFKC, NFKD, Sequence");
    }
}

SplitBehavior read_behavior(const Node& n) {
    const std::string b = n.str();
    if (b == "Removed") return SplitBehavior::REMOVED;
    if (b == "Isolated") return SplitBehavior::ISOLATED;
    if (b == "MergedWithPrevious") return SplitBehavior::MERGED_WITH_PREVIOUS;
    if (b == "MergedWithNext") return SplitBehavior::MERGED_WITH_NEXT;
    if (b == "Contiguous") return SplitBehavior::CONTIGUOUS;
    n.bad("unknown split behavior \"" + b + "\" (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)");
}

void read_pre_tokenizer(const Node& n, Pipeline& p) {
    if (n.j.is_null()) return;
    const std::string type = n.type();
    if (type == "Sequence") {
        const Node list = n.at("pretokenizers");
        for (size_t i = 0; i < list.size(); ++i) read_pre_tokenizer(list[i], p);
        return;
    }
    // The bytes-as-unicode mapping is applied to the words at the end, so ByteLevel must be the last step.
    check(!p.byte_level, n.file, ": ", n.path, ": a ", type, " step after ByteLevel is not supported");
    PreStep st;
    if (type == "Split") {
        std::tie(st.regex, st.literal) = read_pattern(n.at("pattern"));
        st.behavior = read_behavior(n.at("behavior"));
        st.invert = n.get_bool("invert", false);
    } else if (type == "ByteLevel") {
        st.kind = PreStep::BYTE_LEVEL;
        st.add_prefix_space = n.get_bool("add_prefix_space", true);
        if (n.get_bool("use_regex", true))
            st.regex = std::make_shared<const Regex>(kGpt2Pattern, n.file + ": " + n.path);
        p.byte_level = true;
    } else if (type == "Digits") {
        // HF Digits: char::is_numeric (\p{N}) pieces isolated, one by one or in runs.
        const bool individual = n.get_bool("individual_digits", false);
        st.regex = std::make_shared<const Regex>(individual ? R"(\p{N})" : R"(\p{N}+)", n.file + ": " + n.path);
        st.behavior = SplitBehavior::ISOLATED;
    } else if (type == "Metaspace") {
        st.kind = PreStep::METASPACE;
        st.replacement = n.get_str("replacement", "\xE2\x96\x81");
        const std::string scheme =
            n.get_str("prepend_scheme", n.get_bool("add_prefix_space", true) ? "always" : "never");
        if (scheme == "always") st.prepend = PreStep::ALWAYS;
        else if (scheme == "first") st.prepend = PreStep::FIRST;
        else if (scheme == "never") st.prepend = PreStep::NEVER;
        else n.at("prepend_scheme").bad("unknown prepend_scheme \"" + scheme + "\" (always, first, never)");
        st.split = n.get_bool("split", true);
    } else {
        unknown_type(n, type, "Split, ByteLevel, Digits, Metaspace, Sequence");
    }
    p.pre.push_back(std::move(st));
}

// The hand-written matcher that equals the whole pre-tokenizer, if any (see the parity tests in [hf_tokenizer]).
std::optional<pretok::Kind> fast_path(const Pipeline& p) {
    const auto& s = p.pre;
    const auto byte_level_last = [&](bool with_regex) {
        return !s.empty() && s.back().kind == PreStep::BYTE_LEVEL && !s.back().add_prefix_space &&
               bool(s.back().regex) == with_regex;
    };
    const auto split_is = [&](const PreStep& st, std::string_view pattern) {
        return st.kind == PreStep::SPLIT && st.regex && st.regex->pattern() == pattern && !st.invert &&
               st.behavior == SplitBehavior::ISOLATED;
    };
    if (s.size() == 1 && byte_level_last(true)) return pretok::Kind::GPT2;
    if (s.size() == 2 && byte_level_last(true) && split_is(s[0], R"(\p{N})")) return pretok::Kind::SMOLLM;
    if (s.size() == 2 && byte_level_last(false) && split_is(s[0], kLlama3Pattern)) return pretok::Kind::LLAMA3;
    if (s.size() == 2 && byte_level_last(false) && split_is(s[0], kQwen2Pattern)) return pretok::Kind::QWEN2;
    return std::nullopt;
}

void read_decoder(const Node& n, Pipeline& p) {
    if (n.j.is_null()) return;
    const std::string type = n.type();
    DecodeStep st;
    if (type == "Sequence") {
        const Node list = n.at("decoders");
        for (size_t i = 0; i < list.size(); ++i) read_decoder(list[i], p);
        return;
    } else if (type == "ByteLevel") {
        st.kind = DecodeStep::BYTE_LEVEL;
    } else if (type == "Replace") {
        st.kind = DecodeStep::REPLACE;
        const auto [regex, literal] = read_pattern(n.at("pattern"));
        check(!regex, n.file, ": ", n.path, ".pattern: a Regex pattern in a Replace decoder is not supported");
        st.literal = literal;
        st.content = n.at("content").str();
    } else if (type == "ByteFallback") {
        st.kind = DecodeStep::BYTE_FALLBACK;
    } else if (type == "Fuse") {
        st.kind = DecodeStep::FUSE;
    } else if (type == "Strip") {
        st.kind = DecodeStep::STRIP;
        st.content = n.at("content").str();
        st.start = static_cast<size_t>(n.at("start").integer());
        check(n.at("stop").integer() == 0, n.file, ": ", n.path,
              ".stop: a Strip decoder with stop != 0 is not supported");
    } else if (type == "Metaspace") {
        st.kind = DecodeStep::METASPACE;
        st.literal = n.get_str("replacement", "\xE2\x96\x81");
        const bool prefix = n.get_bool("add_prefix_space", true);
        st.strip_first = n.get_str("prepend_scheme", prefix ? "always" : "never") != "never";
    } else {
        unknown_type(n, type, "ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence");
    }
    p.decoder.push_back(std::move(st));
}

// TemplateProcessing that puts a special token before $A means "add BOS"; its id is that token's.
void read_post_processor(const Node& n, Spec& spec) {
    if (n.j.is_null()) return;
    const std::string type = n.type();
    if (type == "Sequence") {
        const Node list = n.at("processors");
        for (size_t i = 0; i < list.size(); ++i) read_post_processor(list[i], spec);
    } else if (type == "TemplateProcessing") {
        const Node single = n.at("single");
        for (size_t i = 0; i < single.size(); ++i) {
            const Node item = single[i];
            if (item.has("Sequence")) break;
            const Node special = item.at("SpecialToken");
            const std::string name = special.at("id").str();
            const Node ids = n.at("special_tokens").at(name.c_str()).at("ids");
            check(ids.size() == 1, n.file, ": ", ids.path, ": a special token of ", ids.size(),
                  " ids is not supported");
            check(i == 0, n.file, ": ", single.path, ": more than one token before $A is not supported");
            spec.add_bos = true;
            spec.bos_id = static_cast<int32_t>(ids[0].integer());
        }
        for (size_t i = 0; i < single.size(); ++i)
            if (single[i].has("Sequence") && i + 1 < single.size())
                fail(n.file, ": ", single.path, ": tokens after $A are not supported");
    } else if (type == "ByteLevel") {
        // offsets only
    } else {
        unknown_type(n, type, "TemplateProcessing, ByteLevel, Sequence");
    }
}

// tokenizer_config.json's token fields: "text" or {"content": "text", ...}.
std::string token_name(const Node& n) { return n.j.is_string() ? n.str() : n.at("content").str(); }

}  // namespace

Spec read_folder(const std::string& dir) {
    namespace fs = std::filesystem;
    Spec spec;
    const std::string file = (fs::path(dir) / "tokenizer.json").string();
    spec.source = file;
    check(fs::exists(file), file, ": missing (a Hugging Face tokenizer folder needs tokenizer.json)");
    const json doc = read_json(file);
    const Node root{doc, "", file};

    // model
    const Node model = root.at("model");
    const std::string mtype = model.get_str("type", "BPE");
    if (mtype != "BPE") unknown_type(model, mtype, "BPE");
    if (model.has("dropout")) {
        const Node d = model.at("dropout");
        check(d.j.is_number() && d.j.get<double>() == 0.0, file, ": model.dropout: BPE dropout is not supported");
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
        check(model.get_str(key, "").empty(), file, ": model.", key, ": not supported (must be null or \"\")");
    spec.byte_fallback = model.get_bool("byte_fallback", false);
    spec.fuse_unk = model.get_bool("fuse_unk", false);
    spec.ignore_merges = model.get_bool("ignore_merges", false);

    const Node vocab = model.at("vocab");
    if (!vocab.j.is_object()) vocab.bad("expected an object of token -> id");
    std::unordered_map<std::string, int32_t> ids;
    const auto place = [&](const std::string& text, int64_t id, const std::string& path) {
        check(id >= 0 && id < (int64_t(1) << 31) - 1, file, ": ", path, ": token id ", id, " out of range");
        if (size_t(id) >= spec.tokens.size()) {
            spec.tokens.resize(id + 1);
            spec.types.resize(id + 1, TokenType::UNUSED);
        }
        spec.tokens[id] = text;
        ids[text] = int32_t(id);
    };
    for (const auto& [text, id] : vocab.j.items()) {
        if (!id.is_number_integer()) Node{id, vocab.path + "[\"" + text + "\"]", file}.integer();  // throws
        place(text, id.get<int64_t>(), "model.vocab");
        const bool byte_piece = text.size() == 6 && text.starts_with("<0x") && text.ends_with(">");
        spec.types[id.get<int64_t>()] = spec.byte_fallback && byte_piece ? TokenType::BYTE : TokenType::NORMAL;
    }
    const Node added = root.at("added_tokens");
    for (size_t i = 0; i < added.size(); ++i) {
        const Node a = added[i];
        AddedToken t;
        t.content = a.at("content").str();
        t.id = static_cast<int32_t>(a.at("id").integer());
        t.special = a.get_bool("special", false);
        t.lstrip = a.get_bool("lstrip", false);
        t.rstrip = a.get_bool("rstrip", false);
        t.single_word = a.get_bool("single_word", false);
        t.normalized = a.get_bool("normalized", !t.special);
        place(t.content, t.id, a.path + ".id");
        spec.types[t.id] = t.special ? TokenType::CONTROL : TokenType::USER_DEFINED;
        spec.added.push_back(std::move(t));
    }
    for (size_t i = 0; i < spec.tokens.size(); ++i)
        check(spec.types[i] != TokenType::UNUSED || !spec.tokens[i].empty(), file,
              ": model.vocab: no token has id ", i, " (ids must be dense)");
    if (model.has("unk_token")) {
        const std::string unk = model.at("unk_token").str();
        const auto it = ids.find(unk);
        check(it != ids.end(), file, ": model.unk_token: \"", unk, "\" is not in the vocabulary");
        spec.unk_id = it->second;
    }

    const Node merges = model.at("merges");
    spec.merges.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
        // Paths are built only for an error: Gemma 3 has half a million merges.
        const json& mj = merges.j[r];
        const auto path = [&] { return merges[r].path; };
        std::string left, right;
        if (mj.is_string()) {
            const std::string& s = mj.get_ref<const std::string&>();
            const size_t cut = s.find(' ', 1);
            if (cut == std::string::npos) fail(file, ": ", path(), ": merge \"", s, "\" is not \"left right\"");
            left = s.substr(0, cut);
            right = s.substr(cut + 1);
        } else {
            if (!(mj.is_array() && mj.size() == 2 && mj[0].is_string() && mj[1].is_string()))
                fail(file, ": ", path(), ": a merge is \"left right\" or [left, right]");
            left = mj[0].get<std::string>();
            right = mj[1].get<std::string>();
        }
        const auto id_of = [&](const std::string& t) {
            const auto it = ids.find(t);
            if (it == ids.end()) fail(file, ": ", path(), ": merge names \"", t, "\", which is not in model.vocab");
            return it->second;
        };
        spec.merges.push_back({id_of(left), id_of(right), id_of(left + right)});
    }

    read_normalizer(root.at("normalizer"), spec.pipeline);
    read_pre_tokenizer(root.at("pre_tokenizer"), spec.pipeline);
    spec.pipeline.fast = fast_path(spec.pipeline);
    read_decoder(root.at("decoder"), spec.pipeline);
    if (root.has("post_processor")) read_post_processor(root.at("post_processor"), spec);

    // tokenizer_config.json (optional): chat template, BOS/EOS names, add_bos_token.
    const std::string cfg_file = (fs::path(dir) / "tokenizer_config.json").string();
    if (fs::exists(cfg_file)) {
        const json cfg_doc = read_json(cfg_file);
        const Node cfg{cfg_doc, "", cfg_file};
        if (!cfg_doc.is_object()) cfg.bad("expected an object");
        const auto id_named = [&](const char* key) {
            const Node n = cfg.at(key);
            const std::string name = token_name(n);
            const auto it = ids.find(name);
            check(it != ids.end(), cfg_file, ": ", n.path, ": token \"", name, "\" is not in ", file);
            return it->second;
        };
        if (cfg.has("bos_token")) spec.bos_id = id_named("bos_token");
        if (cfg.has("eos_token")) spec.eos_id = id_named("eos_token");
        if (cfg.has("pad_token")) spec.pad_id = id_named("pad_token");
        if (cfg.has("add_bos_token")) spec.add_bos = cfg.at("add_bos_token").boolean();
        if (cfg.has("chat_template")) {
            const Node t = cfg.at("chat_template");
            if (t.j.is_string()) {
                spec.chat_template = t.str();
            } else {
                for (size_t i = 0; i < t.size(); ++i)
                    if (t[i].at("name").str() == "default") spec.chat_template = t[i].at("template").str();
                check(!spec.chat_template.empty(), cfg_file, ": chat_template: a list without a \"default\" template");
            }
        }
    }
    const std::string jinja = (fs::path(dir) / "chat_template.jinja").string();
    if (spec.chat_template.empty() && fs::exists(jinja)) {
        std::ifstream in(jinja, std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        spec.chat_template = ss.str();
    }
    check(!spec.add_bos || spec.bos_id >= 0, file,
          ": post_processor / add_bos_token ask for BOS, but there is no BOS token");
    return spec;
}

}  // namespace hf

Tokenizer Tokenizer::from_hf_folder(const std::string& dir, const HfLoadOptions& options) {
    hf::Spec spec = hf::read_folder(dir);
    if (!options.pretokenizer_fast_paths) spec.pipeline.fast.reset();
    return from_hf_spec(std::move(spec));
}

}  // namespace hs
