#include "eval/method_rtd.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "engine/engine.hpp"
#include "eval/text.hpp"
#include "model/model.hpp"
#include "pear/sweep_file.hpp"
#include "rtd/datastore.hpp"
#include "rtd/search.hpp"
#include "util/error.hpp"
#include "util/timer.hpp"

namespace hs::eval {

std::string datastore_model_identity(const std::string& model_spec) {
    const size_t bar = model_spec.find('|');
    const std::string base = model_spec.substr(0, bar);
    return rtd::model_identity(pear::model_sha256(base), bar == std::string::npos ? "" : model_spec.substr(bar + 1));
}

std::string datastore_path(const std::string& pattern, const std::string& task) {
    std::string p = pattern;
    for (size_t at; (at = p.find("{task}")) != std::string::npos;) p.replace(at, 6, task);
    return p;
}

namespace {

std::string json_array(const std::vector<double>& v) {
    std::string s = "[";
    char buf[32];
    for (size_t i = 0; i < v.size(); ++i) {
        std::snprintf(buf, sizeof buf, "%.6g", v[i]);
        s += (i ? "," : "") + std::string(buf);
    }
    return s + "]";
}

std::string fmt(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", x);
    return buf;
}

// One task's datastore, ready for queries.
struct TaskStore {
    std::string path;
    double T = 0;
    std::unique_ptr<rtd::RtdIndex> index;
};

class Rtd : public Method {
public:
    Rtd(const MethodSettings& s, bool mh) : s_(s), mh_(mh), kind_(rtd::parse_index_kind(s.rtd_index)) {
        check(s.rtd_k >= 1, "--rtd-k = ", s.rtd_k, " must be >= 1");
        check(s.rtd_T >= 0 && std::isfinite(s.rtd_T), "--rtd-T = ", s.rtd_T, " must be > 0 (or 0: the tuned T)");
        check(s.rtd_lambda >= 0 && s.rtd_lambda <= 1, "--rtd-lambda = ", s.rtd_lambda, " must be in [0, 1]");
        check(s.rtd_datastore.find("{task}") != std::string::npos, "--rtd-datastore \"", s.rtd_datastore,
              "\" must contain {task}");
    }
    std::string name() const override { return mh_ ? "mh-rtd" : "rtd"; }
    std::string config() const override {
        return name() + " k=" + std::to_string(s_.rtd_k) + " T=" + (s_.rtd_T > 0 ? fmt(s_.rtd_T) : "tuned") +
               " lambda=" + fmt(s_.rtd_lambda) + " index=" + s_.rtd_index + " datastore=" + s_.rtd_datastore;
    }
    void prepare(EvalContext& ctx) override {
        engine_ = std::make_unique<Engine>(ctx.model, ctx.backend);
        identity_ = datastore_model_identity(ctx.model_spec);
        spec_ = ctx.model_spec;
    }
    void check_examples(const std::vector<Example>& examples, EvalContext& ctx) override {
        if (identity_.empty()) {
            identity_ = datastore_model_identity(ctx.model_spec);
            spec_ = ctx.model_spec;
        }
        for (const Example& ex : examples) {
            check(ex.kind == AnswerKind::CHOICE, "method ", name(), " answers choice tasks only (task ", ex.task,
                  " generates text)");
            if (!stores_.count(ex.task)) stores_[ex.task] = load(ex, ctx);
            const TaskStore& st = stores_[ex.task];
            check(int32_t(ex.choices.size()) == st.index->n_labels(), st.path, ": ", ex.task, "/", ex.id, " has ",
                  ex.choices.size(), " choices but the datastore has ", st.index->n_labels(), " labels");
        }
    }
    Answer answer(const Example& ex, EvalContext& ctx) override {
        auto it = stores_.find(ex.task);
        check(it != stores_.end(), "method ", name(), ": no datastore loaded for task ", ex.task);
        const TaskStore& st = it->second;
        Answer a;
        a.prompt_tokens = int32_t(ex.prompt_ids.size());
        ForwardHooks h;
        h.final_hidden = true;
        h.logits = LogitsMode::LAST;
        Timer clock;
        const ForwardResult fr = engine_->forward(ex.prompt_ids, 1, int64_t(ex.prompt_ids.size()), h);
        const double forward_s = clock.seconds();
        const std::string what = st.path;
        const std::vector<double> r = mh_ ? st.index->mh_rtd(fr.final_hidden.data(), s_.rtd_k, st.T, what)
                                          : st.index->rtd(fr.final_hidden.data(), s_.rtd_k, st.T, what);
        const double search_s = clock.seconds() - forward_s;
        std::vector<double> z;
        for (int32_t id : ex.choice_ids) z.push_back(double(fr.logits[size_t(id)]));
        const std::vector<double> p = rtd::softmax(z);
        const std::vector<double> f = rtd::fuse(r, p, s_.rtd_lambda);
        a.text = ex.choices[rtd::argmax(f)];
        const auto g = std::find(ex.choices.begin(), ex.choices.end(), ex.answers.empty() ? "" : ex.answers[0]);
        const int64_t gold = g == ex.choices.end() ? -1 : int64_t(g - ex.choices.begin());
        a.detail = "{\"r\":" + json_array(r) + ",\"p_lm\":" + json_array(p) + ",\"gold\":" + std::to_string(gold) +
                   ",\"T\":" + fmt(st.T) +
                   ",\"k\":" + std::to_string(s_.rtd_k) + ",\"lambda\":" + fmt(s_.rtd_lambda) +
                   ",\"forward_s\":" + fmt(forward_s) + ",\"search_s\":" + fmt(search_s) + "}";
        return a;
    }

private:
    TaskStore load(const Example& ex, EvalContext& ctx) {
        TaskStore st;
        st.path = datastore_path(s_.rtd_datastore, ex.task);
        const rtd::Datastore ds = rtd::read_datastore(st.path);
        rtd::check_compatible(ds, st.path, identity_, ctx.model.config.d_model, int32_t(ex.choices.size()),
                              "task " + ex.task, spec_);
        check(s_.rtd_k <= ds.size(), st.path, ": k = ", s_.rtd_k, " is larger than the datastore (", ds.size(),
              " entries)");
        st.T = s_.rtd_T > 0 ? s_.rtd_T : (mh_ ? ds.info.tuned_T_mh : ds.info.tuned_T);
        check(st.T > 0, st.path, ": no tuned temperature for ", name(),
              " (run headsweep datastore tune on it, or give --rtd-T)");
        rtd::IndexOptions io;
        io.backend = &ctx.backend;  // the device kind: keys in the run's backend memory, products by its GEMM
        st.index = std::make_unique<rtd::RtdIndex>(ds.keys.data(), ds.labels.data(), ds.size(), ds.info.d,
                                                   ds.info.n_labels, ds.info.n_head, !mh_, mh_, kind_, io);
        return st;
    }

    MethodSettings s_;
    bool mh_;
    rtd::IndexKind kind_;
    std::string identity_, spec_;
    std::unique_ptr<Engine> engine_;
    std::map<std::string, TaskStore> stores_;
};

// k-shot ICL: the task's solved train prompts (Example::context, --icl-shots) before the question.
class Icl : public Method {
public:
    std::string name() const override { return "icl"; }
    std::string config() const override { return "icl (shots from the task's train split: --icl-shots)"; }
    void prepare(EvalContext& ctx) override { engine_ = std::make_unique<Engine>(ctx.model, ctx.backend); }
    void check_examples(const std::vector<Example>& examples, EvalContext&) override {
        for (const Example& ex : examples)
            check(ex.kind == AnswerKind::CHOICE && !ex.context.empty(), "method icl: task ", ex.task,
                  " has no shots (icl runs on the RTD choice tasks with --icl-shots N > 0)");
    }
    Answer answer(const Example& ex, EvalContext& ctx) override {
        const Tokenizer& tok = ctx.model.tokenizer;
        Example shot = ex;
        shot.prompt_ids = tok.encode(ex.context + ex.prompt_text, false, tok.add_bos());
        const int64_t n = int64_t(shot.prompt_ids.size());
        const bool cut = middle_truncate(shot.prompt_ids, ctx.model.config.n_ctx);
        Answer a = answer_with_engine(*engine_, shot);
        a.detail = "{\"icl_tokens\":" + std::to_string(n) + ",\"truncated\":" + (cut ? "true" : "false") + "}";
        return a;
    }

private:
    std::unique_ptr<Engine> engine_;
};

}  // namespace

std::unique_ptr<Method> make_rtd_method(const MethodSettings& s, bool multi_head) {
    return std::make_unique<Rtd>(s, multi_head);
}
std::unique_ptr<Method> make_icl_method(const MethodSettings&) { return std::make_unique<Icl>(); }

}  // namespace hs::eval
