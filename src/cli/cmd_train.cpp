// headsweep train: learn PEAR re-weighting coefficients (pear/train.hpp), data-parallel over MPI ranks.
//
//   headsweep train --heads 3:1,5:2 -o tau.h5                 # heads given explicitly
//   headsweep train --sweep sweep.h5 --top-k 8 -o tau.h5      # the top K of a sweep file
//   headsweep train --job jobs/smollm2-train.toml             # the same keys in a TOML file (flags override)
//   mpiexec -n 4 headsweep train ...                           # ranks split each batch; same tau bit for bit
// A run writes its output file (state + full log) at every checkpoint; --resume continues from it.
#include <boost/mpi/communicator.hpp>
#include <boost/mpi/environment.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>

#include <toml++/toml.h>

#include "backend/cpu/cpu_runtime.hpp"
#include "cli/commands.hpp"
#include "engine/engine.hpp"
#include "io/h5.hpp"
#include "model/model.hpp"
#include "pear/train.hpp"
#include "util/error.hpp"

namespace hs::cli {

namespace {

struct TrainCli {
    std::string model = kDefaultModel, job, heads, sweep, output = "train.h5", device = "cpu", gpu_weights = "bf16", precision = "f32";
    int32_t top_k = 8;
    int threads = 0;
    bool resume = false, overwrite = false;
    pear::TrainOptions opt;
};

// Job file keys: the long flag names with '_' for '-'. Unknown keys are errors.
void apply_job_file(TrainCli& o, const std::string& path, const CLI::App& cmd) {
    toml::table tbl;
    try {
        tbl = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
        fail(path, ": ", e.description(), " at line ", e.source().begin.line);
    }
    const toml::table* t = tbl.get_as<toml::table>("train") ? tbl.get_as<toml::table>("train") : &tbl;
    auto given = [&](const char* flag) { return cmd.count(flag) > 0; };  // command-line flags win
    for (const auto& [k, v] : *t) {
        const std::string key(k.str());
        auto num = [&]() {
            auto d = v.value<double>();
            check(d.has_value(), path, ": ", key, " must be a number");
            return *d;
        };
        auto str = [&]() {
            auto s = v.value<std::string>();
            check(s.has_value(), path, ": ", key, " must be a string");
            return *s;
        };
        if (key == "model") { if (!given("--model")) o.model = str(); }
        else if (key == "heads") { if (!given("--heads")) o.heads = str(); }
        else if (key == "sweep") { if (!given("--sweep")) o.sweep = str(); }
        else if (key == "top_k") { if (!given("--top-k")) o.top_k = int32_t(num()); }
        else if (key == "output") { if (!given("--output")) o.output = str(); }
        else if (key == "threads") { if (!given("--threads")) o.threads = int(num()); }
        else if (key == "device") { if (!given("--device")) o.device = str(); }
        else if (key == "gpu_weights") { if (!given("--gpu-weights")) o.gpu_weights = str(); }
        else if (key == "precision") { if (!given("--precision")) o.precision = str(); }
        else if (key == "n") { if (!given("--n")) o.opt.half_len = int32_t(num()); }
        else if (key == "batch") { if (!given("--batch")) o.opt.batch = int32_t(num()); }
        else if (key == "steps") { if (!given("--steps")) o.opt.steps = int32_t(num()); }
        else if (key == "planned_steps") { if (!given("--planned-steps")) o.opt.planned_steps = int32_t(num()); }
        else if (key == "warmup") { if (!given("--warmup")) o.opt.warmup = int32_t(num()); }
        else if (key == "lr") { if (!given("--lr")) o.opt.lr = num(); }
        else if (key == "clip") { if (!given("--clip")) o.opt.clip = num(); }
        else if (key == "seed") { if (!given("--seed")) o.opt.seed = uint64_t(num()); }
        else if (key == "checkpoint_every") { if (!given("--checkpoint-every")) o.opt.checkpoint_every = int32_t(num()); }
        else if (key == "eval_batch") { if (!given("--eval-batch")) o.opt.eval_batch = int32_t(num()); }
        else fail(path, ": unknown key '", key, "'");
    }
}

// The whole training run, inside MPI.
void run_training(TrainCli& opt, const boost::mpi::communicator& world) {
    TrainCli* o = &opt;  // the body reads as the callback it came from
    const bool root = world.rank() == 0;
    check(o->heads.empty() != o->sweep.empty(), "train: give exactly one of --heads and --sweep");
    LoadOptions lo;
    lo.verbose = root;
    lo.precision = parse_weight_precision(o->precision);
    o->opt.precision = lo.precision;
    Model m = open_model(o->model, lo);
    o->opt.heads = o->heads.empty() ? pear::read_sweep_top_heads(o->sweep, o->top_k, m.config.n_head)
                                    : pear::parse_heads(o->heads);
    o->opt.validate(m.config);
    const bool exists = std::filesystem::exists(o->output);
    check(!exists || o->resume || o->overwrite, o->output, ": exists (use --resume to continue it or --overwrite)");
    BackendOptions bo;
    bo.threads = o->threads;
    bo.gpu_weights = parse_weight_type(o->gpu_weights);
    auto be = make_backend(parse_device(o->device), bo);
    Engine engine(m, *be);
    pear::Trainer tr(engine, o->opt, world);
    std::vector<std::pair<std::string, double>> extra;
    if (exists && o->resume) {
        tr.restore(pear::read_train_file(o->output, o->opt));
        h5::File f = h5::File::open(o->output);
        for (const char* k : {"loss_before", "accuracy_before"})
            if (f.has(std::string("eval/") + k))
                extra.push_back({k, f.open_dataset(std::string("eval/") + k).read<double>()[0]});
        if (root) std::fprintf(stderr, "train: resuming %s at step %d\n", o->output.c_str(), tr.state().step);
    }
    if (root)
        std::fprintf(stderr, "train: %zu heads (%s), %d ranks, batch %d, n %d, steps %d of %d planned [%s]\n",
                     o->opt.heads.size(), pear::heads_string(o->opt.heads).c_str(), world.size(), o->opt.batch,
                     o->opt.half_len, o->opt.steps, o->opt.planned_steps, cpu_runtime_tag().c_str());
    if (o->opt.eval_batch > 0 && extra.empty()) {
        const auto ev = tr.evaluate(std::vector<float>(o->opt.heads.size(), 1.0f));
        extra = {{"loss_before", ev.loss}, {"accuracy_before", ev.accuracy}};
        if (root) std::fprintf(stderr, "train: before: eval loss %.4f, copy accuracy %.4f\n", ev.loss, ev.accuracy);
    }
    while (tr.state().step < o->opt.steps) {
        const pear::StepStats st = tr.step();
        const auto& s = tr.state();
        if (root) {
            std::fprintf(stderr, "step %3d  loss %.4f  acc %.4f  |g| %.4g  lr %.5f  %.1fs  tau", s.step, st.loss,
                         st.accuracy, st.grad_norm, st.lr, s.seconds.back());
            for (float t : s.tau) std::fprintf(stderr, " %.4f", t);
            std::fprintf(stderr, "\n");
        }
        const bool ckpt = o->opt.checkpoint_every > 0 && s.step % o->opt.checkpoint_every == 0;
        if (root && ckpt && s.step < o->opt.steps) pear::write_train_file(o->output, o->opt, s, o->model, extra);
    }
    if (o->opt.eval_batch > 0) {
        const auto ev = tr.evaluate(tr.state().tau);
        extra.push_back({"loss_after", ev.loss});
        extra.push_back({"accuracy_after", ev.accuracy});
        if (root) std::fprintf(stderr, "train: after: eval loss %.4f, copy accuracy %.4f\n", ev.loss, ev.accuracy);
    }
    if (root) {
        pear::write_train_file(o->output, o->opt, tr.state(), o->model, extra);
        std::printf("heads %s\ntau  ", pear::heads_string(o->opt.heads).c_str());
        for (float t : tr.state().tau) std::printf(" %.6f", t);
        std::printf("\n");
    }
}

}  // namespace

void add_train_command(CLI::App& app) {
    auto o = std::make_shared<TrainCli>();
    CLI::App* cmd = app.add_subcommand("train", "Learn PEAR re-weighting coefficients tau for selected heads");
    cmd->add_option("-m,--model", o->model, "GGUF file, Hugging Face checkpoint folder, or random:<shape>[:<seed>]")->capture_default_str();
    cmd->add_option("--job", o->job, "TOML job file (keys: the long flag names with _ for -; flags override)");
    cmd->add_option("--heads", o->heads, "heads as \"layer:head,layer:head,...\"");
    cmd->add_option("--sweep", o->sweep, "take the top K heads of this sweep HDF5 file");
    cmd->add_option("--top-k", o->top_k, "K for --sweep")->capture_default_str();
    cmd->add_option("-o,--output", o->output, "output and checkpoint HDF5 file")->capture_default_str();
    cmd->add_option("-t,--threads", o->threads, "BLAS threads per rank (0: OpenBLAS default)");
    cmd->add_option("--device", o->device, "cpu or cuda (one GPU per rank: rank i of a node uses GPU i mod count)")
        ->capture_default_str();
    cmd->add_option("--gpu-weights", o->gpu_weights, "cuda: weights as bf16 | fp16 | fp32")->capture_default_str();
    cmd->add_option("--precision", o->precision,
                    "host weights: f32 (exact, default) | bf16 | native (the GGUF's own quantised blocks)")
        ->capture_default_str();
    cmd->add_option("--n", o->opt.half_len, "half length n (sequence [X, X] of 2n tokens)")->capture_default_str();
    cmd->add_option("--batch", o->opt.batch, "sequences per step")->capture_default_str();
    cmd->add_option("--steps", o->opt.steps, "stop after this many steps")->capture_default_str();
    cmd->add_option("--planned-steps", o->opt.planned_steps, "length of the linear lr decay")->capture_default_str();
    cmd->add_option("--warmup", o->opt.warmup, "warm-up steps")->capture_default_str();
    cmd->add_option("--lr", o->opt.lr, "peak learning rate")->capture_default_str();
    cmd->add_option("--clip", o->opt.clip, "global gradient-norm clip")->capture_default_str();
    cmd->add_option("--seed", o->opt.seed, "data seed")->capture_default_str();
    cmd->add_option("--checkpoint-every", o->opt.checkpoint_every, "write the output file every k steps (0: end)")
        ->capture_default_str();
    cmd->add_option("--eval-batch", o->opt.eval_batch, "sequences of the before/after evaluation (0: none)")
        ->capture_default_str();
    cmd->add_flag("--resume", o->resume, "continue from the output file when it exists");
    cmd->add_flag("--overwrite", o->overwrite, "replace an existing output file");
    cmd->callback([o, cmd] {
        if (!o->job.empty()) apply_job_file(*o, o->job, *cmd);
        // An error must leave MPI in order: boost's environment aborts without a message when it is destroyed
        // while an exception unwinds. So: catch inside, finalize (one rank) or abort the job naming the rank (several:
        // the others may wait in a collective), and report the error after MPI is done.
        std::exception_ptr failure;
        {
            boost::mpi::environment env;  // MPI_Init (a single process without mpiexec is a world of one)
            boost::mpi::communicator world;
            try {
                run_training(*o, world);
            } catch (const std::exception& e) {
                if (world.size() > 1) {
                    std::fprintf(stderr, "headsweep: error (rank %d): %s\n", world.rank(), e.what());
                    std::fflush(stderr);
                    env.abort(1);
                }
                failure = std::current_exception();
            }
        }
        if (failure) std::rethrow_exception(failure);
    });
}

}  // namespace hs::cli
