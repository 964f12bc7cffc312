// headsweep eval: evaluate methods (vanilla, PEAR, ...) on retrieval-augmented tasks; see README "Commands: eval".
//
//   headsweep eval [--model M ...] [--tasks mdqa,kv,nq,longbench,mmlu|all] [--methods vanilla,pear]
//                  [--pear-heads "24:4=0.5,..."] [--pear-mode fold|runtime] [--pear-name NAME]
//                  [--data-dir DIR] [--limit N] [--max-new-tokens N] [--max-prompt-tokens N]
//                  [-o results/eval.h5] [--resume | --overwrite] [--threads T] [--mpi] [--list-tasks]
// Under mpirun/srun with more than one rank the examples are distributed (eval/run_eval.hpp); rank 0 writes.
#include <cstdio>
#include <memory>
#include <sstream>

#include <toml++/toml.h>

#include "cli/commands.hpp"
#include "backend/backend.hpp"
#include "backend/cpu/matmul_blocks.hpp"
#include "eval/run_eval.hpp"
#include "util/error.hpp"

namespace hs::cli {

namespace {

struct EvalFlags {
    std::string job_file;
    std::vector<std::string> models;
    std::string tasks = "mdqa,kv,nq,longbench,mmlu", methods, data_dir, output = "results/eval.h5";
    std::string device = "cpu", gpu_weights = "bf16", precision = "f32", native_prefill = "auto";
    eval::MethodSettings ms;
    int64_t limit = -1, max_prompt_tokens = 0, threads = 0;
    int32_t max_new_tokens = 0, mmlu_shots = 5, mmlu_per_subject = 5, icl_shots = 0;
    std::string user_train, user_test;
    std::string niah_lengths, niah_depths;  // "" = the defaults of eval::NiahOptions
    eval::NiahOptions niah;
    bool resume = false, overwrite = false, quiet = false, mpi = false, list = false, summary_only = false;
};

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string p;
    while (std::getline(ss, p, ','))
        if (!p.empty()) out.push_back(p);
    return out;
}

// Job file (TOML): `model = "..."` or `models = [...]` at the top level (the sweep job's keys) and an [eval] table
// with tasks, methods, pear_heads, pear_train, pear_mode, pear_name, ir_chunk, ir_topk, ir_window, ir_layer, data_dir, device, gpu_weights, precision, limit,
// max_new_tokens, max_prompt_tokens, output. A flag given on the command line wins over the file.
void apply_job_file(EvalFlags& f, const CLI::App& cmd) {
    toml::table t;
    try {
        t = toml::parse_file(f.job_file);
    } catch (const toml::parse_error& e) {
        fail(f.job_file, ": ", e.description());
    }
    auto given = [&](const char* flag) { return cmd.count(flag) > 0; };
    if (!given("--model")) {
        if (auto m = t["model"].value<std::string>()) f.models = {*m};
        if (auto* arr = t["models"].as_array())
            for (auto& v : *arr)
                if (auto s = v.value<std::string>()) f.models.push_back(*s);
    }
    const toml::table* e = t["eval"].as_table();
    check(e != nullptr, f.job_file, ": no [eval] table");
    for (auto& [k, v] : *e) {
        const std::string key(k.str());
        auto str = [&](const char* flag, std::string& out) {
            auto s = v.value<std::string>();
            check(bool(s), f.job_file, ": eval.", key, " must be a string");
            if (!given(flag)) out = *s;
        };
        auto num = [&](const char* flag, auto& out) {
            auto n = v.value<int64_t>();
            check(bool(n), f.job_file, ": eval.", key, " must be an integer");
            if (!given(flag)) out = static_cast<std::remove_reference_t<decltype(out)>>(*n);
        };
        auto real = [&](const char* flag, double& out) {
            auto n = v.value<double>();
            check(bool(n), f.job_file, ": eval.", key, " must be a number");
            if (!given(flag)) out = *n;
        };
        if (key == "tasks") str("--tasks", f.tasks);
        else if (key == "rtd_datastore") str("--rtd-datastore", f.ms.rtd_datastore);
        else if (key == "rtd_index") str("--rtd-index", f.ms.rtd_index);
        else if (key == "rtd_k") num("--rtd-k", f.ms.rtd_k);
        else if (key == "rtd_T") real("--rtd-T", f.ms.rtd_T);
        else if (key == "rtd_lambda") real("--rtd-lambda", f.ms.rtd_lambda);
        else if (key == "icl_shots") num("--icl-shots", f.icl_shots);
        else if (key == "user_train") str("--user-train", f.user_train);
        else if (key == "user_test") str("--user-test", f.user_test);
        else if (key == "methods") str("--methods", f.methods);
        else if (key == "pear_heads") str("--pear-heads", f.ms.pear_heads);
        else if (key == "pear_train") str("--pear-train", f.ms.pear_train);
        else if (key == "pear_mode") str("--pear-mode", f.ms.pear_mode);
        else if (key == "pear_name") str("--pear-name", f.ms.pear_name);
        else if (key == "ir_chunk") num("--ir-chunk", f.ms.ir_chunk);
        else if (key == "ir_topk") num("--ir-topk", f.ms.ir_topk);
        else if (key == "ir_window") num("--ir-window", f.ms.ir_window);
        else if (key == "ir_layer") num("--ir-layer", f.ms.ir_layer);
        else if (key == "data_dir") str("--data-dir", f.data_dir);
        else if (key == "niah_haystack") str("--niah-haystack", f.niah.haystack);
        else if (key == "niah_needle") str("--niah-needle", f.niah.needle);
        else if (key == "niah_question") str("--niah-question", f.niah.question);
        else if (key == "niah_answer") str("--niah-answer", f.niah.answer);
        else if (key == "niah_buffer") num("--niah-buffer", f.niah.buffer);
        else if (key == "niah_lengths" || key == "niah_depths") {
            // a string "4k,16k,1m" or an array of integers
            std::string& out = key == "niah_lengths" ? f.niah_lengths : f.niah_depths;
            if (given(key == "niah_lengths" ? "--niah-lengths" : "--niah-depths")) continue;
            if (auto s = v.value<std::string>()) {
                out = *s;
            } else if (auto* arr = v.as_array()) {
                out.clear();
                for (auto& x : *arr) {
                    auto n = x.value<int64_t>();
                    check(bool(n), f.job_file, ": eval.", key, " must be a string or a list of integers");
                    out += (out.empty() ? "" : ",") + std::to_string(*n);
                }
            } else {
                fail(f.job_file, ": eval.", key, " must be a string or a list of integers");
            }
        }
        else if (key == "output") str("--output", f.output);
        else if (key == "device") str("--device", f.device);
        else if (key == "gpu_weights") str("--gpu-weights", f.gpu_weights);
        else if (key == "precision") str("--precision", f.precision);
        else if (key == "native_prefill") str("--native-prefill", f.native_prefill);
        else if (key == "limit") num("--limit", f.limit);
        else if (key == "max_new_tokens") num("--max-new-tokens", f.max_new_tokens);
        else if (key == "max_prompt_tokens") num("--max-prompt-tokens", f.max_prompt_tokens);
        else if (key == "mmlu_per_subject") num("--mmlu-per-subject", f.mmlu_per_subject);
        else if (key == "resume") {
            if (!given("--resume") && !given("--overwrite")) f.resume = v.value<bool>().value_or(false);
        } else fail(f.job_file, ": unknown key eval.", key);
    }
}

}  // namespace

void add_eval_command(CLI::App& app) {
    auto f = std::make_shared<EvalFlags>();
    f->ms.rtd_index = "auto";  // flat on the CPU, device (cuBLAS) with --device cuda: resolved below
    CLI::App* cmd = app.add_subcommand(
        "eval", "evaluate methods (vanilla, PEAR) on retrieval-augmented tasks; per-example records + summary in HDF5");
    cmd->add_option("job", f->job_file, "job file (TOML: model/models + an [eval] table); flags override it");
    cmd->add_option("-m,--model", f->models, "GGUF file or random:<shape>[:<seed>] (repeat for several)")
        ->default_str(kDefaultModel);
    cmd->add_option("--tasks", f->tasks, "comma list of tasks or groups (mdqa, kv, nq, longbench, all; rtd: RTD's choice tasks)")
        ->capture_default_str();
    cmd->add_option("--methods", f->methods, "comma list of methods (--list-tasks shows them) or compositions a+b (pear+infiniretri: b on a's model); default: vanilla, plus pear with --pear-heads");
    cmd->add_option("--pear-heads", f->ms.pear_heads, "PEAR heads and tau: \"l:h=tau,...\" (e.g. 24:4=0.5,29:0=0.5)");
    cmd->add_option("--pear-train", f->ms.pear_train, "PEAR heads and tau from a `headsweep train` output file");
    cmd->add_option("--pear-mode", f->ms.pear_mode, "fold (tau into a copy of W_O) | runtime (head_scale)")
        ->capture_default_str();
    cmd->add_option("--pear-name", f->ms.pear_name, "method name recorded for pear (e.g. pear-placeholder)")
        ->capture_default_str();
    cmd->add_option("--ir-chunk", f->ms.ir_chunk, "InfiniRetri: context tokens per chunk")->capture_default_str();
    cmd->add_option("--ir-topk", f->ms.ir_topk, "InfiniRetri: tokens selected per chunk (K)")->capture_default_str();
    cmd->add_option("--ir-layer", f->ms.ir_layer,
                    "InfiniRetri: the layer whose attention scores the context (-1: the last, as published; another "
                    "index reads only up to that layer)")
        ->capture_default_str();
    cmd->add_option("--ir-window", f->ms.ir_window, "InfiniRetri: box-filter width k along the keys")
        ->capture_default_str();
    cmd->add_option("--niah-haystack", f->niah.haystack, "niah: haystack folder (*.txt, sorted) or file (default: <data>/niah/PaulGrahamEssays)");
    cmd->add_option("--niah-needle", f->niah.needle, "niah: the needle text")->capture_default_str();
    cmd->add_option("--niah-question", f->niah.question, "niah: the question")->capture_default_str();
    cmd->add_option("--niah-answer", f->niah.answer, "niah: the expected answer (its words are scored)")->capture_default_str();
    cmd->add_option("--niah-lengths", f->niah_lengths, "niah: context lengths in tokens (4k,16k,64k,256k,1m)");
    cmd->add_option("--niah-depths", f->niah_depths, "niah: needle depths in % (0,25,50,75,100)");
    cmd->add_option("--niah-buffer", f->niah.buffer, "niah: tokens of each length left for the prompt")->capture_default_str();
    cmd->add_option("--data-dir", f->data_dir, "the shared data folder (default: $HEADSWEEP_DATA or ../shared/data)");
    cmd->add_option("--limit", f->limit, "items per task and gold position (the first N in file order; -1 all)")
        ->capture_default_str();
    cmd->add_option("--max-new-tokens", f->max_new_tokens, "cap on every task's new tokens (0: the task's own)")
        ->capture_default_str();
    cmd->add_option("--max-prompt-tokens", f->max_prompt_tokens,
                    "middle-truncate prompts to this many tokens (0: context length - new tokens)")
        ->capture_default_str();
    cmd->add_option("--mmlu-shots", f->mmlu_shots, "MMLU examples in the prompt (0-5)")->capture_default_str();
    cmd->add_option("--mmlu-per-subject", f->mmlu_per_subject, "MMLU subset: first k test questions per subject")
        ->capture_default_str();
    cmd->add_option("--rtd-datastore", f->ms.rtd_datastore, "rtd/mh-rtd: datastore file per task ({task} = the task name; headsweep datastore build)")
        ->capture_default_str();
    cmd->add_option("--rtd-k", f->ms.rtd_k, "rtd: neighbours k")->capture_default_str();
    cmd->add_option("--rtd-T", f->ms.rtd_T, "rtd: temperature T (0: the datastore's tuned T)")->capture_default_str();
    cmd->add_option("--rtd-lambda", f->ms.rtd_lambda, "rtd: lambda in lambda*r + (1-lambda)*p_LM (1: r alone)")
        ->capture_default_str();
    cmd->add_option("--rtd-index", f->ms.rtd_index,
                    "rtd: auto (flat on the CPU, device with --device cuda) | flat (exact, faiss) | device (exact, "
                    "products by the run's backend GEMM: cuBLAS on a GPU) | blas | naive | hnsw | ivf")
        ->capture_default_str();
    cmd->add_option("--icl-shots", f->icl_shots, "choice tasks: solved train prompts before the question (the icl method)")
        ->capture_default_str();
    cmd->add_option("--user-train", f->user_train, "task user: training JSONL ({query, choices, gold}) for its datastore");
    cmd->add_option("--user-test", f->user_test, "task user: test JSONL ({query, choices, gold})");
    cmd->add_option("-o,--output", f->output, "output HDF5 file")->capture_default_str();
    cmd->add_flag("--resume", f->resume, "continue an existing output file (settings must match)");
    cmd->add_flag("--overwrite", f->overwrite, "replace an existing output file");
    cmd->add_option("-t,--threads", f->threads, "BLAS threads (0: OpenBLAS default; 1 per rank under MPI)")
        ->capture_default_str();
    cmd->add_option("--device", f->device, "cpu or cuda (under MPI: rank i of a node uses GPU i mod count)")
        ->capture_default_str();
    cmd->add_option("--gpu-weights", f->gpu_weights, "cuda: weights as bf16 | fp16 | fp32")->capture_default_str();
    cmd->add_option("--precision", f->precision,
                    "host weights: f32 (exact, default) | bf16 | native (the GGUF's own quantised blocks)")
        ->capture_default_str();
    cmd->add_option("--native-prefill", f->native_prefill,
                    "cpu, native precision: prompts of >= 8 tokens through int8 tiles below a measured length "
                    "(auto), always (int8), or dequantised + fp32 SGEMM (f32: prefill equals --precision f32; also keeps "
                    "bf16 weights off oneDNN, which auto uses below 48 tokens)")
        ->capture_default_str();
    cmd->add_flag("-q,--quiet", f->quiet, "no progress lines");
    cmd->add_flag("--mpi", f->mpi, "use the MPI coordinator even with one rank");
    cmd->add_flag("--list-tasks", f->list, "list the tasks and methods, then exit");
    cmd->add_flag("--summary-only", f->summary_only,
                  "recompute the summary of an existing file from its records (same settings), answer nothing");
    cmd->callback([f, cmd] {
        if (!f->job_file.empty()) apply_job_file(*f, *cmd);
        if (f->list) {
            for (const auto& t : eval::task_registry()) {
                std::string pos;
                for (int32_t p : t.positions) pos += (pos.empty() ? "" : ",") + std::to_string(p);
                std::printf("task   %-20s positions %-16s %s\n", t.name.c_str(), pos.c_str(), t.description.c_str());
            }
            for (const auto& m : eval::method_registry())
                std::printf("method %-20s %s\n", m.name.c_str(), m.help.c_str());
            return;
        }
        check(f->mmlu_shots >= 0 && f->mmlu_shots <= 5, "command line: --mmlu-shots must be 0..5");
        eval::EvalJob job;
        job.models = f->models.empty() ? std::vector<std::string>{kDefaultModel} : f->models;
        job.tasks = eval::expand_task_names(split(f->tasks));
        job.methods = f->methods.empty() ? (f->ms.pear_heads.empty() && f->ms.pear_train.empty() ? std::vector<std::string>{"vanilla"}
                                                                     : std::vector<std::string>{"vanilla", "pear"})
                                         : split(f->methods);
        if (f->ms.rtd_index == "auto") f->ms.rtd_index = parse_device(f->device) == Device::CUDA ? "device" : "flat";
        job.method_settings = f->ms;
        job.task_options.data_dir = eval::resolve_data_dir(f->data_dir);
        job.task_options.limit = f->limit;
        job.task_options.max_new_tokens_cap = f->max_new_tokens;
        job.task_options.max_prompt_tokens = f->max_prompt_tokens;
        job.task_options.mmlu_shots = f->mmlu_shots;
        job.task_options.mmlu_per_subject = f->mmlu_per_subject;
        check(f->icl_shots >= 0, "command line: --icl-shots must be >= 0");
        job.task_options.choice_shots = f->icl_shots;
        job.task_options.user_train = f->user_train;
        job.task_options.user_test = f->user_test;
        job.task_options.niah = f->niah;
        if (!f->niah_lengths.empty()) job.task_options.niah.lengths = eval::parse_niah_lengths(f->niah_lengths);
        if (!f->niah_depths.empty()) job.task_options.niah.depths = eval::parse_niah_depths(f->niah_depths);
        job.output = f->output;
        job.resume = f->resume;
        job.overwrite = f->overwrite;
        job.threads = int32_t(f->threads);
        parse_device(f->device);  // bad names fail here, before any rank loads a model
        parse_weight_type(f->gpu_weights);
        job.device = f->device;
        job.gpu_weights = f->gpu_weights;
        parse_weight_precision(f->precision);
        job.precision = f->precision;
        cpu::parse_native_prefill(f->native_prefill);
        job.native_prefill = f->native_prefill;
        job.progress = !f->quiet;
        job.summary_only = f->summary_only;
        eval::EvalOutcome out;
        bool is_root = true;
        try {
            if (!eval::eval_if_distributed(job, f->mpi, is_root, out)) out = eval::run_eval(job, nullptr);
        } catch (const hs::Error&) {
            if (!is_root) throw CLI::RuntimeError(1);
            throw;
        }
        if (!is_root) return;
        std::printf("%s", eval::format_summary_table(out.summary).c_str());
        std::printf("eval: %lld answers computed, %lld already in %s\n", (long long)out.computed,
                    (long long)out.skipped, job.output.c_str());
    });
}

}  // namespace hs::cli
