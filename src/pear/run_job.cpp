// Running a sweep job in one process (run_job.hpp).
#include "pear/run_job.hpp"

#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "backend/cpu/cpu_runtime.hpp"
#include "engine/engine.hpp"
#include "model/model.hpp"
#include "pear/sweep_file.hpp"
#include "util/error.hpp"
#include "util/progress.hpp"
#include "util/timer.hpp"

namespace hs::pear {

namespace fs = std::filesystem;

namespace {

struct Prepared {
    std::map<std::string, ModelShape> shapes;
    std::map<std::string, std::string> sha;  // model spec -> sha256
};

// The job parameters a run's file must hold, from what is known before loading the model.
SweepFileInfo expected_info(const SweepJob& job, const SweepRun& run, const ModelShape& shape, const std::string& sha) {
    SweepFileInfo info;
    info.model = run.model;
    info.model_sha256 = sha;
    info.n_layer = shape.n_layer;
    info.n_head = shape.n_head;
    info.options = job.options;
    info.options.mode = run.mode;
    info.heads_per_item = normalised_heads_per_item(job.heads_per_item, shape.n_head);
    info.device = device_label(job);
    info.job_file = job.source;
    return info;
}

Prepared prepare(const SweepJob& job) {
    validate_job(job);
    Prepared p;
    for (const std::string& m : job.models) {
        if (p.shapes.count(m)) continue;
        ModelShape shape = peek_model_shape(m, job.where("models"));
        validate_job_for_model(job, shape);
        p.shapes[m] = shape;
    }
    for (const SweepRun& run : expand_runs(job)) {
        if (!job.resume || !fs::exists(run.output)) continue;
        if (!p.sha.count(run.model)) p.sha[run.model] = model_sha256(run.model);
        const auto diff = differing_parameters(SweepFile::resume_info(run.output),
                                               expected_info(job, run, p.shapes[run.model], p.sha[run.model]));
        if (!diff.empty()) {
            std::string all;
            for (const auto& d : diff) all += (all.empty() ? "" : "; ") + d;
            fail(run.output, ": cannot resume: job parameter", diff.size() == 1 ? "" : "s", " differ",
                 diff.size() == 1 ? "s" : "", " from the file's: ", all,
                 " (use --overwrite to start again, or another output path)");
        }
    }
    return p;
}

}  // namespace

std::string RunSummary::line() const {
    std::ostringstream os;
    os << "sweep " << model_stem(model) << " " << mode << ": " << n_layer * n_head << " heads (" << n_layer << "x"
       << n_head << "), " << heads_scored << " scored in " << std::fixed;
    os.precision(1);
    os << seconds << " s, " << (complete ? "complete" : "PARTIAL") << (resumed ? " (resumed)" : "") << " -> "
       << output;
    if (complete) {
        os << "; top-" << top.size() << ":";
        for (const auto& [l, h] : top) os << " L" << l << "H" << h;
    }
    return os.str();
}

void validate_job_fully(const SweepJob& job) { prepare(job); }

std::vector<RunSummary> run_job(const SweepJob& job, const RunJobOptions& ro) {
    Prepared prep = prepare(job);
    std::vector<RunSummary> out;
    int64_t items_left = ro.max_items;
    const auto runs = expand_runs(job);
    std::string loaded_spec;
    std::unique_ptr<Model> model;
    std::unique_ptr<Backend> backend;
    std::unique_ptr<Engine> engine;
    for (const SweepRun& run : runs) {
        Timer timer;
        if (loaded_spec != run.model) {  // runs of one model are adjacent: load it once
            engine.reset();
            LoadOptions lo = load_options(job, ro.progress);
            model = std::make_unique<Model>(open_model(run.model, lo));
            backend = make_backend(parse_device(job.device), backend_options(job));
            engine = std::make_unique<Engine>(*model, *backend);
            loaded_spec = run.model;
        }
        SweepFileInfo info = describe_model(*model, run.model);
        if (auto it = prep.sha.find(run.model); it != prep.sha.end()) info.model_sha256 = it->second;
        prep.sha[run.model] = info.model_sha256;
        info.options = job.options;
        info.options.mode = run.mode;
        info.device = device_label(job);
        info.job_file = job.source;
        info.heads_per_item = normalised_heads_per_item(job.heads_per_item, model->config.n_head);
        info.options.validate(model->config);

        const bool resumed = job.resume && fs::exists(run.output);
        SweepFile file = resumed ? SweepFile::open_for_resume(run.output, info, ro.write)
                                 : SweepFile::create(run.output, info, job.overwrite, ro.write);
        for (const std::string& n : file.notes()) std::fprintf(stderr, "%s\n", n.c_str());
        const std::vector<WorkItem> todo =
            file.remaining(plan_items(model->config, info.options, 1, job.heads_per_item));
        int64_t total_heads = 0;
        for (const WorkItem& it : todo) total_heads += it.n_heads();

        RunSummary sum = RunSummary::start(run, model->config, resumed);
        {
            Progress progress({.label = "sweep " + model_stem(run.model) + " " + sum.mode + " [" + cpu_runtime_tag() + "]",
                               .total = total_heads,
                               .interval_s = ro.progress_interval_s,
                               .enabled = ro.progress && total_heads > 0,
                               .unit = "heads"});
            size_t i = 0;
            while (i < todo.size() && items_left != 0) {
                const int32_t s = todo[i].setting;
                SettingRun setting(*engine, info.options, s);
                ++sum.clean_runs;
                file.write_clean(s, setting.pi_clean(), setting.copy_accuracy(), setting.batch().tokens,
                                 setting.pi_clean_samples());
                for (; i < todo.size() && todo[i].setting == s && items_left != 0; ++i) {
                    file.write_item(todo[i], setting.score_samples(todo[i]));
                    sum.heads_scored += todo[i].n_heads();
                    progress.add(todo[i].n_heads());
                    if (items_left > 0) --items_left;
                }
            }
            progress.finish();
        }
        const int32_t k = job.options.top_k > 0 ? job.options.top_k : default_top_k(model->config.n_heads_total());
        if (file.all_done()) {
            HeadScores scores = (file.complete() && file.read_scores().top_k == k) ? file.read_scores() : file.finish(k);
            sum.complete = true;
            for (int32_t r = 0; r < scores.top_k && size_t(r) < scores.ranking.size(); ++r)
                sum.top.push_back({scores.ranking[size_t(r)] / sum.n_head, scores.ranking[size_t(r)] % sum.n_head});
        }
        file.close();
        sum.seconds = timer.seconds();
        out.push_back(sum);
        if (items_left == 0) break;
    }
    return out;
}

RunSummary RunSummary::start(const SweepRun& run, const ModelConfig& config, bool resumed) {
    RunSummary sum;
    sum.model = run.model;
    sum.mode = score_mode_name(run.mode);
    sum.output = run.output;
    sum.n_layer = config.n_layer;
    sum.n_head = config.n_head;
    sum.resumed = resumed;
    return sum;
}

}  // namespace hs::pear
