// headsweep info | generate | score: look at a model, run it, measure how well it predicts a text.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>

#include "backend/cpu/cpu_runtime.hpp"
#include "backend/cpu/onednn_gemm.hpp"
#include "backend/cuda_module.hpp"
#include "cli/commands.hpp"
#include "engine/engine.hpp"
#include "model/model.hpp"
#include "util/error.hpp"

namespace hs::cli {

namespace {

struct ModelOptions {
    std::string model = kDefaultModel;
    std::string device = "cpu";
    std::string gpu_weights = "bf16";
    std::string precision = "f32";
    std::string cpu_kernels = "auto";
    std::string native_prefill = "auto";
    int threads = 0;
};

void add_model_options(CLI::App* cmd, ModelOptions& o) {
    cmd->add_option("-m,--model", o.model, "GGUF file, Hugging Face checkpoint folder, or random:<shape>[:<seed>]")->capture_default_str();
    cmd->add_option("--device", o.device, "cpu or cuda")->capture_default_str();
    cmd->add_option("--gpu-weights", o.gpu_weights, "cuda: weights as bf16 | fp16 | fp32 (fp32: exact fp32 compute)")
        ->capture_default_str();
    cmd->add_option("-t,--threads", o.threads, "CPU threads for BLAS (0: OpenBLAS default)");
    cmd->add_option("--precision", o.precision,
                    "host weights: f32 (exact, default) | bf16 | native (the GGUF's own quantised blocks)")
        ->capture_default_str();
    cmd->add_option("--cpu-kernels", o.cpu_kernels,
                    "cpu: instruction set of the bf16/native kernels: auto | scalar | avx2 | avx512 | avx512-vnni")
        ->capture_default_str();
    cmd->add_option("--native-prefill", o.native_prefill,
                    "cpu, native precision: prompts of >= 8 tokens through int8 tiles below a measured length "
                    "(auto), always (int8), or dequantised + fp32 SGEMM (f32: prefill equals --precision f32; also keeps "
                    "bf16 weights off oneDNN, which auto uses below 48 tokens)")
        ->capture_default_str();
}

// A model ready to run: the engine refers to the model and the backend, so all three live together.
struct RunnableModel {
    Model model;
    std::unique_ptr<Backend> backend;
    std::unique_ptr<Engine> engine;
};

std::unique_ptr<RunnableModel> open_runnable(const ModelOptions& o) {
    LoadOptions lo;
    lo.verbose = true;
    lo.precision = parse_weight_precision(o.precision);
    auto r = std::make_unique<RunnableModel>();
    r->model = open_model(o.model, lo);
    BackendOptions bo;
    bo.threads = o.threads;
    bo.gpu_weights = parse_weight_type(o.gpu_weights);
    bo.cpu_kernels = o.cpu_kernels;
    bo.native_prefill = o.native_prefill;
    r->backend = make_backend(parse_device(o.device), bo);
    r->engine = std::make_unique<Engine>(r->model, *r->backend);
    return r;
}

std::string read_text(const std::string& text, const std::string& file) {
    check(text.empty() != file.empty(), "give exactly one of --text/--prompt or --file");
    if (!file.empty()) {
        std::ifstream in(file, std::ios::binary);
        check(bool(in), file, ": cannot open");
        return std::string(std::istreambuf_iterator<char>(in), {});
    }
    return text;
}

// The attention layout, one clause per distinct (window, RoPE base), e.g. "window 512, RoPE base 10000: layers 0-4,
// 6-10, 12-16; full causal, RoPE base 1e+06: layers 5, 11, 17"; one clause without layer list when all agree.
std::string describe_attention(const ModelConfig& c) {
    std::vector<LayerAttention> kinds;
    for (const auto& l : c.layers)
        if (std::none_of(kinds.begin(), kinds.end(), [&](const LayerAttention& k) {
                return k.window == l.window && k.rope_base == l.rope_base;
            }))
            kinds.push_back(l);
    std::ostringstream out;
    for (size_t k = 0; k < kinds.size(); ++k) {
        if (k) out << "; ";
        if (kinds[k].window > 0)
            out << "window " << kinds[k].window;
        else
            out << "full causal";
        out << ", RoPE base " << kinds[k].rope_base;
        if (kinds.size() == 1) break;
        out << ": layers ";
        bool first = true;
        for (int32_t l = 0; l < c.n_layer;) {  // runs of consecutive layers of this kind
            auto same = [&](int32_t i) {
                return i < c.n_layer && c.layers[i].window == kinds[k].window &&
                       c.layers[i].rope_base == kinds[k].rope_base;
            };
            if (!same(l)) { ++l; continue; }
            int32_t end = l;
            while (same(end + 1)) ++end;
            out << (first ? "" : ", ") << l;
            if (end > l) out << "-" << end;
            first = false;
            l = end + 1;
        }
    }
    return out.str();
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The machine as the CPU backend sees it: which kernels run, and whether the CPU would allow better ones.
void print_machine() {
    const CpuRuntime r = describe_cpu_runtime();
    const CpuFeatures& c = r.cpu;
    std::printf("cpu            %s (%s family %d model %d stepping %d)\n", c.brand.c_str(), c.vendor.c_str(), c.family,
                c.model, c.stepping);
    std::printf("cpu features   %s\n", c.summary().c_str());
    std::printf("amx tile state %s\n", amx_state_name(r.amx));
    std::printf("blas           %s\n", r.blas.library.c_str());
    std::printf("blas core      %s\n", r.blas.describe().c_str());
    // The bf16 prefill of few rows (--precision bf16): oneDNN where the build and the CPU have it, else SGEMM.
    {
        std::string why;
        const auto dnn = cpu::onednn_disabled_by_env() ? nullptr : cpu::OnednnBf16Gemm::create(c, &why);
        if (cpu::onednn_disabled_by_env()) why = "HEADSWEEP_ONEDNN=off";
        if (dnn)
            std::printf("bf16 prefill   %s below %lld rows (else the fp32 tiles + SGEMM)\n",
                        (cpu::onednn_version() + " " + dnn->kernel()).c_str(), (long long)cpu::kOnednnMaxRows);
        else
            std::printf("bf16 prefill   fp32 tiles + SGEMM (no oneDNN: %s)\n", why.c_str());
    }
    // The CUDA backend is a module loaded on demand (backend/cuda_module.hpp): say whether it loads and what it sees.
    const CudaModuleStatus cuda = probe_cuda_module();
    if (!cuda.built)
        std::printf("cuda           none: %s\n", cuda.detail.c_str());
    else if (cuda.loaded)
        std::printf("cuda           module %s loads: %s\n", cuda.path.c_str(), cuda.detail.c_str());
    else
        std::printf("cuda           %s\n", cuda.detail.c_str());  // "the CUDA module PATH does not load: ..."
}

}  // namespace

void add_info_command(CLI::App& app) {
    struct Opts {
        std::string model = kDefaultModel;
        bool machine_only = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand(
        "info", "Describe a model (architecture, sizes, heads, tensor types, tokenizer) and the machine (CPU, BLAS, CUDA)");
    cmd->add_option("model", o->model, "GGUF file, Hugging Face checkpoint folder, or random:<shape>[:<seed>]")->capture_default_str();
    cmd->add_flag("--machine", o->machine_only, "describe the machine only: CPU features, BLAS library and core, CUDA module and devices");
    cmd->callback([o] {
        if (o->machine_only) return print_machine();
        LoadOptions lo;
        lo.precision = WeightPrecision::NATIVE;  // the file's blocks: an 8B model is described without 32 GB of fp32
        Model m = open_model(o->model, lo);
        const ModelConfig& c = m.config;
        std::printf("model          %s\n", m.source.path.c_str());
        std::printf("name           %s\n", c.name.c_str());
        std::printf("architecture   %s\n", c.arch_name.c_str());
        int64_t native_bytes = m.weights.n_floats * 4, matrix_f32 = 0;
        auto count = [&](const Matrix& x) { native_bytes += matrix_bytes(x); matrix_f32 += x.rows * x.cols * 4; };
        count(m.weights.token_embd);
        if (!c.tied_embeddings) count(m.weights.output);
        for (const LayerWeights& L : m.weights.layers)
            for (const Matrix* x : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) count(*x);
        std::printf("parameters     %.2f M (weights in memory: %.1f MiB with --precision f32, %.1f MiB native)\n",
                    c.n_params() / 1e6, (m.weights.n_floats * 4 + matrix_f32) / 1048576.0, native_bytes / 1048576.0);
        std::printf("layers         %d\n", c.n_layer);
        std::printf("d_model        %d\n", c.d_model);
        std::printf("heads          %d query, %d key/value (group of %d), head dim %d: %d heads in all\n", c.n_head,
                    c.n_head_kv, c.group_size(), c.d_head, c.n_heads_total());
        std::printf("feed-forward   %d (%s)\n", c.d_ff, c.activation == Activation::SILU ? "SwiGLU" : "GeGLU");
        std::printf("vocabulary     %d\n", c.n_vocab);
        std::printf("context        %d\n", c.n_ctx);
        std::printf("attention      %s (rotate-half RoPE, %d dims); scores x %g\n", describe_attention(c).c_str(),
                    c.rope_dims, c.attn_scale);
        std::printf("rms eps        %g\n", c.rms_eps);
        if (c.qk_norm || c.post_norms || c.embed_scale != 1.0f || c.final_logit_softcap != 0.0f)
            std::printf("block          %s%sembeddings x %g, final logit softcap %g\n",
                        c.qk_norm ? "q/k norms, " : "", c.post_norms ? "post-attention and post-MLP norms, " : "",
                        c.embed_scale, c.final_logit_softcap);
        std::printf("embeddings     %s\n", c.tied_embeddings ? "tied (output head = token embedding)" : "separate");
        std::printf("tensor types  ");
        for (const auto& [t, n] : m.source.tensor_types) std::printf(" %s x%lld", t.c_str(), (long long)n);
        std::printf("\n");
        const Tokenizer& tk = m.tokenizer;
        std::printf("tokenizer      %d tokens, pre-tokenizer %s, bos %d, eos %d, add_bos %s\n", tk.n_vocab(),
                    tk.pre_tokenizer().c_str(), tk.bos_id(), tk.eos_id(), tk.add_bos() ? "yes" : "no");
        print_machine();
    });
}

void add_write_random_command(CLI::App& app) {
    struct Opts {
        std::string shape, output, type = "Q4_0", format = "gguf";
        uint64_t max_shard_mb = 0;
        uint64_t seed = 1;
        bool quiet = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand(
        "write-random", "Write a random-weight model of a real shape as a GGUF file (e.g. an 8B shape in Q4_0, for "
                        "benchmarks here and in llama.cpp) or a Hugging Face checkpoint folder (--format hf)");
    cmd->add_option("shape", o->shape, "shape name (see `headsweep info random:?`), e.g. llama3-8b")->required();
    cmd->add_option("-o,--output", o->output, "the GGUF file (or, --format hf, the folder) to write")->required();
    cmd->add_option("--type", o->type, "matrix type: F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 (hf: F32 | F16 | BF16)")
        ->capture_default_str();
    cmd->add_option("--format", o->format, "gguf | hf (config.json and safetensors, no tokenizer files)")
        ->capture_default_str();
    cmd->add_option("--max-shard-mb", o->max_shard_mb, "hf: shard the safetensors at this many MiB (0: one file)")
        ->capture_default_str();
    cmd->add_option("--seed", o->seed, "random seed (random:<shape>:<seed> is the same model in f32)")
        ->capture_default_str();
    cmd->add_flag("-q,--quiet", o->quiet, "no progress");
    cmd->callback([o] {
        std::string want = o->type;
        for (char& ch : want) ch = char(std::toupper(static_cast<unsigned char>(ch)));
        std::optional<GgmlType> type;
        for (uint32_t id = 0; id < 64 && !type; ++id)
            if (auto t = ggml_type_from_id(id); t && want == ggml_type_name(*t)) type = t;
        check(type.has_value(), "write-random: unknown type '", o->type, "' (use F32, F16, BF16, Q8_0, Q4_0 or Q4_1)");
        check(o->format == "gguf" || o->format == "hf", "write-random: unknown --format '", o->format,
              "' (use gguf or hf)");
        if (o->format == "hf")
            write_random_hf(o->shape, o->seed, *type, o->output, o->max_shard_mb << 20);
        else
            write_random_gguf(o->shape, o->seed, *type, o->output, !o->quiet);
    });
}

void add_generate_command(CLI::App& app) {
    struct Opts : ModelOptions {
        std::string prompt, file, system;
        bool chat = false, show_ids = false;
        GenerateOptions gen;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand("generate", "Continue a prompt (greedy by default)");
    add_model_options(cmd, *o);
    cmd->add_option("-p,--prompt", o->prompt, "prompt text");
    cmd->add_option("-f,--file", o->file, "read the prompt from a file");
    cmd->add_flag("--chat", o->chat, "wrap the prompt as a user message in the model's chat template");
    cmd->add_option("--system", o->system, "system message for --chat (default: the template's own)");
    cmd->add_option("-n,--max-new-tokens", o->gen.max_new_tokens, "tokens to generate")->capture_default_str();
    cmd->add_option("--temperature", o->gen.temperature, "0 = greedy")->capture_default_str();
    cmd->add_option("--top-p", o->gen.top_p, "nucleus sampling mass")->capture_default_str();
    cmd->add_option("--seed", o->gen.seed, "sampling seed")->capture_default_str();
    cmd->add_flag("--ids", o->show_ids, "also print the generated token ids");
    cmd->callback([o] {
        std::string text = read_text(o->prompt, o->file);
        auto run = open_runnable(*o);
        const Model& m = run->model;
        Engine& engine = *run->engine;
        if (o->chat) {
            std::vector<ChatMessage> msgs;
            if (!o->system.empty()) msgs.push_back({"system", o->system});
            msgs.push_back({"user", text});
            text = m.tokenizer.apply_chat_template(msgs, true);
        }
        std::vector<int32_t> ids = m.tokenizer.encode(text, /*parse_special=*/true, m.tokenizer.add_bos());
        GenerateResult g = generate(engine, ids, o->gen);
        std::printf("%s\n", m.tokenizer.decode(g.tokens).c_str());
        if (o->show_ids) {
            for (int32_t id : g.tokens) std::printf("%d ", id);
            std::printf("\n");
        }
        std::fprintf(stderr, "prompt %zu tokens: %.3f s (%.1f tokens/s); generated %zu tokens: %.3f s (%.1f tokens/s)%s\n",
                     ids.size(), g.prefill_seconds, ids.size() / std::max(g.prefill_seconds, 1e-9), g.tokens.size(),
                     g.decode_seconds, g.tokens.size() / std::max(g.decode_seconds, 1e-9),
                     g.stopped ? ", stopped at end-of-generation" : "");
    });
}

void add_score_command(CLI::App& app) {
    struct Opts : ModelOptions {
        std::string text, file;
        bool per_token = false, json = false;
        int64_t step = 256;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand("score", "Per-token log-probabilities and perplexity of a text");
    add_model_options(cmd, *o);
    cmd->add_option("--text", o->text, "text to score");
    cmd->add_option("-f,--file", o->file, "read the text from a file");
    cmd->add_flag("--per-token", o->per_token, "print one line per token: position, id, text, log-probability");
    cmd->add_option("--step", o->step, "tokens per forward (1: token by token through the KV cache, as decoding "
                                       "runs; larger: prefill chunks)")->capture_default_str();
    cmd->add_flag("--json", o->json, "print one JSON line: the token ids (BOS included) and the log-probability of "
                                     "each token after the first");
    cmd->callback([o] {
        std::string text = read_text(o->text, o->file);
        auto run = open_runnable(*o);
        const Model& m = run->model;
        Engine& engine = *run->engine;
        std::vector<int32_t> ids = m.tokenizer.encode(text, false, m.tokenizer.add_bos());
        auto t0 = std::chrono::steady_clock::now();
        std::vector<double> lp = token_logprobs(engine, ids, o->step);
        const double secs = seconds_since(t0);
        if (o->json) {
            std::string out = "{\"ids\":[";
            for (size_t i = 0; i < ids.size(); ++i) out += (i ? "," : "") + std::to_string(ids[i]);
            out += "],\"logprobs\":[";
            char buf[32];
            for (size_t i = 0; i < lp.size(); ++i) {
                std::snprintf(buf, sizeof buf, "%s%.7g", i ? "," : "", lp[i]);
                out += buf;
            }
            std::printf("%s]}\n", out.c_str());
            return;
        }
        double sum = 0;
        for (size_t i = 0; i < lp.size(); ++i) {
            sum += lp[i];
            if (o->per_token) {
                std::string piece = m.tokenizer.token_text(ids[i + 1]);
                std::replace(piece.begin(), piece.end(), '\n', ' ');
                std::printf("%zu\t%d\t%s\t%.6f\n", i + 1, ids[i + 1], piece.c_str(), lp[i]);
            }
        }
        std::printf("tokens %zu  scored %zu  mean log-prob %.6f  perplexity %.4f\n", ids.size(), lp.size(),
                    sum / double(lp.size()), std::exp(-sum / double(lp.size())));
        std::fprintf(stderr, "scored in %.3f s (%.1f tokens/s)\n", secs, ids.size() / std::max(secs, 1e-9));
    });
}

}  // namespace hs::cli
