// backend/backend.hpp: the op interface the engine runs on. The model code does not know which backend runs it.
//
// All activations are fp32, row-major, in the backend's own memory ("device pointers": host memory for the CPU
// backend, GPU memory for CUDA). Shapes are given as [rows, cols] with row = b*T + t for a batch of B sequences of
// T tokens. Weights are the backend's own copy of ModelWeights (same struct, pointers into its memory).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "model/config.hpp"
#include "model/model.hpp"

namespace hs {

enum class Device { CPU, CUDA };
const char* device_name(Device d);
Device parse_device(const std::string& name);  // "cpu" | "cuda"; throws hs::Error otherwise

// Causal (optionally sliding-window) grouped-query attention of T new queries per sequence against a KV cache.
struct AttentionArgs {
    const float* q = nullptr;        // [B*T, n_head*d_head], RoPE applied
    const float* k_cache = nullptr;  // [B, cache_len, n_head_kv*d_head]; keys 0..pos0+T-1 are valid
    const float* v_cache = nullptr;  // same layout as k_cache
    float* z = nullptr;              // out: [B*T, n_head*d_head], head h in columns h*d_head..
    int64_t batch = 0, seq = 0;      // B, T
    int64_t pos0 = 0;                // position of the first new query
    int64_t cache_len = 0;           // capacity of the cache (row stride between sequences)
    int32_t n_head = 0, n_head_kv = 0, d_head = 0;
    float scale = 1.0f;              // multiplies q.k
    int32_t window = 0;              // 0: full causal
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual Device device() const = 0;
    virtual std::string describe() const = 0;

    // ---- memory
    virtual float* allocate(int64_t n) = 0;  // n floats, uninitialised
    virtual void release(float* p) = 0;
    virtual void upload(const float* host, float* dev, int64_t n) = 0;
    virtual void download(const float* dev, float* host, int64_t n) = 0;
    // 2-D strided copy (device to device): rows x cols floats.
    virtual void copy_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
                         int64_t cols) = 0;
    virtual void fill(float* x, int64_t n, float value) = 0;
    virtual void synchronize() = 0;

    // The backend's copy of the weights (CPU: the host weights themselves, shared).
    virtual ModelWeights prepare_weights(const ModelConfig& config, const ModelWeights& host) = 0;

    // ---- ops
    // out[r, :] = scale * table[ids[r], :]; ids are host values in [0, table.rows).
    virtual void embed(const Matrix& table, const int32_t* ids, int64_t rows, float scale, float* out) = 0;
    // y[rows, w.rows] = x[rows, w.cols] . W^T  (+ y when accumulate)
    virtual void matmul(const float* x, const Matrix& w, float* y, int64_t rows, bool accumulate) = 0;
    // One input, several weight matrices (q/k/v, gate/up): y_i[rows, W_i.rows] = x . W_i^T. The matrices share
    // their input width and storage type; a GPU backend converts x to the GEMM input type once. Default: matmul each.
    struct MatmulOut {
        const Matrix* w;
        float* y;
    };
    virtual void matmul_many(const float* x, int64_t rows, std::initializer_list<MatmulOut> outs) {
        for (const MatmulOut& o : outs) matmul(x, *o.w, o.y, rows, false);
    }
    // y[r, :] += b for every row
    virtual void add_bias(float* y, const float* b, int64_t rows, int64_t n) = 0;
    // out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w   (rows of n; out may equal x)
    virtual void rmsnorm(const float* x, const float* w, float* out, int64_t rows, int64_t n, float eps) = 0;
    // Rotate-half RoPE in place on x[B*T, n_heads*d_head]: dims j and j + d_head/2 of every head rotate by
    // (pos0 + t) * base^(-2j/d_head).
    virtual void rope(float* x, int64_t batch, int64_t seq, int64_t pos0, int32_t n_heads, int32_t d_head,
                      float base) = 0;
    // k/v[B*T, kv_dim] -> cache[B, cache_len, kv_dim] at positions pos0..pos0+T-1.
    virtual void store_kv(const float* kv, float* cache, int64_t batch, int64_t seq, int64_t pos0,
                          int64_t cache_len, int64_t kv_dim) = 0;
    virtual void attention(const AttentionArgs& a) = 0;
    // Softmax probabilities of chosen query rows (t indices into the T new queries), all heads:
    // out (host) [B, n_head, n_rows, pos0 + T]; zero where masked.
    virtual void attention_probs(const AttentionArgs& a, const int32_t* rows, int64_t n_rows, float* out_host) = 0;
    // out[i] = act(gate[i]) * up[i]
    virtual void gated_activation(const float* gate, const float* up, float* out, int64_t n, Activation act) = 0;
    // x += y
    virtual void add(float* x, const float* y, int64_t n) = 0;
    // x[r, col0:col0+cols] *= s for every row (row stride `stride`)
    virtual void scale_columns(float* x, int64_t rows, int64_t stride, int64_t col0, int64_t cols, float s) = 0;
    // x[offsets[i] .. offsets[i] + block) = values[i*block ..] for i < n_blocks (offsets and values are host arrays;
    // one call writes every patch of a layer, so a GPU backend makes one transfer instead of one per patch).
    virtual void write_blocks(float* x, const int64_t* offsets_host, int64_t n_blocks, int32_t block,
                              const float* values_host) = 0;
    // x[r, :] += a[r % a_rows, :] for r < rows (rows of n; a is device memory)
    virtual void add_cyclic(float* x, int64_t rows, const float* a, int64_t a_rows, int64_t n) = 0;

    // ---- backward ops (gradients w.r.t. activations only; the weights are frozen). Training form of attention:
    // keys/values of the same T positions (AttentionArgs with pos0 = 0 and k_cache/v_cache [B, cache_len, kv_dim]).
    // The defaults throw "<op> is not implemented on the <device> backend"; the CPU backend implements all of them
    // (templated kernels in backend/cpu/backward_cpu.hpp, checked in fp64 by the gradient-check tests).
    // dx[rows, w.cols] = dy[rows, w.rows] . W  (+ dx when accumulate)
    virtual void matmul_dx(const float* dy, const Matrix& w, float* dx, int64_t rows, bool accumulate);
    // Backward of rmsnorm: dx (+)= d/dx of (x / rms(x) * w) applied to dy. dx must not alias dy or x.
    virtual void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, int64_t rows, int64_t n,
                                  float eps, bool accumulate);
    // Backward of rope (in place): rotation by minus the angle.
    virtual void rope_backward(float* dx, int64_t batch, int64_t seq, int64_t pos0, int32_t n_heads, int32_t d_head,
                               float base);
    // Backward of attention(a) in the training form (a.pos0 == 0, a.cache_len == a.seq, so the "cache" is just the
    // [B*T, kv_dim] keys/values): dz [B*T, q_dim] -> dq [B*T, q_dim], dk/dv [B*T, kv_dim] (overwritten). The
    // probabilities are recomputed from a.q and a.k_cache.
    virtual void attention_backward(const AttentionArgs& a, const float* dz, float* dq, float* dk, float* dv);
    // Backward of gated_activation: dgate = act'(gate) * up * dout, dup = act(gate) * dout (dgate may alias dout).
    virtual void gated_activation_backward(const float* gate, const float* up, const float* dout, float* dgate,
                                           float* dup, int64_t n, Activation act);
    // Cross-entropy per row against host targets, in place: logits <- grad_scale * (softmax - onehot(target)).
    // loss_host[r] = -log p(target) and correct_host[r] = (argmax == target); either may be null.
    virtual void softmax_cross_entropy(float* logits, const int32_t* targets_host, int64_t rows, int64_t n_vocab,
                                       double grad_scale, double* loss_host, uint8_t* correct_host);
    // out_host[h] += sum over rows of <a[r, h*block : (h+1)*block], b[r, same]> for h < n_blocks (row stride).
    virtual void head_dots(const float* a, const float* b, int64_t rows, int64_t stride, int32_t n_blocks,
                           int32_t block, double* out_host);
};

struct BackendOptions {
    int threads = 0;                          // CPU: OpenBLAS threads (<= 0: OpenBLAS's default)
    int gpu = -1;                             // CUDA: device index; -1: the MPI local rank modulo the GPU count
    WeightType gpu_weights = WeightType::BF16;  // CUDA: how weight matrices are stored (fp32 = exact fp32 compute)
    std::string cpu_kernels = "auto";  // CPU: instruction set of the native-precision kernels (auto = the best the
                                       // CPU runs; scalar | avx2 | avx512 | avx512-vnni force a lower one)
    std::string native_prefill = "auto";  // CPU: how prompts of >= 8 tokens multiply quantised blocks: auto (int8
                                          // tiles for short prompts, see cpu::NativePrefill) | int8 | f32
};

// The CPU backend (OpenBLAS for fp32 weights; our kernels for bf16 and native blocks). threads <= 0: keep OpenBLAS's
// default. kernels, native_prefill: as BackendOptions::cpu_kernels and ::native_prefill.
// onednn: bf16 prefills of few rows through oneDNN where the build and the CPU have it (backend/cpu/onednn_gemm.hpp;
// HEADSWEEP_ONEDNN=off in the environment turns it off too).
std::unique_ptr<Backend> make_cpu_backend(int threads = 0, const std::string& kernels = "auto",
                                          const std::string& native_prefill = "auto", bool onednn = true);
// CPU or CUDA; CUDA throws hs::Error when the build has no CUDA or no device is present.
std::unique_ptr<Backend> make_backend(Device device, const BackendOptions& options);
inline std::unique_ptr<Backend> make_backend(Device device, int threads = 0) {
    BackendOptions o;
    o.threads = threads;
    return make_backend(device, o);
}

// RAII device array.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    DeviceBuffer(Backend& be, int64_t n) : be_(&be), n_(n), p_(n > 0 ? be.allocate(n) : nullptr) {}
    ~DeviceBuffer() { reset(); }
    DeviceBuffer(DeviceBuffer&& o) noexcept : be_(o.be_), n_(o.n_), p_(o.p_) { o.p_ = nullptr; o.n_ = 0; }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        if (this != &o) { reset(); be_ = o.be_; n_ = o.n_; p_ = o.p_; o.p_ = nullptr; o.n_ = 0; }
        return *this;
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    float* get() const { return p_; }
    int64_t size() const { return n_; }
    // Grow (contents discarded) when smaller than n.
    void ensure(Backend& be, int64_t n) { if (n > n_ || be_ != &be) { reset(); be_ = &be; n_ = n; p_ = be.allocate(n); } }
    void reset() { if (p_) be_->release(p_); p_ = nullptr; n_ = 0; }

private:
    Backend* be_ = nullptr;
    int64_t n_ = 0;
    float* p_ = nullptr;
};

}  // namespace hs
