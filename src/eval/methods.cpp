#include "eval/methods.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "engine/engine.hpp"
#include "eval/method_rtd.hpp"
#include "eval/method_infiniretri.hpp"
#include "model/model.hpp"
#include "pear/fold.hpp"
#include "pear/train.hpp"
#include "util/error.hpp"

namespace hs::eval {

EvalContext::EvalContext(const Model& m, std::string spec, Backend& b) : model(m), model_spec(std::move(spec)), backend(b) {}

std::string first_nonempty_line(const std::string& text) {
    const size_t start = text.find_first_not_of(" \t\r\n");
    if (start == std::string::npos) return text;
    return text.substr(0, text.find('\n', start));
}

Answer answer_with_engine(Engine& engine, const Example& ex, const std::vector<float>& head_scale) {
    Answer a;
    a.prompt_tokens = int32_t(ex.prompt_ids.size());
    const Tokenizer& tok = engine.model().tokenizer;
    if (ex.kind == AnswerKind::CHOICE) {
        check(ex.choice_ids.size() == ex.choices.size() && !ex.choices.empty(), ex.task, "/", ex.id,
              ": choice example without label tokens");
        ForwardHooks hooks;
        hooks.head_scale = head_scale;
        hooks.logits = LogitsMode::LAST;
        const ForwardResult r = engine.forward(ex.prompt_ids, 1, int64_t(ex.prompt_ids.size()), hooks);
        size_t best = 0;
        for (size_t k = 1; k < ex.choice_ids.size(); ++k)
            if (r.logits[size_t(ex.choice_ids[k])] > r.logits[size_t(ex.choice_ids[best])]) best = k;
        a.text = ex.choices[best];
        return a;
    }
    GenerateOptions o;
    o.max_new_tokens = ex.max_new_tokens;
    o.temperature = 0;
    o.stop_at_eog = true;
    o.head_scale = head_scale;
    if (ex.stop_at_newline)  // stop once the first non-empty line has ended (a leading newline does not end it)
        o.stop_when = [&tok](const std::vector<int32_t>& ids) {
            const std::string s = tok.decode(ids, false);
            return first_nonempty_line(s).size() < s.size();
        };
    const GenerateResult g = generate(engine, ex.prompt_ids, o);
    a.new_tokens = int32_t(g.tokens.size());
    std::vector<int32_t> ids = g.tokens;
    std::string text = tok.decode(ids, false);
    if (ex.stop_at_newline) text = first_nonempty_line(text);
    a.text = text;
    // where the answer's time went (the report's evaluation-speed section): reading the prompt vs generating
    char buf[96];
    std::snprintf(buf, sizeof buf, "{\"prefill_s\":%.6g,\"decode_s\":%.6g}", g.prefill_seconds, g.decode_seconds);
    a.detail = buf;
    return a;
}

std::vector<HeadTau> parse_head_taus(const std::string& spec) {
    std::vector<HeadTau> out;
    std::stringstream ss(spec);
    std::string part;
    while (std::getline(ss, part, ',')) {
        if (part.empty()) continue;
        HeadTau h;
        int n = 0;
        char extra = 0;
        if (std::sscanf(part.c_str(), "%d:%d=%f%c", &h.layer, &h.head, &h.tau, &extra) == 3 ||
            std::sscanf(part.c_str(), "L%dH%d=%f%c", &h.layer, &h.head, &h.tau, &extra) == 3) {
            n = 3;
        }
        check(n == 3 && h.layer >= 0 && h.head >= 0 && std::isfinite(h.tau), "PEAR heads: \"", part,
              "\" is not layer:head=tau (e.g. 24:4=0.5) or L24H4=0.5");
        for (const HeadTau& o : out)
            check(!(o.layer == h.layer && o.head == h.head), "PEAR heads: L", h.layer, "H", h.head, " given twice");
        out.push_back(h);
    }
    check(!out.empty(), "PEAR heads: none given (\"", spec, "\")");
    std::sort(out.begin(), out.end(), [](const HeadTau& a, const HeadTau& b) {
        return std::pair(a.layer, a.head) < std::pair(b.layer, b.head);
    });
    return out;
}

std::string format_head_taus(const std::vector<HeadTau>& hs) {
    std::string s;
    char buf[64];
    for (const HeadTau& h : hs) {
        std::snprintf(buf, sizeof buf, "L%dH%d=%.9g", h.layer, h.head, double(h.tau));
        s += (s.empty() ? "" : ",") + std::string(buf);
    }
    return s;
}

void fold_head_taus(Model& model, const std::vector<HeadTau>& hs) {
    const ModelConfig& c = model.config;
    std::vector<pear::HeadRef> heads;
    std::vector<float> tau;
    for (const HeadTau& h : hs) {
        check(h.layer < c.n_layer && h.head < c.n_head, "PEAR heads: L", h.layer, "H", h.head, " is outside the model (",
              c.n_layer, " layers x ", c.n_head, " heads)");
        heads.push_back({h.layer, h.head});
        tau.push_back(h.tau);
    }
    pear::fold_head_scale(c, model.weights, pear::head_scale_of(c, heads, tau));
}

namespace {

class Vanilla : public Method {
public:
    std::string name() const override { return "vanilla"; }
    std::string config() const override { return "vanilla"; }
    void prepare(EvalContext& ctx) override { engine_ = std::make_unique<Engine>(ctx.model, ctx.backend); }
    Answer answer(const Example& ex, EvalContext&) override { return answer_with_engine(*engine_, ex); }

private:
    std::unique_ptr<Engine> engine_;
};

// PEAR: the selected heads' outputs scaled by tau. "fold" loads a private copy of the model and folds tau into
// its W_O, so inference is the unmodified engine; "runtime" scales the heads with ForwardHooks::head_scale (the
// same function, kept for checking the fold).
class Pear : public Method {
public:
    explicit Pear(const MethodSettings& s) : name_(s.pear_name), mode_(s.pear_mode) {
        check(s.pear_heads.empty() != s.pear_train.empty(),
              "method ", name_, ": give the heads as --pear-heads \"l:h=tau,...\" or --pear-train FILE (one of them)");
        check(mode_ == "fold" || mode_ == "runtime", "--pear-mode = \"", mode_, "\" is not fold or runtime");
        if (!s.pear_train.empty()) {
            const pear::TrainedTau t = pear::read_trained_tau(s.pear_train);
            for (size_t i = 0; i < t.heads.size(); ++i) heads_.push_back(HeadTau{t.heads[i].layer, t.heads[i].head, t.tau[i]});
            std::sort(heads_.begin(), heads_.end(), [](const HeadTau& a, const HeadTau& b) {
                return std::pair(a.layer, a.head) < std::pair(b.layer, b.head);
            });
        } else {
            heads_ = parse_head_taus(s.pear_heads);
        }
    }
    std::string name() const override { return name_; }
    std::string config() const override { return "pear mode=" + mode_ + " heads=" + format_head_taus(heads_); }
    void prepare(EvalContext& ctx) override {
        if (mode_ == "fold") {
            LoadOptions lo;
            lo.precision = ctx.model.weights.precision;  // the folded copy in the run's precision
            model_ = std::make_unique<Model>(open_model(ctx.model_spec, lo));
            fold_head_taus(*model_, heads_);
            engine_ = std::make_unique<Engine>(*model_, ctx.backend);
        } else {
            const ModelConfig& c = ctx.model.config;
            scale_.assign(size_t(c.n_layer) * size_t(c.n_head), 1.0f);
            for (const HeadTau& h : heads_) {
                check(h.layer < c.n_layer && h.head < c.n_head, "PEAR heads: L", h.layer, "H", h.head,
                      " is outside the model");
                scale_[size_t(h.layer) * size_t(c.n_head) + size_t(h.head)] = h.tau;
            }
            engine_ = std::make_unique<Engine>(ctx.model, ctx.backend);
        }
    }
    Answer answer(const Example& ex, EvalContext&) override { return answer_with_engine(*engine_, ex, scale_); }
    const Model* composable_model() const override { return model_.get(); }  // fold mode only

private:
    std::string name_, mode_;
    std::vector<HeadTau> heads_;
    std::unique_ptr<Model> model_;
    std::unique_ptr<Engine> engine_;
    std::vector<float> scale_;
};

// "a+b": b prepared and run on a's model (see methods.hpp).
class Composed : public Method {
public:
    Composed(std::unique_ptr<Method> left, std::unique_ptr<Method> right)
        : left_(std::move(left)), right_(std::move(right)) {}
    std::string name() const override { return left_->name() + "+" + right_->name(); }
    std::string config() const override { return left_->config() + " | " + right_->config(); }
    void prepare(EvalContext& ctx) override {
        left_->prepare(ctx);
        const Model* m = left_->composable_model();
        check(m != nullptr, "method ", name(), ": ", left_->name(), " offers no model to run ", right_->name(),
              " on (PEAR offers its folded copy: use --pear-mode fold)");
        inner_ = std::make_unique<EvalContext>(*m, ctx.model_spec + "|" + left_->config(), ctx.backend);
        inner_->state_dir = ctx.state_dir;
        right_->prepare(*inner_);
    }
    Answer answer(const Example& ex, EvalContext&) override { return right_->answer(ex, *inner_); }
    void check_examples(const std::vector<Example>& examples, EvalContext& ctx) override {
        left_->check_examples(examples, ctx);
        if (inner_) right_->check_examples(examples, *inner_);
    }
    const Model* composable_model() const override { return right_->composable_model(); }

private:
    std::unique_ptr<Method> left_, right_;
    std::unique_ptr<EvalContext> inner_;
};

}  // namespace

const std::vector<MethodInfo>& method_registry() {
    static const std::vector<MethodInfo> methods = {
        {"vanilla", "the model as it is", [](const MethodSettings&) { return std::make_unique<Vanilla>(); }},
        {"pear", "PEAR: heads re-weighted by tau (--pear-heads, --pear-mode fold|runtime, --pear-name)",
         [](const MethodSettings& s) { return std::make_unique<Pear>(s); }},
        {"rtd", "RTD: k-NN over a datastore of the model's own final hidden states (--rtd-datastore, --rtd-k, --rtd-T, --rtd-lambda)",
         [](const MethodSettings& s) { return make_rtd_method(s, false); }},
        {"mh-rtd", "multi-head RTD: the hidden state split into the model's n_head slices, each searched with T/n_head",
         [](const MethodSettings& s) { return make_rtd_method(s, true); }},
        {"icl", "k-shot in-context learning on the choice tasks (--icl-shots solved train prompts before the question)",
         [](const MethodSettings& s) { return make_icl_method(s); }},
        {"infiniretri", "InfiniRetri: read the context in chunks through the last layer's attention, answer from the "
                        "kept sentences (--ir-chunk 1024, --ir-topk 300, --ir-window 8)",
         [](const MethodSettings& s) { return make_infiniretri(s); }},
    };
    return methods;
}

std::unique_ptr<Method> make_method(const std::string& name, const MethodSettings& s) {
    if (const size_t plus = name.rfind('+'); plus != std::string::npos) {
        check(plus > 0 && plus + 1 < name.size(), "method \"", name, "\": a composition is a+b (e.g. pear+infiniretri)");
        return std::make_unique<Composed>(make_method(name.substr(0, plus), s), make_method(name.substr(plus + 1), s));
    }
    std::string known;
    for (const MethodInfo& m : method_registry()) {
        if (m.name == name) return m.make(s);
        known += (known.empty() ? "" : ", ") + m.name;
    }
    fail("unknown method \"", name, "\" (known: ", known, ")");
}

}  // namespace hs::eval
