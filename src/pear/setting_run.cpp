// SettingRun: the clean run of one (N, n) setting and the scoring of work items against it.
//
// PATH mode, exact cheap form. With attention frozen at clean values everywhere, ablating head (l,h) at p changes
// only the residual at p, and only through the MLPs of layers l..L-1 at p. For every head and sample, start from the
// clean residual after layer l's attention, add delta = (mean_b z[l,h] - z[l,h][b]) . W_O[:, h]^T, run the MLP of
// layer l, then for each later layer add its clean attention output and run its MLP; then the final norm and the
// readout pi = h . E[target] - h . mean_v E[v]. All (head, sample) rows of a work item go through the MLPs together.
// With post-norms (gemma3) the head's change is not additive at layer l: the residual after layer l's attention is
// the clean residual entering it plus post_norm((z with head h's block at its mean) . W_O^T).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "pear/sweep.hpp"
#include "util/error.hpp"

namespace hs::pear {

struct SettingRun::Impl {
    Engine& engine;
    const SweepOptions& opt;
    int32_t index;
    ProxyBatch batch;
    int32_t N, n, T, p;  // samples, half length, sequence length, measurement position
    double pi_clean = 0, copy_acc = 0;
    std::vector<float> pi_clean_samples;  // [N]
    std::vector<double> mean_unembed;  // [d]: mean over the vocabulary of the output head rows

    // PATH caches at p: z [L][N, q_dim], residual entering the block, after attention and its clean attention
    // output [L][N, d] (pre_p: post-norm architectures only)
    LayerActivations z_p, mid_p, attn_p, pre_p;
    // TOTAL caches at all positions: z [L][N*T, q_dim], residual entering each block [L][N*T, d]
    LayerActivations z_all, pre_all;

    Impl(Engine& e, const SweepOptions& o, int32_t i) : engine(e), opt(o), index(i) {}

    const ModelConfig& cfg() const { return engine.config(); }

    // pi of rows of final hidden states (after the final norm; backend memory [R, d], row r belongs to sample r % N):
    // pi_r = h_r . (E[target_b] - mean_v E[v]), as one GEMM against U [N, d] (fp32 on every backend), so a sweep
    // downloads R x N numbers instead of R x d. Clean and ablated pi go through this same readout.
    DeviceBuffer readout_u;
    std::vector<double> readout_rows(const float* x, int64_t R) {
        const ModelConfig& c = cfg();
        const int32_t d = c.d_model;
        Backend& be = engine.backend();
        if (!readout_u.get()) {
            const Matrix& E = engine.model().weights.output;
            std::vector<float> u(size_t(N) * d), e(static_cast<size_t>(d));
            for (int32_t b = 0; b < N; ++b) {
                read_rows(E, batch.target(b), 1, e.data());  // any host precision
                for (int32_t i = 0; i < d; ++i) u[size_t(b) * d + i] = float(double(e[size_t(i)]) - mean_unembed[i]);
            }
            readout_u = DeviceBuffer(be, int64_t(N) * d);
            be.upload(u.data(), readout_u.get(), int64_t(N) * d);
        }
        Matrix U;
        U.data = readout_u.get();
        U.rows = N;
        U.cols = d;
        DeviceBuffer dots(be, R * N);
        be.matmul(x, U, dots.get(), R, false);
        std::vector<float> all(size_t(R) * N);
        be.download(dots.get(), all.data(), R * N);
        std::vector<double> pi(static_cast<size_t>(R));
        for (int64_t r = 0; r < R; ++r) pi[size_t(r)] = all[size_t(r) * N + size_t(r % N)];
        return pi;
    }
    // The same for host rows.
    std::vector<double> readout_host_rows(const float* h, int64_t R) {
        Backend& be = engine.backend();
        DeviceBuffer x(be, R * cfg().d_model);
        be.upload(h, x.get(), R * cfg().d_model);
        return readout_rows(x.get(), R);
    }

    // pi from full logits at p (the brute-force readout: no shortcut through the mean unembedding row).
    double readout_logits(const ForwardResult& r, int64_t b0, int64_t count) const {
        const int32_t V = cfg().n_vocab;
        double sum = 0;
        for (int64_t b = 0; b < count; ++b) {
            const float* lg = r.logits_at(b0 + b, 0, V);
            double m = 0;
            for (int32_t v = 0; v < V; ++v) m += lg[v];
            sum += lg[batch.target(int32_t(b))] - m / V;
        }
        return sum / double(count);
    }

    void clean_run() {
        const ModelConfig& c = cfg();
        const int32_t L = c.n_layer;
        ForwardHooks hk;
        for (int32_t l = 0; l < L; ++l) hk.z_layers.push_back(l);
        if (opt.mode == ScoreMode::ATTRIBUTION) {
            // nothing to cache: the backward pass below records what it needs
        } else if (opt.mode == ScoreMode::PATH) {
            hk.z_positions = {p};
            for (int32_t l = 0; l < L; ++l) {
                hk.residuals.push_back({l, ResidualPoint::BLOCK_INPUT});
                hk.residuals.push_back({l, ResidualPoint::AFTER_ATTENTION});
            }
            hk.residual_positions = {p};
        } else {
            for (int32_t l = 0; l < L; ++l) hk.residuals.push_back({l, ResidualPoint::BLOCK_INPUT});
        }
        // Logits at n..2n-2 for the copy accuracy (position n+i-1 predicts X[i], i = 1..n-1); p is the last.
        hk.logits = LogitsMode::POSITIONS;
        for (int32_t t = n; t <= p; ++t) hk.logit_positions.push_back(t);
        hk.final_hidden = true;
        ForwardResult r = engine.forward(batch.tokens, N, T, hk);

        // Copy accuracy.
        int64_t hits = 0, total = 0;
        for (int32_t b = 0; b < N; ++b)
            for (int32_t i = 1; i < n; ++i) {
                const float* lg = r.logits_at(b, i - 1, c.n_vocab);
                const int32_t best = int32_t(std::max_element(lg, lg + c.n_vocab) - lg);
                hits += best == batch.tokens[size_t(b) * T + i];
                ++total;
            }
        copy_acc = double(hits) / double(total);

        // Clean pi through the same readout the cheap form uses (last logit position = p).
        const int32_t np = int32_t(r.logit_positions.size());
        std::vector<float> at_p(size_t(N) * c.d_model);
        for (int32_t b = 0; b < N; ++b)
            std::copy_n(r.final_hidden.data() + (size_t(b) * np + (np - 1)) * c.d_model, c.d_model,
                        at_p.data() + size_t(b) * c.d_model);
        const std::vector<double> pis = readout_host_rows(at_p.data(), N);
        pi_clean_samples.assign(pis.begin(), pis.end());  // exact: the readout's values are floats
        pi_clean = sample_mean(pi_clean_samples.data(), N);

        if (opt.mode == ScoreMode::ATTRIBUTION) {
            attribution_run();
        } else if (opt.mode == ScoreMode::PATH) {
            z_p = std::move(r.z);
            mid_p.resize(L);
            attn_p.resize(L);
            for (int32_t l = 0; l < L; ++l) {
                mid_p[l] = std::move(r.residuals[{l, ResidualPoint::AFTER_ATTENTION}]);
                const auto& pre = r.residuals[{l, ResidualPoint::BLOCK_INPUT}];
                attn_p[l].resize(mid_p[l].size());
                for (size_t i = 0; i < pre.size(); ++i) attn_p[l][i] = mid_p[l][i] - pre[i];
            }
            if (c.post_norms) {
                pre_p.resize(L);
                for (int32_t l = 0; l < L; ++l) pre_p[l] = std::move(r.residuals[{l, ResidualPoint::BLOCK_INPUT}]);
            }
        } else {
            z_all = std::move(r.z);
            pre_all.resize(L);
            for (int32_t l = 0; l < L; ++l) pre_all[l] = std::move(r.residuals[{l, ResidualPoint::BLOCK_INPUT}]);
        }
    }

    // ---------------------------------------------------------------- ATTRIBUTION
    // One backward of pi (the logit margin at p, mean over samples) gives dpi/dz at p for every head; the estimate of
    // the PATH ablation (z at p -> batch mean) is pi + sum_b (zbar - z_b) . dpi/dz_b.
    std::vector<double> attr_pi;     // [L*H]
    std::vector<float> attr_tilde;   // [L*H, N]: pi_b + N (zbar - z_b) . dpi/dz_b (dz is the gradient of the mean)

    void attribution_run() {
        const ModelConfig& c = cfg();
        const int32_t L = c.n_layer, H = c.n_head, dh = c.d_head, q_dim = c.q_dim();
        GradRequest rq;
        rq.positions = {p};
        for (int32_t b = 0; b < N; ++b) rq.targets.push_back(batch.target(b));
        rq.loss = LossKind::LOGIT_MARGIN;
        rq.loss_scale = 1.0 / N;
        rq.capture = true;
        rq.capture_positions = {p};
        GradResult g = engine.loss_gradients(batch.tokens, N, T, rq);
        attr_pi.assign(size_t(L) * H, 0.0);
        attr_tilde.assign(size_t(L) * H * N, 0.0f);
        std::vector<double> mean(static_cast<size_t>(dh)), eff(static_cast<size_t>(N));
        for (int32_t l = 0; l < L; ++l)
            for (int32_t h = 0; h < H; ++h) {
                for (int32_t a = 0; a < dh; ++a) {
                    double m = 0;
                    for (int32_t b = 0; b < N; ++b) m += g.z[l][size_t(b) * q_dim + h * dh + a];
                    mean[size_t(a)] = m / N;
                }
                float* out = attr_tilde.data() + (size_t(l) * H + h) * N;
                for (int32_t b = 0; b < N; ++b) {
                    double e = 0;
                    for (int32_t a = 0; a < dh; ++a) {
                        const size_t i = size_t(b) * q_dim + h * dh + a;
                        e += (mean[size_t(a)] - g.z[l][i]) * g.dz[l][i];
                    }
                    out[b] = float(double(pi_clean_samples[size_t(b)]) + double(N) * e);
                }
                attr_pi[size_t(l) * H + h] = sample_mean(out, N);
            }
    }

    ItemScores score_attribution(const WorkItem& it) const {
        ItemScores out;
        out.n_samples = N;
        for (int32_t l = it.layer_begin; l < it.layer_end; ++l)
            for (int32_t h = it.head_begin; h < it.head_end; ++h) {
                const size_t i = size_t(l) * cfg().n_head + h;
                out.pi_ablated.push_back(attr_pi[i]);
                out.pi_tilde.insert(out.pi_tilde.end(), attr_tilde.begin() + i * N, attr_tilde.begin() + (i + 1) * N);
            }
        return out;
    }

    // ---------------------------------------------------------------- PATH
    ItemScores score_path(const WorkItem& it) {
        const ModelConfig& c = cfg();
        const int32_t d = c.d_model, q_dim = c.q_dim(), dh = c.d_head, L = c.n_layer;
        const int32_t nh = it.head_end - it.head_begin;
        ItemScores out;
        out.n_samples = N;
        out.pi_tilde.assign(size_t(it.n_heads()) * N, 0.0f);
        Backend& be = engine.backend();

        // Rows are (layer, head, sample), ordered by layer so that the rows active at any layer form a prefix.
        // Chunks of whole layers keep memory bounded.
        const int64_t rows_per_layer = int64_t(nh) * N;
        const int32_t layers_per_chunk =
            std::max<int32_t>(1, int32_t(std::min<int64_t>(opt.max_rows_per_chunk / std::max<int64_t>(rows_per_layer, 1),
                                                            it.layer_end - it.layer_begin)));
        for (int32_t c0 = it.layer_begin; c0 < it.layer_end; c0 += layers_per_chunk) {
            const int32_t c1 = std::min(it.layer_end, c0 + layers_per_chunk);
            const int64_t R = int64_t(c1 - c0) * rows_per_layer;
            DeviceBuffer x(be, R * d), dz(be, rows_per_layer * q_dim), mid(be, int64_t(N) * d);
            DeviceBuffer zrows, o;  // post-norms: clean z at p [N, q_dim], ablated attention output [nh * N, d]
            if (c.post_norms) {
                zrows = DeviceBuffer(be, int64_t(N) * q_dim);
                o = DeviceBuffer(be, rows_per_layer * d);
            }
            // Only head h's block of a delta row is non-zero: those blocks go up (nh * N * d_head values, not the
            // whole [nh * N, q_dim]), into a zeroed buffer.
            std::vector<int64_t> block_at(static_cast<size_t>(rows_per_layer));
            std::vector<float> block_val(size_t(rows_per_layer) * dh);
            int64_t active = 0;
            for (int32_t j = c0; j < L; ++j) {
                // Rows already running: add layer j's clean attention output at p.
                if (active > 0) add_attention(x.get(), active, j);
                if (j < c1) {
                    // New rows for the heads of layer j: x = mid_p[j][b] + (zbar - z_b) . W_O^T, or with post-norms
                    // x = pre_p[j][b] + post_norm(z'_b . W_O^T), z'_b = z_b with head h's block at zbar.
                    const float* zl = z_p[j].data();
                    for (int32_t k = 0; k < nh; ++k) {
                        const int32_t h = it.head_begin + k;
                        for (int32_t b = 0; b < N; ++b) block_at[size_t(k) * N + b] = (int64_t(k) * N + b) * q_dim + h * dh;
                        for (int32_t a = 0; a < dh; ++a) {
                            double mean = 0;
                            for (int32_t b = 0; b < N; ++b) mean += zl[size_t(b) * q_dim + h * dh + a];
                            mean /= N;
                            for (int32_t b = 0; b < N; ++b)
                                block_val[(size_t(k) * N + b) * dh + a] =
                                    float(c.post_norms ? mean : mean - zl[size_t(b) * q_dim + h * dh + a]);
                        }
                    }
                    be.fill(dz.get(), rows_per_layer * q_dim, 0.0f);
                    const LayerWeights& W = engine.device_weights().layers[j];
                    if (!c.post_norms) {
                        be.write_blocks(dz.get(), block_at.data(), rows_per_layer, dh, block_val.data());
                        // x rows = mid_p[j] tiled over the heads (one upload of [N, d]).
                        be.upload(mid_p[j].data(), mid.get(), int64_t(N) * d);
                        be.fill(x.get() + active * d, rows_per_layer * d, 0.0f);
                        be.add_cyclic(x.get() + active * d, rows_per_layer, mid.get(), N, d);
                        // delta rows have only head h's block non-zero, so the full W_O product is the head's path.
                        be.matmul(dz.get(), W.wo, x.get() + active * d, rows_per_layer, /*accumulate=*/true);
                    } else {
                        // z' rows: the clean z at p tiled over the heads, head h's block overwritten by its mean
                        be.upload(zl, zrows.get(), int64_t(N) * q_dim);
                        be.add_cyclic(dz.get(), rows_per_layer, zrows.get(), N, q_dim);
                        be.write_blocks(dz.get(), block_at.data(), rows_per_layer, dh, block_val.data());
                        be.matmul(dz.get(), W.wo, o.get(), rows_per_layer, false);
                        be.rmsnorm(o.get(), W.post_attn_norm, o.get(), rows_per_layer, d, c.rms_eps);
                        // x rows = pre_p[j] tiled over the heads, plus the post-normed ablated attention output
                        be.upload(pre_p[j].data(), mid.get(), int64_t(N) * d);
                        be.copy_2d(o.get(), d, x.get() + active * d, d, rows_per_layer, d);
                        be.add_cyclic(x.get() + active * d, rows_per_layer, mid.get(), N, d);
                    }
                    active += rows_per_layer;
                }
                engine.mlp_block(j, x.get(), active);
            }
            // Final norm and readout.
            engine.final_norm(x.get(), x.get(), R);
            const std::vector<double> pis = readout_rows(x.get(), R);
            for (int64_t r = 0; r < R; ++r) {
                const int64_t head_row = r / N;  // (layer - c0) * nh + k
                const int64_t li = (c0 - it.layer_begin) * int64_t(nh) + head_row;
                out.pi_tilde[size_t(li) * N + size_t(r % N)] = float(pis[size_t(r)]);  // exact: floats
            }
        }
        for (int32_t i = 0; i < it.n_heads(); ++i) out.pi_ablated.push_back(sample_mean(&out.pi_tilde[size_t(i) * N], N));
        return out;
    }

    // x[r] += attn_p[j][r % N] for the first `rows` rows.
    void add_attention(float* x, int64_t rows, int32_t j) {
        const int32_t d = cfg().d_model, L = cfg().n_layer;
        Backend& be = engine.backend();
        if (!attn_dev.get()) {  // every layer's clean attention output at p, uploaded once per setting: [L, N, d]
            attn_dev = DeviceBuffer(be, int64_t(L) * N * d);
            for (int32_t l = 0; l < L; ++l) be.upload(attn_p[l].data(), attn_dev.get() + int64_t(l) * N * d, int64_t(N) * d);
        }
        be.add_cyclic(x, rows, attn_dev.get() + int64_t(j) * N * d, N, d);
    }
    DeviceBuffer attn_dev;

    // ---------------------------------------------------------------- TOTAL
    // Ablation values of head (l,h) for sample b at the ablated positions: [positions, d_head].
    std::vector<float> total_values(int32_t l, int32_t h, int32_t b, const std::vector<int32_t>& pos) const {
        const ModelConfig& c = cfg();
        const int32_t q_dim = c.q_dim(), dh = c.d_head;
        const float* z = z_all[l].data();
        std::vector<float> v(pos.size() * dh);
        if (opt.mean_over == MeanOver::BATCH) {
            for (size_t i = 0; i < pos.size(); ++i)
                for (int32_t a = 0; a < dh; ++a) {
                    double m = 0;
                    for (int32_t s = 0; s < N; ++s) m += z[(size_t(s) * T + pos[i]) * q_dim + h * dh + a];
                    v[i * dh + a] = float(m / N);
                }
        } else {
            for (int32_t a = 0; a < dh; ++a) {
                double m = 0;
                for (int32_t t = 0; t < T; ++t) m += z[(size_t(b) * T + t) * q_dim + h * dh + a];
                for (size_t i = 0; i < pos.size(); ++i) v[i * dh + a] = float(m / T);
            }
        }
        return v;
    }

    std::vector<int32_t> total_positions() const {
        if (!opt.total_positions.empty()) return opt.total_positions;
        std::vector<int32_t> all(T);
        for (int32_t t = 0; t < T; ++t) all[t] = t;
        return all;
    }

    ItemScores score_total(const WorkItem& it) {
        const ModelConfig& c = cfg();
        const int32_t d = c.d_model, nh = it.head_end - it.head_begin;
        const std::vector<int32_t> pos = total_positions();
        ItemScores out;
        out.n_samples = N;
        // Heads of a layer go through in groups of up to max_tokens_per_pass tokens (all of them on small models):
        // sequences k*N + b start from the clean residual at layer l, tiled on the device (one upload of [N*T, d]).
        Backend& be = engine.backend();
        const int64_t rows = int64_t(N) * T;
        const int32_t group = int32_t(std::clamp<int64_t>(opt.max_tokens_per_pass / rows, 1, nh));
        for (int32_t l = it.layer_begin; l < it.layer_end; ++l) {
            DeviceBuffer pre(be, rows * d), start(be, int64_t(group) * rows * d);
            be.upload(pre_all[l].data(), pre.get(), rows * d);
            for (int32_t k0 = 0; k0 < nh; k0 += group) {
                const int32_t g = std::min(group, nh - k0);
                be.fill(start.get(), int64_t(g) * rows * d, 0.0f);
                be.add_cyclic(start.get(), int64_t(g) * rows, pre.get(), rows, d);
                ForwardHooks hk;
                hk.start_layer = l;
                hk.start_residual = start.get();
                hk.start_residual_on_device = true;
                for (int32_t k = 0; k < g; ++k) {
                    const int32_t h = it.head_begin + k0 + k;
                    for (int32_t b = 0; b < N; ++b)
                        hk.head_patches.push_back(HeadPatch{l, h, k * N + b, pos, total_values(l, h, b, pos)});
                }
                hk.logits = LogitsMode::POSITIONS;
                hk.logit_positions = {p};
                hk.final_hidden = true;
                hk.hidden_only = true;  // pi comes from the readout GEMM, not from the output head
                ForwardResult r = engine.forward({}, int64_t(g) * N, T, hk);
                const std::vector<double> pis = readout_host_rows(r.final_hidden.data(), int64_t(g) * N);
                for (int32_t k = 0; k < g; ++k) {
                    const size_t at = out.pi_tilde.size();
                    for (int32_t b = 0; b < N; ++b) out.pi_tilde.push_back(float(pis[size_t(k) * N + b]));  // exact
                    out.pi_ablated.push_back(sample_mean(&out.pi_tilde[at], N));
                }
            }
        }
        return out;
    }

    // ---------------------------------------------------------------- brute-force references
    double reference(int32_t l, int32_t h) {
        const ModelConfig& c = cfg();
        ForwardHooks hk;
        hk.logits = LogitsMode::POSITIONS;
        hk.logit_positions = {p};
        LayerActivations frozen;
        if (opt.mode == ScoreMode::PATH || opt.mode == ScoreMode::ATTRIBUTION) {
            // Clean z of every layer at every position, then a full forward with all of them frozen and the
            // head's output at p replaced by its batch mean.
            ForwardHooks cap;
            for (int32_t j = 0; j < c.n_layer; ++j) cap.z_layers.push_back(j);
            cap.logits = LogitsMode::NONE;
            frozen = engine.forward(batch.tokens, N, T, cap).z;
            std::vector<float> mean(c.d_head, 0.0f);
            for (int32_t a = 0; a < c.d_head; ++a) {
                double m = 0;
                for (int32_t b = 0; b < N; ++b) m += frozen[l][(size_t(b) * T + p) * c.q_dim() + h * c.d_head + a];
                mean[a] = float(m / N);
            }
            hk.frozen_attention = &frozen;
            hk.head_patches.push_back(HeadPatch{l, h, -1, {p}, mean});
        } else {
            const std::vector<int32_t> pos = total_positions();
            for (int32_t b = 0; b < N; ++b) hk.head_patches.push_back(HeadPatch{l, h, b, pos, total_values(l, h, b, pos)});
        }
        ForwardResult r = engine.forward(batch.tokens, N, T, hk);
        return readout_logits(r, 0, N);
    }
};

// The parts of a run that do not depend on the clean forward: the setting's shape and proxy batch.
std::unique_ptr<SettingRun::Impl> SettingRun::make_impl(Engine& engine, const SweepOptions& opt, int32_t index) {
    auto m = std::make_unique<SettingRun::Impl>(engine, opt, index);
    const ModelConfig& c = engine.config();
    check(index >= 0 && index < int32_t(opt.settings.size()), "sweep: no setting ", index);
    opt.validate(c);
    const ProxySetting& s = opt.settings[index];
    m->N = s.n_samples;
    m->n = s.half_len;
    m->T = 2 * s.half_len;
    m->p = 2 * s.half_len - 2;
    m->batch = make_proxy_batch(s, index, opt.seed, engine.model().tokenizer, c.n_vocab, opt.exclude_special);
    return m;
}

namespace {

// ---- clean-state bytes (native layout: the same binary reads them). Header, then the values in a fixed order.
constexpr uint32_t kStateMagic = 0x53435348;  // "HSCS"
constexpr uint32_t kStateVersion = 1;
struct StateHeader {
    uint32_t magic = kStateMagic, version = kStateVersion;
    int32_t mode = 0, setting = 0, N = 0, half_len = 0, n_layer = 0, d_model = 0, q_dim = 0, n_head = 0,
            post_norms = 0, reserved = 0;
};

struct StateWriter {
    std::vector<char> out;
    void raw(const void* p, size_t n) {
        const size_t o = out.size();
        out.resize(o + n);
        if (n) std::memcpy(out.data() + o, p, n);
    }
    template <class T>
    void vec(const std::vector<T>& v) { raw(v.data(), v.size() * sizeof(T)); }
    void layers(const LayerActivations& a) {
        for (const auto& l : a) vec(l);
    }
};

struct StateReader {
    const char* p;
    const char* end;
    int32_t setting;
    void raw(void* dst, size_t n) {
        check(size_t(end - p) >= n, "sweep: the clean state of setting ", setting, " is truncated");
        if (n) std::memcpy(dst, p, n);
        p += n;
    }
    template <class T>
    void vec(std::vector<T>& v, size_t n) {
        v.resize(n);
        raw(v.data(), n * sizeof(T));
    }
    void layers(LayerActivations& a, int32_t L, size_t per_layer) {
        a.resize(size_t(L));
        for (auto& l : a) vec(l, per_layer);
    }
};

}  // namespace

SettingRun::SettingRun(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SettingRun::SettingRun(Engine& engine, const SweepOptions& opt, int32_t index) : impl_(make_impl(engine, opt, index)) {
    Impl& m = *impl_;
    const ModelConfig& c = engine.config();
    const Matrix& E = engine.model().weights.output;
    m.mean_unembed.assign(c.d_model, 0.0);
    std::vector<float> row(size_t(c.d_model));
    for (int64_t v = 0; v < E.rows; ++v) {
        read_rows(E, v, 1, row.data());  // any host precision
        for (int32_t i = 0; i < c.d_model; ++i) m.mean_unembed[i] += row[size_t(i)];
    }
    for (auto& x : m.mean_unembed) x /= double(E.rows);
    m.clean_run();
}

std::vector<char> SettingRun::export_state() const {
    const Impl& m = *impl_;
    const ModelConfig& c = m.cfg();
    StateHeader h;
    h.mode = int32_t(m.opt.mode);
    h.setting = m.index;
    h.N = m.N;
    h.half_len = m.n;
    h.n_layer = c.n_layer;
    h.d_model = c.d_model;
    h.q_dim = c.q_dim();
    h.n_head = c.n_head;
    h.post_norms = c.post_norms ? 1 : 0;
    StateWriter w;
    w.out.reserve(size_t(state_bytes(c, m.opt.mode, m.opt.settings[size_t(m.index)])));
    w.raw(&h, sizeof h);
    w.raw(&m.pi_clean, sizeof m.pi_clean);
    w.raw(&m.copy_acc, sizeof m.copy_acc);
    w.vec(m.pi_clean_samples);
    w.vec(m.mean_unembed);
    switch (m.opt.mode) {
        case ScoreMode::PATH:
            w.layers(m.z_p);
            w.layers(m.mid_p);
            w.layers(m.attn_p);
            if (c.post_norms) w.layers(m.pre_p);
            break;
        case ScoreMode::TOTAL:
            w.layers(m.z_all);
            w.layers(m.pre_all);
            break;
        case ScoreMode::ATTRIBUTION:
            w.vec(m.attr_pi);
            w.vec(m.attr_tilde);
            break;
    }
    return std::move(w.out);
}

std::unique_ptr<SettingRun> SettingRun::from_state(Engine& engine, const SweepOptions& opt, int32_t index,
                                                    const std::vector<char>& state) {
    std::unique_ptr<Impl> impl = make_impl(engine, opt, index);
    Impl& m = *impl;
    const ModelConfig& c = engine.config();
    StateReader r{state.data(), state.data() + state.size(), index};
    StateHeader h;
    r.raw(&h, sizeof h);
    check(h.magic == kStateMagic && h.version == kStateVersion, "sweep: the clean state of setting ", index,
          " is not a clean state of this build");
    check(h.mode == int32_t(opt.mode) && h.setting == index && h.N == m.N && h.half_len == m.n &&
              h.n_layer == c.n_layer && h.d_model == c.d_model && h.q_dim == c.q_dim() && h.n_head == c.n_head &&
              h.post_norms == (c.post_norms ? 1 : 0),
          "sweep: the clean state given for setting ", index, " (", score_mode_name(ScoreMode(h.mode)), ", setting ",
          h.setting, ", N=", h.N, ", n=", h.half_len, ", ", h.n_layer, " layers, d=", h.d_model,
          ") is not of this run (", score_mode_name(opt.mode), ", N=", m.N, ", n=", m.n, ", ", c.n_layer,
          " layers, d=", c.d_model, ")");
    const int32_t L = c.n_layer, N = m.N;
    r.raw(&m.pi_clean, sizeof m.pi_clean);
    r.raw(&m.copy_acc, sizeof m.copy_acc);
    r.vec(m.pi_clean_samples, size_t(N));
    r.vec(m.mean_unembed, size_t(c.d_model));
    switch (opt.mode) {
        case ScoreMode::PATH:
            r.layers(m.z_p, L, size_t(N) * c.q_dim());
            r.layers(m.mid_p, L, size_t(N) * c.d_model);
            r.layers(m.attn_p, L, size_t(N) * c.d_model);
            if (c.post_norms) r.layers(m.pre_p, L, size_t(N) * c.d_model);
            break;
        case ScoreMode::TOTAL:
            r.layers(m.z_all, L, size_t(N) * m.T * c.q_dim());
            r.layers(m.pre_all, L, size_t(N) * m.T * c.d_model);
            break;
        case ScoreMode::ATTRIBUTION:
            r.vec(m.attr_pi, size_t(L) * c.n_head);
            r.vec(m.attr_tilde, size_t(L) * c.n_head * N);
            break;
    }
    check(r.p == r.end, "sweep: the clean state of setting ", index, " has ", r.end - r.p, " bytes too many");
    return std::unique_ptr<SettingRun>(new SettingRun(std::move(impl)));
}

int64_t state_bytes(const ModelConfig& c, ScoreMode mode, const ProxySetting& s) {
    const int64_t L = c.n_layer, N = s.n_samples, T = 2 * int64_t(s.half_len), d = c.d_model, q = c.q_dim();
    int64_t b = int64_t(sizeof(StateHeader)) + 16 + 4 * N + 8 * d;
    switch (mode) {
        case ScoreMode::PATH: b += 4 * L * N * (q + 2 * d + (c.post_norms ? d : 0)); break;
        case ScoreMode::TOTAL: b += 4 * L * N * T * (q + d); break;
        case ScoreMode::ATTRIBUTION: b += L * c.n_head * (8 + 4 * N); break;
    }
    return b;
}

SettingRun::~SettingRun() = default;
const ProxyBatch& SettingRun::batch() const { return impl_->batch; }
double SettingRun::pi_clean() const { return impl_->pi_clean; }
const std::vector<float>& SettingRun::pi_clean_samples() const { return impl_->pi_clean_samples; }
double SettingRun::copy_accuracy() const { return impl_->copy_acc; }

double sample_mean(const float* x, int32_t n) {
    double sum = 0;
    for (int32_t i = 0; i < n; ++i) sum += double(x[i]);
    return sum / double(n);
}

std::vector<double> SettingRun::score(const WorkItem& it) { return score_samples(it).pi_ablated; }

ItemScores SettingRun::score_samples(const WorkItem& it) {
    const ModelConfig& c = impl_->cfg();
    check(it.setting == impl_->index, "sweep: work item of setting ", it.setting, " given to the run of setting ",
          impl_->index);
    check(0 <= it.layer_begin && it.layer_begin < it.layer_end && it.layer_end <= c.n_layer && 0 <= it.head_begin &&
              it.head_begin < it.head_end && it.head_end <= c.n_head,
          "sweep: work item layers [", it.layer_begin, ", ", it.layer_end, ") heads [", it.head_begin, ", ",
          it.head_end, ") outside the model");
    switch (impl_->opt.mode) {
        case ScoreMode::PATH: return impl_->score_path(it);
        case ScoreMode::TOTAL: return impl_->score_total(it);
        case ScoreMode::ATTRIBUTION: return impl_->score_attribution(it);
    }
    return {};
}

double SettingRun::score_reference(int32_t layer, int32_t head) { return impl_->reference(layer, head); }

}  // namespace hs::pear
