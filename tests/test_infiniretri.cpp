// InfiniRetri (src/infiniretri): each step against a naive form or against the authors' package run on the same
// input (sentence split and chunk packing: expected values produced by the package's own split_sentence /
// chunk_docs with a whitespace "tokenizer", hard-coded here), the rows-only scores against the full L x L attention
// matrix on random:tiny, the memory bound, the reading loop and the eval method end to end, and the bad inputs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <unistd.h>

#include "engine/engine.hpp"
#include "eval/methods.hpp"
#include "eval/records.hpp"
#include "eval/run_eval.hpp"
#include "eval/tasks.hpp"
#include "eval/tasks_niah.hpp"
#include "infiniretri/infiniretri.hpp"
#include "model/model.hpp"
#include "tokenizer/tokenizer.hpp"
#include "util/error.hpp"
#include "test_model_path.hpp"

namespace fs = std::filesystem;
using namespace hs;
namespace ir = hs::infiniretri;

namespace {

using Strings = std::vector<std::string>;

// The "tokenizer" the expected values were made with: whitespace-separated words; with_special adds a BOS when bos.
ir::TokenCount word_counter(bool bos) {
    return [bos](const std::string& s, bool with_special) -> int64_t {
        std::istringstream in(s);
        int64_t n = 0;
        for (std::string w; in >> w;) ++n;
        return n + (with_special && bos ? 1 : 0);
    };
}

struct TmpDir {
    fs::path path;
    TmpDir() {
        std::string t = (fs::temp_directory_path() / "hs_ir_test_XXXXXX").string();
        path = mkdtemp(t.data());
    }
    ~TmpDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// scipy.signal.convolve2d(x[None], ones((1, k)), mode="same")[0], written out: the full convolution
// full[n] = sum_{m=0}^{k-1} x[n - m], of which "same" keeps the centre, full[j + (k-1)/2].
std::vector<double> naive_same_convolution(const std::vector<double>& x, int32_t k) {
    const int64_t n = int64_t(x.size());
    std::vector<double> out(size_t(n), 0.0);
    for (int64_t j = 0; j < n; ++j) {
        const int64_t full = j + (k - 1) / 2;
        for (int64_t m = 0; m < k; ++m)
            if (full - m >= 0 && full - m < n) out[size_t(j)] += x[size_t(full - m)];
    }
    return out;
}

std::string filler_text(int sentences, uint32_t seed) {
    std::mt19937 rng(seed);
    const char* words[] = {"alpha", "beta", "gamma", "delta", "river", "stone", "cloud", "paper", "light", "north"};
    std::string s;
    for (int i = 0; i < sentences; ++i) {
        const int n = 4 + int(rng() % 8);
        for (int w = 0; w < n; ++w) s += (w ? " " : (i ? " " : "")) + std::string(words[rng() % 10]);
        s += (i % 7 == 6) ? ".\n\n" : ".";
    }
    return s;
}

// The small-chunk reading options of the random:tiny reading tests: chunk 200, K 20, window 4, the model's context.
ir::Options small_read_options(const Model& model) {
    ir::Options o;
    o.chunk_tokens = 200;
    o.top_k = 20;
    o.window = 4;
    o.max_input_tokens = model.config.n_ctx;
    return o;
}

}  // namespace

TEST_CASE("infiniretri split: sentences as the package splits them (Mr. merge, glued blank lines, CJK)", "[infiniretri]") {
    CHECK(ir::split_sentences("Hello world. Mr. Smith went home! Is it? Yes.\n\nNext para\n\n\nEnd。中文！ok",
                              ir::kChunkShortMerge) ==
          Strings{"Hello world. Mr.", " Smith went home!", " Is it?", " Yes.\n\n", "Next para\n\n", "\nEnd。", "中文！", "ok"});
    CHECK(ir::split_sentences("Dr. Who. A short one. Then a.b.c test... Done?! e.g. this\n\n", ir::kRetrievalShortMerge) ==
          Strings{"Dr. Who.", " A short one. Then a.b.c test... Done?!", " e.g. this\n\n"});
    CHECK(ir::split_words("  a  b c\n d  ") == Strings{"a ", "b ", "c\n ", "d"});
    // "Mr. X": a fragment after '.' of at most 10 (chunks.py) / 8 (retrieval.py) characters joins the sentence.
    CHECK(ir::split_sentences("See Mr. Holmes now.", 10) == Strings{"See Mr. Holmes now."});
    CHECK(ir::split_sentences("See Mr. Holmes now.", 8) == Strings{"See Mr.", " Holmes now."});
    CHECK(ir::split_sentences("   ", 10).empty());
    CHECK(ir::strip(" \n\tx y\n ") == "x y");
}

TEST_CASE("infiniretri pack: chunks as the package's chunk_docs, over-long sentences split on spaces", "[infiniretri]") {
    const std::string doc1 = "One two three. Four five six seven. Eight nine.\n\nTen eleven twelve thirteen fourteen. Fifteen.";
    std::string w23, y21;
    for (int i = 0; i < 23; ++i) w23 += (i ? " w" : "w") + std::to_string(i);
    for (int i = 0; i < 21; ++i) y21 += (i ? " y" : "y") + std::to_string(i);
    const std::string doc2 = "Short. " + w23 + ". Tail sentence here. And more words follow now.";
    const std::string doc3 = "A b. x0 x1 x2 x3 x4 x5 x6 x7 x8 x9 x10 end";
    const std::string doc5 = "Short. " + y21 + ".";
    const auto words = word_counter(false), words_bos = word_counter(true);
    CHECK(ir::pack_chunks(doc1, 6, words) ==
          Strings{"One two three.", " Four five six seven. Eight nine.\n\n", "Ten eleven twelve thirteen fourteen. Fifteen."});
    CHECK(ir::pack_chunks(doc2, 8, words) ==
          Strings{"Short.", "w0 w1 w2 w3 w4 w5 w6 w7 ", "w8 w9 w10 w11 w12 w13 w14 w15 ", "w16 w17 w18 w19 w20 w21 w22.",
                  " Tail sentence here. And more words follow now."});
    CHECK(ir::pack_chunks(doc3, 5, words) == Strings{"A b.", "x0 x1 x2 x3 x4 ", "x5 x6 x7 x8 x9 ", "x10 end"});
    CHECK(ir::pack_chunks(doc2, 10, words) ==
          Strings{"Short.", "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 ", "w10 w11 w12 w13 w14 w15 w16 ", "w17 w18 w19 w20 w21 w22.",
                  " Tail sentence here. And more words follow now."});
    // the last piece shorter than chunk/2: the last two re-divided from both ends
    CHECK(ir::pack_chunks(doc5, 10, words) ==
          Strings{"Short.", "y0 y1 y2 y3 y4 y5 y6 y7 y8 y9 ", "y10 y11 y12 y13 y14 y15 ", "y16 y17 y18 y19 y20."});
    // a tokenizer that adds BOS (Gemma): split_into_chunks counts with special tokens, chunk_docs without
    CHECK(ir::pack_chunks(doc2, 8, words_bos) ==
          Strings{"Short.", "w0 w1 w2 w3 w4 w5 ", "w6 w7 w8 w9 w10 w11 ", "w12 w13 w14 w15 w16 w17 ", "w18 w19 w20 w21 w22.",
                  " Tail sentence here. And more words follow now."});
    CHECK(ir::pack_chunks(doc5, 10, words_bos) ==
          Strings{"Short.", "y0 y1 y2 y3 y4 y5 y6 y7 ", "y8 y9 y10 y11 y12 y13 y14 y15 ", "y16 y17 y18 y19 y20."});
    // no text is lost or reordered when every sentence fits
    const std::string text = filler_text(60, 3);
    std::string joined;
    for (const std::string& c : ir::pack_chunks(text, 40, words)) {
        CHECK(words(c, false) <= 40);
        joined += c;
    }
    CHECK(joined == text);
}

TEST_CASE("infiniretri box filter: scipy convolve2d same-mode centring for every width", "[infiniretri]") {
    std::vector<double> impulse(20, 0.0);
    impulse[10] = 1.0;
    const std::vector<double> b8 = ir::box_filter_same(impulse, 8);
    for (int j = 0; j < 20; ++j) CHECK(b8[size_t(j)] == ((j >= 7 && j <= 14) ? 1.0 : 0.0));  // out[j] sums x[j-4..j+3]
    std::mt19937 rng(5);
    std::uniform_real_distribution<double> u(0, 1);
    for (int32_t k : {1, 2, 3, 4, 5, 8, 9, 25}) {
        std::vector<double> x(size_t(3 + rng() % 40));
        for (double& v : x) v = u(rng);
        const std::vector<double> got = ir::box_filter_same(x, k), want = naive_same_convolution(x, k);
        REQUIRE(got.size() == want.size());
        for (size_t j = 0; j < x.size(); ++j) CHECK(got[j] == Approx(want[j]).margin(1e-12));
    }
}

TEST_CASE("infiniretri select: top-K ties, token to sentence, order kept", "[infiniretri]") {
    CHECK(ir::top_k({0.1, 0.5, 0.5, 0.2, 0.5}, 2) == std::vector<int64_t>{2, 4});  // ties: the later indices
    CHECK(ir::top_k({3, 1, 2}, 5) == std::vector<int64_t>{0, 1, 2});               // fewer than K: all
    CHECK(ir::top_k({0.3, 0.9, 0.1, 0.8}, 2) == std::vector<int64_t>{1, 3});
    const std::vector<std::pair<int64_t, int64_t>> sent = {{0, 3}, {3, 4}, {4, 9}, {9, 12}};
    CHECK(ir::select_sentences({10, 0, 11, 2}, sent) == std::vector<int64_t>{0, 3});
    CHECK(ir::select_sentences({3, 8}, sent) == std::vector<int64_t>{1, 2});
    CHECK_THROWS_WITH(ir::select_sentences({12}, sent), Catch::Contains("no sentence"));
}

TEST_CASE("infiniretri scores: the rows-only path equals the full attention matrix on random:tiny", "[infiniretri]") {
    const Model model = open_model("random:tiny");
    auto backend = make_backend(Device::CPU, BackendOptions{});
    Engine engine(model, *backend);
    const Tokenizer& tok = model.tokenizer;
    const std::string context = filler_text(12, 7), question = "Which river is north?";
    const ir::StepInput in = ir::build_step_input(tok, ir::kDefaultTemplate, context, question);
    const int64_t L = int64_t(in.ids.size()), rows = L - in.question_begin, H = model.config.n_head;
    const int32_t last = model.config.n_layer - 1;
    REQUIRE(in.context_begin > 0);
    REQUIRE(in.question_begin > in.context_end);
    CHECK(tok.decode(std::vector<int32_t>(in.ids.begin() + in.context_begin, in.ids.begin() + in.context_end)) ==
          ir::strip(context) + "\n\n");

    ForwardHooks full;  // every row of the last layer: [1, H, L, L]
    full.logits = LogitsMode::NONE;
    full.attn_prob_layers = {last};
    const ForwardResult f = engine.forward(in.ids, 1, L, full);
    const std::vector<float>& P = f.attn_probs[size_t(last)];
    REQUIRE(int64_t(P.size()) == H * L * L);
    std::vector<double> A(size_t(L * L), 0.0);  // summed over heads
    for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < L * L; ++i) A[size_t(i)] += P[size_t(h * L * L + i)];
    // naive: Q2C rows filtered one by one, q_w from the full matrix, weighted twice, column sums
    const int64_t c0 = in.context_begin, c1 = in.context_end, W = 8;
    std::vector<double> naive(size_t(c1 - c0), 0.0), qw(size_t(rows), 0.0);
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t t = in.question_begin + r;
        for (int64_t c = in.question_begin; c < L; ++c) qw[size_t(r)] += A[size_t(t * L + c)];
        std::vector<double> row(size_t(c1 - c0));
        for (int64_t c = c0; c < c1; ++c) row[size_t(c - c0)] = A[size_t(t * L + c)];
        const std::vector<double> conv = naive_same_convolution(row, W);
        for (size_t j = 0; j < conv.size(); ++j) naive[j] += qw[size_t(r)] * (qw[size_t(r)] * conv[j]);
    }

    ForwardHooks part;  // only the query rows
    part.logits = LogitsMode::NONE;
    part.attn_prob_layers = {last};
    for (int64_t t = in.question_begin; t < L; ++t) part.attn_prob_rows.push_back(int32_t(t));
    const ForwardResult g = engine.forward(in.ids, 1, L, part);
    for (int32_t l = 0; l < last; ++l) CHECK(g.attn_probs[size_t(l)].empty());
    const std::vector<float>& Q = g.attn_probs[size_t(last)];
    REQUIRE(int64_t(Q.size()) == H * rows * L);  // rows x keys, never keys x keys
    std::vector<float> S(size_t(rows * L), 0.0f);
    for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < rows * L; ++i) S[size_t(i)] += Q[size_t(h * rows * L + i)];
    const std::vector<double> w = ir::question_weights(S.data(), rows, L, in.question_begin);
    for (int64_t r = 0; r < rows; ++r) CHECK(w[size_t(r)] == Approx(qw[size_t(r)]).epsilon(1e-5));
    const std::vector<double> got = ir::token_scores(S.data(), rows, L, c0, c1, w, int32_t(W));
    REQUIRE(got.size() == naive.size());
    double mx = 0;
    for (double v : naive) mx = std::max(mx, v);
    for (size_t j = 0; j < got.size(); ++j) CHECK(got[j] == Approx(naive[j]).margin(1e-5 * mx));
    CHECK(ir::top_k(got, 20) == ir::top_k(naive, 20));
}

TEST_CASE("infiniretri read: chunks, cache, memory bounded by the chunk (rows x keys of one layer)", "[infiniretri]") {
    const Model model = open_model("random:tiny");
    auto backend = make_backend(Device::CPU, BackendOptions{});
    Engine engine(model, *backend);
    ir::Options o = small_read_options(model);
    const std::string question = "Which river is north?";
    int64_t bound_short = 0;
    for (int sentences : {40, 160}) {
        const std::string doc = filler_text(sentences, 11);
        const ir::ReadResult r = ir::read_document(engine, doc, question, o);
        CHECK(r.chunks == int64_t(ir::pack_chunks(doc, o.chunk_tokens, [&](const std::string& s, bool sp) {
                             return int64_t(model.tokenizer.encode(s, true, sp && model.tokenizer.add_bos()).size());
                         }).size()));
        CHECK(r.chunks > 2);
        CHECK(r.context_tokens == int64_t(doc.size()));  // byte-level tokenizer: one token per byte
        CHECK(r.cache_tokens > 0);
        CHECK(!r.cache_text.empty());
        CHECK(doc.find(ir::strip(r.cache_text).substr(0, 20)) != std::string::npos);  // the cache is document text
        int64_t max_input = 0;
        for (const ir::StepStats& s : r.steps) {
            CHECK(s.prob_layers == 1);  // only the last layer's probabilities were formed
            CHECK(s.prob_floats < s.input_tokens * s.input_tokens);  // never keys x keys
            CHECK(s.kept_tokens >= std::min<int64_t>(o.top_k, 1));
            max_input = std::max(max_input, s.input_tokens);
        }
        // per step: heads x query rows x keys, keys <= template + cache + chunk + question: independent of the
        // document's length
        const int64_t q_rows = int64_t(ir::build_step_input(model.tokenizer, o.prompt_template, "x.", question).ids.size()) -
                               ir::build_step_input(model.tokenizer, o.prompt_template, "x.", question).question_begin;
        CHECK(r.max_prob_floats <= int64_t(model.config.n_head) * q_rows * max_input);
        if (sentences == 40) bound_short = max_input;
        else CHECK(max_input <= 2 * bound_short + 400);  // 4x the document, not 4x the step
    }
    // the same document and settings give the same cache (deterministic)
    const std::string doc = filler_text(40, 11);
    CHECK(ir::read_document(engine, doc, question, o).cache_text == ir::read_document(engine, doc, question, o).cache_text);
    // record_kept: every step's kept sentences (what the comparison with the package reads); off by default
    CHECK(ir::read_document(engine, doc, question, o).steps.back().kept_text.empty());
    o.record_kept = true;
    const ir::ReadResult rk = ir::read_document(engine, doc, question, o);
    std::string last;
    for (const ir::StepStats& s : rk.steps) {
        REQUIRE(int64_t(s.kept_index.size()) == s.kept_sentences);
        REQUIRE(s.kept_text.size() == s.kept_index.size());
        for (size_t i = 0; i < s.kept_index.size(); ++i) {
            CHECK(s.kept_index[i] >= 0);
            if (i) CHECK(s.kept_index[i] > s.kept_index[i - 1]);  // in order, no repeats
        }
        last.clear();
        for (const std::string& t : s.kept_text) last += t;
        // scores near the threshold: a kept sentence holds a top-K token, so its best score is >= the K-th
        // largest; a dropped one holds none, so its best is <= the K-th (equal only on a tie lost to a later index)
        CHECK(s.kth_score >= s.next_score);
        REQUIRE(!s.sentence_max_score.empty());
        for (size_t j = 0; j < s.sentence_max_score.size(); ++j) {
            const bool kept = std::find(s.kept_index.begin(), s.kept_index.end(), int64_t(j)) != s.kept_index.end();
            if (kept) CHECK(s.sentence_max_score[j] >= s.kth_score);
            else CHECK(s.sentence_max_score[j] <= s.kth_score);
        }
        CHECK(s.kept_index.back() < int64_t(s.sentence_max_score.size()));
    }
    CHECK(last == rk.cache_text);  // the last step's kept sentences are the final cache
}

TEST_CASE("infiniretri layer: -1 is the last layer, another layer scores with its own attention, no such layer is refused", "[infiniretri]") {
    const Model model = open_model("random:tiny");
    auto backend = make_backend(Device::CPU, BackendOptions{});
    Engine engine(model, *backend);
    ir::Options o = small_read_options(model);
    o.record_kept = true;
    const std::string doc = filler_text(60, 13), question = "Which river is north?";
    const int32_t n_layer = model.config.n_layer;
    REQUIRE(n_layer >= 2);
    const ir::ReadResult deflt = ir::read_document(engine, doc, question, o);
    o.layer = n_layer - 1;
    const ir::ReadResult last = ir::read_document(engine, doc, question, o);
    CHECK(last.cache_text == deflt.cache_text);
    REQUIRE(last.steps.size() == deflt.steps.size());
    for (size_t i = 0; i < last.steps.size(); ++i) CHECK(last.steps[i].kept_index == deflt.steps[i].kept_index);

    // layer 0: the first step's kept sentences are those the first layer's query rows point at (the scores
    // computed here from a plain forward that reads layer 0's probabilities)
    o.layer = 0;
    const ir::ReadResult first = ir::read_document(engine, doc, question, o);
    for (const ir::StepStats& st : first.steps) CHECK(st.prob_layers == 1);
    const auto chunks = ir::pack_chunks(doc, o.chunk_tokens, [&](const std::string& s, bool sp) {
        return int64_t(model.tokenizer.encode(s, true, sp && model.tokenizer.add_bos()).size());
    });
    const ir::StepInput in = ir::build_step_input(model.tokenizer, o.prompt_template, chunks[0], question);
    const int64_t L = int64_t(in.ids.size()), rows = L - in.question_begin, H = model.config.n_head;
    ForwardHooks hk;
    hk.logits = LogitsMode::NONE;
    hk.attn_prob_layers = {0};
    for (int64_t t = in.question_begin; t < L; ++t) hk.attn_prob_rows.push_back(int32_t(t));
    const ForwardResult fr = engine.forward(in.ids, 1, L, hk);
    const std::vector<float>& P = fr.attn_probs[0];
    std::vector<float> A(size_t(rows * L), 0.0f);
    for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < rows * L; ++i) A[size_t(i)] += P[size_t(h * rows * L + i)];
    const std::vector<double> w = ir::question_weights(A.data(), rows, L, in.question_begin);
    std::vector<int64_t> top = ir::top_k(ir::token_scores(A.data(), rows, L, in.context_begin, in.context_end, w, o.window),
                                         o.top_k);
    for (int64_t& t : top) t += in.context_begin;
    std::vector<int64_t> want;
    for (int64_t sidx : ir::select_sentences(top, in.sentences)) want.push_back(sidx - in.first_context_sentence);
    REQUIRE(!first.steps.empty());
    CHECK(first.steps[0].kept_index == want);

    o.layer = n_layer;  // no such layer: refused before any step, naming the option
    CHECK_THROWS_WITH(ir::read_document(engine, doc, question, o), Catch::Contains("--ir-layer"));
    o.layer = -2;
    CHECK_THROWS_WITH(ir::validate(model.tokenizer, doc, question, o), Catch::Contains("--ir-layer"));
}

TEST_CASE("infiniretri resume: reading on from a saved state equals the uninterrupted read", "[infiniretri]") {
    const Model model = open_model("random:tiny");
    auto backend = make_backend(Device::CPU, BackendOptions{});
    Engine engine(model, *backend);
    ir::Options o;
    o.chunk_tokens = 120;
    o.top_k = 12;
    o.window = 4;
    o.max_input_tokens = model.config.n_ctx;
    o.state_every = 3;
    const std::string doc = filler_text(120, 5), question = "Which river is north?";
    std::vector<ir::ReadState> states;
    o.on_state = [&](const ir::ReadState& s) { states.push_back(s); };
    const ir::ReadResult full = ir::read_document(engine, doc, question, o);
    REQUIRE(full.chunks > 7);
    REQUIRE(states.size() == size_t((full.chunks - 1) / 3));  // after chunks 3, 6, ..., never after the last
    CHECK(full.resumed_from_chunk == 0);
    o.on_state = nullptr;
    for (const ir::ReadState& s : {states.front(), states.back()}) {
        const std::string bytes = ir::encode_state(s);
        const ir::ReadState back = ir::decode_state(bytes, "state");
        CHECK(ir::encode_state(back) == bytes);  // exact: doubles bit for bit
        CHECK(back.cache == s.cache);
        o.start = &back;
        const ir::ReadResult r = ir::read_document(engine, doc, question, o);
        CHECK(r.resumed_from_chunk == s.chunks_done);
        CHECK(r.cache_text == full.cache_text);
        CHECK(r.chunks == full.chunks);
        CHECK(r.tokens_processed == full.tokens_processed);
        CHECK(r.cache_tokens == full.cache_tokens);
        CHECK(r.dropped_sentences == full.dropped_sentences);
        CHECK(r.max_prob_floats == full.max_prob_floats);
        CHECK(int64_t(r.steps.size()) == full.chunks - s.chunks_done);  // only this call's steps
    }
    // a state of another document (more chunks than it has) is refused, naming what is wrong
    ir::ReadState too_far = states.back();
    too_far.chunks_done = full.chunks + 1;
    o.start = &too_far;
    CHECK_THROWS_WITH(ir::read_document(engine, doc, question, o), Catch::Contains("saved state after"));
    // damaged bytes: clear errors naming the source
    const std::string bytes = ir::encode_state(states.back());
    CHECK_THROWS_WITH(ir::decode_state(bytes.substr(0, 40), "s.state"), Catch::Contains("s.state: truncated"));
    CHECK_THROWS_WITH(ir::decode_state(bytes.substr(0, bytes.size() - 3), "s.state"),
                      Catch::Contains("s.state: damaged InfiniRetri state"));
    CHECK_THROWS_WITH(ir::decode_state(bytes + "x", "s.state"), Catch::Contains("after its end"));
    CHECK_THROWS_WITH(ir::decode_state("not a state", "s.state"), Catch::Contains("not an InfiniRetri state"));
    std::string other = bytes;
    other[sizeof("hs-infiniretri-state")] = 9;  // the version's low byte
    CHECK_THROWS_WITH(ir::decode_state(other, "s.state"), Catch::Contains("version 9"));
}

TEST_CASE("infiniretri bad input: clear errors naming the option, before any work", "[infiniretri]") {
    const Model model = open_model("random:tiny");
    const Tokenizer& tok = model.tokenizer;
    ir::Options o;
    o.chunk_tokens = 200;
    o.top_k = 10;
    o.max_input_tokens = model.config.n_ctx;
    CHECK_NOTHROW(ir::validate(tok, "Some text.", "A question?", o));
    CHECK_THROWS_WITH(ir::validate(tok, "  \n", "A question?", o), Catch::Contains("context is empty"));
    CHECK_THROWS_WITH(ir::validate(tok, "Some text.", " ", o), Catch::Contains("question is empty"));
    ir::Options k0 = o;
    k0.top_k = 0;
    CHECK_THROWS_WITH(ir::validate(tok, "Some text.", "A question?", k0), Catch::Contains("--ir-topk"));
    ir::Options w0 = o;
    w0.window = 0;
    CHECK_THROWS_WITH(ir::validate(tok, "Some text.", "A question?", w0), Catch::Contains("--ir-window"));
    ir::Options small = o;
    small.chunk_tokens = 20;  // the template alone is ~90 bytes = tokens
    CHECK_THROWS_WITH(ir::validate(tok, "Some text.", "A question?", small), Catch::Contains("smaller than the prompt template"));
    CHECK_THROWS_WITH(ir::validate(tok, "Some text.", std::string(300, 'q'), o), Catch::Contains("does not fit a chunk"));
    ir::Options big = o;
    big.chunk_tokens = 9000;  // more than the model's 8192 positions: unreachable even in chunks
    CHECK_THROWS_WITH(ir::validate(tok, "Some text.", "A question?", big), Catch::Contains("model reads at most"));

    eval::MethodSettings s;
    s.ir_topk = 0;
    CHECK_THROWS_WITH(eval::make_method("infiniretri", s), Catch::Contains("--ir-topk"));
    s = {};
    s.ir_chunk = 0;
    CHECK_THROWS_WITH(eval::make_method("infiniretri", s), Catch::Contains("--ir-chunk"));

    TmpDir dir;
    fs::create_directories(dir.path / "empty");
    CHECK_THROWS_WITH(eval::read_haystack((dir.path / "empty").string()), Catch::Contains("no .txt files"));
    CHECK_THROWS_WITH(eval::read_haystack((dir.path / "missing").string()), Catch::Contains("--niah-haystack"));
    std::ofstream((dir.path / "blank.txt").string()) << "  \n";
    CHECK_THROWS_WITH(eval::read_haystack((dir.path / "blank.txt").string()), Catch::Contains("empty"));
    CHECK_THROWS_WITH(eval::parse_niah_lengths("4k,x"), Catch::Contains("--niah-lengths"));
    CHECK_THROWS_WITH(eval::parse_niah_depths("0,101"), Catch::Contains("--niah-depths"));
    CHECK(eval::parse_niah_lengths("4k,16K,1m,300") == std::vector<int64_t>{4096, 16384, 1048576, 300});

    eval::TaskBuildOptions to;
    to.data_dir = fixtures_dir() + "/eval_data";
    to.n_ctx = model.config.n_ctx;
    to.niah.lengths = {150};  // the needle (~100 bytes) + the 200-token buffer do not fit
    CHECK_THROWS_WITH(eval::build_niah(tok, to), Catch::Contains("do not fit the length 150"));
    to.niah.lengths = {2000};
    to.niah.needle = " ";
    CHECK_THROWS_WITH(eval::build_niah(tok, to), Catch::Contains("--niah-needle"));
}

TEST_CASE("infiniretri niah: context length, needle at the depth after a period, word score", "[infiniretri]") {
    const Model model = open_model("random:tiny");
    const Tokenizer& tok = model.tokenizer;
    eval::TaskBuildOptions to;
    to.data_dir = fixtures_dir() + "/eval_data";
    to.n_ctx = 1000;
    to.niah.lengths = {1200, 3000};
    to.niah.depths = {0, 50, 100};
    const std::vector<eval::Example> ex = eval::build_niah(tok, to);
    REQUIRE(ex.size() == 6);
    const std::string needle = to.niah.needle;
    for (const eval::Example& e : ex) {
        const int64_t L = e.id.find("-1200-") != std::string::npos ? 1200 : 3000;
        CHECK(int64_t(e.context.size()) == L - to.niah.buffer);  // byte tokens: the context is length - buffer
        const size_t at = e.context.find(needle);
        REQUIRE(at != std::string::npos);
        if (e.gold_position == 0) CHECK(at == 0);
        if (e.gold_position == 100) CHECK(at + needle.size() == e.context.size());
        if (e.gold_position == 50) {
            CHECK(e.context[at - 1] == '.');  // moved back to the previous period
            CHECK(std::abs(double(at) - 0.5 * double(e.context.size() - needle.size())) < 400);
        }
        CHECK(e.truncated == (e.original_tokens > 1000 - e.max_new_tokens));
        CHECK(int64_t(e.prompt_ids.size()) <= 1000 - e.max_new_tokens);
        CHECK(e.question == to.niah.question);
    }
    CHECK(ex[0].id == "niah-1200-d0");
    CHECK(eval::niah_word_score("The best: EAT a sandwich and sit in Dolores Park on a sunny day.", to.niah.answer) == 1.0);
    // 12 words; substrings count, as in the harness: eat, a, sandwich, and (inside "sandwich"), a
    CHECK(eval::niah_word_score("eat a sandwich", to.niah.answer) == Approx(5.0 / 12.0));
    CHECK(eval::task_detail(ex[0], "sit in dolores park on a sunny day. eat a sandwich and") == "\"strict\":1");
}

TEST_CASE("infiniretri eval: niah on random:tiny, vanilla + infiniretri + pear+infiniretri, records and resume", "[infiniretri]") {
    TmpDir dir;
    eval::EvalJob job;
    job.models = {"random:tiny"};
    job.tasks = {"niah"};
    job.methods = {"vanilla", "infiniretri", "pear+infiniretri"};
    job.method_settings.pear_heads = "0:1=0.5";
    job.method_settings.ir_chunk = 256;
    job.method_settings.ir_topk = 16;
    job.task_options.data_dir = fixtures_dir() + "/eval_data";
    job.task_options.niah.lengths = {700, 1400};
    job.task_options.niah.depths = {0, 100};
    job.task_options.max_new_tokens_cap = 3;
    job.threads = 1;
    job.progress = false;
    job.output = (dir.path / "niah.h5").string();
    const eval::EvalOutcome out = eval::run_eval(job, nullptr);
    CHECK(out.computed == 12);
    const auto recs = eval::RecordsFile::read(job.output);
    REQUIRE(recs.size() == 12);
    for (const eval::Record& r : recs) {
        CHECK(r.task == "niah");
        CHECK(r.score >= 0.0);
        CHECK(r.score <= 1.0);
        CHECK(r.detail.find("\"strict\":") != std::string::npos);
        if (r.method != "vanilla") {
            CHECK(r.detail.find("\"chunks\":") != std::string::npos);
            CHECK(r.detail.find("\"kept_fraction\":") != std::string::npos);
            CHECK(r.detail.front() == '{');
            CHECK(r.detail.back() == '}');
        }
    }
    eval::EvalJob again = job;
    again.resume = true;
    again.task_options.niah.lengths = {700, 1400, 2100};  // the grid grows over runs
    CHECK(eval::run_eval(again, nullptr).computed == 6);

    eval::EvalJob bad = job;  // a chunk smaller than the template: refused before anything is answered
    bad.output = (dir.path / "bad.h5").string();
    bad.method_settings.ir_chunk = 30;
    CHECK_THROWS_WITH(eval::run_eval(bad, nullptr), Catch::Contains("--ir-chunk"));
    if (fs::exists(bad.output)) CHECK(eval::RecordsFile::read(bad.output).empty());
    eval::EvalJob no_layer = job;  // a layer the model lacks: the same
    no_layer.output = (dir.path / "no_layer.h5").string();
    no_layer.method_settings.ir_layer = 2;  // random:tiny has layers 0 and 1
    CHECK_THROWS_WITH(eval::run_eval(no_layer, nullptr), Catch::Contains("--ir-layer 2 but the model has 2 layers"));
    if (fs::exists(no_layer.output)) CHECK(eval::RecordsFile::read(no_layer.output).empty());
}

TEST_CASE("infiniretri eval: niah with the user's own haystack needs no data folder, other tasks still do", "[infiniretri]") {
    TmpDir dir;
    std::ofstream(dir.path / "hay.txt") << "Grass grows. Rivers run to the sea. Birds sing at dawn. " << std::string(40, 'x')
                                        << ". The night is dark.\n\nA new page begins here.";
    eval::EvalJob job;
    job.models = {"random:tiny"};
    job.tasks = {"niah"};
    job.methods = {"vanilla"};
    job.task_options.data_dir = (dir.path / "no-such-folder").string();
    job.task_options.niah.haystack = (dir.path / "hay.txt").string();
    job.task_options.niah.lengths = {400};
    job.task_options.niah.depths = {50};
    job.task_options.max_new_tokens_cap = 2;
    job.threads = 1;
    job.progress = false;
    job.output = (dir.path / "own.h5").string();
    CHECK(eval::task_reads_data_dir("niah", job.task_options) == false);
    CHECK(eval::run_eval(job, nullptr).computed == 1);
    CHECK(eval::RecordsFile::read(job.output).size() == 1);

    eval::EvalJob other = job;  // a task that reads the data folder is refused, naming it, before any work
    other.tasks = {"niah", "mdqa-3docs"};
    other.output = (dir.path / "other.h5").string();
    CHECK_THROWS_WITH(eval::run_eval(other, nullptr), Catch::Contains("no-such-folder: no such data folder"));
    CHECK_FALSE(fs::exists(other.output));
    eval::TaskBuildOptions defaults;  // the default haystack lives in the data folder
    CHECK(eval::task_reads_data_dir("niah", defaults));
    CHECK(eval::task_reads_data_dir("mdqa-3docs", defaults));
    CHECK_FALSE(eval::task_reads_data_dir("user", defaults));
}

TEST_CASE("infiniretri longbench: passages and question cut out of LongBench's prompt", "[infiniretri]") {
    TmpDir dir;
    fs::create_directories(dir.path / "longbench");
    std::ofstream(dir.path / "longbench" / "minilongbench_237.jsonl")
        << R"({"task": "hotpotqa", "idx": 5, "prompt": "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\nThe following are given passages.\nPassage 1:\nAlpha\nAlpha is a river.\n\nPassage 2:\nBeta\nBeta is a town.\n\nAnswer the question based on the given passages. Only give me the answer and do not output any other words.\n\nQuestion: What is Alpha?\nAnswer:", "answers": ["a river"]})"
        << "\n"
        << R"({"task": "hotpotqa", "idx": 6, "prompt": "Other shape.\nQuestion: Who?\nAnswer:", "answers": ["x"]})" << "\n";
    eval::TaskBuildOptions o;
    o.data_dir = dir.path.string();
    o.n_ctx = 100000;
    const auto ex = eval::build_task("longbench-hotpotqa", Tokenizer::byte_level(300), o);
    REQUIRE(ex.size() == 2);
    CHECK(ex[0].context == "Passage 1:\nAlpha\nAlpha is a river.\n\nPassage 2:\nBeta\nBeta is a town.");
    CHECK(ex[0].question == "What is Alpha?");
    CHECK(ex[0].instruction.starts_with("Answer the question based on the given passages."));
    CHECK(ex[1].context.empty());
    CHECK(ex[1].question.empty());
}

// Real models: one 4K needle cell each. SmolLM2 keeps the needle (depth 0) in its cache and answers it; Gemma 3's
// base GGUF runs the plain template with BOS and reads the same item (its cache is checked to be document text).
TEST_CASE("infiniretri real models: a 4K needle cell on SmolLM2 and on Gemma 3", "[infiniretri][slow]") {
    for (const std::string& path : {test_model_path(), test_gemma3_path()}) {
        const Model model = open_model(path);
        BackendOptions bo;
        bo.threads = 1;
        auto backend = make_backend(Device::CPU, bo);
        Engine engine(model, *backend);
        eval::TaskBuildOptions to;
        to.data_dir = shared_data_dir();
        to.n_ctx = model.config.n_ctx;
        to.niah.lengths = {4096};
        to.niah.depths = {0};
        const eval::Example ex = eval::build_niah(model.tokenizer, to).at(0);
        ir::Options o;
        o.max_input_tokens = model.config.n_ctx;
        const ir::ReadResult r = ir::read_document(engine, ex.context, ex.question, o);
        CHECK(r.chunks >= 4);
        CHECK(r.context_tokens > 3500);
        for (const ir::StepStats& s : r.steps) CHECK(s.prob_layers == 1);
        INFO(path << " cache: " << r.cache_text.substr(0, 400));
        if (path == test_model_path()) {
            CHECK(r.cache_text.find("Dolores Park") != std::string::npos);
            eval::MethodSettings ms;
            auto m = eval::make_method("infiniretri", ms);
            eval::EvalContext ctx(model, path, *backend);
            m->prepare(ctx);
            const eval::Answer a = m->answer(ex, ctx);
            CHECK(eval::score_output(ex, a.text) == 1.0);
        } else {
            CHECK(ex.context.find(ir::strip(r.cache_text).substr(0, 30)) != std::string::npos);
        }
    }
}
