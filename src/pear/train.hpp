// pear/train.hpp: PEAR re-weighting -- learn one scalar tau per selected head on the copying proxy task
// (docs/methods.md §1.3, research/pear.md §4).
//
// Data: every step draws `batch` sequences X of n tokens uniformly from [2, V) (one mt19937_64 stream whose state is
// checkpointed); input [X, X]; loss = mean cross-entropy of the second copy (targets T[n..2n-1] predicted at
// positions n-1..2n-2). tau (fp32, init 1) multiplies the head's output before W_O; the model is frozen.
// Optimiser as the paper's code (HF Trainer defaults): AdamW (torch semantics, bias-corrected), lr 5e-3,
// betas (0.9, 0.999), eps 1e-8, weight decay 0; linear schedule over planned_steps with `warmup` warm-up steps
// (HF: the s-th step (0-based) uses lr * s/warmup during warm-up -- the first step has lr 0 -- then
// lr * (planned - s)/(planned - warmup)); global-norm clipping at 1.0 (coefficient max_norm / (norm + 1e-6)).
//
// Data parallel over MPI: sequence s of a step is computed by rank s % size, one sequence per backward pass (the
// paper's per-device batch 1 with gradient accumulation), so each sequence's gradient is the same bits on any rank.
// The per-sequence gradients, losses and hit counts are gathered to rank 0, summed in sequence order, and
// broadcast; every rank applies the same update. tau is therefore identical bit for bit for any number of ranks
// (with the same OpenBLAS thread count per rank).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <boost/mpi/communicator.hpp>

#include "engine/engine.hpp"

namespace hs::pear {

struct HeadRef {
    int32_t layer = 0, head = 0;
    bool operator==(const HeadRef&) const = default;
};
// "l:h,l:h,..." -> heads; throws hs::Error on anything else.
std::vector<HeadRef> parse_heads(const std::string& s);
std::string heads_string(const std::vector<HeadRef>& heads);
// The top k heads of a sweep's HDF5 file (layout of pear/sweep_file.hpp on branch sweepio: /top_k/layer,
// /top_k/head; or the first k of /ranking [L*H] = l*H + h, largest mean ratio first). k <= 0: all of /top_k.
std::vector<HeadRef> read_sweep_top_heads(const std::string& path, int32_t k, int32_t n_head);

struct TrainOptions {
    std::vector<HeadRef> heads;
    int32_t half_len = 50;         // n
    int32_t batch = 20;            // sequences per step
    int32_t steps = 60;            // stop after this step (the paper evaluates checkpoint-60)
    int32_t planned_steps = 2500;  // length of the linear decay (50,000 samples / 20)
    int32_t warmup = 2;
    double lr = 5e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0, clip = 1.0;
    uint64_t seed = 0;
    int32_t checkpoint_every = 10;  // 0: only at the end
    int32_t eval_batch = 20;        // sequences of the fixed evaluation batch (before/after); 0: none
    uint64_t eval_seed = 12345;
    WeightPrecision precision = WeightPrecision::F32;  // host weights of the frozen model (recorded, not numeric)

    void validate(const ModelConfig& c) const;  // throws hs::Error naming the problem
};

double lr_at(const TrainOptions& o, int32_t step);  // the schedule (0-based optimiser step)

// Everything needed to continue a run exactly.
struct TrainState {
    int32_t step = 0;                     // optimiser steps done
    std::vector<float> tau, adam_m, adam_v;
    std::string rng_state;                // the data stream (mt19937_64, textual)
    // the log so far, one entry per step
    std::vector<double> loss, accuracy, grad_norm, lr, seconds;
    std::vector<float> tau_history;       // [steps, K]
};

struct StepStats {
    double loss = 0;       // mean cross-entropy over batch * n predictions
    double accuracy = 0;   // copy accuracy: argmax == target at positions n..2n-2 (the first target is unguessable)
    double grad_norm = 0;  // global norm before clipping
    double lr = 0;
};

struct EvalStats {
    double loss = 0, accuracy = 0;
};

class Trainer {
public:
    // comm: the ranks that share the work; nullopt: this process alone (no MPI call is made).
    Trainer(Engine& engine, const TrainOptions& options, std::optional<boost::mpi::communicator> comm = {});
    const TrainState& state() const { return state_; }
    void restore(const TrainState& s);   // after validation of sizes
    StepStats step();                    // one optimiser step (all ranks call it)
    // Loss and copy accuracy on the fixed evaluation batch at the given tau (all ranks; distributed like a step).
    EvalStats evaluate(const std::vector<float>& tau);
    std::vector<float> head_scale(const std::vector<float>& tau) const;  // [L*H] with tau at the selected heads

private:
    // Sum over sequences (in sequence order) of [dloss/dtau (K), loss sum, hits] for the given tokens.
    std::vector<double> reduce_batch(const std::vector<std::vector<int32_t>>& seqs, const std::vector<float>& tau,
                                     bool grads);
    Engine& engine_;
    TrainOptions opt_;
    std::optional<boost::mpi::communicator> comm_;
    TrainState state_;
    int32_t from_layer_ = 0;
};

// Checkpoint / output file (HDF5): written by rank 0 to a temporary file renamed into place.
//   /tau, /adam_m, /adam_v [K] f32; /heads/layer, /heads/head [K] i32
//   /log/loss, /log/accuracy, /log/grad_norm, /log/lr, /log/seconds [steps] f64; /log/tau [steps, K] f32
//   /eval/loss_before, ... (when evaluated)   root attributes: format, step, rng_state, options, model
void write_train_file(const std::string& path, const TrainOptions& o, const TrainState& s, const std::string& model,
                      const std::vector<std::pair<std::string, double>>& extra = {});
// Reads a train file's state and checks that its heads and options agree with `o` (throws naming what differs).
TrainState read_train_file(const std::string& path, const TrainOptions& o);

// The heads and tau of a train output file (for export and evaluation); throws naming the file when it is not one.
struct TrainedTau {
    std::vector<HeadRef> heads;
    std::vector<float> tau;
    int64_t step = 0;  // steps trained
};
// The heads and tau of a finished training (hs::Error naming the file for a checkpoint of an unfinished one).
TrainedTau read_trained_tau(const std::string& path);

}  // namespace hs::pear
