// cli/cmd_datastore.cpp: `headsweep datastore build|tune|info` -- RTD's datastores (shared/docs/methods.md §3).
//
//   headsweep datastore build --task arc-easy [-m MODEL] [-o results/rtd/ds/{task}.h5] [--cap 20480]
//                             [--resume|--overwrite] [-t 1] [--data-dir D] [--user-train F]
//                             [--compose pear --pear-heads ...]      # the datastore of PEAR's folded model
//   mpirun -n 4 headsweep datastore build ...                        # ranks embed, rank 0 writes
//   headsweep datastore tune FILE [--k 32] [--queries 2000]          # T on a leave-item-out dev split
//   headsweep datastore info FILE
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <boost/mpi/communicator.hpp>
#include <boost/mpi/environment.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>

#include "backend/cpu/cpu_runtime.hpp"
#include "cli/commands.hpp"
#include "dist/sweep_mpi.hpp"
#include "engine/engine.hpp"
#include "eval/method_rtd.hpp"
#include "eval/methods.hpp"
#include "eval/run_eval.hpp"
#include "eval/tasks_choice.hpp"
#include "model/model.hpp"
#include "rtd/builder.hpp"
#include "rtd/datastore.hpp"
#include "rtd/search.hpp"
#include "rtd/tune.hpp"
#include "util/error.hpp"

namespace hs::cli {

namespace fs = std::filesystem;

namespace {

struct BuildFlags {
    std::string task, model, output = "results/rtd/ds/{task}.h5", data_dir, user_train, compose, device = "cpu";
    std::string precision = "f32";
    eval::MethodSettings ms;
    int64_t cap = rtd::kDefaultCap, max_prompt_tokens = 0, limit_items = -1, max_entries = -1;
    int32_t threads = 0;
    bool resume = false, overwrite = false, quiet = false, mpi = false, no_rotations = false;
};

void run_build(const BuildFlags& f, const boost::mpi::communicator* comm) {
    const bool root = !comm || comm->rank() == 0;
    eval::TaskBuildOptions to;
    to.data_dir = eval::resolve_data_dir(f.data_dir);
    to.user_train = f.user_train;
    check(eval::is_choice_task(f.task), "datastore build: --task ", f.task, " is not an RTD choice task");
    eval::ChoiceData data = eval::load_choice_data(f.task, eval::ChoiceSplit::TRAIN, to);
    if (f.limit_items >= 0 && size_t(f.limit_items) < data.items.size()) data.items.resize(size_t(f.limit_items));

    LoadOptions lo;
    lo.verbose = root && !f.quiet;
    lo.precision = parse_weight_precision(f.precision);
    const std::string spec = f.model.empty() ? kDefaultModel : f.model;
    Model base = open_model(spec, lo);
    BackendOptions bo;
    bo.threads = comm && f.threads == 0 ? 1 : f.threads;
    std::unique_ptr<Backend> backend = make_backend(parse_device(f.device), bo);
    // The model the keys come from: the base model, or a left method's model (compositions, e.g. PEAR folded).
    const Model* model = &base;
    std::string model_spec = spec;
    std::unique_ptr<eval::Method> left;
    std::unique_ptr<eval::EvalContext> ctx;
    if (!f.compose.empty()) {
        left = eval::make_method(f.compose, f.ms);
        ctx = std::make_unique<eval::EvalContext>(base, spec, *backend);
        left->prepare(*ctx);
        model = left->composable_model();
        check(model != nullptr, "datastore build: --compose ", f.compose, " offers no model (PEAR: --pear-mode fold)");
        model_spec = spec + "|" + left->config();  // as eval's a+b composition names it
    }

    const int64_t max_tokens = f.max_prompt_tokens > 0 ? f.max_prompt_tokens : model->config.n_ctx;
    eval::ChoiceDatastorePlan cp = eval::plan_choice_datastore(data, base.tokenizer, f.cap, max_tokens, !f.no_rotations);
    rtd::DatastoreInfo& info = cp.info;
    const std::vector<rtd::BuildEntry>& plan = cp.entries;
    info.model_spec = model_spec;
    info.model_sha256 = eval::datastore_model_identity(model_spec);
    info.d = model->config.d_model;
    info.n_head = model->config.n_head;   // MH-RTD's partition: d_model / n_head (Gemma 3: q_dim != d_model)
    check(info.d % info.n_head == 0, "datastore build: d_model = ", info.d, " is not divisible by n_head = ", info.n_head);
    info.head_dim = info.d / info.n_head;
    info.build_settings = "key=final_norm_hidden_last_token max_prompt_tokens=" + std::to_string(max_tokens) +
                          " limit_items=" + std::to_string(f.limit_items) + " bos=" + (base.tokenizer.add_bos() ? "1" : "0") +
                          (info.rotations ? " shared_prefix_kv=1" : "");
    check(!plan.empty(), "datastore build: task ", f.task, " gives no entries");

    const std::string path = eval::datastore_path(f.output, f.task);
    if (root && !fs::path(path).parent_path().empty()) fs::create_directories(fs::path(path).parent_path());
    Engine engine(*model, *backend);
    rtd::BuildOptions o;
    o.resume = f.resume;
    o.overwrite = f.overwrite;
    o.progress = root && !f.quiet;
    o.label = "datastore " + f.task + " [" + cpu_runtime_tag() + "]";
    o.max_entries = f.max_entries;
    const rtd::BuildStats st = rtd::build_datastore(engine, plan, info, path, o, comm);
    if (!root) return;
    std::printf("datastore %s: %lld entries (%lld items, %lld skipped; cap %lld), %lld embedded now in %.1f s "
                "(%.1f prompts/s, %.0f tokens/s), %lld already -> %s%s\n",
                f.task.c_str(), (long long)st.planned, (long long)info.items_used, (long long)info.items_skipped,
                (long long)f.cap, (long long)st.computed, st.seconds, st.seconds > 0 ? st.computed / st.seconds : 0.0,
                st.seconds > 0 ? st.tokens / st.seconds : 0.0, (long long)st.already, path.c_str(),
                st.already + st.computed == st.planned ? "" : " (partial: --resume continues)");
}

// ---- tune: leave-item-out on the datastore itself (a dev split of the train data: each query is an entry, its
// own item's entries -- its rotations -- are excluded from the neighbours).
struct TuneFlags {
    std::string file, index = "flat";
    int32_t k = 32;
    int64_t queries = 2000;
    bool dry = false;
};

void run_tune(const TuneFlags& f) {
    const rtd::Datastore ds = rtd::read_datastore(f.file);
    const rtd::TuneResult r = rtd::tune_temperature(ds, f.k, f.queries, rtd::parse_index_kind(f.index), f.file);
    std::printf("datastore tune %s: %lld queries (entries of the train split; their own item's entries excluded), k=%d, "
                "D (median k-th squared distance) = %.6g\n", f.file.c_str(), (long long)r.queries, f.k, r.D);
    std::printf("%10s %12s %10s %10s\n", "T/D", "T", "rtd", "mh-rtd");
    for (size_t t = 0; t < r.T.size(); ++t)
        std::printf("%10.5g %12.6g %10.4f %10.4f%s%s\n", r.factors[t], r.T[t], r.acc[t], r.acc_mh[t],
                    t == r.best ? " <rtd" : "", t == r.best_mh ? " <mh" : "");
    std::printf("chosen: rtd T = %.6g (acc %.4f), mh-rtd T = %.6g (acc %.4f)%s\n", r.T[r.best], r.acc[r.best],
                r.T[r.best_mh], r.acc_mh[r.best_mh], f.dry ? " (dry run: not written)" : "");
    if (!f.dry) rtd::write_tuned(f.file, r.T[r.best], r.T[r.best_mh], r.report());
}

void run_info(const std::string& file) {
    const rtd::Datastore ds = rtd::read_datastore(file);
    const rtd::DatastoreInfo& in = ds.info;
    std::vector<int64_t> count(size_t(in.n_labels), 0);
    for (int32_t y : ds.labels) ++count[size_t(y)];
    std::printf("%s: task %s, %lld entries x d=%d (%d heads x %d), %d labels", file.c_str(), in.task.c_str(),
                (long long)ds.size(), in.d, in.n_head, in.head_dim, in.n_labels);
    for (int32_t y = 0; y < in.n_labels; ++y)
        std::printf("%s%s=%lld", y ? ", " : " (", in.label_names[size_t(y)].c_str(), (long long)count[size_t(y)]);
    std::printf(")\n  model %s (sha256 %s)\n  sources %s\n  items used %lld, skipped %lld, cap %lld, rotations %s\n"
                "  tuned T %.6g, T_mh %.6g\n  %s\n",
                in.model_spec.c_str(), in.model_sha256.c_str(), in.sources.c_str(), (long long)in.items_used,
                (long long)in.items_skipped, (long long)in.cap, in.rotations ? "yes" : "no", in.tuned_T, in.tuned_T_mh,
                in.build_settings.c_str());
}

}  // namespace

void add_datastore_command(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("datastore", "RTD datastores: build (MPI, resumable), tune T, info");
    cmd->require_subcommand(1);

    auto bf = std::make_shared<BuildFlags>();
    CLI::App* b = cmd->add_subcommand("build", "embed a task's training split into an RTD datastore (HDF5)");
    b->add_option("--task", bf->task, "arc-easy, arc-challenge, openbookqa, mmlu-0shot, sst2, trec, rte, cb, user")->required();
    b->add_option("-m,--model", bf->model, "GGUF file or random:<shape>[:<seed>] (default: the SmolLM2 file)");
    b->add_option("-o,--output", bf->output, "output file ({task} = the task name)")->capture_default_str();
    b->add_option("--cap", bf->cap, "at most this many entries (whole items)")->capture_default_str();
    b->add_flag("--no-rotations", bf->no_rotations, "multiple choice: one entry per item (no option rotations)");
    b->add_option("--max-prompt-tokens", bf->max_prompt_tokens, "skip items whose prompt is longer (0: n_ctx)");
    b->add_option("--data-dir", bf->data_dir, "the shared data folder (default: $HEADSWEEP_DATA or ../shared/data)");
    b->add_option("--user-train", bf->user_train, "task user: training JSONL ({query, choices, gold})");
    b->add_option("--limit-items", bf->limit_items, "only the first N training items (small runs, tests)");
    b->add_option("--max-entries", bf->max_entries, "stop after N new entries (leaves a partial file; tests)");
    b->add_option("--compose", bf->compose, "embed with this method's model (pear: PEAR's folded copy; as eval's pear+rtd)");
    b->add_option("--pear-heads", bf->ms.pear_heads, "with --compose pear: heads and tau \"l:h=tau,...\"");
    b->add_option("--pear-train", bf->ms.pear_train, "with --compose pear: heads and tau from a train output file");
    b->add_option("-t,--threads", bf->threads, "BLAS threads (0: OpenBLAS default; 1 per rank under MPI)");
    b->add_option("--device", bf->device, "cpu or cuda")->capture_default_str();
    b->add_option("--precision", bf->precision, "host weights: f32 (default) | bf16 | native")->capture_default_str();
    b->add_flag("--resume", bf->resume, "continue a partial file (its settings must match)");
    b->add_flag("--overwrite", bf->overwrite, "replace an existing file");
    b->add_flag("-q,--quiet", bf->quiet, "no progress lines");
    b->add_flag("--mpi", bf->mpi, "use the MPI coordinator even with one rank");
    b->callback([bf] {
        check(!(bf->resume && bf->overwrite), "datastore build: --resume and --overwrite exclude each other");
        check(bf->cap > 0, "datastore build: --cap must be > 0");
        if (dist::started_by_mpi_launcher() || bf->mpi) {
            boost::mpi::environment env(boost::mpi::threading::funneled, false);
            boost::mpi::communicator world;
            dist::check_world_matches_slurm(world);
            try {
                run_build(*bf, &world);
            } catch (const hs::Error&) {
                if (world.rank() != 0) throw CLI::RuntimeError(1);
                throw;
            }
            return;
        }
        run_build(*bf, nullptr);
    });

    auto tf = std::make_shared<TuneFlags>();
    CLI::App* t = cmd->add_subcommand("tune", "choose T (rtd and mh-rtd) by leave-item-out accuracy on the datastore");
    t->add_option("file", tf->file, "datastore file")->required();
    t->add_option("-k,--k", tf->k, "neighbours")->capture_default_str();
    t->add_option("--queries", tf->queries, "dev queries (evenly spaced entries)")->capture_default_str();
    t->add_option("--index", tf->index, "flat | naive | hnsw | ivf")->capture_default_str();
    t->add_flag("--dry-run", tf->dry, "print, do not write the chosen T into the file");
    t->callback([tf] { run_tune(*tf); });

    auto file = std::make_shared<std::string>();
    CLI::App* i = cmd->add_subcommand("info", "what a datastore holds");
    i->add_option("file", *file, "datastore file")->required();
    i->callback([file] { run_info(*file); });
}

}  // namespace hs::cli
