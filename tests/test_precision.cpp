// Weight precision per run (issue 16): f32 (the reference), bf16, native (the GGUF's own blocks). Random models are
// written to GGUF files by write_random_gguf (the same values as random:<shape>), loaded back in each precision and
// run through the engine; the in-memory fold works on every storage type.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <map>
#include <cstdio>
#include <random>

#include "logits_util.hpp"
#include "backend/backend.hpp"
#include "backend/cpu/matmul_blocks.hpp"
#include "backend/cpu/onednn_gemm.hpp"
#include "engine/engine.hpp"
#include "eval/run_eval.hpp"
#include "gguf/gguf.hpp"
#include "pear/fold.hpp"
#include "pear/job.hpp"
#include "temp_dir.hpp"
#include "test_model_path.hpp"

using namespace hs;

namespace {

// A GGUF file in a fresh directory, removed with it.
struct TempFile {
    TempDir dir{"precision"};
    std::string path;
    explicit TempFile(const std::string& name) : path(dir.file(name + ".gguf")) {}
};

std::vector<float> all_rows(const Matrix& m) {
    std::vector<float> out(size_t(m.rows * m.cols));
    read_rows(m, 0, m.rows, out.data());
    return out;
}

using test::rel_diff;

// Logits of every position of one sequence of `n` tokens.
std::vector<float> logits_of(const Model& m, Backend& be, int64_t n) { return test::random_sequence_logits(m, be, n, 5); }

}  // namespace

TEST_CASE("write_random_gguf in F32 loads back as the same random model, for every architecture", "[precision]") {
    for (const std::string shape : {"tiny", "tiny-mha", "tiny-qwen2", "tiny-gemma3"}) {
        INFO(shape);
        TempFile f("f32-" + shape);
        write_random_gguf(shape, 3, GgmlType::F32, f.path);
        const Model want = make_random_model(shape, 3);
        const Model got = load_model(f.path);
        const ModelConfig& c = want.config;
        CHECK(got.config.n_layer == c.n_layer);
        CHECK(got.config.d_head == c.d_head);
        CHECK(got.config.attn_scale == c.attn_scale);
        for (int32_t l = 0; l < c.n_layer; ++l) {
            CHECK(got.config.layers[l].window == c.layers[l].window);
            CHECK(got.config.layers[l].rope_base == c.layers[l].rope_base);
        }
        // Exact: F32 tensors, and the llama Q/K interleaving the writer applies is undone by the loader.
        CHECK(all_rows(got.weights.token_embd) == all_rows(want.weights.token_embd));
        for (int32_t l = 0; l < c.n_layer; ++l) {
            const LayerWeights &a = got.weights.layers[l], &b = want.weights.layers[l];
            CHECK(all_rows(a.wq) == all_rows(b.wq));
            CHECK(all_rows(a.wk) == all_rows(b.wk));
            CHECK(all_rows(a.wo) == all_rows(b.wo));
            CHECK(all_rows(a.w_down) == all_rows(b.w_down));
            CHECK(std::equal(a.attn_norm, a.attn_norm + c.d_model, b.attn_norm));
        }
        auto be = make_cpu_backend(1);
        CHECK(rel_diff(logits_of(got, *be, 6), logits_of(want, *be, 6)) == 0.0);
        // The file's byte-level vocabulary encodes any text byte by byte, to random:<shape>'s ids (an earlier
        // writer named the bytes "<0xNN>", which a GPT-2 BPE never matches: every prompt encoded to nothing).
        const std::string text = "The capital of France is Paris.\n\t\xc3\xa9 1984";
        const std::vector<int32_t> ids = got.tokenizer.encode(text, false);
        CHECK(ids == want.tokenizer.encode(text, false));
        REQUIRE(ids.size() == text.size());
        for (size_t i = 0; i < text.size(); ++i) CHECK(ids[i] == int32_t(uint8_t(text[i])));
        CHECK(got.tokenizer.decode(ids) == text);
        // llama.cpp loads the file: its vocabulary names a pre-tokenizer llama.cpp knows ("gpt2" is refused there).
        CHECK(GgufFile::open(f.path).get("tokenizer.ggml.pre").as_string("tokenizer.ggml.pre") == "gpt-2");
    }
}

TEST_CASE("native and bf16 weights give the f32 logits within the precision's tolerance", "[precision]") {
    struct Case {
        GgmlType type;
        double gemv_tol;  // decode (8-bit activations against the file's blocks)
    };
    for (const Case& k : {Case{GgmlType::Q8_0, 0.02}, Case{GgmlType::Q4_0, 0.03}, Case{GgmlType::Q4_1, 0.03},
                          Case{GgmlType::F16, 1e-4}}) {
        for (const std::string shape : {"tiny", "tiny-qwen2"}) {  // d_model a multiple of the 32-element blocks
            INFO(ggml_type_name(k.type) << " " << shape);
            TempFile f(std::string(ggml_type_name(k.type)) + shape);
            write_random_gguf(shape, 7, k.type, f.path);
            LoadOptions lo;
            const Model ref = load_model(f.path, lo);  // f32: the file's values decoded
            lo.precision = WeightPrecision::NATIVE;
            const Model nat = load_model(f.path, lo);
            lo.precision = WeightPrecision::BF16;
            const Model b16 = load_model(f.path, lo);
            CHECK(nat.weights.layers[0].wq.type == WeightType::GGML);
            CHECK(nat.weights.layers[0].wq.block_type == k.type);
            CHECK(b16.weights.layers[0].wq.type == WeightType::BF16);
            CHECK(nat.weights.layers[0].wq.data == nullptr);  // no fp32 copy kept
            // The native matrices hold exactly the file's values.
            CHECK(all_rows(nat.weights.layers[1].w_up) == all_rows(ref.weights.layers[1].w_up));
            CHECK(matrix_bytes(nat.weights.layers[1].w_up) < matrix_bytes(ref.weights.layers[1].w_up));

            auto be = make_cpu_backend(2, "auto", "f32");
            // 1 token: the GEMV path; 12 tokens: the dequantised-tile GEMM path (same values as f32 up to order);
            // 12 tokens with the int8 prefill: the GEMV's arithmetic, the GEMV's tolerance.
            const auto r1 = logits_of(ref, *be, 1), r12 = logits_of(ref, *be, 12);
            CHECK(rel_diff(logits_of(nat, *be, 1), r1) < k.gemv_tol);
            CHECK(rel_diff(logits_of(nat, *be, 12), r12) < 1e-4);
            auto be8 = make_cpu_backend(2, "auto", "int8");
            CHECK(rel_diff(logits_of(nat, *be8, 12), r12) < k.gemv_tol);
            CHECK(rel_diff(logits_of(b16, *be, 12), r12) < 2e-2);
            CHECK(rel_diff(logits_of(b16, *be, 12), r12) > 0.0);  // bf16 really rounds
        }
    }
}

TEST_CASE("random:<shape> in bf16 rounds its matrices, native keeps f32", "[precision]") {
    LoadOptions lo;
    lo.precision = WeightPrecision::BF16;
    const Model m = open_model("random:tiny:2", lo);
    const Model r = open_model("random:tiny:2");
    CHECK(m.weights.precision == WeightPrecision::BF16);
    CHECK(m.weights.layers[0].wv.type == WeightType::BF16);
    CHECK(m.weights.output.data16 == m.weights.token_embd.data16);  // still tied
    const auto a = all_rows(m.weights.layers[0].wv), b = all_rows(r.weights.layers[0].wv);
    for (size_t i = 0; i < a.size(); ++i) REQUIRE(a[i] == bf16_to_fp32(fp32_to_bf16(b[i])));
    lo.precision = WeightPrecision::NATIVE;
    CHECK(open_model("random:tiny:2", lo).weights.layers[0].wv.type == WeightType::F32);
}

TEST_CASE("fold on native and bf16 weights equals runtime head scaling", "[precision]") {
    // tiny's heads are 16 columns, narrower than a 32-element block: the fold converts W_O to fp32 there; the
    // aligned case (scale fields only) is checked directly below.
    TempFile f("fold");
    write_random_gguf("tiny", 4, GgmlType::Q8_0, f.path);
    const std::vector<pear::HeadRef> heads{{0, 1}, {1, 3}};
    const std::vector<float> tau{0.5f, 1.75f};
    for (WeightPrecision p : {WeightPrecision::NATIVE, WeightPrecision::BF16}) {
        LoadOptions lo;
        lo.precision = p;
        Model folded = load_model(f.path, lo);
        const Model plain = load_model(f.path, lo);
        pear::fold_head_scale(folded.config, folded.weights, pear::head_scale_of(folded.config, heads, tau));
        auto be = make_cpu_backend(1);
        Engine ef(folded, *be), ep(plain, *be);
        const std::vector<int32_t> tokens{3, 17, 42, 9, 100, 7, 250, 1, 2, 64, 33, 5};
        ForwardHooks hp;
        hp.logits = LogitsMode::ALL;
        hp.head_scale = pear::head_scale_of(plain.config, heads, tau);
        ForwardHooks hf;
        hf.logits = LogitsMode::ALL;
        CHECK(rel_diff(ef.forward(tokens, 1, 12, hf).logits, ep.forward(tokens, 1, 12, hp).logits) < 1e-2);
    }

    // Aligned: 2 heads of 32 columns in Q8_0 blocks of 32: only the blocks' fp16 scales change.
    ModelConfig c;
    c.n_layer = 1;
    c.n_head = 2;
    c.d_head = 32;
    ModelWeights w;
    w.layers.resize(1);
    Matrix& wo = w.layers[0].wo;
    wo.rows = 3;
    wo.cols = 64;
    std::vector<float> v(size_t(wo.rows * wo.cols));
    std::mt19937 g(1);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (float& x : v) x = nd(g);
    wo.type = WeightType::GGML;
    wo.block_type = GgmlType::Q8_0;
    wo.row_bytes = ggml_row_bytes(GgmlType::Q8_0, wo.cols);
    auto* blocks = static_cast<uint8_t*>(allocate_matrix_storage(w, wo.rows * wo.row_bytes));
    for (int64_t r = 0; r < wo.rows; ++r) quantize_row(GgmlType::Q8_0, v.data() + r * 64, blocks + r * wo.row_bytes, 64);
    wo.blocks = blocks;
    const std::vector<float> before = all_rows(wo);
    std::vector<float> scale{1.0f, 3.0f};
    pear::fold_head_scale(c, w, scale);
    CHECK(wo.type == WeightType::GGML);  // not converted
    const std::vector<float> after = all_rows(wo);
    for (int64_t r = 0; r < wo.rows; ++r)
        for (int64_t j = 0; j < 64; ++j) {
            const float b = before[size_t(r * 64 + j)], a = after[size_t(r * 64 + j)];
            if (j < 32) REQUIRE(a == b);
            else REQUIRE(std::fabs(a - 3.0f * b) <= 2e-3f * std::fabs(3.0f * b) + 1e-6f);
        }
}

TEST_CASE("the precision key of a sweep job is checked and labels the device", "[precision]") {
    pear::SweepJob job = pear::parse_job_text("precision = \"native\"\n", "job.toml");
    CHECK(job.precision == "native");
    CHECK(pear::device_label(job) == "cpu (native weights" + cpu::native_prefill_label(cpu::NativePrefill::AUTO) + ")");
    CHECK_THAT(pear::device_label(job), Catch::Contains("int8 prefill below"));
    CHECK(pear::device_label(pear::parse_job_text("precision = \"native\"\nnative_prefill = \"f32\"\n", "job.toml")) ==
          "cpu (native weights)");  // the arithmetic of native files written before the option
    CHECK(pear::backend_options(pear::parse_job_text("native_prefill = \"int8\"\n", "job.toml")).native_prefill == "int8");
    CHECK_THROWS_WITH(pear::parse_job_text("native_prefill = \"int4\"\n", "job.toml"),
                      Catch::Contains("job.toml") && Catch::Contains("native_prefill"));
    CHECK(pear::load_options(job, false).precision == WeightPrecision::NATIVE);
    pear::SweepJob def = pear::parse_job_text("", "job.toml");
    CHECK(pear::device_label(def) == "cpu");  // f32 files keep their old label
    // bf16: the label says when short prefills go through oneDNN (this build and CPU), and never under f32 prefill
    setenv("HEADSWEEP_ONEDNN", "on", 1);
    const pear::SweepJob b16 = pear::parse_job_text("precision = \"bf16\"\n", "job.toml");
    const bool dnn = !cpu::bf16_prefill_tag("auto").empty();
    CHECK(dnn == (cpu::onednn_built() && cpu::onednn_bf16_cpu_ok(detect_cpu_features())));
    CHECK(pear::device_label(b16) ==
          (dnn ? "cpu (bf16 weights, oneDNN bf16 prefill below " + std::to_string(cpu::kOnednnMaxRows) + " tokens)"
               : std::string("cpu (bf16 weights)")));
    CHECK(pear::device_label(pear::parse_job_text("precision = \"bf16\"\nnative_prefill = \"f32\"\n", "job.toml")) ==
          "cpu (bf16 weights)");
    CHECK(cpu::bf16_prefill_tag("f32").empty());
    eval::EvalJob ej;
    ej.precision = "bf16";
    CHECK((ej.settings_string().find(" bf16_prefill=onednn-bf16<") != std::string::npos) == dnn);
    ej.native_prefill = "f32";
    CHECK(ej.settings_string().find("bf16_prefill") == std::string::npos);
    setenv("HEADSWEEP_ONEDNN", "off", 1);
    CHECK(pear::device_label(b16) == "cpu (bf16 weights)");
    CHECK(cpu::bf16_prefill_tag("auto").empty());
    unsetenv("HEADSWEEP_ONEDNN");
    CHECK_THROWS_WITH(pear::parse_job_text("precision = \"int3\"\n", "job.toml"),
                      Catch::Contains("job.toml") && Catch::Contains("precision") && Catch::Contains("native"));
    CHECK_THROWS_WITH(parse_weight_precision("q4"), Catch::Contains("f32, bf16 or native"));
}

TEST_CASE("the shipped models in native and bf16 precision against f32: logits and decoded log-probabilities", "[precision]") {
    // SmolLM2 (Q4_1 + Q8_0 blocks) and Gemma 3 (Q4_K, Q5_0, Q6_K, Q8_0 blocks): the native path computes with the
    // same decoded values as f32, so prefill (the tile GEMM) agrees to float order; decode (8-bit activations, as
    // llama.cpp) within the activation rounding.
    const std::string text = "The quick brown fox jumps over the lazy dog. Paris is the capital of France, and "
                             "Berlin is the capital of Germany. One, two, three, four, five, six, seven.";
    for (const std::string path : {test_model_path(), test_gemma3_path()}) {
        INFO(path);
        LoadOptions lo;
        const Model ref = load_model(path, lo);
        lo.precision = WeightPrecision::NATIVE;
        const Model nat = load_model(path, lo);
        lo.precision = WeightPrecision::BF16;
        const Model b16 = load_model(path, lo);
        CHECK(weights_bytes(nat.weights) * 3 < weights_bytes(ref.weights));
        auto be = make_cpu_backend(2, "auto", "f32");
        const auto r16 = logits_of(ref, *be, 16);
        const double prefill = rel_diff(logits_of(nat, *be, 16), r16);
        const double bf = rel_diff(logits_of(b16, *be, 16), r16);
        CHECK(prefill < 1e-4);
        CHECK(bf < 0.05);
        // Teacher-forced log-probabilities of a real text, token by token through the KV cache (the decode path).
        const auto ids = ref.tokenizer.encode(text, false, ref.tokenizer.add_bos());
        Engine er(ref, *be), en(nat, *be);
        const auto lr = token_logprobs(er, ids, 1), ln = token_logprobs(en, ids, 1);
        REQUIRE(lr.size() == ln.size());
        double max_d = 0, mean_d = 0;
        for (size_t i = 0; i < lr.size(); ++i) {
            max_d = std::max(max_d, std::fabs(lr[i] - ln[i]));
            mean_d += std::fabs(lr[i] - ln[i]) / double(lr.size());
        }
        WARN("native prefill rel diff " << prefill << "; bf16 " << bf << "; decode log-prob |diff| max " << max_d
                                         << " mean " << mean_d << " over " << lr.size() << " tokens");
        CHECK(max_d < 1.0);  // measured: 0.51 (SmolLM2), 0.62 (Gemma 3); llama.cpp vs our f32: see bench/check_llama_cpp_logits.py
        CHECK(mean_d < 0.12);  // measured: 0.064, 0.074
        CHECK(max_d > 0.0);  // the 8-bit activations really are in use
        // The int8 prefill (--native-prefill int8, and auto for short prompts): the text in one forward, within the
        // decode path's tolerance.
        auto be8 = make_cpu_backend(2, "auto", "int8");
        Engine e8(nat, *be8);
        const auto lp = token_logprobs(er, ids), l8 = token_logprobs(e8, ids);
        REQUIRE(lp.size() == l8.size());
        double max8 = 0, mean8 = 0;
        for (size_t i = 0; i < lp.size(); ++i) {
            max8 = std::max(max8, std::fabs(lp[i] - l8[i]));
            mean8 += std::fabs(lp[i] - l8[i]) / double(lp.size());
        }
        WARN("int8 prefill log-prob |diff| max " << max8 << " mean " << mean8 << "; logits rel diff "
                                                 << rel_diff(logits_of(nat, *be8, 16), r16));
        CHECK(max8 < 1.0);
        CHECK(mean8 < 0.12);
        CHECK(max8 > 0.0);
    }
}

TEST_CASE("bf16 through oneDNN on SmolLM2: teacher-forced log-probabilities against f32, oneDNN on and off", "[precision][onednn]") {
    // Prompts shorter than cpu::kOnednnMaxRows tokens multiply bf16 weights with oneDNN where the build and the CPU
    // have it (activations rounded to bf16); off, the same products take the fp32 tiles + SGEMM. Both within the
    // bf16 tolerance of f32 (logits rel diff < 0.05, as above; log-probs as the decode path's bounds).
    const std::string text = "The quick brown fox jumps over the lazy dog. Paris is the capital of France, and "
                             "Berlin is the capital of Germany. One, two, three, four, five, six, seven.";
    const std::string path = test_model_path();
    LoadOptions lo;
    const Model ref = load_model(path, lo);
    lo.precision = WeightPrecision::BF16;
    const Model b16 = load_model(path, lo);
    auto be_on = make_cpu_backend(2, "auto", "auto", true), be_off = make_cpu_backend(2, "auto", "auto", false);
    // --native-prefill f32 keeps the exact products: no oneDNN
    CHECK(make_cpu_backend(2, "auto", "f32", true)->describe().find("native prefill f32, the exact products") !=
          std::string::npos);
    INFO(be_on->describe());
    const bool have = be_on->describe().find("bf16 prefill oneDNN") != std::string::npos;  // not "(no oneDNN: ...)"
    CHECK(be_off->describe().find("sgemm (no oneDNN: turned off)") != std::string::npos);
    const auto ids = ref.tokenizer.encode(text, false, ref.tokenizer.add_bos());
    REQUIRE(int64_t(ids.size()) >= cpu::kGemmMinRows);
    REQUIRE(int64_t(ids.size()) < cpu::kOnednnMaxRows);  // the whole text in one oneDNN prefill
    Engine er(ref, *be_off), eon(b16, *be_on), eoff(b16, *be_off);
    const auto lr = token_logprobs(er, ids), lon = token_logprobs(eon, ids), loff = token_logprobs(eoff, ids);
    REQUIRE(lr.size() == lon.size());
    REQUIRE(lr.size() == loff.size());
    double max_on = 0, mean_on = 0, max_off = 0, mean_off = 0, on_off = 0;
    for (size_t i = 0; i < lr.size(); ++i) {
        max_on = std::max(max_on, std::fabs(lr[i] - lon[i]));
        mean_on += std::fabs(lr[i] - lon[i]) / double(lr.size());
        max_off = std::max(max_off, std::fabs(lr[i] - loff[i]));
        mean_off += std::fabs(lr[i] - loff[i]) / double(lr.size());
        on_off = std::max(on_off, std::fabs(lon[i] - loff[i]));
    }
    const auto r16 = logits_of(ref, *be_off, 16);
    const double rel_on = rel_diff(logits_of(b16, *be_on, 16), r16), rel_off = rel_diff(logits_of(b16, *be_off, 16), r16);
    WARN("bf16 vs f32 over " << lr.size() << " tokens: oneDNN " << (have ? "on" : "absent") << " log-prob |diff| max "
                             << max_on << " mean " << mean_on << ", logits rel diff " << rel_on << "; off: max "
                             << max_off << " mean " << mean_off << ", rel " << rel_off << "; on vs off max " << on_off);
    CHECK(rel_on < 0.05);
    CHECK(rel_off < 0.05);
    CHECK(max_on < 1.0);
    CHECK(mean_on < 0.12);
    CHECK(max_off < 1.0);
    CHECK(mean_off < 0.12);
    if (have) CHECK(on_off > 0.0);  // oneDNN really ran (its bf16 activations differ from the fp32 ones)
    else CHECK(on_off == 0.0);
}

namespace {

// x as the decode kernels see it: 8-bit blocks per ggml (Q8_0: 32 values, fp16 scale amax/127; Q8_K: 256 values,
// fp32 scale), decoded back to floats.
std::vector<float> activation_as_quantised(const std::vector<float>& x, GgmlType weight_type) {
    const bool k_quant = weight_type == GgmlType::Q4_K || weight_type == GgmlType::Q5_K || weight_type == GgmlType::Q6_K;
    const size_t bs = k_quant ? 256 : 32;
    std::vector<float> out(x.size());
    for (size_t b = 0; b < x.size(); b += bs) {
        float amax = 0, vmax = 0;
        for (size_t i = b; i < b + bs; ++i)
            if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), vmax = x[i];
        if (amax == 0) continue;
        if (k_quant) {  // ggml quantize_row_q8_K: iscale = -127 / (signed max), q = nearest(iscale * x), d = 1 / iscale
            const float iscale = -127.0f / vmax;
            for (size_t i = b; i < b + bs; ++i)
                out[i] = float(std::min(127, int(std::nearbyint(iscale * x[i])))) * (1.0f / iscale);
        } else {  // Q8_0 / Q8_1: d = amax / 127 stored as fp16, q = round(x / d)
            const float d = amax / 127.0f, id = 1.0f / d, dh = fp16_to_fp32(fp32_to_fp16(d));
            for (size_t i = b; i < b + bs; ++i) out[i] = float(int(std::round(x[i] * id))) * dh;
        }
    }
    return out;
}

}  // namespace

TEST_CASE("decode kernels on the shipped models' blocks equal the exact product of the 8-bit activations",
          "[precision]") {
    // The native GEMV's only approximation is the activations' 8-bit blocks: with them decoded (as ggml defines them)
    // the product must equal double arithmetic to float rounding, for every block type of both models and every
    // instruction set this CPU runs. An error in a kernel's scales or offsets shows here at once, not hidden in a
    // tolerance on activation rounding.
    for (const std::string path : {test_model_path(), test_gemma3_path()}) {
        LoadOptions lo;
        lo.precision = WeightPrecision::NATIVE;
        const Model m = load_model(path, lo);
        std::map<GgmlType, const Matrix*> by_type;
        by_type[m.weights.output.block_type] = &m.weights.output;
        for (const LayerWeights& L : m.weights.layers)
            for (const Matrix* x : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) by_type.emplace(x->block_type, x);
        for (const auto& [type, w] : by_type) {
            INFO(path << " " << ggml_type_name(type));
            std::mt19937 g(11);
            std::normal_distribution<float> nd(0.0f, 1.0f);
            std::vector<float> x(size_t(w->cols));
            for (float& v : x) v = nd(g);
            x[3] = 40.0f;  // an outlier, as real residual streams have
            const std::vector<float> xq = activation_as_quantised(x, type);
            const int64_t rows = std::min<int64_t>(w->rows, 300);
            std::vector<float> wr(size_t(rows * w->cols));
            read_rows(*w, 0, rows, wr.data());
            cpu::BlockMatrix bm{type, w->blocks, rows, w->cols, w->row_bytes};
            for (cpu::KernelIsa isa : {cpu::KernelIsa::SCALAR, cpu::KernelIsa::AVX2, cpu::KernelIsa::AVX512,
                                       cpu::KernelIsa::AVX512_VNNI}) {
                if (!cpu::can_run_kernel_isa(detect_cpu_features(), isa)) continue;
                INFO(cpu::kernel_isa_name(isa));
                std::vector<float> y(static_cast<size_t>(rows));
                cpu::matmul_blocks(x.data(), bm, y.data(), 1, false, cpu::KernelOptions{isa, nullptr});
                double worst = 0;
                for (int64_t r = 0; r < rows; ++r) {
                    double exact = 0, mag = 0;
                    for (int64_t i = 0; i < w->cols; ++i) {
                        exact += double(wr[size_t(r * w->cols + i)]) * xq[size_t(i)];
                        mag += std::fabs(double(wr[size_t(r * w->cols + i)]) * xq[size_t(i)]);
                    }
                    worst = std::max(worst, std::fabs(y[size_t(r)] - exact) / mag);
                }
                CHECK(worst < 1e-4);
            }
        }
    }
}
