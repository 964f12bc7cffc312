// pear/sweep.hpp: PEAR localisation -- score every attention head on the context-copying proxy task.
//
// Method: docs/methods.md (shared/docs/methods.md §1.1-1.2). Vocabulary of this part:
//   ProxySetting (N, n)    N sequences X of n random token ids; each input is [X, X] (2n tokens, no BOS)
//   p = 2n-2, target X[n-1] the measurement position and the token that should come next there
//   pi                     mean over samples of (logit[p, target] - mean over the vocabulary of logit[p, :])
//   WorkItem               one setting x a rectangle of (layer, head): the unit of work, also across MPI ranks
//   SettingRun             the clean run of one setting and its caches; scores any WorkItem of that setting
//   HeadScores             per-setting and aggregate scores, ranking and top-K
// Modes: PATH (the paper: head output at p replaced by its batch mean, attention frozen, MLPs recomputed; exact
// cheap form), TOTAL (mean-ablation at chosen positions with full downstream recompute), ATTRIBUTION (first-order
// estimate of the PATH ablation from one forward and one backward per setting: pi_ablated ~ pi + sum over samples
// of (mean_b z[l,h][b,p] - z[l,h][b,p]) . dpi/dz[l,h][b,p], the gradient taken through the full model).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.hpp"

namespace hs::pear {

struct ProxySetting {
    int32_t n_samples = 0;  // N
    int32_t half_len = 0;   // n
};
// The paper's detection settings (N, n) = (20,50), (40,25), (80,15), (100,10) and seed 10024.
std::vector<ProxySetting> paper_settings();
inline constexpr uint64_t kPaperSeed = 10024;

enum class ScoreMode { PATH, TOTAL, ATTRIBUTION };
enum class MeanOver { BATCH, SEQUENCE };  // what the ablation mean is taken over (TOTAL mode)
const char* score_mode_name(ScoreMode m);
ScoreMode parse_score_mode(const std::string& s);  // "path" | "total" | "attribution"; throws with the choices
const char* mean_over_name(MeanOver m);
MeanOver parse_mean_over(const std::string& s);    // "batch" | "sequence"

struct SweepOptions {
    ScoreMode mode = ScoreMode::PATH;
    std::vector<ProxySetting> settings = paper_settings();
    uint64_t seed = kPaperSeed;
    bool exclude_special = false;             // draw tokens only from non-special ids (paper: all ids)
    MeanOver mean_over = MeanOver::BATCH;     // TOTAL mode
    std::vector<int32_t> total_positions;     // TOTAL mode: ablated positions t (empty: all 2n positions)
    int32_t top_k = 0;                        // 0: default_top_k(n_heads)
    int32_t max_rows_per_chunk = 8192;        // PATH mode: rows per batched MLP pass (memory bound)
    int32_t max_tokens_per_pass = 65536;      // TOTAL mode: heads of a layer per forward pass, as tokens (memory)

    // Throws hs::Error naming the problem (n that does not fit the context, bad K, empty settings, ...).
    void validate(const ModelConfig& config) const;
};
// The documented default K: 3% of all heads (the paper's 30 of Llama-2-7B's 1024), at least 1.
int32_t default_top_k(int32_t n_heads);

// The proxy batch of one setting: tokens [N, 2n] = [X, X]. Deterministic in (seed, setting index): every setting
// has its own stream, so any setting can be rebuilt alone (on any MPI rank, on resume).
struct ProxyBatch {
    ProxySetting setting;
    std::vector<int32_t> tokens;  // [N * 2n]
    int32_t target(int32_t b) const { return tokens[size_t(b) * 2 * setting.half_len + setting.half_len - 1]; }
};
ProxyBatch make_proxy_batch(const ProxySetting& s, int32_t setting_index, uint64_t seed, const Tokenizer& tok,
                            int32_t n_vocab, bool exclude_special);

struct WorkItem {
    int32_t setting = 0;               // index into SweepOptions::settings
    int32_t layer_begin = 0, layer_end = 0;
    int32_t head_begin = 0, head_end = 0;
    int32_t n_heads() const { return (layer_end - layer_begin) * (head_end - head_begin); }
};

// All items of a sweep: each setting cut into (layer block x head range) rectangles, in a fixed order (setting,
// then layer, then head). heads_per_item 0 (or >= n_head): all heads of a layer in one item; otherwise ranges of
// that many heads (the last one shorter). A head's scores depend in their last bits on the item size (its rows share
// the batched MLP GEMMs with the other heads of the item), never on who computes the item: the sweep file records
// the size (SweepFileInfo::heads_per_item) and a resume must use the same.
std::vector<WorkItem> plan_items(const ModelConfig& config, const SweepOptions& options, int32_t layers_per_item = 1,
                                 int32_t heads_per_item = 0);
// The head-range size that cuts S settings x L layers x H heads into at least `min_items` items (0 when whole
// layers already give that many): the largest range size that does, so that items stay as large as possible
// (the distributed sweep's advice when a job's items are too few for its ranks).
int32_t heads_per_item_for(int64_t n_settings, int32_t n_layer, int32_t n_head, int64_t min_items);

// The scores of one work item: per head the mean over the N samples (pi_ablated) and each sample's value (pi~ of
// sample b: the logit margin at p with the head ablated, or for ATTRIBUTION its first-order estimate).
// pi_ablated[i] == sample_mean(&pi_tilde[i * N], N) exactly (the same function computes both sides).
struct ItemScores {
    int32_t n_samples = 0;          // N
    std::vector<double> pi_ablated; // [n_heads]
    std::vector<float> pi_tilde;    // [n_heads, N]
};
// The mean a sweep stores for N per-sample values: their sum in sample order, in double, divided by N (numpy:
// np.cumsum(x.astype(np.float64))[-1] / N gives the same bits).
double sample_mean(const float* x, int32_t n);

// The clean run of one setting: proxy batch, clean forward with the caches the mode needs, pi, copy accuracy.
class SettingRun {
public:
    SettingRun(Engine& engine, const SweepOptions& options, int32_t setting_index);
    ~SettingRun();
    const ProxyBatch& batch() const;
    double pi_clean() const;                       // sample_mean(pi_clean_samples())
    const std::vector<float>& pi_clean_samples() const;  // [N]: the clean logit margin at p of each sample
    double copy_accuracy() const;  // fraction of i = 1..n-1 where position n+i-1 ranks X[i] first
    // pi after ablating each head of the item, [layer - layer_begin][head - head_begin] row-major.
    std::vector<double> score(const WorkItem& item);
    // The same with each sample's value.
    ItemScores score_samples(const WorkItem& item);
    // The brute-force reference of PATH mode for one head: a full forward with every layer's attention frozen at
    // its clean value and the head's output at p replaced by its batch mean. (TOTAL: a full forward from the
    // tokens with the head mean-ablated.)
    double score_reference(int32_t layer, int32_t head);

    // The clean state as bytes: everything scoring reads (pi_clean, copy accuracy, the per-sample clean values, the
    // mean unembedding row and the mode's caches: PATH z / residual after attention / attention output at p per
    // layer [L][N, q_dim | d | d] (+ the block input with post-norms), TOTAL z and block inputs at every position,
    // ATTRIBUTION the per-head estimates), native layout. A run made from it (from_state) scores every item bit for
    // bit like this one: the distributed sweep computes a setting's clean run once and sends this to the others.
    // Size: PATH 4 L N (q_dim + 2 d) bytes and a little (state_bytes()).
    std::vector<char> export_state() const;
    // A run of setting `setting_index` from export_state() bytes of the same model and options: no forward pass.
    // Throws hs::Error when the bytes are not such a state (wrong magic, mode, setting, shape or size).
    static std::unique_ptr<SettingRun> from_state(Engine& engine, const SweepOptions& options, int32_t setting_index,
                                                  const std::vector<char>& state);

private:
    struct Impl;
    explicit SettingRun(std::unique_ptr<Impl> impl);
    static std::unique_ptr<Impl> make_impl(Engine& engine, const SweepOptions& options, int32_t setting_index);
    std::unique_ptr<Impl> impl_;
};
// The size of export_state() for a model and setting (PATH: 4 L N (q_dim + 2 d (+ d with post-norms)) + 8 d + 4 N
// + a header; TOTAL: 4 L N 2n (q_dim + d) + ...; ATTRIBUTION: L H (8 + 4 N) + ...), for planning and the simulation.
int64_t state_bytes(const ModelConfig& config, ScoreMode mode, const ProxySetting& setting);

// Scores of a finished (or partial) sweep.
struct HeadScores {
    int32_t n_layer = 0, n_head = 0;
    std::vector<ProxySetting> settings;
    std::vector<double> pi_clean;       // [S]
    std::vector<double> copy_accuracy;  // [S]
    std::vector<double> pi_ablated;     // [S, L, H]  (NaN where not computed)
    std::vector<double> raw;            // [S, L, H]  pi_ablated - pi_clean
    std::vector<double> ratio;          // [S, L, H]  pi_ablated / pi_clean - 1  (the paper's delta pi)
    std::vector<double> mean_ratio;     // [L, H]     mean over settings of ratio
    std::vector<double> weighted_ratio; // [L, H]     N-weighted mean over settings of ratio
    std::vector<int32_t> ranking;       // head indices l*H + h by mean_ratio, largest first
    int32_t top_k = 0;
};
// Fills raw/ratio/aggregates/ranking from pi_clean and pi_ablated.
void finish_scores(HeadScores& s, int32_t top_k);

}  // namespace hs::pear
