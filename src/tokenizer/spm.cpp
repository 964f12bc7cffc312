// tokenizer/spm.cpp: SentencePiece BPE encoding, as sentencepiece's bpe_model and llama.cpp's SPM tokenizer run it.
//
// The text's spaces become "▁", it is cut into UTF-8 characters, and the adjacent pair whose concatenation is a
// piece with the highest priority (score; see spm.hpp) is merged, again and again (leftmost first on equal
// priorities), until no pair is a piece.
// Each final symbol is its piece, or -- when it is not one (a character the vocabulary lacks) -- its bytes' <0xNN>
// pieces, or the unknown token when the vocabulary has no byte pieces.
#include "tokenizer/spm.hpp"

#include <cstdio>
#include <limits>
#include <queue>

#include "tokenizer/tokenizer.hpp"
#include "util/error.hpp"

namespace hs::spm {
namespace {

std::string byte_piece_name(int b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    return name;
}

// Length of the UTF-8 character that starts with `lead`; a stray continuation or invalid lead byte is one byte on
// its own (so any byte string is cut losslessly; byte fallback then covers it).
size_t utf8_len(std::string_view s, size_t i) {
    const auto lead = static_cast<uint8_t>(s[i]);
    const size_t n = lead < 0x80 ? 1
                     : (lead & 0xE0) == 0xC0 ? 2
                     : (lead & 0xF0) == 0xE0 ? 3
                     : (lead & 0xF8) == 0xF0 ? 4
                                             : 1;
    if (n == 1 || i + n > s.size()) return 1;
    for (size_t k = 1; k < n; ++k)
        if ((static_cast<uint8_t>(s[i + k]) & 0xC0) != 0x80) return 1;
    return n;
}

struct Symbol {
    uint32_t begin;  // byte range [begin, begin + size) of the normalized text
    uint32_t size;
    int32_t prev;
    int32_t next;
};

struct Candidate {
    float score;
    int32_t left;   // symbol index
    uint32_t size;  // byte size of the merged piece: a candidate whose symbols changed since is stale
    // std::priority_queue is a max-heap: higher score first, then the leftmost.
    bool operator<(const Candidate& o) const { return score != o.score ? score < o.score : left > o.left; }
};

}  // namespace

Model::Model(const std::string& source, const std::vector<std::string>& tokens, const std::vector<int32_t>& types,
             const std::vector<float>& scores, int32_t unk_id, bool add_space_prefix)
    : unk_id_(unk_id), add_space_prefix_(add_space_prefix) {
    const auto type_of = [&](size_t i) { return static_cast<TokenType>(types.empty() ? 1 : types[i]); };
    // Do the normal pieces' scores follow the vocabulary order (never increase)?
    merge_space_runs_ = true;
    float last = std::numeric_limits<float>::infinity();
    for (size_t i = 0; i < tokens.size() && merge_space_runs_; ++i) {
        if (type_of(i) != TokenType::NORMAL) continue;
        merge_space_runs_ = scores[i] <= last;
        last = scores[i];
    }
    priority_.resize(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) priority_[i] = merge_space_runs_ ? -static_cast<float>(i) : scores[i];

    byte_id_.fill(-1);
    size_t n_bytes = 0;
    piece_id_.reserve(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
        const TokenType type = type_of(i);
        if (type == TokenType::NORMAL) {
            piece_id_.emplace(tokens[i], static_cast<int32_t>(i));  // a duplicate keeps its first id, as sentencepiece
        } else if (type == TokenType::USER_DEFINED && is_space_run_piece(tokens[i])) {
            std::string spelled;
            for (size_t k = 0; k < tokens[i].size(); ++k) spelled += kSpace;
            piece_id_.emplace(spelled, static_cast<int32_t>(i));
        } else if (type == TokenType::BYTE) {
            unsigned b = 0;
            char tail = 0;
            check(tokens[i].size() == 6 && std::sscanf(tokens[i].c_str(), "<0x%2X%c", &b, &tail) == 2 && tail == '>' &&
                      tokens[i] == byte_piece_name(static_cast<int>(b)),
                  source, ": tokenizer.ggml.tokens[", i, "] has type BYTE but is \"", tokens[i],
                  "\", not a byte piece <0xNN>");
            check(byte_id_[b] < 0, source, ": tokenizer.ggml.tokens has the byte piece ", tokens[i], " twice (ids ",
                  byte_id_[b], " and ", i, ")");
            byte_id_[b] = static_cast<int32_t>(i);
            ++n_bytes;
        }
    }
    // Byte fallback is all or nothing: a vocabulary with some byte pieces would lose the text of the others.
    if (n_bytes > 0) {
        for (int b = 0; b < 256; ++b)
            check(byte_id_[b] >= 0, source, ": tokenizer.ggml.tokens has byte pieces (byte fallback) but lacks ",
                  byte_piece_name(b), " (", n_bytes, " of 256 present)");
    } else {
        check(unk_id_ >= 0, source, ": tokenizer.ggml.tokens has no byte pieces <0xNN> and tokenizer.ggml."
              "unknown_token_id is not set: characters outside the vocabulary could not be encoded");
    }
}

bool Model::is_space_run_piece(std::string_view piece) const {
    return merge_space_runs_ && !piece.empty() && piece.find_first_not_of(' ') == std::string_view::npos;
}

std::string Model::piece_bytes(std::string_view piece, bool is_byte) {
    if (is_byte) return std::string(1, static_cast<char>(std::stoi(std::string(piece.substr(3, 2)), nullptr, 16)));
    std::string out;
    out.reserve(piece.size());
    for (size_t i = 0; i < piece.size();) {
        if (piece.substr(i, kSpace.size()) == kSpace) {
            out += ' ';
            i += kSpace.size();
        } else {
            out += piece[i++];
        }
    }
    return out;
}

void Model::emit(std::string_view symbol, std::vector<int32_t>& out) const {
    if (auto it = piece_id_.find(symbol); it != piece_id_.end()) {
        out.push_back(it->second);
        return;
    }
    if (!has_byte_fallback()) {
        out.push_back(unk_id_);
        return;
    }
    for (char c : symbol) out.push_back(byte_id_[static_cast<uint8_t>(c)]);
}

void Model::encode(std::string_view text, bool at_start, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    std::string norm;
    norm.reserve(text.size() + 8);
    if (add_space_prefix_ && at_start) norm += kSpace;
    for (char c : text) {
        if (c == ' ') norm += kSpace;
        else norm += c;
    }

    std::vector<Symbol> syms;
    syms.reserve(norm.size());
    for (size_t i = 0; i < norm.size();) {
        const auto n = static_cast<uint32_t>(utf8_len(norm, i));
        const auto k = static_cast<int32_t>(syms.size());
        syms.push_back({static_cast<uint32_t>(i), n, k - 1, k + 1});
        i += n;
    }
    syms.back().next = -1;

    const auto piece_of = [&](uint32_t begin, uint32_t size) -> int32_t {
        const auto it = piece_id_.find(std::string_view(norm).substr(begin, size));
        return it == piece_id_.end() ? -1 : it->second;
    };
    std::priority_queue<Candidate> queue;
    const auto push_pair = [&](int32_t left) {
        if (left < 0 || syms[left].next < 0) return;
        const Symbol& l = syms[left];
        const Symbol& r = syms[l.next];
        const int32_t id = piece_of(l.begin, l.size + r.size);
        if (id >= 0) queue.push({priority_[id], left, l.size + r.size});
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) push_pair(i);

    while (!queue.empty()) {
        const Candidate top = queue.top();
        queue.pop();
        Symbol& left = syms[top.left];
        // Stale when either symbol was merged since: the pair no longer spans the same bytes.
        if (left.size == 0 || left.next < 0 || left.size + syms[left.next].size != top.size) continue;
        Symbol& right = syms[left.next];
        left.size += right.size;
        right.size = 0;  // dead
        left.next = right.next;
        if (right.next >= 0) syms[right.next].prev = top.left;
        push_pair(left.prev);
        push_pair(top.left);
    }
    for (int32_t i = 0; i >= 0; i = syms[i].next) emit(std::string_view(norm).substr(syms[i].begin, syms[i].size), out);
}

}  // namespace hs::spm
