// tokenizer/spm.hpp (private to src/tokenizer): SentencePiece BPE as GGUF files with tokenizer.ggml.model = "llama"
// describe it (Llama 1/2, Gemma): pieces with scores and types, whitespace written as U+2581 ("▁"), byte fallback
// to the <0xNN> pieces.
//
// This is the model part only: it encodes one stretch of plain text. Control and user-defined tokens are cut out of
// the text before (tokenizer.cpp), as llama.cpp and HF's added-token matcher do.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace hs::spm {

// "▁" (U+2581), SentencePiece's spelling of a space.
inline constexpr std::string_view kSpace = "\xE2\x96\x81";

class Model {
public:
    // tokens/types/scores are the file's arrays (types as TokenType values, already validated; sizes equal).
    // Throws hs::Error naming `source` when a byte-fallback vocabulary lacks byte pieces, a byte piece is misspelt,
    // or a vocabulary without byte fallback has no unknown token to fall back on.
    Model(const std::string& source, const std::vector<std::string>& tokens, const std::vector<int32_t>& types,
          const std::vector<float>& scores, int32_t unk_id, bool add_space_prefix);

    // Appends the ids of `text` (no special tokens in it). `at_start`: the text begins the input, which is where
    // add_space_prefix puts its "▁" (HF's Metaspace prepend_scheme "first").
    void encode(std::string_view text, bool at_start, std::vector<int32_t>& out) const;

    // The bytes a NORMAL or BYTE piece stands for ("▁" back to a space; <0xNN> to the byte).
    static std::string piece_bytes(std::string_view piece, bool is_byte);

    bool has_byte_fallback() const { return byte_id_[0] >= 0; }
    bool add_space_prefix() const { return add_space_prefix_; }
    // Whether the user-defined token `piece` is a run of spaces that this model merges as "▁▁..." (see below)
    // rather than matching it on the raw text.
    bool is_space_run_piece(std::string_view piece) const;

private:
    // Pieces that merges may produce: the NORMAL ones, and runs of spaces (see priority_).
    struct Hash {
        using is_transparent = void;  // lookups by string_view, without building a std::string
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> piece_id_;
    // id -> merge priority, higher first. SentencePiece BPE writes its pieces in merge order with score = -order,
    // so for normal pieces the score and the vocabulary order agree (checked). Gemma's runs of spaces ("  ", ...
    // user-defined, stored with real spaces, placeholder score -1000) are merged as "▁▁"... pieces in their
    // vocabulary position, as transformers' GGUF Gemma tokenizer does; so when the scores follow the order, the
    // priority is -id. A vocabulary whose scores do not is merged by score, its space runs matched as added tokens.
    std::vector<float> priority_;
    bool merge_space_runs_ = false;
    std::array<int32_t, 256> byte_id_{};  // <0xNN> piece of each byte, all -1 without byte fallback
    int32_t unk_id_ = -1;
    bool add_space_prefix_ = false;

    void emit(std::string_view symbol, std::vector<int32_t>& out) const;
};

}  // namespace hs::spm
