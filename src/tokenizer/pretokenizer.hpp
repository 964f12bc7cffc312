// tokenizer/pretokenizer.hpp (private to src/tokenizer): split text into the words that BPE merges within.
//
// Each pre-tokenizer is a hand-written matcher equivalent to the regex HF tokenizers (Oniguruma) runs, working on
// code points classified by tokenizer/unicode_tables: std::regex cannot express \p{L} or \p{N}.
#pragma once

#include <string_view>
#include <vector>

namespace hs::pretok {

enum class Kind {
    SMOLLM,  // HF Digits(individual_digits) then the GPT-2 pattern (SmolLM, SmolLM2, StarCoder)
    GPT2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    LLAMA3,  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    QWEN2,   // as LLAMA3 with \p{N} single digits
};

// The kind for a tokenizer.ggml.pre value; throws hs::Error naming `source` and the value when unknown.
Kind kind_from_name(std::string_view name, std::string_view source);

// Appends the words of `text` (views into it, in order, covering it exactly) to `words`. Bytes that are not valid
// UTF-8 are treated as one punctuation-like code point each, so any byte string splits losslessly.
void split(Kind kind, std::string_view text, std::vector<std::string_view>& words);

}  // namespace hs::pretok
