// The distributed PEAR sweep (sweep_mpi.hpp).
#include "dist/sweep_mpi.hpp"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <tuple>

#include <boost/mpi/collectives.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#include <boost/mpi/environment.hpp>

#include "backend/cpu/cpu_runtime.hpp"
#include "dist/node_file.hpp"
#include "engine/engine.hpp"
#include "model/model.hpp"
#include "pear/sweep_file.hpp"
#include "util/error.hpp"
#include "util/timer.hpp"

extern "C" int openblas_get_num_threads(void);

namespace hs::dist {

namespace fs = std::filesystem;
using namespace hs::pear;

namespace {

// Test hook: HEADSWEEP_TEST_KILL_AT="<rank>:<n>" makes that rank SIGKILL itself when it is about to handle its
// n-th item (a worker before scoring it; rank 0 before staging the n-th result for the file). The crash-safety
// test hook of the writer itself is HEADSWEEP_TEST_EXIT_AT_WRITE (pear::WriteOptions).
struct KillHook {
    int rank = -1;
    int64_t at = -1;
    int64_t count = 0;
    explicit KillHook(int my_rank) {
        const char* v = std::getenv("HEADSWEEP_TEST_KILL_AT");
        if (!v || !*v) return;
        int r = -1;
        long long n = -1;
        if (std::sscanf(v, "%d:%lld", &r, &n) == 2 && r == my_rank) rank = r, at = n;
    }
    void tick() {
        if (at >= 0 && ++count >= at) std::raise(SIGKILL);
    }
};

// Scores the items of one run on one rank, keeping the clean run of the current setting.
class PearExecutor : public Executor {
public:
    PearExecutor(Engine& engine, const SweepOptions& options, const std::vector<WorkItem>& plan, KillHook* hook)
        : engine_(engine), options_(options), plan_(plan), hook_(hook) {}
    void run(int32_t index, TaskResult& out) override {
        check(index >= 0 && size_t(index) < plan_.size(), "dist: item ", index, " is outside the plan");
        if (hook_) hook_->tick();
        const WorkItem& item = plan_[size_t(index)];
        Timer t;
        if (!run_ || setting_ != item.setting) {
            run_.reset();
            run_ = std::make_unique<SettingRun>(engine_, options_, item.setting);
            setting_ = item.setting;
        }
        // values: the means, then the per-sample values [heads, N]; group values: pi_clean, copy accuracy, then the
        // per-sample clean values [N] (floats, exact as doubles).
        const ItemScores sc = run_->score_samples(item);
        out.values = sc.pi_ablated;
        out.values.insert(out.values.end(), sc.pi_tilde.begin(), sc.pi_tilde.end());
        out.group_values = {run_->pi_clean(), run_->copy_accuracy()};
        out.group_values.insert(out.group_values.end(), run_->pi_clean_samples().begin(),
                                run_->pi_clean_samples().end());
        out.seconds = t.seconds();
    }
    // Shared clean runs (CoordinatorOptions::share_group_state): a setting's clean run made here and sent, or
    // installed from the bytes another rank made (SettingRun::export_state: scores bit for bit alike).
    void prepare_group(int32_t setting) override {
        run_.reset();
        setting_ = -1;
        run_ = std::make_unique<SettingRun>(engine_, options_, setting);
        setting_ = setting;
    }
    std::vector<char> export_group(int32_t setting) override {
        check(run_ && setting_ == setting, "dist: no clean run of setting ", setting, " to send");
        return run_->export_state();
    }
    void import_group(int32_t setting, const std::vector<char>& state) override {
        run_.reset();
        setting_ = -1;
        run_ = SettingRun::from_state(engine_, options_, setting, state);
        setting_ = setting;
    }

private:
    Engine& engine_;
    const SweepOptions& options_;
    const std::vector<WorkItem>& plan_;
    KillHook* hook_;
    std::unique_ptr<SettingRun> run_;
    int32_t setting_ = -1;
};

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

// A result's values back into the item's scores (PearExecutor::run packs them).
ItemScores unpack_scores(const TaskResult& r, const WorkItem& item, int32_t N) {
    const size_t nh = size_t(item.n_heads());
    check(r.values.size() == nh * (1 + size_t(N)), "dist: result of item ", r.index, " has ", r.values.size(),
          " values, not ", nh, " means and ", nh * size_t(N), " per-sample values");
    ItemScores sc;
    sc.n_samples = N;
    sc.pi_ablated.assign(r.values.begin(), r.values.begin() + std::ptrdiff_t(nh));
    sc.pi_tilde.assign(r.values.begin() + std::ptrdiff_t(nh), r.values.end());
    return sc;
}

std::string hex_bits(double v) {
    uint64_t u;
    std::memcpy(&u, &v, sizeof u);
    std::ostringstream os;
    os.precision(17);
    os << v << " (0x" << std::hex << u << ")";
    return os.str();
}

// Refuses to start when the output's file system cannot hold the file (with 1 MiB to spare).
void check_space(const std::string& output, const ModelShape& shape, const std::vector<ProxySetting>& settings) {
    const size_t n_settings = settings.size();
    uintmax_t n_max = 0, t_max = 0;
    for (const ProxySetting& st : settings) {
        n_max = std::max<uintmax_t>(n_max, uintmax_t(st.n_samples));
        t_max = std::max<uintmax_t>(t_max, 2 * uintmax_t(st.half_len));
    }
    const fs::path dir = fs::absolute(output).parent_path();
    std::error_code ec;
    const fs::space_info sp = fs::space(dir, ec);
    if (ec) return;  // validate_job already checked that the directory exists and is writable
    const uintmax_t slh = uintmax_t(n_settings) * uintmax_t(shape.n_layer) * uintmax_t(shape.n_head);
    // [S,L,H] f64: pi_ablated, raw, ratio and two in /stats; pi_tilde f32 per sample; the tokens; [L,H] datasets
    const uintmax_t need = slh * 8 * 5 + slh * n_max * 4 + uintmax_t(n_settings) * n_max * t_max * 4 +
                           uintmax_t(shape.n_layer) * uintmax_t(shape.n_head) * 64 + (1u << 20);
    check(sp.available >= need, output, ": only ", sp.available, " bytes free in ", dir.string(),
          ", the sweep file needs about ", need, " (full disk?)");
}

}  // namespace

int32_t distributed_threads(const SweepJob& job) { return job.threads > 0 ? job.threads : 1; }

void check_world_matches_slurm(const boost::mpi::communicator& comm) {
    const char* v = std::getenv("SLURM_NTASKS");
    if (!v || !*v) return;
    const long n = std::strtol(v, nullptr, 10);
    check(n == comm.size(), "MPI world size is ", comm.size(), " but SLURM_NTASKS=", v,
          ": launch with `srun --mpi=pmix headsweep ...` (a launch without PMIx starts ", v,
          " separate single-rank sweeps)");
}

std::vector<RunSummary> run_distributed_sweep(const SweepJob& job, const boost::mpi::communicator& comm,
                                              const DistSweepOptions& dopt) {
    const int rank = comm.rank(), W = comm.size();
    const bool root = rank == 0;
    // Test hook beside HEADSWEEP_TEST_KILL_AT: HEADSWEEP_TEST_COORDINATOR_WORKS=0 keeps rank 0 from scoring items,
    // so that a worker's kill point is always reached (otherwise rank 0 may finish the sweep first).
    int32_t coord_opt = dopt.coordinator_works;
    if (const char* v = std::getenv("HEADSWEEP_TEST_COORDINATOR_WORKS"); v && *v) coord_opt = std::atoi(v) != 0;
    const bool coordinator_works = coord_opt < 0 ? W <= 4 : coord_opt != 0;
    const bool computes = !root || coordinator_works || W == 1;
    const int32_t threads = distributed_threads(job);
    const bool share_clean = dopt.share_clean_runs < 0 ? job.share_clean_runs : dopt.share_clean_runs != 0;

    // 1. The whole job is validated on rank 0 before any rank loads anything.
    std::map<std::string, ModelShape> shapes;
    collective_step(comm, [&] {
        if (!root) return;
        validate_job_fully(job);
        for (const std::string& m : job.models)
            if (!shapes.count(m)) shapes[m] = peek_model_shape(m, job.where("models"));
        for (const SweepRun& run : expand_runs(job))
            if (!(job.resume && fs::exists(run.output)))
                check_space(run.output, shapes[run.model], job.options.settings);
    });

    KillHook hook(rank);
    std::vector<RunSummary> out;
    int64_t items_left = dopt.max_items;
    std::string loaded_spec;
    std::unique_ptr<Model> model;
    std::unique_ptr<Backend> backend;
    std::unique_ptr<Engine> engine;
    for (const SweepRun& run : expand_runs(job)) {
        Timer timer;
        // 2. Every rank that scores loads the model (once for all its modes); rank 0 always does (provenance).
        // The GGUF file's bytes, read once per node (random: models are made, not read).
        std::unique_ptr<NodeSharedFile> shared;
        const bool share =
            dopt.share_model_per_node < 0 ? job.model_read == "node" : dopt.share_model_per_node != 0;
        if (loaded_spec != run.model && share && run.model.rfind("random:", 0) != 0)
            collective_step(comm, [&] { shared = std::make_unique<NodeSharedFile>(comm, run.model); });
        collective_step(comm, [&] {
            if (loaded_spec == run.model) return;
            engine.reset();
            backend.reset();
            LoadOptions lo = pear::load_options(job, root && dopt.progress);
            if (shared) {
                lo.file_bytes = shared->data();
                lo.file_size = shared->size();
            }
            model = std::make_unique<Model>(open_model(run.model, lo));
            BackendOptions bo = pear::backend_options(job);
            bo.threads = threads;
            backend = make_backend(parse_device(job.device), bo);
            engine = std::make_unique<Engine>(*model, *backend);
            loaded_spec = run.model;
            if (job.device == "cpu" && computes) {
                const int t = openblas_get_num_threads();
                check(t == threads, "OpenBLAS runs ", t, " threads, not the ", threads,
                      " the sweep asked for (the clean runs must be computed alike on every rank)");
            }
        });
        shared.reset();  // the weights are copies: the node's copy of the file goes (collective over the node)
        SweepOptions options = job.options;
        options.mode = run.mode;
        // Item size: the job's (part of the result, like the seed; never chosen from the rank count).
        const int32_t hpi = normalised_heads_per_item(job.heads_per_item, model->config.n_head);
        const std::vector<WorkItem> plan = plan_items(model->config, options, 1, hpi);
        const int32_t workers = std::max(1, (coordinator_works || W == 1) ? W : W - 1);
        if (root && dopt.progress && int64_t(plan.size()) < int64_t(kItemsPerWorker) * workers) {
            const int32_t advice = heads_per_item_for(int64_t(options.settings.size()), model->config.n_layer,
                                                      model->config.n_head, int64_t(kItemsPerWorker) * workers);
            std::fprintf(stderr,
                         "sweep %s: %zu items for %d workers (fewer than %d each: ranks will idle); heads_per_item = "
                         "%d would give %zu\n",
                         model_stem(run.model).c_str(), plan.size(), workers, kItemsPerWorker, advice,
                         plan_items(model->config, options, 1, advice).size());
        }

        // 3. Rank 0 creates or resumes the file and lists the items left; everyone checks it has the same plan.
        std::unique_ptr<SweepFile> file;
        SweepFileInfo info;
        std::vector<int32_t> todo;
        std::vector<double> clean_pi, clean_acc;
        std::vector<char> clean_known;
        std::vector<std::vector<double>> clean_group;  // [S]: the group values of the results written in this run
        bool resumed = false;
        collective_step(comm, [&] {
            if (!root) return;
            info = describe_model(*model, run.model);
            info.options = options;
            info.device = pear::device_label(job);
            info.job_file = job.source;
            info.heads_per_item = hpi;
            info.options.validate(model->config);
            resumed = job.resume && fs::exists(run.output);
            file = std::make_unique<SweepFile>(resumed ? SweepFile::open_for_resume(run.output, info, dopt.write)
                                                       : SweepFile::create(run.output, info, job.overwrite, dopt.write));
            for (const std::string& n : file->notes()) std::fprintf(stderr, "%s\n", n.c_str());
            std::map<std::tuple<int32_t, int32_t, int32_t>, int32_t> index_of;
            for (size_t i = 0; i < plan.size(); ++i)
                index_of[{plan[i].setting, plan[i].layer_begin, plan[i].head_begin}] = int32_t(i);
            for (const WorkItem& it : file->remaining(plan))
                todo.push_back(index_of.at({it.setting, it.layer_begin, it.head_begin}));
            if (items_left >= 0 && int64_t(todo.size()) > items_left) todo.resize(size_t(items_left));
            const HeadScores s = file->read_scores();
            clean_pi = s.pi_clean;
            clean_acc = s.copy_accuracy;
            clean_known.assign(clean_pi.size(), 0);
            clean_group.assign(clean_pi.size(), {});
            for (size_t k = 0; k < clean_pi.size(); ++k) clean_known[k] = !std::isnan(clean_pi[k]);
        });
        int64_t plan_size = int64_t(plan.size());
        boost::mpi::broadcast(comm, plan_size, 0);
        collective_step(comm, [&] {
            check(plan_size == int64_t(plan.size()), "the model ", run.model, " gives a plan of ", plan.size(),
                  " items here but ", plan_size, " on rank 0 (different model files?)");
        });
        boost::mpi::broadcast(comm, todo, 0);
        if (items_left >= 0) items_left -= int64_t(todo.size());

        // 4. Distribute: rank 0 writes every result (single writer; SweepFile flushes after each write).
        PearExecutor exec(*engine, options, plan, root ? nullptr : &hook);  // rank 0's hook is in the sink
        RunSummary sum = RunSummary::start(run, model->config, resumed);
        if (root) {
            std::vector<Task> tasks;
            for (int32_t i : todo) tasks.push_back(Task{i, plan[size_t(i)].setting});
            CoordinatorOptions co;
            co.local_worker = coordinator_works;
            co.max_batch = dopt.max_batch;
            co.target_batch_seconds = 0.05;
            co.progress = dopt.progress;
            co.progress_interval_s = dopt.progress_interval_s;
            co.share_group_state = share_clean;
            co.state_piece_bytes = dopt.state_piece_bytes;
            co.label = "sweep " + model_stem(run.model) + " " + sum.mode + " [" + cpu_runtime_tag() + "]";
            auto sink = [&](const TaskResult& r) {
                const WorkItem& item = plan[size_t(r.index)];
                const size_t s = size_t(item.setting);
                const int32_t N = options.settings[s].n_samples;
                check(r.group_values.size() == 2 + size_t(N), "dist: result of item ", r.index, " has ",
                      r.group_values.size(), " clean values, not pi_clean, copy accuracy and ", N, " per-sample values");
                if (!clean_known[s]) {
                    const ProxyBatch batch = make_proxy_batch(options.settings[s], item.setting, options.seed,
                                                              model->tokenizer, model->config.n_vocab,
                                                              options.exclude_special);
                    file->stage_clean(item.setting, r.group_values[0], r.group_values[1], batch.tokens,
                                      std::vector<float>(r.group_values.begin() + 2, r.group_values.end()));
                    clean_pi[s] = r.group_values[0];
                    clean_acc[s] = r.group_values[1];
                    clean_known[s] = 1;
                    clean_group[s] = r.group_values;
                } else if (!same_bits(clean_pi[s], r.group_values[0]) || !same_bits(clean_acc[s], r.group_values[1]) ||
                           (!clean_group[s].empty() && !same_bits(clean_group[s], r.group_values))) {
                    fail(run.output, ": rank ", r.rank, " computed a different clean run for setting ", s,
                         ": pi_clean ", hex_bits(r.group_values[0]), " where the file has ", hex_bits(clean_pi[s]),
                         "; every rank (and every resumed run) must use the same binary and BLAS thread count");
                }
                hook.tick();
                file->stage_item(item, unpack_scores(r, item, N));
                sum.heads_scored += item.n_heads();
            };
            // Every result of one message together: one journal sync, the HDF5 writes, one flush.
            auto commit = [&] { file->commit(); };
            std::string error;
            try {
                const CoordinatorStats st = coordinate(comm, tasks, computes ? &exec : nullptr, sink, co, commit);
                if (co.share_group_state && W > 1) {
                    sum.clean_runs = st.states_made;
                    sum.clean_runs_received = st.states_sent;
                } else {
                    for (int32_t k : st.group_switches) sum.clean_runs += k;
                }
                if (dopt.progress && sum.clean_runs_received > 0)
                    std::fprintf(stderr, "sweep %s: %lld clean runs computed, %lld sent to workers (%.1f MB), workers "
                                 "waited %.1f s for them in all\n", model_stem(run.model).c_str(),
                                 (long long)sum.clean_runs, (long long)sum.clean_runs_received,
                                 double(st.state_bytes_sent) / 1e6, st.state_wait_seconds);
            } catch (const std::exception& e) {
                error = e.what();
            }
            if (!error.empty() && file->staged() > 0) {
                try {  // keep what arrived before the error (a failing write fails again: then nothing is lost)
                    file->commit();
                } catch (const std::exception&) {
                }
            }
            // 5. Finish when every item is in (same as the single-process sweep).
            if (error.empty()) {
                try {
                    const int32_t k =
                        job.options.top_k > 0 ? job.options.top_k : default_top_k(model->config.n_heads_total());
                    if (file->all_done()) {
                        HeadScores scores = (file->complete() && file->read_scores().top_k == k) ? file->read_scores()
                                                                                               : file->finish(k);
                        sum.complete = true;
                        for (int32_t r = 0; r < scores.top_k && size_t(r) < scores.ranking.size(); ++r)
                            sum.top.push_back({scores.ranking[size_t(r)] / sum.n_head,
                                               scores.ranking[size_t(r)] % sum.n_head});
                    }
                    file->close();
                } catch (const std::exception& e) {
                    error = e.what();
                }
            }
            boost::mpi::broadcast(comm, error, 0);
            if (!error.empty()) throw Error(error);
        } else {
            ServeOptions so;
            so.state_piece_bytes = dopt.state_piece_bytes;
            serve_then_sync(comm, exec, so);
        }
        sum.seconds = timer.seconds();
        out.push_back(sum);
        if (items_left == 0) break;
    }
    return root ? out : std::vector<RunSummary>{};
}

bool started_by_mpi_launcher() {
    auto set = [](const char* v) {
        const char* e = std::getenv(v);
        return e && *e;
    };
    return set("OMPI_COMM_WORLD_SIZE") || set("PMIX_RANK") || set("PMI_RANK") || set("PMI_SIZE") || set("SLURM_NTASKS");
}

bool sweep_if_distributed(const SweepJob& job, bool force, bool quiet, bool& is_root) {
    is_root = true;
    if (!started_by_mpi_launcher() && !force) return false;
    // abort_on_exception = false: an hs::Error must reach main() and be printed, not turn into MPI_Abort.
    boost::mpi::environment env(boost::mpi::threading::funneled, false);
    boost::mpi::communicator world;
    is_root = world.rank() == 0;
    check_world_matches_slurm(world);
    if (world.size() == 1 && !force) return false;
    DistSweepOptions o;
    o.progress = !quiet;
    o.write = pear::write_options_from_env();
    for (const RunSummary& s : run_distributed_sweep(job, world, o)) std::printf("%s\n", s.line().c_str());
    if (is_root) std::fflush(stdout);
    return true;
}

}  // namespace hs::dist
