// tokenizer/hf_pipeline.hpp (private to src/tokenizer): what a Hugging Face tokenizer.json describes around its BPE
// model -- normalizer, pre-tokenizer, added tokens, decoder -- as read by tokenizer/tokenizer_hf.cpp and run by
// tokenizer/tokenizer.cpp (Tokenizer::from_hf_spec).
//
// Split regexes run on PCRE2 (PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, JIT when available). When a whole
// pre-tokenizer equals one of the hand-written matchers of tokenizer/pretokenizer.hpp (checked by the [hf_tokenizer]
// parity tests), that matcher runs instead as a fast path.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/pretokenizer.hpp"
#include "tokenizer/tokenizer.hpp"

namespace hs::hf {

// A compiled PCRE2 pattern (owned; shared between copies of a tokenizer).
class Regex {
public:
    // Throws hs::Error naming `where` (file and JSON path) with PCRE2's message and offset when it does not compile.
    Regex(const std::string& pattern, const std::string& where);
    ~Regex();
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;
    // The [begin, end) byte ranges of the non-empty, non-overlapping matches in text, left to right.
    std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
    const std::string& pattern() const { return pattern_; }
    bool jit() const { return jit_; }  // compiled by PCRE2's JIT (false: its interpreter)

private:
    std::string pattern_;
    void* code_ = nullptr;  // pcre2_code_8*
    bool jit_ = false;
};

// HF SplitDelimiterBehavior: what happens to a matched piece.
enum class SplitBehavior { REMOVED, ISOLATED, MERGED_WITH_PREVIOUS, MERGED_WITH_NEXT, CONTIGUOUS };

struct PreStep {
    enum Kind { SPLIT, BYTE_LEVEL, METASPACE } kind = SPLIT;
    // SPLIT: a regex, or a literal string (regex null).
    std::shared_ptr<const Regex> regex;
    std::string literal;
    SplitBehavior behavior = SplitBehavior::ISOLATED;
    bool invert = false;
    // BYTE_LEVEL: add_prefix_space, and use_regex (then regex holds the GPT-2 pattern).
    bool add_prefix_space = false;
    // METASPACE: spaces become `replacement`, which is prepended per prepend_scheme; split before each one.
    std::string replacement;
    enum Prepend { NEVER, FIRST, ALWAYS } prepend = ALWAYS;
    bool split = true;
};

struct NormStep {
    // UNICODE: NFC/NFD/NFKC/NFKD through ICU (`form` names it).
    enum Kind { REPLACE, PREPEND, UNICODE } kind = REPLACE;
    std::string form;
    std::shared_ptr<const Regex> regex;  // REPLACE with a Regex pattern; null for a String pattern
    std::string literal;                 // REPLACE with a String pattern
    std::string content;                 // the replacement, or the prepended text
};

struct DecodeStep {
    // BYTE_LEVEL: tokens are in the bytes-as-unicode alphabet. REPLACE: literal -> content in each token.
    // BYTE_FALLBACK: <0xNN> tokens are that byte. FUSE: join (no-op for a byte string). STRIP: remove up to `start`
    // leading copies of `content` from the text (after FUSE: from the whole text). METASPACE: replacement -> " ",
    // the first token's leading space stripped unless prepend_scheme is "never".
    enum Kind { BYTE_LEVEL, REPLACE, BYTE_FALLBACK, FUSE, STRIP, METASPACE } kind = FUSE;
    std::string literal, content;
    size_t start = 0;
    bool strip_first = true;
};

struct AddedToken {
    std::string content;
    int32_t id = -1;
    bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

struct Pipeline {
    std::vector<NormStep> normalizer;
    std::vector<PreStep> pre;
    std::optional<pretok::Kind> fast;  // a hand-written matcher equal to `pre` (ByteLevel without prefix space last)
    bool byte_level = false;           // a ByteLevel pre-tokenizer: BPE runs on the bytes-as-unicode alphabet
    std::vector<DecodeStep> decoder;

    // The normalizer applied to one stretch of text between added tokens.
    std::string normalize(std::string_view text) const;
    // The words of one normalized stretch (`first`: it starts the input, for prepend_scheme "first").
    void pre_tokenize(std::string_view text, bool first, std::vector<std::string>& words) const;
};

// Everything from_hf_folder read: the vocabulary (added tokens included, ids dense), merges as id triples, the
// added-token list, the pipeline and tokenizer_config.json's settings.
struct Spec {
    std::string source;                       // "<dir>/tokenizer.json"
    std::vector<std::string> tokens;          // id -> token text as stored
    std::vector<TokenType> types;             // NORMAL; BYTE for <0xNN> with byte_fallback; added: CONTROL/USER_DEFINED
    std::vector<std::array<int32_t, 3>> merges;  // {left, right, merged}, in rank order
    std::vector<AddedToken> added;
    Pipeline pipeline;
    bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
    int32_t unk_id = -1, bos_id = -1, eos_id = -1, pad_id = -1;
    bool add_bos = false;
    std::string chat_template;
};

// Reads dir/tokenizer.json and dir/tokenizer_config.json (tokenizer/tokenizer_hf.cpp). Throws hs::Error naming the
// file and the JSON path of a missing or unsupported field.
Spec read_folder(const std::string& dir);

}  // namespace hs::hf
