// tokenizer/tokenizer_gguf.cpp: read a tokenizer from a GGUF file's tokenizer.* metadata.
//
// Kept apart from tokenizer.cpp so that code using only from_vocab/byte_level does not need the GGUF reader.
#include "gguf/gguf.hpp"
#include "tokenizer/tokenizer.hpp"

namespace hs {

Tokenizer Tokenizer::from_gguf(const GgufFile& file) { return from_vocab(vocab_from_gguf(file)); }

TokenizerVocab Tokenizer::vocab_from_gguf(const GgufFile& file) {
    TokenizerVocab v;
    v.source = file.path();
    v.model = file.get_string("tokenizer.ggml.model");
    // A file without a pre-tokenizer name is a plain GPT-2 one (llama.cpp's "default").
    const GgufValue* pre = file.find("tokenizer.ggml.pre");
    v.pre = pre ? pre->as_string("tokenizer.ggml.pre") : std::string("default");
    v.tokens = file.get_string_array("tokenizer.ggml.tokens");
    if (file.find("tokenizer.ggml.token_type")) {
        for (int64_t ty : file.get_int_array("tokenizer.ggml.token_type"))
            v.token_types.push_back(static_cast<int32_t>(ty));
    }
    if (file.find("tokenizer.ggml.merges")) v.merges = file.get_string_array("tokenizer.ggml.merges");
    const bool sentencepiece = v.model == "llama";
    if (sentencepiece) {
        // Required for SentencePiece; from_vocab names the field when it is missing or the wrong length.
        if (file.find("tokenizer.ggml.scores")) v.scores = file.get_float_array("tokenizer.ggml.scores");
        // llama.cpp's defaults for a SentencePiece file that does not say: a "▁" before the text, and BOS.
        v.add_space_prefix = file.get_bool("tokenizer.ggml.add_space_prefix", true);
    }
    v.bos_id = static_cast<int32_t>(file.get_int("tokenizer.ggml.bos_token_id", -1));
    v.eos_id = static_cast<int32_t>(file.get_int("tokenizer.ggml.eos_token_id", -1));
    v.unk_id = static_cast<int32_t>(file.get_int("tokenizer.ggml.unknown_token_id", -1));
    v.pad_id = static_cast<int32_t>(file.get_int("tokenizer.ggml.padding_token_id", -1));
    v.add_bos = file.get_bool("tokenizer.ggml.add_bos_token", sentencepiece);
    if (const GgufValue* tmpl = file.find("tokenizer.chat_template")) v.chat_template = tmpl->as_string("tokenizer.chat_template");
    return v;
}

}  // namespace hs
