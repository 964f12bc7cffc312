// Weight storage: one aligned fp32 arena carved into the tensors of ModelWeights.
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "model/model.hpp"
#include "util/error.hpp"

namespace hs {

struct ModelWeights::Arena {
    float* data = nullptr;
    explicit Arena(int64_t n) {
        size_t bytes = ((size_t(n) * sizeof(float) + 63) / 64) * 64;
        // Refuse up front what cannot fit: touching more than the machine's memory gets the process killed
        // without a message (e.g. random:llama3-8b in fp32 needs ~30 GiB).
        const double total = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE));
        if (total > 0 && double(bytes) > 0.9 * total)
            fail("the fp32 weights need ", bytes >> 20, " MiB but this machine has ", int64_t(total) >> 20,
                 " MiB of memory (use a smaller model, or a GPU backend that keeps weights in bf16)");
        data = static_cast<float*>(std::aligned_alloc(64, bytes));
        if (!data) fail("out of memory allocating ", bytes >> 20, " MiB of model weights");
        std::memset(data, 0, bytes);
    }
    ~Arena() { std::free(data); }
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;
};

namespace {

// Hands out consecutive 16-float-aligned slices of the arena (first pass counts, second pass assigns).
struct Carver {
    float* base = nullptr;
    int64_t used = 0;
    float* take(int64_t n) {
        float* p = base ? base + used : nullptr;
        used += (n + 15) / 16 * 16;
        return p;
    }
    Matrix matrix(int64_t rows, int64_t cols) { return Matrix{take(rows * cols), rows, cols}; }
};

void carve(const ModelConfig& c, ModelWeights& w, Carver& cv) {
    const int64_t d = c.d_model;
    w.token_embd = cv.matrix(c.n_vocab, d);
    w.output_norm = cv.take(d);
    w.output = c.tied_embeddings ? w.token_embd : cv.matrix(c.n_vocab, d);
    w.layers.assign(c.n_layer, LayerWeights{});
    for (auto& L : w.layers) {
        L.attn_norm = cv.take(d);
        L.wq = cv.matrix(c.q_dim(), d);
        L.wk = cv.matrix(c.kv_dim(), d);
        L.wv = cv.matrix(c.kv_dim(), d);
        if (c.qkv_bias) {
            L.bq = cv.take(c.q_dim());
            L.bk = cv.take(c.kv_dim());
            L.bv = cv.take(c.kv_dim());
        }
        if (c.qk_norm) {
            L.q_norm = cv.take(c.d_head);
            L.k_norm = cv.take(c.d_head);
        }
        L.wo = cv.matrix(d, c.q_dim());
        if (c.post_norms) {
            L.post_attn_norm = cv.take(d);
            L.post_ffn_norm = cv.take(d);
        }
        L.ffn_norm = cv.take(d);
        L.w_gate = cv.matrix(c.d_ff, d);
        L.w_up = cv.matrix(c.d_ff, d);
        L.w_down = cv.matrix(d, c.d_ff);
    }
}

}  // namespace

void allocate_weights(const ModelConfig& config, ModelWeights& weights) {
    Carver count;
    carve(config, weights, count);
    weights.arena = std::make_shared<ModelWeights::Arena>(count.used);
    weights.n_floats = count.used;
    Carver assign{weights.arena->data, 0};
    carve(config, weights, assign);
}

}  // namespace hs
