// Weight storage: one aligned fp32 arena carved into the tensors of ModelWeights.
#include <unistd.h>

#include <cstdlib>
#include <algorithm>
#include <cstring>

#include <sys/mman.h>

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
    bool matrices = true;  // false: matrices get no fp32 storage (another precision stores them)
    Matrix matrix(int64_t rows, int64_t cols) {
        Matrix m;
        m.data = matrices ? take(rows * cols) : nullptr;
        m.rows = rows;
        m.cols = cols;
        return m;
    }
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

void allocate_weights(const ModelConfig& config, ModelWeights& weights, WeightPrecision precision) {
    const bool f32 = precision == WeightPrecision::F32;
    Carver count;
    count.matrices = f32;
    carve(config, weights, count);
    weights.arena = std::make_shared<ModelWeights::Arena>(count.used);
    weights.n_floats = count.used;
    weights.precision = precision;
    weights.matrix_storage.clear();
    Carver assign{weights.arena->data, 0, f32};
    carve(config, weights, assign);
}

void* allocate_matrix_storage(ModelWeights& w, size_t n_bytes) {
    // Large matrices (8B shapes: 9-33 MB each) on 2 MiB pages where the kernel offers transparent huge pages on
    // request: decode streams every weight once per token, and 4 KiB pages cost a TLB miss every 4 KiB. Small ones
    // (SmolLM2's ~0.5 MB) stay on 4 KiB pages: rounding them up to 2 MiB would multiply their memory.
    constexpr size_t kHuge = size_t(2) << 20, kHugeMin = size_t(8) << 20;
    const bool huge = n_bytes >= kHugeMin;
    const size_t align = huge ? kHuge : 64;
    const size_t bytes = (std::max<size_t>(n_bytes, 1) + align - 1) / align * align;
    void* p = std::aligned_alloc(align, bytes);
    if (!p) fail("out of memory allocating ", bytes >> 20, " MiB of model weights");
    if (huge) ::madvise(p, bytes, MADV_HUGEPAGE);  // a hint: refused or unsupported leaves 4 KiB pages
    w.matrix_storage.emplace_back(p, [](void* q) { std::free(q); });
    return p;
}

namespace {

template <class F>
void for_each_matrix(ModelWeights& w, F&& f) {
    f(w.token_embd);
    if (w.output.data != w.token_embd.data || w.output.data16 != w.token_embd.data16 ||
        w.output.blocks != w.token_embd.blocks)
        f(w.output);
    for (LayerWeights& L : w.layers)
        for (Matrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) f(*m);
}

}  // namespace

void convert_weights(ModelWeights& w, WeightPrecision precision) {
    if (precision != WeightPrecision::BF16) {
        w.precision = precision;
        return;
    }
    const bool tied = w.output.data == w.token_embd.data && w.output.type == w.token_embd.type;
    for_each_matrix(w, [&](Matrix& m) {
        if (m.type != WeightType::F32) return;
        auto* dst = static_cast<uint16_t*>(allocate_matrix_storage(w, size_t(m.rows * m.cols) * 2));
        for (int64_t i = 0; i < m.rows * m.cols; ++i) dst[i] = fp32_to_bf16(m.data[i]);
        m.data = nullptr;
        m.data16 = dst;
        m.type = WeightType::BF16;
    });
    if (tied) w.output = w.token_embd;
    w.precision = precision;
    // The fp32 copies of the matrices stay in the arena (random models only; loaded models never allocate them).
}

void make_matrix_f32(ModelWeights& w, Matrix& m) {
    if (m.type == WeightType::F32) return;
    auto* dst = static_cast<float*>(allocate_matrix_storage(w, size_t(m.rows * m.cols) * sizeof(float)));
    read_rows(m, 0, m.rows, dst);
    m = Matrix{dst, m.rows, m.cols};
}

void read_rows(const Matrix& m, int64_t row0, int64_t n_rows, float* out) {
    check(row0 >= 0 && n_rows >= 0 && row0 + n_rows <= m.rows, "read_rows: rows ", row0, "..", row0 + n_rows,
          " outside a matrix of ", m.rows);
    const int64_t n = n_rows * m.cols;
    switch (m.type) {
        case WeightType::F32:
            std::memcpy(out, m.data + row0 * m.cols, sizeof(float) * size_t(n));
            return;
        case WeightType::BF16:
        case WeightType::F16: {
            const auto* src = static_cast<const uint16_t*>(m.data16) + row0 * m.cols;
            if (m.type == WeightType::BF16)
                for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_fp32(src[i]);
            else
                for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_fp32(src[i]);
            return;
        }
        case WeightType::GGML: {
            const auto* src = static_cast<const uint8_t*>(m.blocks);
            for (int64_t r = 0; r < n_rows; ++r)
                dequantize_row(m.block_type, src + uint64_t(row0 + r) * m.row_bytes, out + r * m.cols, m.cols);
            return;
        }
    }
}

int64_t matrix_bytes(const Matrix& m) {
    switch (m.type) {
        case WeightType::F32: return m.rows * m.cols * 4;
        case WeightType::BF16:
        case WeightType::F16: return m.rows * m.cols * 2;
        case WeightType::GGML: return m.rows * int64_t(m.row_bytes);
    }
    return 0;
}

int64_t weights_bytes(const ModelWeights& w) {
    int64_t n = w.n_floats * 4;
    ModelWeights& mw = const_cast<ModelWeights&>(w);  // for_each_matrix only reads here
    const float* arena_begin = w.arena ? w.arena->data : nullptr;
    const float* arena_end = arena_begin ? arena_begin + w.n_floats : nullptr;
    for_each_matrix(mw, [&](Matrix& m) {
        // fp32 matrices outside the arena (an HF folder's f32 matrices at native precision) count too
        const bool in_arena = m.type == WeightType::F32 && m.data >= arena_begin && m.data < arena_end;
        if (!in_arena) n += matrix_bytes(m);
    });
    return n;
}

const char* weight_precision_name(WeightPrecision p) {
    switch (p) {
        case WeightPrecision::F32: return "f32";
        case WeightPrecision::BF16: return "bf16";
        case WeightPrecision::NATIVE: return "native";
    }
    return "?";
}

WeightPrecision parse_weight_precision(const std::string& s) {
    if (s == "f32" || s == "fp32") return WeightPrecision::F32;
    if (s == "bf16") return WeightPrecision::BF16;
    if (s == "native") return WeightPrecision::NATIVE;
    fail("unknown weight precision '", s, "' (use f32, bf16 or native)");
}

}  // namespace hs
