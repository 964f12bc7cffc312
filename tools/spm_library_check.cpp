// tools/spm_library_check.cpp: the sentencepiece library (Debian's libsentencepiece-dev) against headsweep's own
// SentencePiece BPE on a GGUF vocabulary: ids on the fixture corpus, and encode speed. This is the measurement
// behind the choice of the own implementation (src/tokenizer/spm.cpp); nothing in headsweep needs the library.
//
// Built only where pkg-config finds sentencepiece (CMakeLists.txt, target headsweep_spm_library_check):
//   build/headsweep_spm_library_check models/gemma-3-270m-q4_k_m.gguf tests/fixtures/tokenizer/gemma3_cases.jsonl
//
// The library gets a ModelProto serialised here by hand (protobuf wire format, only the fields it needs, so no
// protobuf headers): the GGUF's pieces with the adjustments the vocabulary needs to mean what transformers' GGUF
// Gemma tokenizer means (as tools/hf_reference.py build_spm_reference): merge priority = vocabulary order
// (score = -id), the unknown piece typed UNKNOWN (the GGUF types it CONTROL, which the library refuses), and the
// runs of spaces spelled "▁▁".. as normal pieces. The library never parses control tokens from text, so control
// tokens are cut out here first when a case asks for parse_special.
#include <sentencepiece_processor.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gguf/gguf.hpp"
#include "tokenizer/tokenizer.hpp"
#include "util/error.hpp"
#include "util/json.hpp"

namespace {

// ---------------------------------------------------------------- protobuf wire format

void put_varint(std::string& out, uint64_t v) {
    while (v >= 0x80) {
        out += static_cast<char>((v & 0x7F) | 0x80);
        v >>= 7;
    }
    out += static_cast<char>(v);
}
void put_tag(std::string& out, uint32_t field, uint32_t wire) { put_varint(out, (uint64_t(field) << 3) | wire); }
void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
    put_tag(out, field, 2);
    put_varint(out, bytes.size());
    out += bytes;
}
void put_int(std::string& out, uint32_t field, int64_t v) {  // int32/enum/bool: negative ints take 10 bytes
    put_tag(out, field, 0);
    put_varint(out, static_cast<uint64_t>(v));
}
void put_float(std::string& out, uint32_t field, float v) {
    put_tag(out, field, 5);
    char b[4];
    std::memcpy(b, &v, 4);  // little-endian hosts only, which is all we build on
    out.append(b, 4);
}

// sentencepiece's ModelProto (sentencepiece_model.proto): pieces = 1 {piece = 1, score = 2, type = 3},
// trainer_spec = 2 {model_type = 3 (BPE = 2), byte_fallback = 35, unk_id = 40, bos_id = 41, eos_id = 42,
// pad_id = 43}, normalizer_spec = 3 {name = 1, add_dummy_prefix = 3, remove_extra_whitespaces = 4,
// escape_whitespaces = 5}.
std::string model_proto(const hs::TokenizerVocab& v) {
    std::string out;
    for (size_t i = 0; i < v.tokens.size(); ++i) {
        const std::string& tok = v.tokens[i];
        int type = v.token_types.empty() ? 1 : v.token_types[i];
        std::string text = tok;
        if (type == 4 && !tok.empty() && tok.find_first_not_of(' ') == std::string::npos) {
            text.clear();
            for (size_t k = 0; k < tok.size(); ++k) text += "\xE2\x96\x81";
            type = 1;
        }
        if (static_cast<int32_t>(i) == v.unk_id) type = 2;
        std::string piece;
        put_bytes(piece, 1, text);
        put_float(piece, 2, -static_cast<float>(i));
        put_int(piece, 3, type);
        put_bytes(out, 1, piece);
    }
    std::string trainer;
    put_int(trainer, 3, 2);
    put_int(trainer, 35, 1);
    put_int(trainer, 40, v.unk_id);
    put_int(trainer, 41, v.bos_id);
    put_int(trainer, 42, v.eos_id);
    put_int(trainer, 43, v.pad_id);
    put_bytes(out, 2, trainer);
    std::string normalizer;
    put_bytes(normalizer, 1, "identity");
    put_int(normalizer, 3, v.add_space_prefix);
    put_int(normalizer, 4, 0);
    put_int(normalizer, 5, 1);
    put_bytes(out, 3, normalizer);
    return out;
}

// ---------------------------------------------------------------- encoding with the library

struct LibraryTokenizer {
    sentencepiece::SentencePieceProcessor sp;
    std::vector<std::pair<std::string, int32_t>> control;  // longest first

    std::vector<int32_t> encode_plain(const std::string& text) const {
        std::vector<int> ids;
        const auto status = sp.Encode(text, &ids);
        hs::check(status.ok(), "sentencepiece: ", status.ToString());
        return {ids.begin(), ids.end()};
    }
    std::vector<int32_t> encode(const std::string& text, bool parse_special) const {
        if (!parse_special) return encode_plain(text);
        std::vector<int32_t> out;
        size_t start = 0;
        for (size_t i = 0; i < text.size();) {
            const std::pair<std::string, int32_t>* hit = nullptr;
            for (const auto& c : control)
                if (text.compare(i, c.first.size(), c.first) == 0) {
                    hit = &c;
                    break;
                }
            if (!hit) {
                ++i;
                continue;
            }
            for (int32_t id : encode_plain(text.substr(start, i - start))) out.push_back(id);
            out.push_back(hit->second);
            i += hit->first.size();
            start = i;
        }
        for (int32_t id : encode_plain(text.substr(start))) out.push_back(id);
        return out;
    }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s model.gguf cases.jsonl\n", argv[0]);
        return 2;
    }
    try {
        const hs::TokenizerVocab vocab = hs::Tokenizer::vocab_from_gguf(hs::GgufFile::open(argv[1]));
        const hs::Tokenizer ours = hs::Tokenizer::from_vocab(vocab);
        LibraryTokenizer lib;
        const auto status = lib.sp.LoadFromSerializedProto(model_proto(vocab));
        hs::check(status.ok(), argv[1], ": sentencepiece refused the model: ", status.ToString());
        for (size_t i = 0; i < vocab.tokens.size(); ++i)
            if (vocab.token_types[i] == static_cast<int32_t>(hs::TokenType::CONTROL))
                lib.control.emplace_back(vocab.tokens[i], static_cast<int32_t>(i));
        std::stable_sort(lib.control.begin(), lib.control.end(),
                         [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });

        size_t n = 0, lib_equal = 0, ours_equal = 0;
        std::string corpus;
        for (const auto& c : hs::json::read_jsonl(argv[2])) {
            if (c.at("kind").str != "encode") continue;
            const std::string& text = c.at("text").str;
            const bool parse_special = c.at("parse_special").b;
            std::vector<int32_t> expected;
            for (const auto& id : c.at("ids").arr) expected.push_back(static_cast<int32_t>(id.num));
            ++n;
            lib_equal += lib.encode(text, parse_special) == expected;
            ours_equal += ours.encode(text, parse_special) == expected;
            if (parse_special) corpus += text + "\n";
        }
        std::printf("fixture cases: %zu; equal to HF: library %zu, ours %zu\n", n, lib_equal, ours_equal);

        // Speed on the fixture corpus (plain text: no control-token parsing, so both do the same work).
        const int reps = 5;
        size_t n_lib = 0, n_ours = 0;
        auto t0 = std::chrono::steady_clock::now();
        for (int r = 0; r < reps; ++r) n_lib += lib.encode_plain(corpus).size();
        const double s_lib = seconds_since(t0);
        t0 = std::chrono::steady_clock::now();
        for (int r = 0; r < reps; ++r) n_ours += ours.encode(corpus, false).size();
        const double s_ours = seconds_since(t0);
        const double mb = reps * corpus.size() / 1e6;
        std::printf("encode speed (%zu bytes x %d): library %.2f MB/s (%zu ids), ours %.2f MB/s (%zu ids)\n",
                    corpus.size(), reps, mb / s_lib, n_lib / reps, mb / s_ours, n_ours / reps);
        std::string prose;
        for (int k = 0; k < 300; ++k)
            prose += "The quick brown fox jumps over the lazy dog; attention heads copy names, track previous "
                     "tokens and (sometimes) count. Prices rose by 3.5% in Q3 2023.\n";
        n_lib = n_ours = 0;
        t0 = std::chrono::steady_clock::now();
        for (int r = 0; r < reps; ++r) n_lib += lib.encode_plain(prose).size();
        const double p_lib = seconds_since(t0);
        t0 = std::chrono::steady_clock::now();
        for (int r = 0; r < reps; ++r) n_ours += ours.encode(prose, false).size();
        const double p_ours = seconds_since(t0);
        const double pmb = reps * prose.size() / 1e6;
        const bool same = lib.encode_plain(prose) == ours.encode(prose, false);
        std::printf("encode speed, English prose (%zu bytes x %d): library %.2f MB/s, ours %.2f MB/s, same ids: %s\n",
                    prose.size(), reps, pmb / p_lib, pmb / p_ours, same ? "yes" : "NO");
        return lib_equal == n && ours_equal == n ? 0 : 1;
    } catch (const hs::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
