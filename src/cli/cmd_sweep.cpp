// headsweep sweep: the PEAR localisation sweep (score every attention head on the context-copying proxy task).
//
//   headsweep sweep [JOB.toml] [--model M ...] [--mode path|total|attribution ...] [--settings 20x50,40x25]
//                   [--seed S] [--top-k K] [--output TEMPLATE] [--overwrite | --resume] [--threads T]
//                   [--heads-per-item H] [--share-clean-runs true|false]
//                   [--device cpu|cuda] [--exclude-special] [--mean-over batch|sequence] [--positions 0,5,7]
// Flags override the job file's keys. One output file per (model, mode); see README "Commands: sweep".
#include <cstdio>
#include <memory>
#include <sstream>

#include "cli/commands.hpp"
#include "backend/cpu/matmul_blocks.hpp"
#include "dist/sweep_mpi.hpp"
#include "pear/job.hpp"
#include "pear/run_job.hpp"
#include "util/error.hpp"

namespace hs::cli {

namespace {

struct SweepFlags {
    std::string job_file;
    std::vector<std::string> models, modes;
    std::string settings, output, device, gpu_weights, precision, native_prefill, mean_over, positions,
        share_clean_runs;
    int64_t seed = -1, top_k = -1, threads = -1, heads_per_item = -1;
    bool overwrite = false, resume = false, exclude_special = false, quiet = false, dry_run = false, mpi = false;
};

std::vector<int32_t> parse_positions(const std::string& text) {
    std::vector<int32_t> out;
    if (text == "all") return out;
    std::stringstream ss(text);
    std::string part;
    while (std::getline(ss, part, ',')) {
        size_t used = 0;
        long v = -1;
        try {
            v = std::stol(part, &used);
        } catch (const std::exception&) {
        }
        check(used == part.size() && v >= 0, "command line: --positions = \"", text,
              "\" must be 'all' or a comma-separated list of positions >= 0");
        out.push_back(int32_t(v));
    }
    return out;
}

pear::SweepJob build_job(const SweepFlags& f) {
    pear::SweepJob job;
    if (!f.job_file.empty()) job = pear::parse_job_file(f.job_file);
    auto set = [&](const char* key, const char* flag) { job.origin[key] = std::string("command line: ") + flag; };
    if (!f.models.empty()) {
        job.models = f.models;
        set("models", "--model");
        set("model", "--model");
    }
    if (!f.modes.empty()) {
        job.modes.clear();
        for (const auto& m : f.modes) {
            check(m == "path" || m == "total" || m == "attribution", "command line: --mode = \"", m,
                  "\" is not a mode (path, total, attribution)");
            job.modes.push_back(pear::parse_score_mode(m));
        }
        set("modes", "--mode");
        set("mode", "--mode");
    }
    if (!f.settings.empty()) {
        job.options.settings = pear::parse_settings_list(f.settings, "command line: --settings");
        set("settings", "--settings");
    }
    if (f.seed >= 0) {
        job.options.seed = uint64_t(f.seed);
        set("seed", "--seed");
    }
    if (f.top_k >= 0) {
        job.options.top_k = int32_t(f.top_k);
        set("top_k", "--top-k");
    }
    if (f.exclude_special) {
        job.options.exclude_special = true;
        set("exclude_special", "--exclude-special");
    }
    if (!f.mean_over.empty()) {
        check(f.mean_over == "batch" || f.mean_over == "sequence", "command line: --mean-over = \"", f.mean_over,
              "\" is not batch or sequence");
        job.options.mean_over = pear::parse_mean_over(f.mean_over);
        set("mean_over", "--mean-over");
    }
    if (!f.positions.empty()) {
        job.options.total_positions = parse_positions(f.positions);
        set("positions", "--positions");
    }
    if (!f.output.empty()) {
        job.output = f.output;
        set("output", "--output");
    }
    if (f.overwrite) {
        job.overwrite = true;
        job.resume = false;
        set("overwrite", "--overwrite");
    }
    if (f.resume) {
        job.resume = true;
        if (!f.overwrite) job.overwrite = false;
        set("resume", "--resume");
    }
    if (f.threads >= 0) {
        job.threads = int32_t(f.threads);
        set("threads", "--threads");
    }
    if (f.heads_per_item >= 0) {
        job.heads_per_item = int32_t(f.heads_per_item);
        set("heads_per_item", "--heads-per-item");
    }
    if (!f.share_clean_runs.empty()) {
        check(f.share_clean_runs == "true" || f.share_clean_runs == "false", "command line: --share-clean-runs = \"",
              f.share_clean_runs, "\" must be true or false");
        job.share_clean_runs = f.share_clean_runs == "true";
        set("share_clean_runs", "--share-clean-runs");
    }
    if (!f.device.empty()) {
        job.device = f.device;
        set("device", "--device");
    }
    if (!f.gpu_weights.empty()) {
        job.gpu_weights = f.gpu_weights;
        set("gpu_weights", "--gpu-weights");
    }
    if (!f.precision.empty()) {
        job.precision = f.precision;
        set("precision", "--precision");
    }
    if (!f.native_prefill.empty()) {
        cpu::parse_native_prefill(f.native_prefill);
        job.native_prefill = f.native_prefill;
        set("native_prefill", "--native-prefill");
    }
    return job;
}

}  // namespace

void add_sweep_command(CLI::App& app) {
    auto f = std::make_shared<SweepFlags>();
    CLI::App* cmd = app.add_subcommand(
        "sweep", "PEAR localisation sweep: score every attention head on the copying task (one HDF5 file per model "
                 "and mode)");
    cmd->add_option("job", f->job_file, "job file (TOML, e.g. jobs/smollm2-pear.toml); flags override its keys");
    cmd->add_option("-m,--model", f->models, "GGUF file or random:<shape>[:<seed>] (repeat for several)")
        ->default_str(kDefaultModel);
    cmd->add_option("--mode", f->modes, "path | total | attribution (repeat for several)")->default_str("path");
    cmd->add_option("--settings", f->settings, "NxN list, e.g. 20x50,40x25, or 'paper'")->default_str("paper");
    cmd->add_option("--seed", f->seed, "proxy-task seed")->default_str("10024");
    cmd->add_option("-k,--top-k", f->top_k, "number of suppression heads (0: 3% of all heads)")->default_str("0");
    cmd->add_option("-o,--output", f->output, "output file template ({model}, {mode})")
        ->default_str(pear::kDefaultSweepOutput);
    cmd->add_flag("--overwrite", f->overwrite, "replace existing output files");
    cmd->add_flag("--resume", f->resume, "continue existing output files (job parameters must match)");
    cmd->add_option("-t,--threads", f->threads, "CPU threads for BLAS (0: OpenBLAS default)")->default_str("0");
    cmd->add_option("--heads-per-item", f->heads_per_item,
                    "work item size: heads of one layer per item (0: whole layers); recorded in the file, a resume "
                    "must match")
        ->default_str("0");
    cmd->add_option("--share-clean-runs", f->share_clean_runs,
                    "MPI: each setting's clean run computed once and sent to the other workers (true), or computed "
                    "by every worker that takes the setting up (false); the same file either way")
        ->default_str("true");
    cmd->add_option("--device", f->device, "cpu or cuda")->default_str("cpu");
    cmd->add_option("--gpu-weights", f->gpu_weights, "cuda: weights as bf16 | fp16 | fp32")->default_str("bf16");
    cmd->add_option("--precision", f->precision,
                    "host weights: f32 (exact, default) | bf16 | native (the GGUF's own quantised blocks)")
        ->default_str("f32");
    cmd->add_option("--native-prefill", f->native_prefill,
                    "cpu, native precision: prompts of >= 8 tokens through int8 tiles below a measured length "
                    "(auto), always (int8), or dequantised + fp32 SGEMM (f32: prefill equals --precision f32; also keeps "
                    "bf16 weights off oneDNN, which auto uses below 48 tokens)")
        ->default_str("auto");
    cmd->add_flag("--exclude-special", f->exclude_special, "draw proxy tokens only from non-special ids");
    cmd->add_option("--mean-over", f->mean_over, "total mode: ablation mean over batch | sequence")
        ->default_str("batch");
    cmd->add_option("--positions", f->positions, "total mode: ablated positions, e.g. 0,5,7 (default: all)");
    cmd->add_flag("-q,--quiet", f->quiet, "no progress lines");
    cmd->add_flag("--dry-run", f->dry_run, "validate the job and list its runs, do nothing");
    cmd->add_flag("--mpi", f->mpi,
                  "use the MPI coordinator even with one rank (automatic under mpirun/srun with more than one)");
    cmd->callback([f] {
        check(!(f->overwrite && f->resume), "command line: --overwrite and --resume exclude each other");
        pear::SweepJob job = build_job(*f);
        if (f->dry_run) {
            pear::validate_job_fully(job);
            for (const auto& r : pear::expand_runs(job))
                std::printf("%s %s -> %s\n", r.model.c_str(), pear::score_mode_name(r.mode), r.output.c_str());
            return;
        }
        // Under mpirun / srun with more than one rank: the distributed sweep (dist/sweep_mpi.hpp), rank 0 writes.
        bool is_root = true;
        try {
            if (dist::sweep_if_distributed(job, f->mpi, f->quiet, is_root)) return;
        } catch (const hs::Error&) {
            if (!is_root) throw CLI::RuntimeError(1);  // rank 0 prints the (same) message
            throw;
        }
        pear::RunJobOptions ro;
        ro.progress = !f->quiet;
        ro.write = pear::write_options_from_env();
        for (const auto& s : pear::run_job(job, ro)) std::printf("%s\n", s.line().c_str());
    });
}

}  // namespace hs::cli
