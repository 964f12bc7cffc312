#include "eval/run_eval.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>
#include <sstream>

#include <boost/mpi/collectives.hpp>
#include <boost/mpi/environment.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>

#include "backend/backend.hpp"
#include "backend/cpu/cpu_runtime.hpp"
#include "backend/cpu/onednn_gemm.hpp"
#include "dist/protocol.hpp"
#include "dist/sweep_mpi.hpp"
#include "model/model.hpp"
#include "util/error.hpp"
#include "util/progress.hpp"
#include "util/timer.hpp"

namespace hs::eval {

namespace fs = std::filesystem;

std::string EvalJob::settings_string() const {
    const TaskBuildOptions& o = task_options;
    std::ostringstream os;
    os << "limit=" << o.limit << " max_new_tokens_cap=" << o.max_new_tokens_cap
       << " max_prompt_tokens=" << o.max_prompt_tokens << " mmlu_shots=" << o.mmlu_shots
       << " mmlu_per_subject=" << o.mmlu_per_subject << " mdqa10_extra=" << o.mdqa10_extra;
    // RTD's choice-task options, only when set (files written before them resume unchanged)
    if (o.choice_shots > 0) os << " choice_shots=" << o.choice_shots;
    if (!o.user_train.empty() || !o.user_test.empty()) os << " user_train=" << o.user_train << " user_test=" << o.user_test;
    if (std::find(tasks.begin(), tasks.end(), "niah") != tasks.end()) os << " niah: " << o.niah.settings();
    if (precision != "f32") os << " precision=" << precision;  // f32 files written before the option resume as they were
    // native files written before the int8 prefill resume with native_prefill=f32
    if (precision == "native" && device == "cpu" && native_prefill != "f32") os << " native_prefill=" << native_prefill;
    // bf16 weights: short prefills through oneDNN where this build and CPU have it (files without the key: SGEMM)
    if (precision == "bf16" && device == "cpu")
        if (const std::string t = cpu::bf16_prefill_tag(native_prefill); !t.empty()) os << " bf16_prefill=" << t;
    return os.str();
}

std::string resolve_data_dir(const std::string& flag) {
    if (!flag.empty()) return flag;
    if (const char* e = std::getenv("HEADSWEEP_DATA"); e && *e) return e;
    return "../shared/data";
}

namespace {

struct Plan {
    std::vector<Example> examples;
    std::vector<std::unique_ptr<Method>> methods;
};

// Values of one result: score, latency, prompt, original, new tokens, truncated, output length L, then the
// output's L bytes and the detail's bytes.
constexpr size_t kHead = 7;

// Where methods keep the state of long answers between runs (EvalContext::state_dir): beside the output.
std::string answer_state_dir(const std::string& output) { return output + ".state"; }

// The method's detail object with the task's own members (e.g. niah's "strict") added at its end.
std::string merge_detail(const std::string& method, const std::string& task) {
    if (task.empty()) return method;
    if (method.size() < 2 || method.back() != '}') return "{" + task + "}";
    return method.substr(0, method.size() - 1) + (method.size() > 2 ? "," : "") + task + "}";
}

class EvalExecutor : public dist::Executor {
public:
    EvalExecutor(Plan& plan, EvalContext& ctx) : plan_(plan), ctx_(ctx) {}
    void run(int32_t index, dist::TaskResult& out) override {
        const size_t M = plan_.methods.size();
        check(index >= 0 && size_t(index) < plan_.examples.size() * M, "eval: task ", index, " is outside the plan");
        const Example& ex = plan_.examples[size_t(index) / M];
        Method& m = *plan_.methods[size_t(index) % M];
        Timer t;
        const Answer a = m.answer(ex, ctx_);
        const double latency = t.seconds();
        out.values = {score_output(ex, a.text), latency, double(a.prompt_tokens), double(ex.original_tokens),
                      double(a.new_tokens), ex.truncated ? 1.0 : 0.0, double(a.text.size())};
        for (unsigned char c : a.text) out.values.push_back(double(c));
        for (unsigned char c : merge_detail(a.detail, task_detail(ex, a.text))) out.values.push_back(double(c));
        out.seconds = latency;
    }

private:
    Plan& plan_;
    EvalContext& ctx_;
};

Record to_record(const Plan& plan, const std::string& model, const dist::TaskResult& r) {
    const size_t M = plan.methods.size();
    const Example& ex = plan.examples[size_t(r.index) / M];
    check(r.values.size() >= kHead, "eval: result of task ", r.index, " is too short");
    Record rec;
    rec.model = model;
    rec.method = plan.methods[size_t(r.index) % M]->name();
    rec.task = ex.task;
    rec.id = ex.id;
    rec.gold_position = ex.gold_position;
    rec.score = r.values[0];
    rec.latency_s = r.values[1];
    rec.prompt_tokens = int32_t(r.values[2]);
    rec.original_tokens = int32_t(r.values[3]);
    rec.new_tokens = int32_t(r.values[4]);
    rec.truncated = r.values[5] != 0;
    const size_t text_end = kHead + size_t(r.values[6]);
    check(text_end <= r.values.size(), "eval: result of task ", r.index, " is truncated");
    for (size_t k = kHead; k < r.values.size(); ++k)
        (k < text_end ? rec.output : rec.detail) += char(static_cast<unsigned char>(r.values[k]));
    rec.rank = r.rank;
    return rec;
}

void collective(const boost::mpi::communicator* comm, const std::function<void()>& f) {
    if (comm) dist::collective_step(*comm, f);
    else f();
}

}  // namespace

EvalOutcome run_eval(const EvalJob& job, const boost::mpi::communicator* comm) {
    const int rank = comm ? comm->rank() : 0;
    const int W = comm ? comm->size() : 1;
    const bool root = rank == 0;
    const bool coordinator_works = W <= 4;
    const int32_t threads = comm ? (job.threads > 0 ? job.threads : 1) : job.threads;
    EvalOutcome outcome;

    std::unique_ptr<RecordsFile> file;
    std::set<std::tuple<std::string, std::string, std::string, int32_t, std::string>> done;
    collective(comm, [&] {
        check(!job.models.empty() && !job.tasks.empty() && !job.methods.empty(), "eval: no models, tasks or methods");
        check(!(job.resume && job.overwrite), "eval: --resume and --overwrite exclude each other");
        for (const std::string& t : job.tasks) find_task(t);
        for (const std::string& m : job.methods) make_method(m, job.method_settings);  // validates settings
        const bool reads_data = std::any_of(job.tasks.begin(), job.tasks.end(), [&](const std::string& t) {
            return task_reads_data_dir(t, job.task_options);
        });
        check(!reads_data || fs::is_directory(job.task_options.data_dir), job.task_options.data_dir,
              ": no such data folder (--data-dir, HEADSWEEP_DATA, default ../shared/data)");
        if (!root) return;
        const fs::path parent = fs::absolute(job.output).parent_path();
        if (!fs::exists(parent)) fs::create_directories(parent);
        check(!job.summary_only || fs::exists(job.output), job.output, ": --summary-only needs an existing file");
        if ((job.resume || job.summary_only) && fs::exists(job.output)) {
            file = std::make_unique<RecordsFile>(RecordsFile::open_for_resume(job.output, job.settings_string()));
            for (const Record& r : file->records()) done.insert(r.key());
        } else {
            file = std::make_unique<RecordsFile>(
                RecordsFile::create(job.output, job.settings_string(), job.task_options.data_dir, job.overwrite));
            std::error_code ec;  // a new file: states of answers of an earlier file of that name are not wanted
            fs::remove_all(answer_state_dir(job.output), ec);
        }
    });

    int64_t left = job.max_results;
    for (const std::string& spec : job.models) {
        if (job.summary_only) break;
        std::unique_ptr<Model> model;
        std::unique_ptr<Backend> backend;
        std::unique_ptr<EvalContext> ctx;
        Plan plan;
        collective(comm, [&] {
            LoadOptions lo;
            lo.verbose = root && job.progress;
            lo.precision = parse_weight_precision(job.precision);
            model = std::make_unique<Model>(open_model(spec, lo));
            BackendOptions bo;
            bo.threads = threads;
            bo.gpu_weights = parse_weight_type(job.gpu_weights);
            bo.native_prefill = job.native_prefill;
            backend = make_backend(parse_device(job.device), bo);
            ctx = std::make_unique<EvalContext>(*model, spec, *backend);
            ctx->state_dir = answer_state_dir(job.output);
            TaskBuildOptions to = job.task_options;
            to.n_ctx = model->config.n_ctx;
            for (const std::string& t : job.tasks) {
                std::vector<Example> ex = build_task(t, model->tokenizer, to);
                for (Example& e : ex) plan.examples.push_back(std::move(e));
            }
            for (const std::string& m : job.methods) {
                plan.methods.push_back(make_method(m, job.method_settings));
                if (!root || coordinator_works || W == 1) plan.methods.back()->prepare(*ctx);
            }
            if (!root || coordinator_works || W == 1)
                for (const auto& m : plan.methods) m->check_examples(plan.examples, *ctx);
            std::set<std::string> names;
            for (const auto& m : plan.methods)
                check(names.insert(m->name()).second, "eval: two methods are named ", m->name());
            if (root)
                for (const auto& m : plan.methods) file->check_method(m->name(), m->config());
        });
        const size_t M = plan.methods.size();
        std::vector<int32_t> todo;
        int64_t plan_size = int64_t(plan.examples.size() * M);
        if (root) {
            for (size_t e = 0; e < plan.examples.size(); ++e)
                for (size_t m = 0; m < M; ++m) {
                    const Example& ex = plan.examples[e];
                    if (done.count({spec, plan.methods[m]->name(), ex.task, ex.gold_position, ex.id})) {
                        ++outcome.skipped;
                        continue;
                    }
                    if (left >= 0 && int64_t(todo.size()) >= left) continue;
                    todo.push_back(int32_t(e * M + m));
                }
        }
        if (comm) {
            int64_t root_size = plan_size;
            boost::mpi::broadcast(*comm, root_size, 0);
            collective(comm, [&] {
                check(root_size == plan_size, "eval: ", spec, " gives ", plan_size, " tasks here but ", root_size,
                      " on rank 0 (different data or model files?)");
            });
            boost::mpi::broadcast(*comm, todo, 0);
        }
        if (left >= 0) left -= int64_t(todo.size());

        EvalExecutor exec(plan, *ctx);
        if (!comm) {
            Progress p({.label = "eval " + fs::path(spec).filename().string() + " [" + cpu_runtime_tag() + "]", .total = int64_t(todo.size()),
                        .interval_s = 10, .enabled = job.progress});
            for (int32_t i : todo) {
                dist::TaskResult r;
                r.index = i;
                exec.run(i, r);
                file->append(to_record(plan, spec, r));
                ++outcome.computed;
                p.add(1);
            }
            p.finish();
        } else if (root) {
            std::vector<dist::Task> tasks;
            for (int32_t i : todo) tasks.push_back(dist::Task{i, int32_t(size_t(i) % M)});
            dist::CoordinatorOptions co;
            co.local_worker = coordinator_works;
            co.max_batch = 1;
            co.target_batch_seconds = 0.5;
            co.progress = job.progress;
            co.progress_interval_s = 10;
            co.label = "eval " + fs::path(spec).filename().string() + " [" + cpu_runtime_tag() + "]";
            co.unit = "answers";
            auto sink = [&](const dist::TaskResult& r) {
                file->append(to_record(plan, spec, r));
                ++outcome.computed;
            };
            std::string error;
            try {
                dist::coordinate(*comm, tasks, coordinator_works ? &exec : nullptr, sink, co);
            } catch (const std::exception& e) {
                error = e.what();
            }
            boost::mpi::broadcast(*comm, error, 0);
            if (!error.empty()) throw Error(error);
        } else {
            dist::serve_then_sync(*comm, exec);
        }
    }

    collective(comm, [&] {
        if (!root) return;
        outcome.summary = summarize(file->records(), job.summary);
        file->write_summary(outcome.summary, job.summary);
        file->close();
        std::error_code ec;  // every answer was written: no state is left to go on from (fs::remove keeps a non-empty one)
        fs::remove(answer_state_dir(job.output), ec);
    });
    return outcome;
}

bool eval_if_distributed(const EvalJob& job, bool force, bool& is_root, EvalOutcome& out) {
    is_root = true;
    if (!dist::started_by_mpi_launcher() && !force) return false;
    boost::mpi::environment env(boost::mpi::threading::funneled, false);
    boost::mpi::communicator world;
    is_root = world.rank() == 0;
    dist::check_world_matches_slurm(world);
    if (world.size() == 1 && !force) return false;
    out = run_eval(job, &world);
    return true;
}

}  // namespace hs::eval
