// tests/test_hf_tokenizer.cpp: Tokenizer::from_hf_folder (tokenizer.json + tokenizer_config.json) against HF
// tokenizers' own ids, recorded by tools/make_hf_tokenizer_fixtures.py (small committed tokenizers; transformers'
// tokenizers of the shipped GGUFs in models/hf-tokenizers/, skipped when absent) and by tools/gen_tokenizer_fixtures.py
// (the GGUF tokenizer tests' strings); PCRE2 Split regexes against HF's regex engine; malformed files.
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include <nlohmann/json.hpp>

#include "gguf/gguf.hpp"
#include "temp_dir.hpp"
#include "test_model_path.hpp"
#include "tokenizer/hf_pipeline.hpp"
#include "tokenizer/tokenizer.hpp"
#include "tokenizer_test_util.hpp"
#include "util/error.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string small_dir(const char* name) { return fixtures_dir() + "/tokenizer/" + name; }

// Checks every record of hf_small_cases.jsonl / hf_tokenizer_cases.jsonl for `name`: ids (encode with the record's
// parse_special and add_special_tokens) and decode(ids) without special tokens. Returns the records checked.
size_t check_hf_cases(const hs::Tokenizer& tok, const std::string& name, const std::string& file) {
    size_t checked = 0, failed = 0;
    for (const auto& c : load_jsonl(fixtures_dir() + "/tokenizer/" + file)) {
        if (c.at("tokenizer").str != name) continue;
        ++checked;
        const std::string& text = c.at("text").str;
        const bool parse_special = c.at("parse_special").b, add_special = c.at("add_special_tokens").b;
        const std::vector<int32_t> expected = ids_of(c.at("ids"));
        const std::vector<int32_t> got = tok.encode(text, parse_special, add_special);
        if (got != expected) {
            ++failed;
            const size_t at = first_difference(got, expected);
            FAIL_CHECK(name << ": \"" << escaped(text) << "\" parse_special=" << parse_special << " add_special="
                            << add_special << ": first difference at " << at << "\n  HF:   " << ids_str(expected)
                            << "\n  ours: " << ids_str(got));
        } else if (c.at("decoded").str.find("\xEF\xBF\xBD") == std::string::npos &&
                   tok.decode(got) != c.at("decoded").str) {
            // (HF decodes to text, invalid UTF-8 as U+FFFD; decode() gives the raw bytes: such cases are not compared.)
            ++failed;
            FAIL_CHECK(name << ": decode of \"" << escaped(text) << "\": HF \"" << escaped(c.at("decoded").str)
                            << "\", ours \"" << escaped(tok.decode(got)) << "\"");
        }
        if (failed >= 5) break;
    }
    CHECK(failed == 0);
    return checked;
}

// A tokenizer.json for a byte-level GGUF vocabulary (tokens in the bytes-as-unicode alphabet, "a b" merges,
// CONTROL tokens as special added tokens) with the given pre_tokenizer: the writer that lets the real-vocabulary
// parity run wherever the GGUF is, without committing a 2 MB file.
void write_bytelevel_json(const hs::TokenizerVocab& v, const json& pre_tokenizer, const std::string& dir) {
    json vocab = json::object(), added = json::array();
    for (size_t i = 0; i < v.tokens.size(); ++i) {
        vocab[v.tokens[i]] = i;
        if (!v.token_types.empty() && v.token_types[i] == int32_t(hs::TokenType::CONTROL))
            added.push_back({{"id", i}, {"content", v.tokens[i]}, {"single_word", false}, {"lstrip", false},
                             {"rstrip", false}, {"normalized", false}, {"special", true}});
    }
    const json doc = {
        {"version", "1.0"}, {"added_tokens", added}, {"normalizer", nullptr}, {"pre_tokenizer", pre_tokenizer},
        {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}}},
        {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
        {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"fuse_unk", false},
                   {"byte_fallback", false}, {"ignore_merges", false}, {"vocab", vocab}, {"merges", v.merges}}}};
    fs::create_directories(dir);
    std::ofstream(dir + "/tokenizer.json") << doc.dump();
}

json byte_level_step(bool use_regex) {
    return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}
json split_step(const std::string& regex) {
    return {{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
}

const char* kLlama3 = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|)"
                     R"(\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kQwen2 = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|)"
                    R"(\s*[\r\n]+|\s+(?!\S)|\s+)";

// The pre_tokenizer of each GGUF tokenizer.ggml.pre, as those models' tokenizer.json files spell it.
json pre_tokenizer_for(const std::string& pre) {
    if (pre == "smollm")
        return {{"type", "Sequence"},
                {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level_step(true)}}};
    if (pre == "gpt2") return byte_level_step(true);
    return {{"type", "Sequence"},
            {"pretokenizers", {split_step(pre == "llama-bpe" ? kLlama3 : kQwen2), byte_level_step(false)}}};
}

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

}  // namespace

TEST_CASE("hf tokenizer: small hand-written tokenizer.json files give HF tokenizers' ids", "[hf_tokenizer]") {
    const hs::Tokenizer bl = hs::Tokenizer::from_hf_folder(small_dir("hf_small_bytelevel"));
    // By the spec: Split cuts "hello world" into "hello", " world"; ByteLevel maps " " to "Ġ"; the merges
    // h+e, l+l, he+ll, hell+o make "hello" (259) and Ġ+w, o+r, Ġw+or, Ġwor+l, Ġworl+d make "Ġworld" (264).
    CHECK(bl.encode("hello world") == std::vector<int32_t>{259, 264});
    CHECK(bl.encode("hello world", true, true) == std::vector<int32_t>{270, 259, 264});  // TemplateProcessing <s>
    // "12345": \p{N}{1,2} gives "12", "34", "5"; only 1+2 merges (265); 3, 4, 5 are bytes 0x33.. = ids 51..53.
    CHECK(bl.encode("12345") == std::vector<int32_t>{265, 51, 52, 53});
    CHECK(check_hf_cases(bl, "hf_small_bytelevel", "hf_small_cases.jsonl") >= 100);

    const hs::Tokenizer sp = hs::Tokenizer::from_hf_folder(small_dir("hf_small_spm"));
    CHECK(check_hf_cases(sp, "hf_small_spm", "hf_small_cases.jsonl") >= 100);
    // Contiguous / MergedWithPrevious / Removed / inverted MergedWithNext Splits, Digits in runs, a Regex Replace
    // normalizer, ByteLevel with add_prefix_space and its GPT-2 regex (no fast path: PCRE2 throughout).
    const hs::Tokenizer splits = hs::Tokenizer::from_hf_folder(small_dir("hf_small_splits"));
    CHECK(check_hf_cases(splits, "hf_small_splits", "hf_small_cases.jsonl") >= 100);
    // Metaspace pre-tokenizer (prepend_scheme "first": only where the input starts, not after an added token).
    const hs::Tokenizer meta = hs::Tokenizer::from_hf_folder(small_dir("hf_small_metaspace"));
    CHECK(check_hf_cases(meta, "hf_small_metaspace", "hf_small_cases.jsonl") >= 100);
    // Unicode normalizers through ICU: NFC before Qwen2's Split (its fast path), and NFKC then NFD (PCRE2).
    const hs::Tokenizer nfc = hs::Tokenizer::from_hf_folder(small_dir("hf_small_nfc"));
    CHECK(check_hf_cases(nfc, "hf_small_nfc", "hf_small_cases.jsonl") >= 100);
    CHECK(nfc.encode("cafe\xCC\x81") == nfc.encode("caf\xC3\xA9"));  // e + U+0301 composes to U+00E9
    const hs::Tokenizer nfkc = hs::Tokenizer::from_hf_folder(small_dir("hf_small_nfkc"));
    CHECK(check_hf_cases(nfkc, "hf_small_nfkc", "hf_small_cases.jsonl") >= 100);
}

TEST_CASE("hf tokenizer: tokenizer_config.json gives BOS, EOS, add_bos and the chat template", "[hf_tokenizer]") {
    const hs::Tokenizer bl = hs::Tokenizer::from_hf_folder(small_dir("hf_small_bytelevel"));
    CHECK(bl.bos_id() == 270);
    CHECK(bl.eos_id() == 271);  // {"content": "</s>", ...}
    CHECK(bl.add_bos());
    CHECK(bl.token_type(270) == hs::TokenType::CONTROL);
    CHECK(bl.token_type(273) == hs::TokenType::USER_DEFINED);  // "[x]", not special
    CHECK(bl.has_chat_template());
    // A ChatML-like template the renderer does not know: refused when a chat is rendered, not at load.
    CHECK_THROWS_WITH(bl.apply_chat_template({{"user", "hi"}}, true), Catch::Contains("unsupported chat template"));

    const hs::Tokenizer sp = hs::Tokenizer::from_hf_folder(small_dir("hf_small_spm"));
    CHECK(sp.bos_id() == 1);
    CHECK(sp.eos_id() == 2);
    CHECK(sp.add_bos());
    CHECK(sp.has_chat_template());  // the list form: "default" is taken
    CHECK(sp.token_type(3 + 0x41) == hs::TokenType::BYTE);
    CHECK(sp.decode({1, 3 + 0xC3, 3 + 0xA9}) == "\xC3\xA9");  // ByteFallback; <bos> skipped
}

TEST_CASE("hf tokenizer: PCRE2 Split regexes cut every pre-tokenizer fixture string as HF's regex engine does",
          "[hf_tokenizer]") {
    TempDir dir("hf_pre");
    std::map<std::string, hs::hf::Pipeline> pipelines;
    for (const char* pre : {"smollm", "gpt2", "llama-bpe", "qwen2"}) {
        const std::string sub = dir.file(pre);
        hs::TokenizerVocab one;
        one.tokens = {"a"};
        write_bytelevel_json(one, pre_tokenizer_for(pre), sub);
        hs::hf::Spec spec = hs::hf::read_folder(sub);
        REQUIRE(spec.pipeline.fast.has_value());  // each of these has a hand-written fast path
        CHECK(*spec.pipeline.fast == hs::pretok::kind_from_name(pre, "test"));
        spec.pipeline.fast.reset();                // ... which is switched off here: PCRE2 only
        pipelines.emplace(pre, std::move(spec.pipeline));
    }
    const std::string path = fixtures_dir() + "/tokenizer/pretokenizer_splits.jsonl";
    std::map<std::string, size_t> checked;
    size_t failed = 0;
    for (const auto& c : load_jsonl(path)) {
        const std::string& pre = c.at("pre").str;
        const std::string& text = c.at("text").str;
        std::vector<std::string> got, expected;
        pipelines.at(pre).pre_tokenize(text, true, got);
        for (const auto& w : c.at("words").arr) expected.push_back(w.str);
        ++checked[pre];
        if (got != expected && ++failed <= 5) {
            size_t at = 0;
            while (at < got.size() && at < expected.size() && got[at] == expected[at]) ++at;
            FAIL_CHECK(pre << ": \"" << escaped(text) << "\" word " << at << ": HF \""
                           << (at < expected.size() ? escaped(expected[at]) : "<end>") << "\", PCRE2 \""
                           << (at < got.size() ? escaped(got[at]) : "<end>") << "\"");
        }
    }
    for (const char* pre : {"smollm", "gpt2", "llama-bpe", "qwen2"}) CHECK(checked[pre] >= 600);
    CHECK(failed == 0);
}

TEST_CASE("hf tokenizer: a tokenizer.json written from the SmolLM2 GGUF gives HF's ids, fast path and PCRE2",
          "[hf_tokenizer]") {
    if (!fs::exists(test_model_file())) {
        WARN("skipped: " << test_model_file() << " is missing (scripts/fetch_model.sh)");
        return;
    }
    const hs::TokenizerVocab vocab = hs::Tokenizer::vocab_from_gguf(hs::GgufFile::open(test_model_file()));
    const std::vector<hs::json::Value> cases = load_jsonl(fixtures_dir() + "/tokenizer/smollm2_cases.jsonl");
    TempDir dir("hf_smollm2");
    // SmolLM2's own pre-tokenizer (Digits + ByteLevel): smollm2_cases.jsonl holds HF tokenizers' ids for it.
    write_bytelevel_json(vocab, pre_tokenizer_for("smollm"), dir.file("smollm"));
    for (bool fast : {true, false}) {
        INFO("fast path: " << fast);
        const hs::Tokenizer tok = hs::Tokenizer::from_hf_folder(dir.file("smollm"), {.pretokenizer_fast_paths = fast});
        const EncodeCheck r = check_encode_cases(tok, cases);
        CHECK(r.checked >= 600);
        CHECK(r.failed == 0);
        CHECK(tok.encode("Hello world! 123") == std::vector<int32_t>{19556, 905, 17, 216, 33, 34, 35});
        CHECK(tok.decode(tok.encode("caf\xC3\xA9  x\n")) == "caf\xC3\xA9  x\n");
    }
    {  // long runs (\s+(?!\S) backtracks over them) through PCRE2: no JIT stack or match limits hit
        const hs::Tokenizer fast = hs::Tokenizer::from_hf_folder(dir.file("smollm"));
        const hs::Tokenizer pcre =
            hs::Tokenizer::from_hf_folder(dir.file("smollm"), {.pretokenizer_fast_paths = false});
        std::string runs = "a";
        runs.append(200000, ' ').append("b").append(100000, '\n').append("c").append(100000, 'x');
        runs.append(" ").append(50000, '7');
        CHECK(pcre.encode(runs) == fast.encode(runs));
    }
    // The other pre-tokenizers over the same vocabulary: the hand-written matcher and PCRE2 give the same ids.
    for (const char* pre : {"gpt2", "llama-bpe", "qwen2"}) {
        INFO("pre-tokenizer " << pre);
        write_bytelevel_json(vocab, pre_tokenizer_for(pre), dir.file(pre));
        const hs::Tokenizer fast = hs::Tokenizer::from_hf_folder(dir.file(pre));
        const hs::Tokenizer pcre = hs::Tokenizer::from_hf_folder(dir.file(pre), {.pretokenizer_fast_paths = false});
        size_t failed = 0;
        for (const auto& c : cases) {
            if (c.at("kind").str != "encode") continue;
            const std::string& text = c.at("text").str;
            if (fast.encode(text) != pcre.encode(text) && ++failed <= 3)
                FAIL_CHECK("\"" << escaped(text) << "\": fast " << ids_str(fast.encode(text)) << ", PCRE2 "
                                << ids_str(pcre.encode(text)));
        }
        CHECK(failed == 0);
    }
}

TEST_CASE("hf tokenizer: transformers' tokenizers of the shipped GGUFs give HF tokenizers' ids", "[hf_tokenizer]") {
    const std::string root = repo_dir() + "/models/hf-tokenizers";
    for (const char* name : {"smollm2", "gemma3"}) {
        const std::string dir = root + "/" + name;
        if (!fs::exists(dir + "/tokenizer.json")) {
            WARN("skipped " << name << ": " << dir << "/tokenizer.json is missing (made by "
                            "tools/make_hf_tokenizer_fixtures.py from the GGUF; it is not committed)");
            continue;
        }
        INFO("tokenizer folder " << dir);
        const hs::Tokenizer tok = hs::Tokenizer::from_hf_folder(dir);
        CHECK(check_hf_cases(tok, name, "hf_tokenizer_cases.jsonl") >= 60);
        if (std::string(name) == "gemma3") {
            // gemma3_cases.jsonl's reference is this very tokenizer (transformers' GGUF loader).
            const EncodeCheck r = check_encode_cases(tok, load_jsonl(fixtures_dir() + "/tokenizer/gemma3_cases.jsonl"));
            CHECK(r.checked >= 600);
            CHECK(r.failed == 0);
            CHECK(tok.bos_id() == 2);
            CHECK(tok.eos_id() == 1);
            CHECK(tok.add_bos());
        } else {
            // transformers' converter drops SmolLM2's Digits step: the strings it does not change still hold.
            std::vector<hs::json::Value> same;
            for (auto& c : load_jsonl(fixtures_dir() + "/tokenizer/smollm2_cases.jsonl"))
                if (c.at("kind").str == "encode" && c.at("same_as_transformers_gguf").b) same.push_back(c);
            const EncodeCheck r = check_encode_cases(tok, same);
            CHECK(r.checked >= 600);
            CHECK(r.failed == 0);
            CHECK(tok.has_chat_template());  // chat_template.jinja
            // The same template as the GGUF's tokenizer.chat_template: the same rendering (with the default system
            // prompt of SmolLM2's template).
            const std::vector<hs::ChatMessage> chat{{"user", "hi"}};
            const std::string rendered = tok.apply_chat_template(chat, true);
            CHECK(rendered.ends_with("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"));
            if (fs::exists(test_model_file()))
                CHECK(rendered ==
                      hs::Tokenizer::from_gguf(hs::GgufFile::open(test_model_file())).apply_chat_template(chat, true));
        }
    }
}

TEST_CASE("hf tokenizer: malformed or unsupported tokenizer.json is refused naming the file and the field",
          "[hf_tokenizer]") {
    TempDir dir("hf_bad");
    std::ifstream in(small_dir("hf_small_bytelevel") + "/tokenizer.json");
    const json good = json::parse(in);
    int n = 0;
    // Writes a variant of the good file into its own folder and returns the folder.
    const auto variant = [&](const std::function<void(json&)>& edit) {
        json doc = good;
        edit(doc);
        const std::string sub = dir.file(std::string("v").append(std::to_string(n++)));
        fs::create_directories(sub);
        std::ofstream(sub + "/tokenizer.json") << doc.dump();
        return sub;
    };
    const auto load = [](const std::string& d) { return hs::Tokenizer::from_hf_folder(d); };
    std::string d = variant([](json& j) { j["model"].erase("merges"); });
    expect_error([&] { load(d); }, {d + "/tokenizer.json", "missing field model.merges"});
    d = variant([](json& j) { j["normalizer"] = {{"type", "BertNormalizer"}}; });
    expect_error([&] { load(d); }, {d + "/tokenizer.json", "normalizer.type", "\"BertNormalizer\""});
    d = variant([](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["type"] = "Punctuation"; });
    expect_error([&] { load(d); }, {"pre_tokenizer.pretokenizers[0].type", "\"Punctuation\""});
    d = variant([](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"; });
    expect_error([&] { load(d); }, {"pre_tokenizer.pretokenizers[0].pattern.Regex", "PCRE2"});
    d = variant([](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways"; });
    expect_error([&] { load(d); }, {"pre_tokenizer.pretokenizers[0].behavior", "Sideways"});
    d = variant([](json& j) { j["model"]["merges"][2] = "he zz"; });
    expect_error([&] { load(d); }, {"model.merges[2]", "\"zz\""});
    d = variant([](json& j) { j["model"]["type"] = "Unigram"; });
    expect_error([&] { load(d); }, {"model.type", "\"Unigram\""});
    d = variant([](json& j) { j["decoder"] = {{"type", "WordPiece"}}; });
    expect_error([&] { load(d); }, {"decoder.type", "\"WordPiece\""});
    d = variant([](json& j) { j["added_tokens"][1].erase("content"); });
    expect_error([&] { load(d); }, {"missing field added_tokens[1].content"});
    d = variant([](json& j) { j["model"]["vocab"]["h"] = "seven"; });
    expect_error([&] { load(d); }, {"model.vocab[\"h\"]", "expected an integer"});
    expect_error([&] { load(dir.file("absent")); }, {dir.file("absent") + "/tokenizer.json", "missing"});
    d = dir.file("syntax");
    fs::create_directories(d);
    std::ofstream(d + "/tokenizer.json") << "{\"model\": [1, 2}";
    expect_error([&] { load(d); }, {d + "/tokenizer.json", "parse error"});
    d = variant([](json&) {});
    std::ofstream(d + "/tokenizer_config.json") << R"({"eos_token": "<nope>"})";
    expect_error([&] { load(d); }, {d + "/tokenizer_config.json", "eos_token", "<nope>"});
}

TEST_CASE("hf tokenizer: encode speed, hand-written pre-tokenizer vs PCRE2", "[hf_tokenizer][slow]") {
    if (!fs::exists(test_model_file())) {
        WARN("skipped: " << test_model_file() << " is missing (scripts/fetch_model.sh)");
        return;
    }
    const hs::TokenizerVocab vocab = hs::Tokenizer::vocab_from_gguf(hs::GgufFile::open(test_model_file()));
    std::string text;
    for (const auto& c : load_jsonl(fixtures_dir() + "/tokenizer/smollm2_cases.jsonl"))
        if (c.at("kind").str == "encode" && c.at("parse_special").b) text += c.at("text").str + "\n";
    const std::string one = text;
    while (text.size() < (4u << 20)) text += one;  // ~4 MiB; the per-call word cache sees each word once per copy
    TempDir dir("hf_speed");
    for (const char* pre : {"smollm", "llama-bpe"}) {
        write_bytelevel_json(vocab, pre_tokenizer_for(pre), dir.file(pre));
        std::vector<int32_t> ids[2];
        double seconds[2];
        for (int fast = 0; fast < 2; ++fast) {
            const hs::Tokenizer tok =
                hs::Tokenizer::from_hf_folder(dir.file(pre), {.pretokenizer_fast_paths = fast == 1});
            const auto t0 = std::chrono::steady_clock::now();
            ids[fast] = tok.encode(text, false);
            seconds[fast] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
        CHECK(ids[0] == ids[1]);
        const hs::hf::Spec spec = hs::hf::read_folder(dir.file(pre));
        WARN(pre << " (PCRE2 JIT: " << (spec.pipeline.pre.front().regex->jit() ? "yes" : "no") << "): "
                 << text.size() / 1e6 << " MB, " << ids[1].size() << " tokens: hand-written "
                 << text.size() / 1e6 / seconds[1] << " MB/s, PCRE2 " << text.size() / 1e6 / seconds[0] << " MB/s");
    }
}
