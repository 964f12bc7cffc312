#include "rtd/builder.hpp"

#include <algorithm>
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

std::vector<float> embed_group(Engine& engine, const std::vector<const std::vector<int32_t>*>& prompts,
                               int64_t min_prefix) {
    const int64_t d = engine.config().d_model;
    std::vector<float> out;
    if (prompts.empty()) return out;
    // Common token prefix, leaving every prompt at least one token of its own (its last token gives the key).
    size_t P = prompts[0]->size(), longest = 0;
    for (const auto* p : prompts) {
        check(!p->empty(), "embed: empty prompt");
        P = std::min(P, p->size() - 1);
        longest = std::max(longest, p->size());
        size_t i = 0;
        while (i < P && (*p)[i] == (*prompts[0])[i]) ++i;
        P = i;
    }
    if (prompts.size() == 1 || int64_t(P) < min_prefix) {
        for (const auto* p : prompts) {
            const std::vector<float> k = embed_prompt(engine, *p);
            out.insert(out.end(), k.begin(), k.end());
        }
        return out;
    }
    KvCache cache(engine.backend(), engine.config(), 1, int64_t(longest));
    ForwardHooks prefix;
    prefix.logits = LogitsMode::NONE;
    engine.forward(std::vector<int32_t>(prompts[0]->begin(), prompts[0]->begin() + int64_t(P)), 1, int64_t(P), prefix,
                   &cache);
    ForwardHooks rest;
    rest.final_hidden = true;
    rest.hidden_only = true;
    rest.logits = LogitsMode::LAST;
    for (const auto* p : prompts) {
        const std::vector<int32_t> tail(p->begin() + int64_t(P), p->end());
        const ForwardResult r = engine.forward(tail, 1, int64_t(tail.size()), rest, &cache);
        check(int64_t(r.final_hidden.size()) == d, "embed: final hidden has ", r.final_hidden.size(), " values");
        out.insert(out.end(), r.final_hidden.begin(), r.final_hidden.end());
        cache.clear();  // back to the prefix: its keys and values stay in place, the tail's are overwritten
        cache.advance(int64_t(P));
    }
    return out;
}

namespace {

// The work units: ranges of plan entries (one entry, or with share_prefix the rest of one item's entries).
std::vector<std::pair<int64_t, int64_t>> work_units(const std::vector<BuildEntry>& plan, int64_t start, int64_t end,
                                                    bool by_item) {
    std::vector<std::pair<int64_t, int64_t>> u;
    for (int64_t i = start; i < end;) {
        int64_t j = i + 1;
        if (by_item)
            while (j < end && plan[size_t(j)].item == plan[size_t(i)].item) ++j;
        u.emplace_back(i, j);
        i = j;
    }
    return u;
}

// Embeds work units; a result's values are the unit's keys ([entries, d] floats, as doubles: exact).
class EmbedExecutor : public dist::Executor {
public:
    EmbedExecutor(Engine& e, const std::vector<BuildEntry>& plan, const std::vector<std::pair<int64_t, int64_t>>& units)
        : engine_(e), plan_(plan), units_(units) {}
    void run(int32_t index, dist::TaskResult& out) override {
        check(index >= 0 && size_t(index) < units_.size(), "datastore build: unit ", index, " is outside the plan");
        Timer t;
        std::vector<const std::vector<int32_t>*> prompts;
        for (int64_t i = units_[size_t(index)].first; i < units_[size_t(index)].second; ++i) prompts.push_back(&plan_[size_t(i)].ids);
        const std::vector<float> k = embed_group(engine_, prompts);
        out.values.assign(k.begin(), k.end());
        out.seconds = t.seconds();
    }

private:
    Engine& engine_;
    const std::vector<BuildEntry>& plan_;
    const std::vector<std::pair<int64_t, int64_t>>& units_;
};

// Rank 0's writer side: results arrive in any order and are appended in plan order.
class OrderedSink {
public:
    OrderedSink(DatastoreWriter& w, const std::vector<BuildEntry>& plan, int32_t d, int64_t flush_every)
        : w_(w), plan_(plan), d_(d), flush_every_(flush_every), next_(w.written()) {}
    // Keys of the entries first, first + 1, ... ([n, d] as doubles).
    void add(int32_t first, const std::vector<double>& keys) {
        check(!keys.empty() && keys.size() % size_t(d_) == 0, "datastore build: entry ", first, " came back with ",
              keys.size(), " values, not a multiple of d = ", d_);
        for (size_t e = 0; e < keys.size() / size_t(d_); ++e)
            pending_[first + int32_t(e)] = std::vector<float>(keys.begin() + int64_t(e * size_t(d_)),
                                                              keys.begin() + int64_t((e + 1) * size_t(d_)));
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
            // With shared prefixes an item's keys are computed together: restart a cut item from its first entry,
            // so that a resumed build writes the same bits as an uninterrupted one.
            if (o.share_prefix && start > 0 && start < int64_t(plan.size())) {
                while (start > 0 && plan[size_t(start - 1)].item == plan[size_t(start)].item) --start;
                if (start < writer->written()) writer->truncate(start);
            }
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

    const std::vector<std::pair<int64_t, int64_t>> units = work_units(plan, start, end, o.share_prefix);
    EmbedExecutor exec(engine, plan, units);
    Timer timer;
    if (!comm || comm->size() == 1) {
        OrderedSink sink(*writer, plan, info.d, o.flush_every);
        Progress p({.label = o.label, .total = end - start, .interval_s = 10, .enabled = o.progress, .unit = "prompts"});
        for (size_t u = 0; u < units.size(); ++u) {
            dist::TaskResult r;
            exec.run(int32_t(u), r);
            sink.add(int32_t(units[u].first), r.values);
            p.add(units[u].second - units[u].first);
        }
        sink.flush();
        p.finish();
    } else if (root) {
        std::vector<dist::Task> tasks;
        for (size_t u = 0; u < units.size(); ++u) tasks.push_back(dist::Task{int32_t(u), 0});
        OrderedSink sink(*writer, plan, info.d, o.flush_every);
        dist::CoordinatorOptions co;
        co.local_worker = comm->size() <= 4;
        co.progress = o.progress;
        co.label = o.label;
        co.unit = "prompts";
        try {
            dist::coordinate(*comm, tasks, co.local_worker ? &exec : nullptr,
                             [&](const dist::TaskResult& r) { sink.add(int32_t(units[size_t(r.index)].first), r.values); }, co);
            sink.flush();
        } catch (const std::exception& e) {
            error = e.what();
        }
        boost::mpi::broadcast(*comm, error, 0);
        if (!error.empty()) throw Error(error);
    } else {
        dist::serve_then_sync(*comm, exec);
    }
    st.seconds = timer.seconds();
    st.computed = end - start;
    if (root && end == int64_t(plan.size())) writer->finish();
    return st;
}

}  // namespace hs::rtd
