#include "rtd/builder.hpp"

#include <map>
#include <memory>

#include <boost/mpi/collectives.hpp>
#include <boost/mpi/communicator.hpp>
#include <boost/serialization/string.hpp>

#include "dist/protocol.hpp"
#include "engine/engine.hpp"
#include "util/error.hpp"
#include "util/progress.hpp"
#include "util/timer.hpp"

namespace hs::rtd {

std::vector<float> embed_prompt(Engine& engine, const std::vector<int32_t>& ids) {
    check(!ids.empty(), "embed: empty prompt");
    ForwardHooks h;
    h.final_hidden = true;
    h.hidden_only = true;
    h.logits = LogitsMode::LAST;
    ForwardResult r = engine.forward(ids, 1, int64_t(ids.size()), h);
    check(r.final_hidden.size() == size_t(engine.config().d_model), "embed: final hidden has ", r.final_hidden.size(),
          " values, expected d_model = ", engine.config().d_model);
    return std::move(r.final_hidden);
}

namespace {

// Embeds plan entries; a result's values are the key's d floats (as doubles).
class EmbedExecutor : public dist::Executor {
public:
    EmbedExecutor(Engine& e, const std::vector<BuildEntry>& plan) : engine_(e), plan_(plan) {}
    void run(int32_t index, dist::TaskResult& out) override {
        check(index >= 0 && size_t(index) < plan_.size(), "datastore build: entry ", index, " is outside the plan");
        Timer t;
        const std::vector<float> k = embed_prompt(engine_, plan_[size_t(index)].ids);
        out.values.assign(k.begin(), k.end());
        out.seconds = t.seconds();
    }

private:
    Engine& engine_;
    const std::vector<BuildEntry>& plan_;
};

// Rank 0's writer side: results arrive in any order and are appended in plan order.
class OrderedSink {
public:
    OrderedSink(DatastoreWriter& w, const std::vector<BuildEntry>& plan, int32_t d, int64_t flush_every)
        : w_(w), plan_(plan), d_(d), flush_every_(flush_every), next_(w.written()) {}
    void add(int32_t index, const std::vector<double>& key) {
        check(key.size() == size_t(d_), "datastore build: entry ", index, " came back with ", key.size(),
              " values, expected ", d_);
        pending_[index] = std::vector<float>(key.begin(), key.end());
        while (!pending_.empty() && pending_.begin()->first == next_ + int64_t(labels_.size())) {
            const int32_t i = pending_.begin()->first;
            keys_.insert(keys_.end(), pending_.begin()->second.begin(), pending_.begin()->second.end());
            labels_.push_back(plan_[size_t(i)].label);
            items_.push_back(plan_[size_t(i)].item);
            pending_.erase(pending_.begin());
        }
        if (int64_t(labels_.size()) >= flush_every_) flush();
    }
    void flush() {
        w_.append(keys_.data(), labels_.data(), items_.data(), int64_t(labels_.size()));
        next_ += int64_t(labels_.size());
        keys_.clear(), labels_.clear(), items_.clear();
    }

private:
    DatastoreWriter& w_;
    const std::vector<BuildEntry>& plan_;
    int32_t d_;
    int64_t flush_every_, next_;
    std::map<int32_t, std::vector<float>> pending_;
    std::vector<float> keys_;
    std::vector<int32_t> labels_, items_;
};

}  // namespace

BuildStats build_datastore(Engine& engine, const std::vector<BuildEntry>& plan, const DatastoreInfo& info,
                           const std::string& path, const BuildOptions& o, const boost::mpi::communicator* comm) {
    const bool root = !comm || comm->rank() == 0;
    check(int64_t(plan.size()) == info.planned, "datastore build: plan has ", plan.size(), " entries, info says ",
          info.planned);
    check(info.d == engine.config().d_model, "datastore build: d = ", info.d, " but the model's d_model = ",
          engine.config().d_model);
    BuildStats st;
    st.planned = int64_t(plan.size());
    std::unique_ptr<DatastoreWriter> writer;
    std::string error;
    int64_t start = 0;
    if (root) {
        try {
            writer = std::make_unique<DatastoreWriter>(path, info, o.resume, o.overwrite);
            start = writer->written();
        } catch (const std::exception& e) {
            error = e.what();
        }
    }
    if (comm) {
        boost::mpi::broadcast(*comm, error, 0);
        boost::mpi::broadcast(*comm, start, 0);
    }
    if (!error.empty()) throw Error(error);
    st.already = start;
    int64_t end = int64_t(plan.size());
    if (o.max_entries >= 0) end = std::min(end, start + o.max_entries);
    for (int64_t i = start; i < end; ++i) st.tokens += int64_t(plan[size_t(i)].ids.size());

    EmbedExecutor exec(engine, plan);
    Timer timer;
    if (!comm || comm->size() == 1) {
        OrderedSink sink(*writer, plan, info.d, o.flush_every);
        Progress p({.label = o.label, .total = end - start, .interval_s = 10, .enabled = o.progress, .unit = "prompts"});
        for (int64_t i = start; i < end; ++i) {
            dist::TaskResult r;
            exec.run(int32_t(i), r);
            sink.add(int32_t(i), r.values);
            p.add(1);
        }
        sink.flush();
        p.finish();
    } else if (root) {
        std::vector<dist::Task> tasks;
        for (int64_t i = start; i < end; ++i) tasks.push_back(dist::Task{int32_t(i), 0});
        OrderedSink sink(*writer, plan, info.d, o.flush_every);
        dist::CoordinatorOptions co;
        co.local_worker = comm->size() <= 4;
        co.progress = o.progress;
        co.label = o.label;
        co.unit = "prompts";
        try {
            dist::coordinate(*comm, tasks, co.local_worker ? &exec : nullptr,
                             [&](const dist::TaskResult& r) { sink.add(r.index, r.values); }, co);
            sink.flush();
        } catch (const std::exception& e) {
            error = e.what();
        }
        boost::mpi::broadcast(*comm, error, 0);
        if (!error.empty()) throw Error(error);
    } else {
        try {
            dist::serve(*comm, exec);
        } catch (const std::exception& e) {
            error = e.what();
        }
        std::string root_error;
        boost::mpi::broadcast(*comm, root_error, 0);
        if (!root_error.empty()) throw Error(root_error);
        if (!error.empty()) throw Error(error);
    }
    st.seconds = timer.seconds();
    st.computed = end - start;
    if (root && end == int64_t(plan.size())) writer->finish();
    return st;
}

}  // namespace hs::rtd
