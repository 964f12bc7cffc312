// Tokenizer tests for SentencePiece vocabularies (tokenizer.ggml.model = "llama"): parity with transformers' Gemma
// tokenizer built from the Gemma 3 270M GGUF on the fixture corpus (tests/fixtures/tokenizer/gemma3_cases.jsonl,
// made by tools/gen_tokenizer_fixtures.py --gemma3; cross-checked there against the sentencepiece library), round
// trips, added tokens, Gemma's chat template, and refusal of broken vocabularies.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>

#include "gguf/gguf.hpp"
#include "temp_dir.hpp"
#include "test_model_path.hpp"
#include "tokenizer/tokenizer.hpp"
#include "tokenizer_test_util.hpp"
#include "util/error.hpp"

namespace {

const std::string kGemmaCases = fixtures_dir() + "/tokenizer/gemma3_cases.jsonl";

// The real vocabulary as read from the file, loaded once (262,144 pieces).
const hs::TokenizerVocab& gemma3_vocab() {
    static const hs::TokenizerVocab vocab = hs::Tokenizer::vocab_from_gguf(hs::GgufFile::open(test_gemma3_path()));
    return vocab;
}

const hs::Tokenizer& gemma3() {
    static const hs::Tokenizer tok = hs::Tokenizer::from_vocab(gemma3_vocab());
    return tok;
}

const std::vector<hs::json::Value>& gemma_cases() {
    static const std::vector<hs::json::Value> cases = load_jsonl(kGemmaCases);
    return cases;
}

bool contains(const std::vector<int32_t>& ids, int32_t id) {
    return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// Runs `build` and requires hs::Error whose message contains every one of `parts`.
template <typename F>
void expect_error(F&& build, const std::vector<std::string>& parts) {
    try {
        build();
        FAIL("accepted; expected an error with: " << parts.front());
    } catch (const hs::Error& e) {
        const std::string msg = e.what();
        INFO("message: " << msg);
        for (const std::string& p : parts) CHECK(msg.find(p) != std::string::npos);
    }
}

// A small SentencePiece vocabulary: control tokens, byte pieces, characters and a few merges with falling scores.
hs::TokenizerVocab tiny_spm_vocab() {
    hs::TokenizerVocab v;
    v.source = "tiny-spm";
    v.model = "llama";
    const auto add = [&](std::string piece, hs::TokenType type, float score) {
        v.tokens.push_back(std::move(piece));
        v.token_types.push_back(static_cast<int32_t>(type));
        v.scores.push_back(score);
    };
    add("<unk>", hs::TokenType::UNKNOWN, 0);   // 0
    add("<s>", hs::TokenType::CONTROL, 0);     // 1
    add("</s>", hs::TokenType::CONTROL, 0);    // 2
    for (int b = 0; b < 256; ++b) {            // 3 .. 258
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        add(name, hs::TokenType::BYTE, 0);
    }
    const float base = 0;
    add("\xE2\x96\x81t", hs::TokenType::NORMAL, base - 1);         // 259 "▁t"
    add("he", hs::TokenType::NORMAL, base - 2);                    // 260
    add("\xE2\x96\x81the", hs::TokenType::NORMAL, base - 3);       // 261 "▁the" (from "▁t" + "he")
    add("ab", hs::TokenType::NORMAL, base - 4);                    // 262
    add("bc", hs::TokenType::NORMAL, base - 5);                    // 263
    for (const char* c : {"\xE2\x96\x81", "t", "h", "e", "a", "b", "c"})  // 264..270
        add(c, hs::TokenType::NORMAL, base - 10);
    add("<hi>", hs::TokenType::USER_DEFINED, 0);                   // 271
    add("\xE2\x96\x81" "a", hs::TokenType::NORMAL, base - 11);         // 272 "▁a"
    add("c\xE2\x96\x81" "a", hs::TokenType::NORMAL, base - 12);        // 273 "c▁a": merges across a word cut
    v.bos_id = 1;
    v.eos_id = 2;
    v.unk_id = 0;
    v.add_bos = true;
    return v;
}

}  // namespace

TEST_CASE("gemma3 tokenizer: the GGUF metadata is read", "[tokenizer]") {
    const hs::Tokenizer& tok = gemma3();
    CHECK(tok.n_vocab() == 262144);
    CHECK(tok.bos_id() == 2);
    CHECK(tok.eos_id() == 1);
    CHECK(tok.add_bos());  // tokenizer.ggml.add_bos_token = true
    CHECK(tok.token_type(105) == hs::TokenType::CONTROL);       // <start_of_turn>
    CHECK(tok.token_type(107) == hs::TokenType::USER_DEFINED);  // "\n"
    CHECK(tok.token_type(238) == hs::TokenType::BYTE);          // <0x00>
    CHECK(tok.token_text(105) == "<start_of_turn>");
    CHECK(tok.token_text(236743) == " ");                       // "▁"
    CHECK(tok.token_text(238 + 0x41) == "A");                   // <0x41>
    CHECK(tok.token_text(138) == "  ");
    CHECK(tok.is_special(105));
    CHECK_FALSE(tok.is_special(107));  // "\n" is user-defined text: eval's newline stops must see it
    CHECK_FALSE(tok.is_special(238));  // byte pieces are text too
    const auto eog = tok.eog_ids();
    CHECK(contains(eog, 1));    // <eos>
    CHECK(contains(eog, 106));  // <end_of_turn>
    // google/gemma-3-270m is the base model: its file has no chat template, and says so when asked for one.
    CHECK_FALSE(tok.has_chat_template());
    CHECK_THROWS_WITH(tok.apply_chat_template({{"user", "hi"}}, true), Catch::Contains("no chat template"));
}

TEST_CASE("gemma3 tokenizer: known values, no dummy prefix, BOS from the file", "[tokenizer]") {
    const hs::Tokenizer& tok = gemma3();
    CHECK(tok.encode("Hello world") == std::vector<int32_t>{9259, 1902});  // "Hello", "▁world"
    CHECK(tok.encode(" Hello") == std::vector<int32_t>{26352});           // "▁Hello": the space is the text's own
    CHECK(tok.encode("").empty());
    CHECK(tok.encode("", true, true) == std::vector<int32_t>{2});
    CHECK(tok.encode("Hello world", true, true) == std::vector<int32_t>{2, 9259, 1902});
}

TEST_CASE("gemma3 tokenizer: ids identical to HF on every fixture string", "[tokenizer]") {
    const EncodeCheck r = check_encode_cases(gemma3(), gemma_cases());
    INFO("fixture strings checked: " << r.checked << " (" << r.plain << " with parse_special=false)");
    CHECK(r.checked >= 1000);
    CHECK(r.plain >= 100);
    CHECK(r.failed == 0);
}

TEST_CASE("gemma3 tokenizer: decode(encode(s)) gives back s, byte fallback included", "[tokenizer]") {
    const hs::Tokenizer& tok = gemma3();
    size_t n = 0, n_exact = 0;
    for (const auto& c : gemma_cases()) {
        if (c.at("kind").str != "encode") continue;
        const std::string& text = c.at("text").str;
        // Every byte has a piece (<0xNN>), so everything comes back; control tokens only when rendered. The one
        // exception is a literal "▁" in the text: pieces spell spaces that way, so it decodes as a space.
        const std::string back = tok.decode(tok.encode(text, c.at("parse_special").b), true);
        std::string expected = text;
        for (size_t at; (at = expected.find("\xE2\x96\x81")) != std::string::npos;) expected.replace(at, 3, " ");
        if (back != expected)
            FAIL_CHECK("round trip changed \"" << escaped(text) << "\" into \"" << escaped(back) << "\"");
        n_exact += back == text;
        ++n;
    }
    CHECK(n >= 1000);
    CHECK(n_exact >= n - 10);
    // Arbitrary bytes, including invalid UTF-8 and NUL, go through the byte pieces.
    const std::string junk = std::string("\xff\xfe a\x80\xc3(\xe2\x82 \xf0\x9f\x98", 15) + std::string(1, '\0');
    const auto ids = tok.encode(junk);
    CHECK(contains(ids, 238 + 0xff));
    CHECK(tok.decode(ids) == junk);
    for (int b = 0; b < 256; ++b) {
        const std::string s(1, static_cast<char>(b));
        INFO("byte " << b);
        CHECK(tok.decode(tok.encode(s)) == s);
    }
}

TEST_CASE("gemma3 tokenizer: control tokens only with parse_special, user-defined ones always", "[tokenizer]") {
    const hs::Tokenizer& tok = gemma3();
    const std::string text = "<start_of_turn>user\nhi<end_of_turn>";
    CHECK(tok.encode(text, true) == std::vector<int32_t>{105, 2364, 107, 2202, 106});
    const auto plain = tok.encode(text, false);
    CHECK_FALSE(contains(plain, 105));
    CHECK(contains(plain, 107));  // "\n" is user-defined: matched either way
    CHECK(tok.decode(plain) == text);
    CHECK(tok.decode({2, 105, 2364, 107}) == "user\n");
    CHECK(tok.decode({2, 105, 2364, 107}, true) == "<bos><start_of_turn>user\n");
    CHECK(tok.encode("<b>x</b>", false) == tok.encode("<b>x</b>", true));
    CHECK(tok.encode("<b>x</b>", false).front() == 200);
    // Runs of spaces are pieces merged in vocabulary order (as HF), not added tokens matched greedily: 40 spaces
    // are 16 + 24, where greedy matching would give 31 + 9.
    CHECK(tok.encode(std::string(40, ' ') + "x") == std::vector<int32_t>{152, 160, 236781});
    CHECK_THROWS_AS(tok.decode({262144}), hs::Error);
}

TEST_CASE("gemma3 chat template renders as HF's apply_chat_template", "[tokenizer]") {
    std::string tmpl;
    for (const auto& c : gemma_cases())
        if (c.at("kind").str == "template") tmpl = c.at("text").str;
    REQUIRE_FALSE(tmpl.empty());
    hs::TokenizerVocab v = gemma3_vocab();
    v.chat_template = tmpl;
    const hs::Tokenizer tok = hs::Tokenizer::from_vocab(std::move(v));
    size_t n = 0, n_refused = 0;
    for (const auto& c : gemma_cases()) {
        if (c.at("kind").str != "chat") continue;
        std::vector<hs::ChatMessage> messages;
        for (const auto& m : c.at("messages").arr) messages.push_back({m.at("role").str, m.at("content").str});
        const bool gen = c.at("add_generation_prompt").b;
        ++n;
        if (c.has("error")) {
            ++n_refused;
            CHECK_THROWS_WITH(tok.apply_chat_template(messages, gen), Catch::Contains(c.at("error").str));
            continue;
        }
        const std::string got = tok.apply_chat_template(messages, gen);
        const std::string& hf = c.at("rendered").str;
        INFO("case " << n << ": HF \"" << escaped(hf, 400) << "\"\n ours \"" << escaped(got, 400) << "\"");
        // Our text leaves the template's leading <bos> to encode(add_bos); the ids must be HF's exactly.
        CHECK("<bos>" + got == hf);
        CHECK(tok.encode(got, true, tok.add_bos()) == ids_of(c.at("ids")));
    }
    CHECK(n >= 10);
    CHECK(n_refused >= 2);
}

TEST_CASE("gemma3 chat template: the single-newline variant is known, anything else is refused", "[tokenizer]") {
    std::string tmpl;
    for (const auto& c : gemma_cases())
        if (c.at("kind").str == "template") tmpl = c.at("text").str;
    REQUIRE(tmpl.find("'\\n\\n'") != std::string::npos);
    hs::TokenizerVocab v = tiny_spm_vocab();
    // Earlier conversions put a single newline after the system text.
    v.chat_template = tmpl;
    for (size_t at; (at = v.chat_template.find("'\\n\\n'")) != std::string::npos;)
        v.chat_template.replace(at, 6, "'\\n'");
    const hs::Tokenizer t1 = hs::Tokenizer::from_vocab(v);
    CHECK(t1.apply_chat_template({{"system", "S"}, {"user", "U"}}, true) ==
          "<start_of_turn>user\nS\nU<end_of_turn>\n<start_of_turn>model\n");
    // A changed template (here: no trim of the content) is not rendered as if it were the known one.
    v.chat_template = tmpl;
    v.chat_template.replace(v.chat_template.find("message['content'] | trim"), 25, "message['content']");
    const hs::Tokenizer t2 = hs::Tokenizer::from_vocab(v);
    CHECK(t2.has_chat_template());
    expect_error([&] { t2.apply_chat_template({{"user", "x"}}, true); }, {"tiny-spm", "unsupported chat template",
                                                                          "tokenizer.chat_template"});
}

TEST_CASE("spm tokenizer: merges by score, byte fallback, space prefix, unknown without byte pieces", "[tokenizer]") {
    hs::TokenizerVocab v = tiny_spm_vocab();
    const hs::Tokenizer tok = hs::Tokenizer::from_vocab(v);
    CHECK(tok.encode("the") == std::vector<int32_t>{265, 260});           // "t" + "he": no "▁" added
    CHECK(tok.encode(" the") == std::vector<int32_t>{261});               // "▁t" + "he" -> "▁the"
    CHECK(tok.encode("abc") == std::vector<int32_t>{262, 270});           // "ab" (-4) beats "bc" (-5)
    CHECK(tok.encode("x") == std::vector<int32_t>{3 + 'x'});              // no piece: byte fallback
    CHECK(tok.encode("\xC3\xA9") == std::vector<int32_t>{3 + 0xC3, 3 + 0xA9});
    CHECK(tok.decode({3 + 0xC3, 3 + 0xA9}) == "\xC3\xA9");
    CHECK(tok.encode("a<hi>b", false) == std::vector<int32_t>{268, 271, 269});  // user-defined: always whole
    CHECK(tok.encode("<s>", false) != std::vector<int32_t>{1});
    CHECK(tok.encode("<s>a", true) == std::vector<int32_t>{1, 268});
    CHECK(tok.encode("a", true, true) == std::vector<int32_t>{1, 268});
    CHECK(tok.decode({1, 261}) == " the");
    // "c▁a" has a "▁" after another character: the text is not cut before that "▁" where the piece occurs.
    CHECK(tok.encode("c a") == std::vector<int32_t>{273});
    CHECK(tok.encode("b a c a the") == std::vector<int32_t>{269, 272, 264, 273, 261});  // b ▁a ▁ c▁a ▁the

    // add_space_prefix: a "▁" before the text (only at its start), dropped again by decode.
    v.add_space_prefix = true;
    const hs::Tokenizer pre = hs::Tokenizer::from_vocab(v);
    CHECK(pre.encode("the") == std::vector<int32_t>{261});
    CHECK(pre.encode("<s>the", true) == std::vector<int32_t>{1, 265, 260});
    CHECK(pre.decode(pre.encode("the the")) == "the the");

    // Without byte pieces, what has no piece is the unknown token.
    hs::TokenizerVocab nb = tiny_spm_vocab();
    for (int32_t& ty : nb.token_types)
        if (ty == static_cast<int32_t>(hs::TokenType::BYTE)) ty = static_cast<int32_t>(hs::TokenType::UNUSED);
    CHECK(hs::Tokenizer::from_vocab(nb).encode("xa") == std::vector<int32_t>{0, 268});
}

TEST_CASE("spm tokenizer: broken vocabularies are refused naming the file and the field", "[tokenizer]") {
    const auto build = [](hs::TokenizerVocab v) { return [v] { hs::Tokenizer::from_vocab(v); }; };
    hs::TokenizerVocab v = tiny_spm_vocab();
    v.model = "bert";
    expect_error(build(v), {"tiny-spm", "tokenizer.ggml.model", "\"bert\""});
    v = tiny_spm_vocab();
    v.scores.pop_back();
    expect_error(build(v), {"tiny-spm", "tokenizer.ggml.scores", std::to_string(v.tokens.size() - 1) + " entries"});
    v.scores.clear();
    expect_error(build(v), {"tiny-spm", "tokenizer.ggml.scores"});
    v = tiny_spm_vocab();
    v.token_types.resize(10);
    expect_error(build(v), {"tiny-spm", "tokenizer.ggml.token_type", "10 entries"});
    v = tiny_spm_vocab();
    v.token_types[5] = 9;
    expect_error(build(v), {"tiny-spm", "tokenizer.ggml.token_type[5]"});
    v = tiny_spm_vocab();
    v.token_types[3 + 0x41] = static_cast<int32_t>(hs::TokenType::NORMAL);  // <0x41> no longer a byte piece
    expect_error(build(v), {"tiny-spm", "tokenizer.ggml.tokens", "<0x41>", "255 of 256"});
    v = tiny_spm_vocab();
    v.tokens[3 + 0x41] = "<0x4G>";
    expect_error(build(v), {"tiny-spm", "tokenizer.ggml.tokens[68]", "<0x4G>"});
    v = tiny_spm_vocab();
    for (int32_t& ty : v.token_types)
        if (ty == static_cast<int32_t>(hs::TokenType::BYTE)) ty = static_cast<int32_t>(hs::TokenType::UNUSED);
    v.unk_id = -1;
    expect_error(build(v), {"tiny-spm", "unknown_token_id"});
}

TEST_CASE("spm tokenizer: a GGUF with broken tokenizer arrays is refused naming the file and the key", "[tokenizer]") {
    TempDir dir("spm_gguf");
    const hs::TokenizerVocab base = tiny_spm_vocab();
    const auto write = [&](const std::string& name, hs::GgufValue scores, const std::string& model = "llama") {
        hs::GgufWriter w;
        w.add("general.architecture", hs::GgufWriter::string("gemma3"));
        w.add("tokenizer.ggml.model", hs::GgufWriter::string(model));
        w.add("tokenizer.ggml.tokens", hs::GgufWriter::string_array(base.tokens));
        w.add("tokenizer.ggml.token_type", hs::GgufWriter::i32_array(base.token_types));
        w.add("tokenizer.ggml.scores", std::move(scores));
        w.add("tokenizer.ggml.unknown_token_id", hs::GgufWriter::u32(0));
        w.add("tokenizer.ggml.add_space_prefix", hs::GgufWriter::boolean(false));
        const std::string path = dir.file(name);
        w.write(path);
        return path;
    };
    const std::string good = write("good.gguf", hs::GgufWriter::f32_array(base.scores));
    const hs::Tokenizer tok = hs::Tokenizer::from_gguf(hs::GgufFile::open(good));
    CHECK(tok.encode(" the") == std::vector<int32_t>{261});
    CHECK(tok.add_bos());  // absent add_bos_token: SentencePiece files get BOS (llama.cpp, transformers)

    const std::string strings = write("strings.gguf", hs::GgufWriter::string_array(base.tokens));
    expect_error([&] { hs::Tokenizer::from_gguf(hs::GgufFile::open(strings)); }, {strings, "tokenizer.ggml.scores"});
    const std::string short_scores = write("short.gguf", hs::GgufWriter::f32_array({0, 1, 2}));
    expect_error([&] { hs::Tokenizer::from_gguf(hs::GgufFile::open(short_scores)); },
                 {short_scores, "tokenizer.ggml.scores", "3 entries"});
    hs::GgufWriter types_as_floats;
    types_as_floats.add("tokenizer.ggml.model", hs::GgufWriter::string("llama"));
    types_as_floats.add("tokenizer.ggml.tokens", hs::GgufWriter::string_array(base.tokens));
    types_as_floats.add("tokenizer.ggml.token_type", hs::GgufWriter::f32_array(base.scores));
    const std::string bad_types = dir.file("types.gguf");
    types_as_floats.write(bad_types);
    expect_error([&] { hs::Tokenizer::from_gguf(hs::GgufFile::open(bad_types)); },
                 {bad_types, "tokenizer.ggml.token_type"});
    const std::string unknown = write("unknown.gguf", hs::GgufWriter::f32_array(base.scores), "wordpiece");
    expect_error([&] { hs::Tokenizer::from_gguf(hs::GgufFile::open(unknown)); },
                 {unknown, "tokenizer.ggml.model", "\"wordpiece\""});
}

TEST_CASE("gemma3 tokenizer: encode speed", "[tokenizer][slow]") {
    const hs::Tokenizer& tok = gemma3();
    std::string text;
    for (const auto& c : gemma_cases())
        if (c.at("kind").str == "encode") text += c.at("text").str + "\n";
    size_t n_ids = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int rep = 0; rep < 5; ++rep) n_ids += tok.encode(text).size();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    WARN("gemma3 encode: " << 5 * text.size() / s / 1e6 << " MB/s, " << n_ids / s / 1e6 << " M tokens/s ("
                           << text.size() << " bytes x 5)");
    CHECK(n_ids > 0);
}
