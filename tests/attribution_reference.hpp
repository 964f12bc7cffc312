// tests/attribution_reference.hpp: the reference that attribution mode's estimates are checked against -- pi after
// moving one head's output at the readout position along the ablation direction, z -> z + eps (mean_b z - z), with a
// full forward from the tokens (no frozen attention). A central difference of it in eps is d pi / d eps.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/engine.hpp"
#include "pear/sweep.hpp"

class AttributionReference {
public:
    // Captures every layer's clean z at p = 2n - 2 for the setting's N sequences of T = 2n tokens.
    AttributionReference(hs::Engine& engine, const hs::ModelConfig& c, const hs::pear::SettingRun& run, int32_t N,
                         int32_t n)
        : engine_(engine), c_(c), run_(run), N_(N), T_(2 * n), p_(2 * n - 2) {
        hs::ForwardHooks cap;
        for (int32_t l = 0; l < c.n_layer; ++l) cap.z_layers.push_back(l);
        cap.z_positions = {p_};
        cap.logits = hs::LogitsMode::NONE;
        clean_ = engine.forward(run.batch().tokens, N_, T_, cap);
    }

    // Mean over the sequences of logit[target] - mean logit at p, with head (l, h) patched by eps.
    double pi_at(int32_t l, int32_t h, double eps) const {
        const int32_t dh = c_.d_head, q_dim = c_.q_dim();
        hs::ForwardHooks hk;
        hk.logits = hs::LogitsMode::POSITIONS;
        hk.logit_positions = {p_};
        for (int32_t b = 0; b < N_; ++b) {
            std::vector<float> v(static_cast<size_t>(dh));
            for (int32_t a = 0; a < dh; ++a) {
                double mean = 0;
                for (int32_t s = 0; s < N_; ++s) mean += clean_.z[l][size_t(s) * q_dim + h * dh + a];
                mean /= N_;
                const double z = clean_.z[l][size_t(b) * q_dim + h * dh + a];
                v[size_t(a)] = float(z + eps * (mean - z));
            }
            hk.head_patches.push_back(hs::HeadPatch{l, h, b, {p_}, v});
        }
        const hs::ForwardResult r = engine_.forward(run_.batch().tokens, N_, T_, hk);
        double pi = 0;
        for (int32_t b = 0; b < N_; ++b) {
            const float* lg = r.logits_at(b, 0, c_.n_vocab);
            double mean = 0;
            for (int32_t v = 0; v < c_.n_vocab; ++v) mean += lg[v];
            pi += lg[run_.batch().target(b)] - mean / c_.n_vocab;
        }
        return pi / N_;
    }

    // Central difference of pi_at in eps at 0.
    double derivative(int32_t l, int32_t h, double step) const {
        return (pi_at(l, h, step) - pi_at(l, h, -step)) / (2 * step);
    }

private:
    hs::Engine& engine_;
    const hs::ModelConfig& c_;
    const hs::pear::SettingRun& run_;
    int32_t N_, T_, p_;
    hs::ForwardResult clean_;
};
