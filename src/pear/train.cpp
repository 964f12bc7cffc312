// PEAR re-weighting: the trainer (data, loss, distributed gradient, AdamW) and its checkpoint file.
#include "pear/train.hpp"

#include <boost/mpi/collectives.hpp>
#include <boost/serialization/vector.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>

#include "backend/cpu/cpu_runtime.hpp"
#include "io/h5.hpp"
#include "util/error.hpp"

namespace hs::pear {

// ---------------------------------------------------------------- heads
std::vector<HeadRef> parse_heads(const std::string& s) {
    std::vector<HeadRef> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) {
        const auto colon = item.find(':');
        check(colon != std::string::npos, "heads: '", item, "' is not layer:head (give \"l:h,l:h,...\")");
        try {
            size_t a = 0, b = 0;
            const int l = std::stoi(item.substr(0, colon), &a), h = std::stoi(item.substr(colon + 1), &b);
            check(a == colon && b == item.size() - colon - 1, "heads: '", item, "' is not layer:head");
            out.push_back({l, h});
        } catch (const std::logic_error&) {
            fail("heads: '", item, "' is not layer:head (integers)");
        }
    }
    check(!out.empty(), "heads: none given");
    return out;
}

std::string heads_string(const std::vector<HeadRef>& heads) {
    std::string s;
    for (const auto& h : heads) s += (s.empty() ? "" : ",") + std::to_string(h.layer) + ":" + std::to_string(h.head);
    return s;
}

std::vector<HeadRef> read_sweep_top_heads(const std::string& path, int32_t k, int32_t n_head) {
    h5::File f = h5::File::open(path);
    std::vector<HeadRef> out;
    if (f.has("top_k/layer") && f.has("top_k/head")) {
        auto L = f.open_dataset("top_k/layer").read<int32_t>();
        auto H = f.open_dataset("top_k/head").read<int32_t>();
        check(L.size() == H.size(), path, ": /top_k/layer and /top_k/head differ in length");
        for (size_t i = 0; i < L.size(); ++i) out.push_back({L[i], H[i]});
        if (k > 0 && size_t(k) <= out.size()) {
            out.resize(size_t(k));
            return out;
        }
        if (k <= 0) return out;
    }
    check(f.has("ranking"), path, ": no /top_k or /ranking dataset (is it a sweep file?)");
    auto r = f.open_dataset("ranking").read<int32_t>();
    check(k > 0, path, ": give the number of heads to take from /ranking");
    check(size_t(k) <= r.size(), path, ": asked for ", k, " heads, the ranking has ", r.size());
    out.clear();
    for (int32_t i = 0; i < k; ++i) {
        check(r[i] >= 0, path, ": the ranking is incomplete (a partial sweep?)");
        out.push_back({r[i] / n_head, r[i] % n_head});
    }
    return out;
}

// ---------------------------------------------------------------- options and schedule
void TrainOptions::validate(const ModelConfig& c) const {
    check(!heads.empty(), "train: no heads selected");
    for (size_t i = 0; i < heads.size(); ++i) {
        check(heads[i].layer >= 0 && heads[i].layer < c.n_layer && heads[i].head >= 0 && heads[i].head < c.n_head,
              "train: head ", heads[i].layer, ":", heads[i].head, " does not exist (", c.n_layer, " layers x ",
              c.n_head, " heads)");
        for (size_t j = 0; j < i; ++j)
            check(!(heads[j] == heads[i]), "train: head ", heads[i].layer, ":", heads[i].head, " is given twice");
    }
    check(half_len >= 2, "train: n must be at least 2");
    check(2 * int64_t(half_len) <= c.n_ctx, "train: 2n = ", 2 * half_len, " exceeds the context ", c.n_ctx);
    check(batch >= 1 && steps >= 0 && planned_steps >= 1 && warmup >= 0 && warmup < planned_steps,
          "train: need batch >= 1, steps >= 0, planned steps >= 1, 0 <= warmup < planned steps");
    check(steps <= planned_steps, "train: steps (", steps, ") beyond the planned steps (", planned_steps, ")");
    check(lr > 0 && beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 && eps > 0 && clip > 0 && weight_decay >= 0,
          "train: optimiser settings out of range");
    check(checkpoint_every >= 0 && eval_batch >= 0, "train: checkpoint interval and eval batch must be >= 0");
    check(c.n_vocab > 2, "train: the vocabulary is too small");
}

double lr_at(const TrainOptions& o, int32_t s) {
    if (s < o.warmup) return o.lr * double(s) / double(std::max(1, o.warmup));
    return o.lr * std::max(0.0, double(o.planned_steps - s) / double(std::max(1, o.planned_steps - o.warmup)));
}

namespace {

std::vector<int32_t> draw_sequence(std::mt19937_64& g, int32_t n, int32_t V) {
    std::vector<int32_t> x(size_t(2) * n);
    for (int32_t i = 0; i < n; ++i) x[i] = x[i + n] = int32_t(2 + g() % uint64_t(V - 2));
    return x;
}

std::string rng_to_string(const std::mt19937_64& g) {
    std::ostringstream os;
    os << g;
    return os.str();
}

}  // namespace

// ---------------------------------------------------------------- trainer
Trainer::Trainer(Engine& engine, const TrainOptions& options, std::optional<boost::mpi::communicator> comm)
    : engine_(engine), opt_(options), comm_(std::move(comm)) {
    opt_.validate(engine_.config());
    const size_t K = opt_.heads.size();
    state_.tau.assign(K, 1.0f);
    state_.adam_m.assign(K, 0.0f);
    state_.adam_v.assign(K, 0.0f);
    state_.rng_state = rng_to_string(std::mt19937_64(opt_.seed));
    from_layer_ = engine_.config().n_layer - 1;
    for (const auto& h : opt_.heads) from_layer_ = std::min(from_layer_, h.layer);
}

void Trainer::restore(const TrainState& s) {
    const size_t K = opt_.heads.size();
    check(s.tau.size() == K && s.adam_m.size() == K && s.adam_v.size() == K, "train: checkpoint has ", s.tau.size(),
          " coefficients, the job ", K);
    check(s.step >= 0 && size_t(s.step) == s.loss.size(), "train: checkpoint log does not match its step");
    state_ = s;
}

std::vector<float> Trainer::head_scale(const std::vector<float>& tau) const {
    const ModelConfig& c = engine_.config();
    std::vector<float> hs(size_t(c.n_layer) * c.n_head, 1.0f);
    for (size_t i = 0; i < opt_.heads.size(); ++i) hs[size_t(opt_.heads[i].layer) * c.n_head + opt_.heads[i].head] = tau[i];
    return hs;
}

std::vector<double> Trainer::reduce_batch(const std::vector<std::vector<int32_t>>& seqs, const std::vector<float>& tau,
                                          bool grads) {
    const ModelConfig& c = engine_.config();
    const int32_t n = opt_.half_len, T = 2 * n, size = comm_ ? comm_->size() : 1, rank = comm_ ? comm_->rank() : 0;
    const size_t K = opt_.heads.size(), W = K + 2;
    GradRequest rq;
    rq.head_scale = head_scale(tau);
    for (int32_t t = n - 1; t <= 2 * n - 2; ++t) rq.positions.push_back(t);
    rq.loss_scale = 1.0;
    rq.from_layer = grads ? from_layer_ : c.n_layer - 1;
    std::vector<double> local;
    for (size_t s = size_t(rank); s < seqs.size(); s += size_t(size)) {
        rq.targets.assign(seqs[s].begin() + n, seqs[s].end());
        GradResult r = engine_.loss_gradients(seqs[s], 1, T, rq);
        for (size_t k = 0; k < K; ++k)
            local.push_back(grads ? r.head_grad[size_t(opt_.heads[k].layer) * c.n_head + opt_.heads[k].head] : 0.0);
        local.push_back(r.loss);
        double hits = 0;
        for (int32_t i = 1; i < n; ++i) hits += r.correct[size_t(i)];
        local.push_back(hits);
    }
    std::vector<double> sum(W, 0.0);
    if (size == 1) {
        for (size_t s = 0; s < seqs.size(); ++s)
            for (size_t w = 0; w < W; ++w) sum[w] += local[s * W + w];
    } else {
        std::vector<std::vector<double>> all;
        boost::mpi::gather(*comm_, local, all, 0);
        if (rank == 0)
            for (size_t s = 0; s < seqs.size(); ++s) {  // sequence order, whatever the number of ranks
                const auto& from = all[s % size_t(size)];
                const size_t j = s / size_t(size);
                for (size_t w = 0; w < W; ++w) sum[w] += from[j * W + w];
            }
        boost::mpi::broadcast(*comm_, sum, 0);
    }
    return sum;
}

StepStats Trainer::step() {
    const ModelConfig& c = engine_.config();
    const int32_t n = opt_.half_len, B = opt_.batch;
    const size_t K = opt_.heads.size();
    const auto t0 = std::chrono::steady_clock::now();
    std::mt19937_64 g;
    {
        std::istringstream is(state_.rng_state);
        is >> g;
        check(!is.fail(), "train: bad rng state");
    }
    std::vector<std::vector<int32_t>> seqs;
    for (int32_t b = 0; b < B; ++b) seqs.push_back(draw_sequence(g, n, c.n_vocab));
    state_.rng_state = rng_to_string(g);

    const std::vector<double> sum = reduce_batch(seqs, state_.tau, true);
    const double N = double(B) * n;
    std::vector<float> grad(K);
    double sq = 0;
    for (size_t k = 0; k < K; ++k) {
        grad[k] = float(sum[k] / N);
        sq += double(grad[k]) * double(grad[k]);
    }
    StepStats st;
    st.loss = sum[K] / N;
    st.accuracy = sum[K + 1] / (double(B) * (n - 1));
    st.grad_norm = std::sqrt(sq);
    const float coef = float(opt_.clip / (st.grad_norm + 1e-6));
    if (coef < 1.0f)
        for (auto& x : grad) x *= coef;
    // AdamW, torch semantics (decoupled decay, bias correction).
    st.lr = lr_at(opt_, state_.step);
    const int32_t t = state_.step + 1;
    const float lr = float(st.lr), b1 = float(opt_.beta1), b2 = float(opt_.beta2), eps = float(opt_.eps);
    const float bc1 = float(1.0 - std::pow(opt_.beta1, t)), bc2_sqrt = float(std::sqrt(1.0 - std::pow(opt_.beta2, t)));
    const float step_size = lr / bc1, decay = float(1.0 - st.lr * opt_.weight_decay);
    for (size_t k = 0; k < K; ++k) {
        float& m = state_.adam_m[k];
        float& v = state_.adam_v[k];
        state_.tau[k] *= decay;
        m = b1 * m + (1.0f - b1) * grad[k];
        v = b2 * v + (1.0f - b2) * grad[k] * grad[k];
        const float denom = std::sqrt(v) / bc2_sqrt + eps;
        state_.tau[k] -= step_size * (m / denom);
    }
    state_.step = t;
    state_.loss.push_back(st.loss);
    state_.accuracy.push_back(st.accuracy);
    state_.grad_norm.push_back(st.grad_norm);
    state_.lr.push_back(st.lr);
    state_.seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    state_.tau_history.insert(state_.tau_history.end(), state_.tau.begin(), state_.tau.end());
    return st;
}

EvalStats Trainer::evaluate(const std::vector<float>& tau) {
    const int32_t n = opt_.half_len, B = opt_.eval_batch;
    std::mt19937_64 g(opt_.eval_seed);
    std::vector<std::vector<int32_t>> seqs;
    for (int32_t b = 0; b < B; ++b) seqs.push_back(draw_sequence(g, n, engine_.config().n_vocab));
    const std::vector<double> sum = reduce_batch(seqs, tau, false);
    const size_t K = opt_.heads.size();
    return {sum[K] / (double(B) * n), sum[K + 1] / (double(B) * (n - 1))};
}

// ---------------------------------------------------------------- file
namespace {

constexpr const char* kTrainFormat = "headsweep-pear-train";

std::vector<std::pair<std::string, double>> numeric_options(const TrainOptions& o) {
    return {{"n", o.half_len},          {"batch", o.batch},   {"planned_steps", o.planned_steps},
            {"warmup", o.warmup},       {"lr", o.lr},         {"beta1", o.beta1},
            {"beta2", o.beta2},         {"eps", o.eps},       {"weight_decay", o.weight_decay},
            {"clip", o.clip},           {"seed", double(o.seed)}, {"eval_seed", double(o.eval_seed)},
            {"eval_batch", o.eval_batch}};
}

void write_1d(h5::Location& loc, const std::string& name, const std::vector<double>& v) {
    loc.create_dataset<double>(name, {uint64_t(v.size())}).write(v);
}

}  // namespace

void write_train_file(const std::string& path, const TrainOptions& o, const TrainState& s, const std::string& model,
                      const std::vector<std::pair<std::string, double>>& extra) {
    const std::string tmp = path + ".tmp";
    {
        h5::File f = h5::File::create(tmp, h5::Overwrite::yes);
        f.set_attr("format", kTrainFormat);
        f.set_attr("model", model);
        f.set_attr("weight_precision", std::string(weight_precision_name(o.precision)));
        f.set_attr("heads", heads_string(o.heads));
        f.set_attr("step", int32_t(s.step));
        f.set_attr("steps", int32_t(o.steps));
        f.set_attr("rng_state", s.rng_state);
        f.set_attr("engine_version", HEADSWEEP_VERSION);
        for (const auto& [key, value] : cpu_runtime_provenance()) f.set_attr(key, value);
        for (const auto& [k, v] : numeric_options(o)) f.set_attr("option_" + k, v);
        const uint64_t K = o.heads.size();
        f.create_dataset<float>("tau", {K}).write(s.tau);
        f.create_dataset<float>("adam_m", {K}).write(s.adam_m);
        f.create_dataset<float>("adam_v", {K}).write(s.adam_v);
        std::vector<int32_t> hl, hh;
        for (const auto& h : o.heads) hl.push_back(h.layer), hh.push_back(h.head);
        h5::Group heads = f.create_group("heads");
        heads.create_dataset<int32_t>("layer", {K}).write(hl);
        heads.create_dataset<int32_t>("head", {K}).write(hh);
        h5::Group log = f.create_group("log");
        write_1d(log, "loss", s.loss);
        write_1d(log, "accuracy", s.accuracy);
        write_1d(log, "grad_norm", s.grad_norm);
        write_1d(log, "lr", s.lr);
        write_1d(log, "seconds", s.seconds);
        log.create_dataset<float>("tau", {uint64_t(s.loss.size()), K}).write(s.tau_history);
        if (!extra.empty()) {
            h5::Group ev = f.create_group("eval");
            for (const auto& [k, v] : extra) ev.create_dataset<double>(k, {1}).write(std::vector<double>{v});
        }
        f.close();
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    check(!ec, path, ": cannot move the finished file into place: ", ec.message());
}

TrainState read_train_file(const std::string& path, const TrainOptions& o) {
    h5::File f = h5::File::open(path);
    check(f.has_attr("format") && f.attr_string("format") == kTrainFormat, path, ": not a headsweep train file");
    const std::string heads = f.attr_string("heads");
    check(heads == heads_string(o.heads), path, ": cannot resume: heads differ (file: ", heads, ", job: ",
          heads_string(o.heads), ")");
    for (const auto& [k, v] : numeric_options(o)) {
        const double fv = f.attr<double>("option_" + k);
        check(fv == v, path, ": cannot resume: ", k, " differs (file: ", fv, ", job: ", v, ")");
    }
    TrainState s;
    s.step = f.attr<int32_t>("step");
    s.rng_state = f.attr_string("rng_state");
    s.tau = f.open_dataset("tau").read<float>();
    s.adam_m = f.open_dataset("adam_m").read<float>();
    s.adam_v = f.open_dataset("adam_v").read<float>();
    s.loss = f.open_dataset("log/loss").read<double>();
    s.accuracy = f.open_dataset("log/accuracy").read<double>();
    s.grad_norm = f.open_dataset("log/grad_norm").read<double>();
    s.lr = f.open_dataset("log/lr").read<double>();
    s.seconds = f.open_dataset("log/seconds").read<double>();
    s.tau_history = f.open_dataset("log/tau").read<float>();
    return s;
}

TrainedTau read_trained_tau(const std::string& path) {
    h5::File f = h5::File::open(path);
    check(f.has_attr("format") && f.attr_string("format") == kTrainFormat, path, ": not a headsweep train file");
    TrainedTau t;
    t.heads = parse_heads(f.attr_string("heads"));
    t.tau = f.open_dataset("tau").read<float>();
    t.step = f.attr<int32_t>("step");
    check(t.tau.size() == t.heads.size(), path, ": ", t.tau.size(), " tau values for ", t.heads.size(), " heads");
    // A checkpoint of a run in progress (or cut short) is not the result: its tau would silently differ from the
    // finished run's (e.g. a datastore built from it no longer matches the model an evaluation folds).
    if (f.has_attr("steps")) {
        const int64_t steps = f.attr<int32_t>("steps");
        check(t.step >= steps, path, ": the training is not finished (step ", t.step, " of ", steps,
              "; a run in progress, or one cut short: continue it with headsweep train --resume)");
    }
    return t;
}

}  // namespace hs::pear
