// tokenizer/tokenizer.cpp: the Tokenizer over its two models -- byte-level BPE (GPT-2 style, here) and SentencePiece
// BPE (tokenizer/spm.cpp) -- as HF tokenizers / llama.cpp run them; chat templates are in tokenizer/chat_template.cpp.
//
// Encoding: split off added tokens (leftmost-longest, as HF's added-vocabulary matcher), then encode the text
// between them with the model. Byte-level BPE pre-tokenizes the text into words, maps each word's bytes to the
// GPT-2 "bytes as unicode" symbols, and applies merges within each word in rank order with a priority queue
// (lowest rank first, leftmost on ties) exactly as HF's BPE model does.
#include "tokenizer/tokenizer.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <array>
#include <functional>
#include <memory>
#include <queue>
#include <unordered_map>

#include "tokenizer/chat_template.hpp"
#include "tokenizer/hf_pipeline.hpp"
#include "tokenizer/pretokenizer.hpp"
#include "tokenizer/spm.hpp"
#include "util/error.hpp"

namespace hs {
namespace {

// ---------------------------------------------------------------- GPT-2 bytes_to_unicode

// Printable bytes 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF stand for themselves; every other byte maps, in byte order,
// to U+0100 + k. BPE vocabularies store their tokens in this alphabet so that no token contains raw whitespace.
std::array<uint32_t, 256> make_byte_to_codepoint() {
    std::array<uint32_t, 256> table{};
    uint32_t next = 0x100;
    for (uint32_t b = 0; b < 256; ++b) {
        const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        table[b] = printable ? b : next++;
    }
    return table;
}
const std::array<uint32_t, 256> kByteToCodepoint = make_byte_to_codepoint();

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// Inverse of bytes_to_unicode: the byte a symbol stands for, or -1 for a code point outside the alphabet.
int codepoint_to_byte(uint32_t cp) {
    if (cp >= 0x100 + 256) return -1;
    const auto it = std::find(kByteToCodepoint.begin(), kByteToCodepoint.end(), cp);
    return it == kByteToCodepoint.end() ? -1 : static_cast<int>(it - kByteToCodepoint.begin());
}

// The raw bytes a vocabulary token stands for: each symbol mapped back through bytes_to_unicode. Anything outside
// that alphabet (not expected in byte-level vocabularies, or not UTF-8) is kept as it is rather than dropped.
std::string token_to_bytes(std::string_view token) {
    std::string out;
    for (size_t i = 0; i < token.size();) {
        const auto lead = static_cast<uint8_t>(token[i]);
        const size_t n = lead < 0x80 ? 1 : (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : 4;
        if (lead >= 0x80 && ((lead & 0xC0) == 0x80 || i + n > token.size())) {  // not UTF-8: keep the byte
            out += token[i++];
            continue;
        }
        uint32_t cp = n == 1 ? lead : lead & (0x7F >> n);
        for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(token[i + k]) & 0x3F);
        const int byte = codepoint_to_byte(cp);
        if (byte >= 0) out += static_cast<char>(byte);
        else out.append(token.substr(i, n));
        i += n;
    }
    return out;
}

// ---------------------------------------------------------------- BPE merges

uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

struct MergeInfo {
    int32_t rank;
    int32_t merged_id;
};

struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
};

struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t merged_id;
    // std::priority_queue is a max-heap: "less" means lower priority, i.e. higher rank, then further right.
    bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

// Finds added tokens (control / user-defined) in text: at a position, the one with the longest text, as HF's
// added-vocabulary matcher (leftmost-longest) and llama.cpp's partitioning do. Lookups go by the distinct lengths
// of the tokens that start with the byte at hand, so thousands of <unusedN> tokens cost a few hash probes.
class SpecialMatcher {
public:
    void add(const std::string& text, int32_t id) {
        if (text.empty() || !ids_.emplace(text, id).second) return;  // a duplicate text keeps its lowest id
        auto& lens = lengths_[static_cast<uint8_t>(text[0])];
        if (std::find(lens.begin(), lens.end(), text.size()) == lens.end()) {
            lens.push_back(text.size());
            std::sort(lens.begin(), lens.end(), std::greater<>());
        }
    }
    bool empty() const { return ids_.empty(); }
    // The token whose text starts at text[i] (the longest one), and its length; {-1, 0} when none does.
    std::pair<int32_t, size_t> match(std::string_view text, size_t i) const {
        for (size_t len : lengths_[static_cast<uint8_t>(text[i])]) {
            if (len > text.size() - i) continue;
            if (auto it = ids_.find(text.substr(i, len)); it != ids_.end()) return {it->second, len};
        }
        return {-1, 0};
    }

private:
    struct Hash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> ids_;
    std::array<std::vector<size_t>, 256> lengths_;
};

}  // namespace

std::string byte_level_symbol(uint8_t byte) {
    std::string s;
    append_utf8(s, kByteToCodepoint[byte]);
    return s;
}

// ---------------------------------------------------------------- Impl

struct Tokenizer::Impl {
    std::string source;
    std::string pre_name;
    pretok::Kind pre_kind = pretok::Kind::GPT2;
    bool bytes_only = false;  // the byte_level() tokenizer: ids 0..255 are bytes, no BPE
    bool ignore_merges = false;  // Llama 3: a word that is itself a token is emitted without merging (HF option)

    std::vector<std::string> tokens;  // as stored (bytes-as-unicode alphabet; special tokens verbatim)
    std::vector<std::string> bytes;   // decoded raw bytes per token
    std::vector<TokenType> types;
    std::unordered_map<std::string, int32_t> token_to_id;
    std::unordered_map<uint64_t, MergeInfo> merges;
    std::array<int32_t, 256> byte_token{};  // token id of each single byte's symbol, -1 when absent

    SpecialMatcher specials;       // CONTROL and USER_DEFINED tokens: matched with parse_special
    SpecialMatcher user_defined;   // USER_DEFINED only: SentencePiece vocabularies match these always

    int32_t bos = -1, eos = -1, unk = -1, pad = -1;
    bool add_bos = false;
    std::shared_ptr<const spm::Model> spm;  // tokenizer.ggml.model = "llama"; null for byte-level BPE
    std::string chat_template;
    chat::Template chat;

    // from_hf_folder: the tokenizer.json pipeline around the BPE model (null for GGUF tokenizers).
    std::shared_ptr<const hf::Pipeline> hf;
    std::unordered_map<int32_t, hf::AddedToken> hf_added;  // id -> its added_tokens entry
    SpecialMatcher hf_all;    // every added token (parse_special)
    SpecialMatcher hf_plain;  // the non-special ones, matched always as in HF
    bool byte_fallback = false, fuse_unk = false;
    std::array<int32_t, 256> byte_piece{};  // <0xNN> token of each byte (byte_fallback), -1 when absent
    size_t strip_leading = 0;               // decoder Strip / Metaspace: leading spaces removed from decoded text

    void check_id(int32_t id) const {
        check(id >= 0 && id < static_cast<int32_t>(tokens.size()), source, ": token id ", id,
              " out of range [0, ", tokens.size(), ")");
    }

    void build_bpe(TokenizerVocab& v);  // from_vocab's model-specific parts, after the common checks
    void build_spm(TokenizerVocab& v);
    void encode_word(std::string_view word, std::vector<int32_t>& out) const;
    void encode_text(std::string_view text, std::vector<int32_t>& out) const;
    void merge_symbols(std::vector<Symbol>& syms, std::vector<int32_t>& out) const;
    void encode_hf(std::string_view text, bool parse_special, std::vector<int32_t>& out) const;
    void encode_hf_text(std::string_view text, bool first, std::vector<int32_t>& out) const;
    void encode_hf_word(std::string_view word, std::vector<int32_t>& out) const;
};

void Tokenizer::Impl::encode_word(std::string_view word, std::vector<int32_t>& out) const {
    if (ignore_merges) {
        std::string mapped;
        for (char c : word) append_utf8(mapped, kByteToCodepoint[static_cast<uint8_t>(c)]);
        if (auto it = token_to_id.find(mapped); it != token_to_id.end()) {
            out.push_back(it->second);
            return;
        }
    }
    // One symbol per byte: a byte-level vocabulary holds every single-byte symbol. A byte without one is dropped,
    // as HF's BPE does when there is no unk token.
    std::vector<Symbol> syms;
    syms.reserve(word.size());
    for (char c : word) {
        const int32_t id = byte_token[static_cast<uint8_t>(c)];
        if (id < 0) continue;
        const auto n = static_cast<int32_t>(syms.size());
        syms.push_back({id, n - 1, n + 1, true});
    }
    merge_symbols(syms, out);
}

// Applies the merges within one word (symbols linked in order) and appends the surviving ids.
void Tokenizer::Impl::merge_symbols(std::vector<Symbol>& syms, std::vector<int32_t>& out) const {
    if (syms.empty()) return;
    syms.back().next = -1;

    std::priority_queue<Candidate> queue;
    const auto push_pair = [&](int32_t pos) {
        const int32_t next = syms[pos].next;
        if (next < 0) return;
        if (auto it = merges.find(pair_key(syms[pos].id, syms[next].id)); it != merges.end())
            queue.push({it->second.rank, pos, it->second.merged_id});
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) push_pair(i);

    while (!queue.empty()) {
        const Candidate top = queue.top();
        queue.pop();
        Symbol& left = syms[top.pos];
        if (!left.alive || left.next < 0) continue;
        // Stale when either side changed since the candidate was pushed: the pair must still merge into the same id.
        const auto it = merges.find(pair_key(left.id, syms[left.next].id));
        if (it == merges.end() || it->second.merged_id != top.merged_id) continue;
        Symbol& right = syms[left.next];
        left.id = top.merged_id;
        right.alive = false;
        left.next = right.next;
        if (right.next >= 0) syms[right.next].prev = top.pos;
        if (left.prev >= 0) push_pair(left.prev);
        push_pair(top.pos);
    }
    for (const Symbol& s : syms)
        if (s.alive) out.push_back(s.id);
}

namespace {

// Encodes the pre-tokenized words in order. Natural text repeats words a lot, so each distinct word is merged once per
// call and its ids copied for every repeat (words: string or string_view, alive for the call).
template <class Words, class EncodeWord>
void encode_words_memoised(const Words& words, std::vector<int32_t>& out, const EncodeWord& encode_word) {
    std::unordered_map<std::string_view, std::pair<size_t, size_t>> seen;  // word -> [begin, end) in out
    for (const auto& word : words) {
        const std::string_view w(word);
        if (auto it = seen.find(w); it != seen.end()) {
            const auto [b, e] = it->second;
            for (size_t k = b; k < e; ++k) out.push_back(out[k]);
            continue;
        }
        const size_t begin = out.size();
        encode_word(w, out);
        seen.emplace(w, std::make_pair(begin, out.size()));
    }
}

}  // namespace

void Tokenizer::Impl::encode_text(std::string_view text, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    if (bytes_only) {
        for (char c : text) out.push_back(static_cast<uint8_t>(c));
        return;
    }
    std::vector<std::string_view> words;
    pretok::split(pre_kind, text, words);
    encode_words_memoised(words, out, [this](std::string_view w, std::vector<int32_t>& o) { encode_word(w, o); });
}

// ---------------------------------------------------------------- tokenizer.json (from_hf_folder)

namespace {

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_word_byte(char c) {
    const auto u = static_cast<unsigned char>(c);
    return std::isalnum(u) || c == '_' || u >= 0x80;  // non-ASCII counted as word characters (HF: \w)
}

}  // namespace

// Added tokens are cut out first (leftmost-longest; special ones only with parse_special), honouring lstrip/rstrip
// (the whitespace next to the token is swallowed) and single_word (no word character on either side); the text
// between them is normalized, pre-tokenized and merged.
void Tokenizer::Impl::encode_hf(std::string_view text, bool parse_special, std::vector<int32_t>& out) const {
    const SpecialMatcher& matcher = parse_special ? hf_all : hf_plain;
    size_t start = 0;
    for (size_t i = 0; i < text.size() && !matcher.empty();) {
        const auto [id, len] = matcher.match(text, i);
        if (id < 0) {
            ++i;
            continue;
        }
        const hf::AddedToken& a = hf_added.at(id);
        if (a.single_word && ((i > 0 && is_word_byte(text[i - 1])) ||
                              (i + len < text.size() && is_word_byte(text[i + len])))) {
            ++i;
            continue;
        }
        size_t b = i, e = i + len;
        if (a.lstrip)
            while (b > start && is_ascii_space(text[b - 1])) --b;
        if (a.rstrip)
            while (e < text.size() && is_ascii_space(text[e])) ++e;
        encode_hf_text(text.substr(start, b - start), start == 0, out);
        out.push_back(id);
        i = start = e;
    }
    encode_hf_text(text.substr(start), start == 0, out);
}

void Tokenizer::Impl::encode_hf_text(std::string_view text, bool first, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    const std::string normalized = hf->normalize(text);
    std::vector<std::string> words;
    hf->pre_tokenize(normalized, first, words);
    encode_words_memoised(words, out, [this](std::string_view w, std::vector<int32_t>& o) { encode_hf_word(w, o); });
}

// HF's BPE model on one word: byte-level vocabularies start from one symbol per byte (bytes-as-unicode), others
// from one per character, a character without a token falling back to its <0xNN> byte tokens (byte_fallback) or
// to the unknown token (consecutive ones fused with fuse_unk), or dropped when there is none.
void Tokenizer::Impl::encode_hf_word(std::string_view word, std::vector<int32_t>& out) const {
    if (hf->byte_level) {
        encode_word(word, out);  // ignore_merges and the byte symbols as for GGUF byte-level BPE
        return;
    }
    if (ignore_merges) {
        if (auto it = token_to_id.find(std::string(word)); it != token_to_id.end()) {
            out.push_back(it->second);
            return;
        }
    }
    std::vector<Symbol> syms;
    syms.reserve(word.size());
    bool last_unk = false;
    const auto push = [&](int32_t id) {
        const auto n = static_cast<int32_t>(syms.size());
        syms.push_back({id, n - 1, n + 1, true});
    };
    for (size_t i = 0; i < word.size();) {
        const auto lead = static_cast<uint8_t>(word[i]);
        size_t n = lead < 0x80               ? 1
                   : (lead & 0xE0) == 0xC0 ? 2
                   : (lead & 0xF0) == 0xE0 ? 3
                   : (lead & 0xF8) == 0xF0 ? 4
                                           : 1;  // a stray byte: one symbol (byte fallback or unk)
        if (i + n > word.size()) n = 1;
        const std::string_view ch = word.substr(i, n);
        i += n;
        if (auto it = token_to_id.find(std::string(ch)); it != token_to_id.end()) {
            push(it->second);
            last_unk = false;
            continue;
        }
        if (byte_fallback && std::all_of(ch.begin(), ch.end(), [&](char c) { return byte_piece[uint8_t(c)] >= 0; })) {
            for (char c : ch) push(byte_piece[uint8_t(c)]);
            last_unk = false;
            continue;
        }
        if (unk < 0) continue;
        if (!(fuse_unk && last_unk)) push(unk);
        last_unk = true;
    }
    merge_symbols(syms, out);
}

Tokenizer Tokenizer::from_hf_spec(hf::Spec spec) {
    Tokenizer t;
    Impl& m = *t.impl_;
    m.source = spec.source;
    m.pre_name = "tokenizer.json";
    const size_t n = spec.tokens.size();
    check(n > 0, m.source, ": model.vocab is empty");
    m.types = std::move(spec.types);
    m.token_to_id.reserve(n);
    for (size_t i = 0; i < n; ++i) m.token_to_id.emplace(spec.tokens[i], static_cast<int32_t>(i));
    for (const hf::AddedToken& a : spec.added) m.token_to_id[a.content] = a.id;  // added tokens win, as in HF

    // What each token decodes to, through the decoder's per-token steps (added tokens verbatim, as HF's decoders
    // leave their ASCII text unchanged).
    m.bytes.resize(n);
    const std::vector<hf::DecodeStep> none;
    for (size_t i = 0; i < n; ++i) {
        std::string text = spec.tokens[i];
        const bool added = m.types[i] == TokenType::CONTROL || m.types[i] == TokenType::USER_DEFINED;
        for (const hf::DecodeStep& st : added ? none : spec.pipeline.decoder) {
            switch (st.kind) {
                case hf::DecodeStep::BYTE_LEVEL: text = token_to_bytes(text); break;
                case hf::DecodeStep::REPLACE:
                case hf::DecodeStep::METASPACE: {
                    const std::string from = st.literal, to = st.kind == hf::DecodeStep::REPLACE ? st.content : " ";
                    std::string r;
                    size_t at = 0;
                    for (size_t j; !from.empty() && (j = text.find(from, at)) != std::string::npos;
                         at = j + from.size())
                        r.append(text, at, j - at).append(to);
                    text = r.append(text, at);
                    break;
                }
                case hf::DecodeStep::BYTE_FALLBACK:
                    if (m.types[i] == TokenType::BYTE)
                        text = std::string(1, static_cast<char>(std::stoi(spec.tokens[i].substr(3, 2), nullptr, 16)));
                    break;
                case hf::DecodeStep::FUSE:
                case hf::DecodeStep::STRIP: break;
            }
        }
        m.bytes[i] = std::move(text);
    }
    for (const hf::DecodeStep& st : spec.pipeline.decoder) {
        if (st.kind == hf::DecodeStep::STRIP && st.content == " ") m.strip_leading = st.start;
        if (st.kind == hf::DecodeStep::METASPACE && st.strip_first) m.strip_leading = 1;
    }

    m.byte_token.fill(-1);
    m.byte_piece.fill(-1);
    for (uint32_t b = 0; b < 256; ++b) {
        std::string sym;
        append_utf8(sym, kByteToCodepoint[b]);
        if (const auto it = m.token_to_id.find(sym); it != m.token_to_id.end()) m.byte_token[b] = it->second;
        char piece[8];
        std::snprintf(piece, sizeof piece, "<0x%02X>", b);
        if (const auto it = m.token_to_id.find(piece); it != m.token_to_id.end()) m.byte_piece[b] = it->second;
    }
    m.merges.reserve(spec.merges.size());
    for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
        const auto [left, right, merged] = spec.merges[rank];
        m.merges.emplace(pair_key(left, right), MergeInfo{static_cast<int32_t>(rank), merged});  // first rank kept
    }
    for (hf::AddedToken& a : spec.added) {
        m.hf_all.add(a.content, a.id);
        if (!a.special) m.hf_plain.add(a.content, a.id);
        m.hf_added.emplace(a.id, std::move(a));
    }
    m.byte_fallback = spec.byte_fallback;
    m.fuse_unk = spec.fuse_unk;
    m.ignore_merges = spec.ignore_merges;
    m.unk = spec.unk_id;
    m.bos = spec.bos_id;
    m.eos = spec.eos_id;
    m.pad = spec.pad_id;
    m.add_bos = spec.add_bos;
    m.chat_template = std::move(spec.chat_template);
    m.chat = chat::recognise(m.chat_template);
    m.hf = std::make_shared<const hf::Pipeline>(std::move(spec.pipeline));
    m.tokens = std::move(spec.tokens);
    return t;
}

// ---------------------------------------------------------------- construction

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::Tokenizer(const Tokenizer& o) : impl_(std::make_unique<Impl>(*o.impl_)) {}
Tokenizer& Tokenizer::operator=(const Tokenizer& o) {
    if (this != &o) impl_ = std::make_unique<Impl>(*o.impl_);
    return *this;
}

namespace {

// Parses "left right" (split at the first space after index 0: a side may itself start with the mapped space
// symbol, never with a raw one, but llama.cpp and HF both split this way).
std::pair<std::string_view, std::string_view> split_merge(std::string_view merge) {
    const size_t cut = merge.find(' ', 1);
    if (cut == std::string_view::npos) return {merge, {}};
    return {merge.substr(0, cut), merge.substr(cut + 1)};
}

void check_special_id(const std::string& source, const char* what, int32_t id, size_t n_vocab) {
    check(id >= -1 && id < static_cast<int64_t>(n_vocab), source, ": ", what, " token id ", id,
          " out of range [0, ", n_vocab, ")");
}

}  // namespace

// Byte-level BPE: tokens in the bytes-as-unicode alphabet, merges by rank, words from the pre-tokenizer.
void Tokenizer::Impl::build_bpe(TokenizerVocab& v) {
    Impl& m = *this;
    const std::string& src = m.source;
    m.pre_kind = pretok::kind_from_name(v.pre, src);
    m.ignore_merges = m.pre_kind == pretok::Kind::LLAMA3;
    const size_t n = v.tokens.size();
    m.token_to_id.reserve(n);
    m.bytes.resize(n);
    for (size_t i = 0; i < n; ++i) {
        m.token_to_id[v.tokens[i]] = static_cast<int32_t>(i);  // a duplicate maps to its last id, as in HF/llama.cpp
        const bool verbatim = m.types[i] == TokenType::CONTROL || m.types[i] == TokenType::USER_DEFINED;
        m.bytes[i] = verbatim ? v.tokens[i] : token_to_bytes(v.tokens[i]);
        if (verbatim) m.specials.add(v.tokens[i], static_cast<int32_t>(i));
    }
    for (uint32_t b = 0; b < 256; ++b) {
        std::string sym;
        append_utf8(sym, kByteToCodepoint[b]);
        const auto it = m.token_to_id.find(sym);
        m.byte_token[b] = it == m.token_to_id.end() ? -1 : it->second;
    }

    m.merges.reserve(v.merges.size());
    const auto id_of = [&](std::string_view s, size_t rank) {
        const auto it = m.token_to_id.find(std::string(s));
        check(it != m.token_to_id.end(), src, ": merge ", rank, " \"", v.merges[rank], "\" names \"", s,
              "\", which is not in the vocabulary");
        return it->second;
    };
    for (size_t rank = 0; rank < v.merges.size(); ++rank) {
        const auto [left, right] = split_merge(v.merges[rank]);
        check(!right.empty(), src, ": merge ", rank, " \"", v.merges[rank], "\" is not \"left right\"");
        const int32_t merged = id_of(std::string(left) + std::string(right), rank);
        // A repeated pair keeps its first (lowest) rank, as HF's BPE builder does.
        m.merges.emplace(pair_key(id_of(left, rank), id_of(right, rank)),
                         MergeInfo{static_cast<int32_t>(rank), merged});
    }
}

// SentencePiece BPE: pieces with scores; control tokens are matched only with parse_special, user-defined ones
// always (llama.cpp; HF adds them as non-special added tokens), both on the raw text.
void Tokenizer::Impl::build_spm(TokenizerVocab& v) {
    Impl& m = *this;
    const std::string& src = m.source;
    check(v.scores.size() == v.tokens.size(), src, ": tokenizer.ggml.scores has ", v.scores.size(), " entries for ",
          v.tokens.size(), " tokens in tokenizer.ggml.tokens",
          v.scores.empty() ? " (a SentencePiece vocabulary needs them)" : "");
    check(v.merges.empty(), src, ": tokenizer.ggml.merges is set, but a SentencePiece (\"llama\") vocabulary merges by "
          "score and has none");
    const size_t n = v.tokens.size();
    m.spm = std::make_shared<const spm::Model>(src, v.tokens, v.token_types, v.scores, v.unk_id, v.add_space_prefix);
    m.token_to_id.reserve(n);
    m.bytes.resize(n);
    for (size_t i = 0; i < n; ++i) {
        m.token_to_id.emplace(v.tokens[i], static_cast<int32_t>(i));
        const TokenType ty = m.types[i];
        const bool piece = ty == TokenType::NORMAL || ty == TokenType::BYTE;
        m.bytes[i] = piece ? spm::Model::piece_bytes(v.tokens[i], ty == TokenType::BYTE) : v.tokens[i];
        // A run of spaces the model merges as "▁▁..." is a piece, not an added token.
        if (ty == TokenType::USER_DEFINED && m.spm->is_space_run_piece(v.tokens[i])) continue;
        const auto id = static_cast<int32_t>(i);
        if (ty == TokenType::CONTROL || ty == TokenType::USER_DEFINED) m.specials.add(v.tokens[i], id);
        if (ty == TokenType::USER_DEFINED) m.user_defined.add(v.tokens[i], id);
    }
}

Tokenizer Tokenizer::from_vocab(TokenizerVocab v) {
    const std::string& src = v.source.empty() ? std::string("tokenizer vocabulary") : v.source;
    check(v.model == "gpt2" || v.model == "llama", src, ": unsupported tokenizer.ggml.model \"", v.model,
          "\" (supported: \"gpt2\", byte-level BPE; \"llama\", SentencePiece BPE)");
    check(!v.tokens.empty(), src, ": empty token list (tokenizer.ggml.tokens)");
    check(v.token_types.empty() || v.token_types.size() == v.tokens.size(), src, ": tokenizer.ggml.token_type has ",
          v.token_types.size(), " entries for ", v.tokens.size(), " tokens in tokenizer.ggml.tokens");
    for (auto [what, id] : {std::pair{"bos", v.bos_id}, {"eos", v.eos_id}, {"unknown", v.unk_id}, {"padding", v.pad_id}})
        check_special_id(src, what, id, v.tokens.size());

    Tokenizer t;
    Impl& m = *t.impl_;
    m.source = src;
    m.pre_name = v.pre;
    m.bos = v.bos_id;
    m.eos = v.eos_id;
    m.unk = v.unk_id;
    m.pad = v.pad_id;
    m.add_bos = v.add_bos;
    m.chat_template = std::move(v.chat_template);
    m.chat = chat::recognise(m.chat_template);

    const size_t n = v.tokens.size();
    m.types.resize(n, TokenType::NORMAL);
    for (size_t i = 0; i < v.token_types.size(); ++i) {
        const int32_t ty = v.token_types[i];
        check(ty >= 1 && ty <= 6, src, ": tokenizer.ggml.token_type[", i, "] is ", ty,
              ", not a token type (1 normal .. 6 byte)");
        m.types[i] = static_cast<TokenType>(ty);
    }
    if (v.model == "llama") m.build_spm(v);
    else m.build_bpe(v);
    m.tokens = std::move(v.tokens);
    return t;
}

Tokenizer Tokenizer::byte_level(int32_t n_vocab) {
    check(n_vocab >= 258, "byte-level tokenizer needs n_vocab >= 258 (256 bytes, BOS, EOS), got ", n_vocab);
    Tokenizer t;
    Impl& m = *t.impl_;
    m.source = "byte-level tokenizer";
    m.pre_name = "bytes";
    m.bytes_only = true;
    m.tokens.resize(n_vocab);
    m.bytes.resize(n_vocab);
    m.types.assign(n_vocab, TokenType::UNUSED);
    for (int32_t b = 0; b < 256; ++b) {
        m.bytes[b] = std::string(1, static_cast<char>(b));
        m.tokens[b] = m.bytes[b];
        m.types[b] = TokenType::BYTE;
    }
    m.tokens[256] = m.bytes[256] = "<s>";
    m.tokens[257] = m.bytes[257] = "</s>";
    m.types[256] = m.types[257] = TokenType::CONTROL;
    m.bos = 256;
    m.eos = 257;
    return t;
}

// ---------------------------------------------------------------- encode / decode

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special, bool add_bos) const {
    const Impl& m = *impl_;
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 2);
    if (add_bos && m.add_bos && m.bos >= 0) out.push_back(m.bos);
    if (m.hf) {
        m.encode_hf(text, parse_special, out);
        return out;
    }
    // Byte-level BPE matches added tokens only with parse_special; SentencePiece matches its user-defined ones always.
    const SpecialMatcher* matcher = parse_special ? &m.specials : m.spm ? &m.user_defined : nullptr;
    const auto encode_plain = [&](size_t begin, size_t end) {
        if (m.spm) m.spm->encode(text.substr(begin, end - begin), begin == 0, out);
        else m.encode_text(text.substr(begin, end - begin), out);
    };
    if (!matcher || matcher->empty()) {
        encode_plain(0, text.size());
        return out;
    }
    // Added tokens are cut out first; the text between them is encoded on its own, as in HF and llama.cpp.
    size_t start = 0;
    for (size_t i = 0; i < text.size();) {
        const auto [id, len] = matcher->match(text, i);
        if (id < 0) {
            ++i;
            continue;
        }
        encode_plain(start, i);
        out.push_back(id);
        i += len;
        start = i;
    }
    encode_plain(start, text.size());
    return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool render_special) const {
    const Impl& m = *impl_;
    std::string out;
    for (int32_t id : ids) {
        m.check_id(id);
        const TokenType ty = m.types[id];
        const bool hidden = ty == TokenType::CONTROL || ty == TokenType::UNKNOWN || ty == TokenType::UNUSED;
        if (hidden && !render_special && !(m.bytes_only && ty == TokenType::BYTE)) continue;
        // The "▁" that add_space_prefix put before the text is not part of it (llama.cpp and HF's Strip decoder).
        if (out.empty() && m.spm && m.spm->add_space_prefix() && ty == TokenType::NORMAL &&
            m.bytes[id].starts_with(' ')) {
            out += m.bytes[id].substr(1);
            continue;
        }
        out += m.bytes[id];
    }
    for (size_t k = 0; k < m.strip_leading && !out.empty() && out[0] == ' '; ++k) out.erase(0, 1);
    return out;
}

std::string Tokenizer::token_text(int32_t id) const {
    impl_->check_id(id);
    return impl_->bytes[id];
}

// ---------------------------------------------------------------- chat template

std::string Tokenizer::apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    const Impl& m = *impl_;
    check(!m.chat_template.empty(), m.source, ": the model has no chat template (tokenizer.chat_template)");
    check(m.chat.style != chat::Style::UNKNOWN, m.source, ": unsupported chat template in tokenizer.chat_template "
          "(rendered: SmolLM2-style ChatML and Gemma 3's): ", m.chat_template.substr(0, 120));
    return chat::render(m.chat, messages, add_generation_prompt, m.source);
}

bool Tokenizer::has_chat_template() const { return !impl_->chat_template.empty(); }

// ---------------------------------------------------------------- properties

int32_t Tokenizer::n_vocab() const { return static_cast<int32_t>(impl_->tokens.size()); }
int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
const std::string& Tokenizer::pre_tokenizer() const { return impl_->pre_name; }

TokenType Tokenizer::token_type(int32_t id) const {
    impl_->check_id(id);
    return impl_->types[id];
}

bool Tokenizer::is_special(int32_t id) const {
    // USER_DEFINED tokens are text (Gemma's "\n", tab runs, HTML tags): HF adds them as non-special tokens.
    const TokenType ty = token_type(id);
    return ty == TokenType::CONTROL || ty == TokenType::UNKNOWN || ty == TokenType::UNUSED;
}

std::vector<int32_t> Tokenizer::eog_ids() const {
    const Impl& m = *impl_;
    std::vector<int32_t> ids;
    if (m.eos >= 0) ids.push_back(m.eos);
    for (const char* name : {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>"}) {
        const auto it = m.token_to_id.find(name);
        if (it != m.token_to_id.end() && m.types[it->second] == TokenType::CONTROL &&
            std::find(ids.begin(), ids.end(), it->second) == ids.end())
            ids.push_back(it->second);
    }
    return ids;
}

}  // namespace hs
