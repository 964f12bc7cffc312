// Tokenizer tests: parity with Hugging Face's SmolLM2-135M-Instruct tokenizer on the fixture corpus
// (tests/fixtures/tokenizer/smollm2_cases.jsonl, made by tools/gen_tokenizer_fixtures.py), round trips,
// special tokens, ChatML rendering, and refusal of unknown pre-tokenizers.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "gguf/gguf.hpp"
#include "util/json.hpp"
#include "tokenizer/pretokenizer.hpp"
#include "tokenizer/tokenizer.hpp"
#include "util/error.hpp"
#include "test_model_path.hpp"
#include "tokenizer_test_util.hpp"

namespace {

const std::string kModel = test_model_file();
const std::string kCases = fixtures_dir() + "/tokenizer/smollm2_cases.jsonl";

// The real model's tokenizer, loaded once. A missing model is a failure, never a silent skip.
const hs::Tokenizer& smollm2() {
    static const hs::Tokenizer tok = [] {
        if (!std::filesystem::exists(kModel))
            FAIL("test model " << kModel << " is missing: run scripts/fetch_model.sh (or copy the file there)");
        return hs::Tokenizer::from_gguf(hs::GgufFile::open(kModel));
    }();
    return tok;
}

std::vector<hs::json::Value> load_cases() { return load_jsonl(kCases); }

hs::TokenizerVocab tiny_vocab(std::string pre) {
    hs::TokenizerVocab v;
    v.source = "tiny";
    v.pre = std::move(pre);
    for (int c = 0x21; c <= 0x7E; ++c) v.tokens.push_back(std::string(1, static_cast<char>(c)));
    return v;
}

}  // namespace

TEST_CASE("tokenizer: the SmolLM2 GGUF metadata is read", "[tokenizer]") {
    const hs::Tokenizer& tok = smollm2();
    CHECK(tok.n_vocab() == 49152);
    CHECK(tok.pre_tokenizer() == "smollm");
    CHECK(tok.bos_id() == 1);
    CHECK(tok.eos_id() == 2);
    CHECK_FALSE(tok.add_bos());
    CHECK(tok.token_type(0) == hs::TokenType::CONTROL);
    CHECK(tok.token_type(17) == hs::TokenType::NORMAL);
    CHECK(tok.is_special(2));
    CHECK_FALSE(tok.is_special(100));
    CHECK(tok.token_text(216) == " ");
    CHECK(tok.token_text(1) == "<|im_start|>");
    const auto eog = tok.eog_ids();
    CHECK(std::find(eog.begin(), eog.end(), 2) != eog.end());
    CHECK(std::find(eog.begin(), eog.end(), 0) != eog.end());
}

TEST_CASE("tokenizer: known smoke value", "[tokenizer]") {
    CHECK(smollm2().encode("Hello world! 123") == std::vector<int32_t>{19556, 905, 17, 216, 33, 34, 35});
    CHECK(smollm2().encode("").empty());
    CHECK(smollm2().encode("hi", true, true) == smollm2().encode("hi"));  // add_bos_token is false in the file
}

TEST_CASE("tokenizer: ids identical to HF on every fixture string", "[tokenizer]") {
    const EncodeCheck r = check_encode_cases(smollm2(), load_cases());
    INFO("fixture strings checked: " << r.checked);
    CHECK(r.checked >= 600);
    CHECK(r.failed == 0);
}

// SmolLM2's vocabulary lacks the byte symbols of these 21 bytes (never or rarely seen in training); HF's BPE, having
// no unk token, drops them silently, and so do we. Every other byte string survives encode/decode exactly.
const std::vector<uint8_t> kBytesWithoutToken = {0x04, 0x06, 0x13, 0x14, 0x16, 0x1d, 0xc0, 0xc1, 0xf1, 0xf2, 0xf5,
                                                 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff};

std::string without_unrepresentable(std::string s) {
    std::erase_if(s, [](char c) {
        return std::find(kBytesWithoutToken.begin(), kBytesWithoutToken.end(), static_cast<uint8_t>(c)) !=
               kBytesWithoutToken.end();
    });
    return s;
}

TEST_CASE("tokenizer: decode(encode(s)) gives back the bytes", "[tokenizer]") {
    const hs::Tokenizer& tok = smollm2();
    for (int b = 0; b < 256; ++b) {
        const bool dropped = std::find(kBytesWithoutToken.begin(), kBytesWithoutToken.end(), b) != kBytesWithoutToken.end();
        INFO("byte " << b);
        CHECK(tok.encode(std::string(1, static_cast<char>(b))).empty() == dropped);
    }
    size_t n_exact = 0;
    for (const auto& c : load_cases()) {
        if (c.at("kind").str != "encode") continue;
        const std::string& text = c.at("text").str;
        // Special tokens come back only when rendered.
        const std::string back = tok.decode(tok.encode(text, c.at("parse_special").b), true);
        n_exact += back == text;
        if (back != without_unrepresentable(text))
            FAIL_CHECK("round trip changed \"" << escaped(text) << "\" into \"" << escaped(back) << "\"");
    }
    CHECK(n_exact >= 700);
    // Arbitrary bytes, including invalid UTF-8, survive too (up to the bytes without a token).
    const std::string junk = std::string("\xff\xfe a\x80\xc3(\xe2\x82 \xf0\x9f\x98", 15) + std::string(1, '\0');
    CHECK(tok.decode(tok.encode(junk)) == without_unrepresentable(junk));
}

TEST_CASE("tokenizer: special tokens", "[tokenizer]") {
    const hs::Tokenizer& tok = smollm2();
    const std::string text = "<|im_start|>user\nhi<|im_end|>";
    CHECK(tok.encode(text, true) == std::vector<int32_t>{1, 4093, 198, 6004, 2});
    const auto plain = tok.encode(text, false);
    CHECK(std::find(plain.begin(), plain.end(), 1) == plain.end());
    CHECK(tok.decode(plain) == text);
    CHECK(tok.decode({1, 4093, 198, 6004, 2}) == "user\nhi");
    CHECK(tok.decode({1, 4093, 198, 6004, 2}, true) == text);
    CHECK_THROWS_AS(tok.decode({49152}), hs::Error);
    CHECK_THROWS_AS(tok.token_text(-1), hs::Error);
}

TEST_CASE("tokenizer: chat template renders as HF's apply_chat_template", "[tokenizer]") {
    const hs::Tokenizer& tok = smollm2();
    size_t n = 0;
    for (const auto& c : load_cases()) {
        if (c.at("kind").str != "chat") continue;
        std::vector<hs::ChatMessage> messages;
        for (const auto& m : c.at("messages").arr) messages.push_back({m.at("role").str, m.at("content").str});
        const std::string got = tok.apply_chat_template(messages, c.at("add_generation_prompt").b);
        INFO("case " << n << ": HF \"" << escaped(c.at("rendered").str, 400) << "\"\n ours \"" << escaped(got, 400) << "\"");
        CHECK(got == c.at("rendered").str);
        ++n;
    }
    CHECK(n >= 10);
    const std::string with_default = tok.apply_chat_template({{"user", "Hi"}}, true);
    CHECK(with_default ==
          "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
          "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST_CASE("tokenizer: unknown pre-tokenizer, model or template is refused", "[tokenizer]") {
    hs::TokenizerVocab v = tiny_vocab("no-such-pre");
    try {
        hs::Tokenizer::from_vocab(v);
        FAIL("an unknown pre-tokenizer was accepted");
    } catch (const hs::Error& e) {
        CHECK_THAT(e.what(), Catch::Contains("no-such-pre") && Catch::Contains("tiny"));
    }
    v = tiny_vocab("gpt2");
    v.model = "bogus";
    CHECK_THROWS_WITH(hs::Tokenizer::from_vocab(v), Catch::Contains("\"bogus\""));
    v.model = "llama";  // SentencePiece: needs scores (tests/test_tokenizer_gemma.cpp)
    CHECK_THROWS_WITH(hs::Tokenizer::from_vocab(v), Catch::Contains("tokenizer.ggml.scores"));
    v = tiny_vocab("gpt2");
    v.merges = {"a zz"};
    CHECK_THROWS_WITH(hs::Tokenizer::from_vocab(v), Catch::Contains("zz"));
    v = tiny_vocab("gpt2");
    v.chat_template = "{{ messages }}";
    const hs::Tokenizer t = hs::Tokenizer::from_vocab(v);
    CHECK_THROWS_AS(t.apply_chat_template({{"user", "x"}}, true), hs::Error);
}

TEST_CASE("tokenizer: every pre-tokenizer splits as HF's regex does", "[tokenizer]") {
    const std::string path = fixtures_dir() + "/tokenizer/pretokenizer_splits.jsonl";
    std::ifstream in(path);
    if (!in) FAIL("fixture " << path << " is missing: run tools/gen_tokenizer_fixtures.py");
    std::map<std::string, size_t> checked;
    size_t n_failed = 0;
    std::string line;
    while (std::getline(in, line) && n_failed < 5) {
        const hs::json::Value c = hs::json::parse(line);
        const std::string& pre = c.at("pre").str;
        const std::string& text = c.at("text").str;
        std::vector<std::string_view> words;
        hs::pretok::split(hs::pretok::kind_from_name(pre, "test"), text, words);
        std::vector<std::string> got(words.begin(), words.end()), expected;
        for (const auto& w : c.at("words").arr) expected.push_back(w.str);
        ++checked[pre];
        if (got != expected) {
            ++n_failed;
            size_t at = 0;
            while (at < got.size() && at < expected.size() && got[at] == expected[at]) ++at;
            FAIL_CHECK(pre << ": \"" << escaped(text) << "\" word " << at << ": HF \""
                           << (at < expected.size() ? escaped(expected[at]) : "<end>") << "\", ours \""
                           << (at < got.size() ? escaped(got[at]) : "<end>") << "\"");
        }
    }
    for (const char* pre : {"smollm", "gpt2", "llama-bpe", "qwen2"}) CHECK(checked[pre] >= 600);
    CHECK(n_failed == 0);
}

TEST_CASE("tokenizer: byte-level tokenizer", "[tokenizer]") {
    const hs::Tokenizer t = hs::Tokenizer::byte_level(260);
    CHECK(t.encode("ab") == std::vector<int32_t>{97, 98});
    CHECK(t.decode({256, 97, 257}) == "a");
    CHECK(t.bos_id() == 256);
    CHECK_THROWS_AS(hs::Tokenizer::byte_level(100), hs::Error);
}
