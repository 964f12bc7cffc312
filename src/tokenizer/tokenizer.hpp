// tokenizer/tokenizer.hpp: the model's own tokenizer, built from the GGUF metadata or a Hugging Face tokenizer.json.
//
// Two sources: a GGUF file's tokenizer.* metadata (from_gguf) and a Hugging Face folder's tokenizer.json
// (from_hf_folder, tokenizer/tokenizer_hf.cpp).
// GGUF: tokenizer.ggml.model = "gpt2" (byte-level BPE) with the pre-tokenizers "smollm" (SmolLM/SmolLM2:
// individual digits, then the GPT-2 pattern), "gpt2", "llama-bpe" (Llama 3) and "qwen2"; and "llama" (SentencePiece
// BPE: scored pieces, "▁" for spaces, <0xNN> byte fallback, as Gemma 3 ships it). Unknown models or pre-tokenizers
// are refused with an error naming the file and the value. Unicode letter/number/whitespace classes
// come from generated tables (tokenizer/unicode_tables.cpp, made by tools/gen_unicode_tables.py).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <memory>
#include <vector>

namespace hs {

class GgufFile;
namespace hf {
struct Spec;
}

enum class TokenType : int32_t { NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6 };

// Everything a tokenizer is built from: what from_gguf reads from the file's tokenizer.* keys.
// Kept as plain arrays so that tests and tools can build a tokenizer without a GGUF file.
struct TokenizerVocab {
    std::string source;                // where it came from (a file path), used in error messages
    std::string model = "gpt2";        // tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    std::string pre;                   // tokenizer.ggml.pre (gpt2): "smollm", "gpt2", "llama-bpe" or "qwen2"
    std::vector<std::string> tokens;   // id -> token text: gpt2 in the bytes-as-unicode alphabet, llama with "▁"
    std::vector<int32_t> token_types;  // id -> TokenType value; empty means all NORMAL
    std::vector<std::string> merges;   // gpt2: "left right"; the index is the merge rank (lower merges first)
    std::vector<float> scores;         // llama: id -> piece score (higher merges first); one per token
    int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
    bool add_bos = false;              // tokenizer.ggml.add_bos_token (absent: false for gpt2, true for llama)
    bool add_space_prefix = false;     // llama: tokenizer.ggml.add_space_prefix ("▁" before the text; absent: true)
    std::string chat_template;         // tokenizer.chat_template; empty when none
};

// Options of Tokenizer::from_hf_folder.
struct HfLoadOptions {
    // Run a hand-written pre-tokenizer (tokenizer/pretokenizer.hpp) when the tokenizer.json's pre_tokenizer equals
    // one; false runs every Split regex through PCRE2 (the parity tests compare the two).
    bool pretokenizer_fast_paths = true;
};

struct ChatMessage {
    std::string role;     // "system", "user", "assistant"
    std::string content;
};

// The GPT-2 byte-level BPE symbol of one byte (bytes_to_unicode, UTF-8): the token text under which byte-level
// vocabularies store that byte ("T" for 'T', "Ġ" for ' ').
std::string byte_level_symbol(uint8_t byte);

class Tokenizer {
public:
    static Tokenizer from_gguf(const GgufFile& file);  // from_vocab(vocab_from_gguf(file))
    // The file's tokenizer.* keys as read (types checked, nothing else): tests and tools vary them.
    static TokenizerVocab vocab_from_gguf(const GgufFile& file);
    // Validates the vocabulary (sizes, merges that name known tokens, known model/pre-tokenizer) and builds the
    // tokenizer. Throws hs::Error naming vocab.source and the offending value.
    static Tokenizer from_vocab(TokenizerVocab vocab);
    // A Hugging Face tokenizer folder: dir/tokenizer.json (required; BPE model, byte-level or SentencePiece-style
    // with byte fallback; see tokenizer/tokenizer_hf.cpp and docs/file-formats.md for the supported components) and
    // dir/tokenizer_config.json (optional: chat_template, add_bos_token, bos/eos/pad token names). Unknown
    // component types and missing fields throw hs::Error naming "<dir>/tokenizer.json" and the field's JSON path.
    static Tokenizer from_hf_folder(const std::string& dir, const HfLoadOptions& options = {});
    // A tokenizer over single bytes (ids 0..255 are the bytes, 256 = BOS, 257 = EOS) for random-weight models.
    static Tokenizer byte_level(int32_t n_vocab);

    // parse_special: text that spells a control/user-defined token (e.g. "<|im_start|>") becomes that token's id.
    // SentencePiece vocabularies match their user-defined tokens (Gemma: "\n", runs of spaces or tabs, HTML tags)
    // in any case, as llama.cpp and HF do.
    // add_bos: prepend BOS when the model asks for it (tokenizer.ggml.add_bos_token) -- never forced.
    std::vector<int32_t> encode(std::string_view text, bool parse_special = true, bool add_bos = false) const;
    // Concatenated bytes of the tokens ("▁" as a space, <0xNN> pieces as their byte); control tokens are rendered
    // only when render_special is true.
    std::string decode(const std::vector<int32_t>& ids, bool render_special = false) const;
    std::string token_text(int32_t id) const;  // the token's raw bytes

    // The model's chat template, rendered for the templates we know (ChatML as used by SmolLM2-Instruct, Gemma 3's),
    // as transformers' apply_chat_template(tokenize=False) renders it but without the leading BOS that Gemma's
    // template writes: pass the text to encode(text, true, add_bos()), which adds it (so the ids equal HF's
    // apply_chat_template(tokenize=True)). Throws hs::Error when the file has a template we do not recognise, or
    // the template refuses the conversation (Gemma: roles that do not alternate user/assistant).
    std::string apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
    bool has_chat_template() const;  // the file has a tokenizer.chat_template (known or not)

    int32_t n_vocab() const;
    int32_t bos_id() const;  // -1 when none
    int32_t eos_id() const;  // -1 when none
    bool add_bos() const;
    TokenType token_type(int32_t id) const;
    bool is_special(int32_t id) const;     // CONTROL, UNKNOWN, UNUSED (USER_DEFINED tokens are text, as in HF)
    std::vector<int32_t> eog_ids() const;  // ids that end generation (EOS, <|im_end|>, <|endoftext|> when present)
    const std::string& pre_tokenizer() const;

    Tokenizer();
    ~Tokenizer();
    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    Tokenizer(const Tokenizer&);
    Tokenizer& operator=(const Tokenizer&);

private:
    static Tokenizer from_hf_spec(hf::Spec spec);  // tokenizer.cpp: builds the tokenizer read by from_hf_folder

    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace hs
