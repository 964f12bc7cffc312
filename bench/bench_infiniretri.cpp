// bench/bench_infiniretri.cpp: InfiniRetri's reading speed on one needle-in-a-haystack item against the engine's
// plain prefill rate at the same step length, and peak memory, as one JSON line plus the ratios.
// Usage: headsweep_bench_infiniretri MODEL [--tokens 32768] [--depth 50] [--threads 1] [--data DIR] [--chunk 1024]
//        [--topk 300] [--window 8] [--trace FILE] [--task NAME --item I] [--prefill-reps 3]
//        [--precision f32|bf16|native] [--layer -1]
// --layer L: score with layer L's attention (InfiniRetri's --ir-layer; -1 = the last): the steps stop after layer L.
// --prefill-reps 0: skip the plain-prefill timing (trace runs that only feed the comparison).
// --task NAME --item I: instead of a niah cell, the I-th example (0-based, file order) of any eval task whose
// examples have a context and a question, e.g. longbench-hotpotqa: built by build_task exactly as `headsweep eval`
// builds it, so the same context/question split (LongBench: passages and question cut out of its prompt) and the
// same number of new tokens as the `infiniretri` method gets.
// --trace FILE: also writes one JSON object to FILE (the item's context and question, every step's kept
// sentences -- index among the step's context sentences and text --, the final cache and the greedy answer from it),
// for the step-by-step comparison with the authors' package (tools/infiniretri_reference.py).
// Ratio printed: context tokens read per second / plain prefill tokens per second at the mean step length (the
// issue's goal: >= 0.6; the cache, the template and the per-sentence tokenisation are the only overhead).
// The authors' package (torch + transformers, eager attention) is the peer for the per-item time: run it with
// tools/infiniretri_reference.py on the --trace file (README "InfiniRetri and needle in a haystack").
#include <sys/resource.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <fstream>
#include <string>

#include "backend/cpu/cpu_runtime.hpp"
#include "engine/engine.hpp"
#include "eval/run_eval.hpp"
#include "eval/tasks.hpp"
#include "eval/tasks_niah.hpp"
#include "infiniretri/infiniretri.hpp"
#include "util/error.hpp"
#include "util/json.hpp"

using namespace hs;

static double cpu_now() {  // this process's CPU seconds (the machine is shared: wall time depends on the load)
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

static std::string json_str(const std::string& s) { return "\"" + json::escape(s) + "\""; }

static std::string num(double v) {  // round-trip precision (scores near the top-K threshold are compared)
    char b[32];
    std::snprintf(b, sizeof b, "%.17g", v);
    return b;
}

static double peak_rss_mib() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

int main(int argc, char** argv) try {
    hs::prepare_cpu_runtime(argv);
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL [--tokens 32768] [--depth 50] [--threads 1] [--data DIR] [--chunk 1024] "
                             "[--topk 300] [--window 8] [--trace FILE] [--task NAME --item I] [--prefill-reps 3] [--precision f32|bf16|native] [--layer -1]\n", argv[0]);
        return 2;
    }
    const std::string spec = argv[1];
    int64_t tokens = 32768;
    int32_t depth = 50, threads = 1;
    std::string data, trace, task;
    int64_t item = 0;
    int32_t prefill_reps = 3;
    infiniretri::Options o;
    LoadOptions lo;
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--tokens") tokens = std::stoll(v);
        else if (k == "--depth") depth = std::stoi(v);
        else if (k == "--threads") threads = std::stoi(v);
        else if (k == "--data") data = v;
        else if (k == "--chunk") o.chunk_tokens = std::stoi(v);
        else if (k == "--topk") o.top_k = std::stoi(v);
        else if (k == "--window") o.window = std::stoi(v);
        else if (k == "--layer") o.layer = std::stoi(v);
        else if (k == "--trace") trace = v;
        else if (k == "--task") task = v;
        else if (k == "--item") item = std::stoll(v);
        else if (k == "--prefill-reps") prefill_reps = std::stoi(v);
        else if (k == "--precision") lo.precision = parse_weight_precision(v);
        else fail("unknown option ", k);
    }
    const Model m = open_model(spec, lo);
    BackendOptions bo;
    bo.threads = threads;
    auto backend = make_backend(Device::CPU, bo);
    Engine engine(m, *backend);
    o.max_input_tokens = m.config.n_ctx;

    eval::TaskBuildOptions to;
    to.data_dir = eval::resolve_data_dir(data);
    to.n_ctx = m.config.n_ctx;
    to.niah.lengths = {tokens};
    to.niah.depths = {depth};
    double t0 = now();
    eval::Example ex;
    if (task.empty()) {
        ex = eval::build_niah(m.tokenizer, to).at(0);
    } else {
        std::vector<eval::Example> all = eval::build_task(task, m.tokenizer, to);
        check(item >= 0 && item < int64_t(all.size()), "--item ", item, ": task ", task, " has ", all.size(),
              " examples");
        ex = std::move(all[size_t(item)]);
        check(!ex.context.empty() && !ex.question.empty(), "task ", task, " item ", item,
              " has no context/question split (InfiniRetri cannot read it)");
        depth = -1;
    }
    const double build_s = now() - t0;

    o.record_kept = !trace.empty();
    t0 = now();
    double c0 = cpu_now();
    const infiniretri::ReadResult r = infiniretri::read_document(engine, ex.context, ex.question, o);
    const double read_s = now() - t0, read_cpu_s = cpu_now() - c0;
    if (!trace.empty()) {  // the answer, greedy, from the cache alone (as the infiniretri method answers)
        GenerateOptions g;
        g.max_new_tokens = ex.max_new_tokens;
        t0 = now();
        c0 = cpu_now();
        const std::vector<int32_t> prompt =
            infiniretri::answer_prompt_ids(m.tokenizer, o.prompt_template, r.cache_text, ex.question);
        const GenerateResult gr = generate(engine, prompt, g);
        const double answer_s = now() - t0, answer_cpu_s = cpu_now() - c0;
        std::ofstream f(trace, std::ios::binary);
        check(bool(f), "cannot write ", trace);
        f << "{\"task\":" << json_str(task.empty() ? "niah" : task) << ",\"id\":" << json_str(ex.id)
          << ",\"length\":" << (task.empty() ? tokens : r.context_tokens) << ",\"depth\":" << depth
          << ",\"chunk\":" << o.chunk_tokens
          << ",\"topk\":" << o.top_k << ",\"window\":" << o.window << ",\"context_tokens\":" << r.context_tokens
          << ",\"max_new_tokens\":" << ex.max_new_tokens << ",\"read_s\":" << read_s << ",\"answer_s\":" << answer_s
          << ",\"read_cpu_s\":" << read_cpu_s << ",\"answer_cpu_s\":" << answer_cpu_s
          << ",\"question\":" << json_str(ex.question) << ",\"context\":" << json_str(ex.context) << ",\"steps\":[";
        for (size_t i = 0; i < r.steps.size(); ++i) {
            const infiniretri::StepStats& st = r.steps[i];
            f << (i ? "," : "") << "{\"input_tokens\":" << st.input_tokens << ",\"kept_index\":[";
            for (size_t j = 0; j < st.kept_index.size(); ++j) f << (j ? "," : "") << st.kept_index[j];
            f << "],\"kept_text\":[";
            for (size_t j = 0; j < st.kept_text.size(); ++j) f << (j ? "," : "") << json_str(st.kept_text[j]);
            f << "],\"kth_score\":" << num(st.kth_score) << ",\"next_score\":" << num(st.next_score)
              << ",\"sentence_max_score\":[";
            for (size_t j = 0; j < st.sentence_max_score.size(); ++j) f << (j ? "," : "") << num(st.sentence_max_score[j]);
            f << "]}";
        }
        f << "],\"cache\":" << json_str(r.cache_text) << ",\"answer_prompt_tokens\":" << prompt.size()
          << ",\"answer\":" << json_str(m.tokenizer.decode(gr.tokens, false)) << ",\"gold\":[";
        for (size_t j = 0; j < ex.answers.size(); ++j) f << (j ? "," : "") << json_str(ex.answers[j]);
        f << "]}\n";
    }
    const int64_t step = r.chunks > 0 ? r.tokens_processed / r.chunks : 1;

    if (prefill_reps <= 0) return 0;
    // The engine's plain prefill at the mean step length (no hooks, no cache), best of --prefill-reps.
    std::vector<int32_t> ids(ex.prompt_ids.begin(), ex.prompt_ids.begin() + std::min<int64_t>(step, int64_t(ex.prompt_ids.size())));
    double best = 1e30;
    for (int rep = 0; rep < prefill_reps; ++rep) {
        ForwardHooks hk;
        hk.logits = LogitsMode::LAST;
        t0 = now();
        engine.forward(ids, 1, int64_t(ids.size()), hk);
        best = std::min(best, now() - t0);
    }
    const double prefill_tps = double(ids.size()) / best;
    const double context_tps = double(r.context_tokens) / read_s;
    std::printf("{\"model\":\"%s\",\"precision\":\"%s\",\"backend\":%s,\"threads\":%d,\"cpu_core\":\"%s\",\"layer\":%d,\"length\":%lld,\"depth\":%d,\"build_s\":%.3f,"
                "\"read_s\":%.3f,\"chunks\":%lld,\"context_tokens\":%lld,\"tokens_processed\":%lld,\"mean_step\":%lld,"
                "\"prefill_tokens_per_s\":%.1f,\"context_tokens_per_s\":%.1f,\"processed_tokens_per_s\":%.1f,"
                "\"cache_has_needle\":%d,\"peak_rss_mib\":%.1f}\n",
                spec.c_str(), weight_precision_name(lo.precision), json_str(backend->describe()).c_str(), threads,
                cpu_runtime_tag().c_str(), int(o.layer), (long long)tokens, depth, build_s, read_s,
                (long long)r.chunks, (long long)r.context_tokens, (long long)r.tokens_processed, (long long)step,
                prefill_tps, context_tps, double(r.tokens_processed) / read_s,
                int(r.cache_text.find("Dolores Park") != std::string::npos), peak_rss_mib());
    std::printf("context tokens read per second / plain prefill rate at %lld tokens: %.2fx (goal >= 0.6)\n",
                (long long)step, context_tps / prefill_tps);
    std::printf("processed tokens per second / plain prefill rate: %.2fx (the overhead beyond the forwards)\n",
                double(r.tokens_processed) / read_s / prefill_tps);
    std::printf("peer (infini-retri + transformers): tools/infiniretri_reference.py on a --trace file\n");
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
}
