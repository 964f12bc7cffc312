// The CPU backend: host memory, OpenBLAS GEMMs, the ops of ops_cpu.cpp.
#include <cblas.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "backend/backend.hpp"
#include "backend/cpu/backward_cpu.hpp"
#include "backend/cpu/cpu_runtime.hpp"
#include "backend/cpu/matmul_blocks.hpp"
#include "backend/cpu/onednn_gemm.hpp"
#include "backend/cpu/thread_pool.hpp"
#include "backend/cpu/ops_cpu.hpp"
#include "util/error.hpp"

extern "C" void openblas_set_num_threads(int num_threads);
extern "C" int openblas_get_num_threads(void);

namespace hs {

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

const char* weight_type_name(WeightType t) {
    switch (t) {
        case WeightType::F32: return "fp32";
        case WeightType::BF16: return "bf16";
        case WeightType::F16: return "fp16";
        case WeightType::GGML: return "ggml";
    }
    return "?";
}

WeightType parse_weight_type(const std::string& s) {
    if (s == "fp32" || s == "f32") return WeightType::F32;
    if (s == "bf16") return WeightType::BF16;
    if (s == "fp16" || s == "f16") return WeightType::F16;
    fail("unknown weight type '", s, "' (use bf16, fp16 or fp32)");
}

Device parse_device(const std::string& name) {
    if (name == "cpu") return Device::CPU;
    if (name == "cuda") return Device::CUDA;
    fail("unknown device '", name, "' (use cpu or cuda)");
}

namespace {

// The kernels' view of a non-fp32 weight matrix (BF16/F16 elements or the file's GGML blocks).
cpu::BlockMatrix block_matrix(const Matrix& w) {
    cpu::BlockMatrix b;
    b.rows = w.rows;
    b.cols = w.cols;
    switch (w.type) {
        case WeightType::F32: b.type = GgmlType::F32; b.data = w.data; break;
        case WeightType::BF16: b.type = GgmlType::BF16; b.data = w.data16; break;
        case WeightType::F16: b.type = GgmlType::F16; b.data = w.data16; break;
        case WeightType::GGML: b.type = w.block_type; b.data = w.blocks; break;
    }
    b.row_bytes = ggml_row_bytes(b.type, w.cols);
    return b;
}

class CpuBackend final : public Backend {
public:
    CpuBackend(int threads, cpu::KernelIsa isa, cpu::NativePrefill prefill, bool onednn) : threads_(threads) {
        if (threads > 0) openblas_set_num_threads(threads);
        kernels_.isa = isa;
        kernels_.prefill = prefill;
        pool_ = std::make_unique<cpu::ThreadPool>(threads > 0 ? threads : std::max(1, openblas_get_num_threads()));
        kernels_.pool = pool_.get();
        // oneDNN's bf16 GEMM for short bf16 prefills, run sequentially on each of the pool's threads (no OpenMP
        // threads of its own; onednn_gemm.hpp).
        // Not with the exact prefill (--native-prefill f32): oneDNN rounds the activations to bf16.
        if (onednn && !cpu::onednn_disabled_by_env() && prefill != cpu::NativePrefill::F32)
            onednn_ = cpu::OnednnBf16Gemm::create(detect_cpu_features(), &no_onednn_);
        else
            no_onednn_ = !onednn ? "turned off"
                         : prefill == cpu::NativePrefill::F32 ? "native prefill f32, the exact products"
                                                                : "HEADSWEEP_ONEDNN=off";
        kernels_.onednn = onednn_.get();
    }
    Device device() const override { return Device::CPU; }
    std::string describe() const override {
        return "cpu (" + cpu_runtime_tag() + ", kernels " + cpu::kernel_isa_name(kernels_.isa) + ", native prefill " +
               cpu::native_prefill_name(kernels_.prefill) + ", bf16 prefill " +
               (onednn_ ? onednn_->describe() + ", else sgemm" : "sgemm (no oneDNN: " + no_onednn_ + ")") + ")";
    }

    float* allocate(int64_t n) override {
        size_t bytes = ((size_t(std::max<int64_t>(n, 1)) * sizeof(float) + 63) / 64) * 64;
        auto* p = static_cast<float*>(std::aligned_alloc(64, bytes));
        if (!p) fail("cpu backend: out of memory allocating ", bytes >> 20, " MiB");
        return p;
    }
    void release(float* p) override { std::free(p); }
    void upload(const float* host, float* dev, int64_t n) override { copy(host, dev, n); }
    void download(const float* dev, float* host, int64_t n) override { copy(dev, host, n); }
    void copy_2d(const float* src, int64_t ss, float* dst, int64_t ds, int64_t rows, int64_t cols) override {
        if (ss == cols && ds == cols) return copy(src, dst, rows * cols);
        for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * ds, src + r * ss, sizeof(float) * size_t(cols));
    }
    void fill(float* x, int64_t n, float v) override { std::fill(x, x + n, v); }
    void synchronize() override {}

    ModelWeights prepare_weights(const ModelConfig&, const ModelWeights& host) override { return host; }

    void embed(const Matrix& table, const int32_t* ids, int64_t rows, float scale, float* out) override {
        for (int64_t r = 0; r < rows; ++r) {
            check(ids[r] >= 0 && ids[r] < table.rows, "token id ", ids[r], " is outside the vocabulary (",
                  table.rows, " tokens)");
            float* dst = out + r * table.cols;
            if (table.type == WeightType::F32) {
                const float* src = table.data + int64_t(ids[r]) * table.cols;
                for (int64_t i = 0; i < table.cols; ++i) dst[i] = src[i] * scale;
            } else {
                cpu::dequantize_rows(block_matrix(table), ids[r], 1, dst);
                for (int64_t i = 0; i < table.cols; ++i) dst[i] *= scale;
            }
        }
    }
    void matmul(const float* x, const Matrix& w, float* y, int64_t rows, bool acc) override {
        if (w.type == WeightType::F32) return cpu::matmul_cpu(x, w, y, rows, acc);
        cpu::matmul_blocks(x, block_matrix(w), y, rows, acc, kernels_);
    }
    // Decode (few rows) with non-fp32 weights: the matrices' rows as one parallel job on the pool, the activations
    // quantised once (matmul_blocks_many). Otherwise one product after the other.
    void matmul_many(const float* x, int64_t rows, std::initializer_list<MatmulOut> outs) override {
        bool fused = outs.size() <= 4;
        for (const MatmulOut& o : outs)
            fused = fused && o.w->type != WeightType::F32 && o.w->cols == outs.begin()->w->cols &&
                    cpu::uses_int8_path(block_matrix(*o.w).type, o.w->cols, rows, kernels_);
        if (!fused) return Backend::matmul_many(x, rows, outs);
        cpu::BlockProduct ps[4];
        int n = 0;
        for (const MatmulOut& o : outs) ps[n++] = cpu::BlockProduct{block_matrix(*o.w), o.y, false};
        cpu::matmul_blocks_many(x, ps, n, rows, kernels_);
    }
    void add_bias(float* y, const float* b, int64_t rows, int64_t n) override {
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t i = 0; i < n; ++i) y[r * n + i] += b[i];
    }
    void rmsnorm(const float* x, const float* w, float* out, int64_t rows, int64_t n, float eps) override {
        cpu::rmsnorm_cpu(x, w, out, rows, n, eps);
    }
    void rope(float* x, int64_t batch, int64_t seq, int64_t pos0, int32_t n_heads, int32_t d_head,
              float base) override {
        cpu::RopeTable& t = rope_tables_[{base, d_head}];
        cpu::rope_table_extend(t, base, d_head, pos0 + seq);
        cpu::rope_cpu(x, batch, seq, pos0, n_heads, d_head, t);
    }
    void store_kv(const float* kv, float* cache, int64_t batch, int64_t seq, int64_t pos0, int64_t cache_len,
                  int64_t kv_dim) override {
        cpu::store_kv_cpu(kv, cache, batch, seq, pos0, cache_len, kv_dim);
    }
    void attention(const AttentionArgs& a) override { cpu::attention_cpu(a, pool_.get()); }
    void attention_probs(const AttentionArgs& a, const int32_t* rows, int64_t n, float* out) override {
        cpu::attention_probs_cpu(a, rows, n, out);
    }
    void gated_activation(const float* g, const float* u, float* out, int64_t n, Activation act) override {
        cpu::gated_activation_cpu(g, u, out, n, act);
    }
    void add(float* x, const float* y, int64_t n) override {
        for (int64_t i = 0; i < n; ++i) x[i] += y[i];
    }
    void scale_columns(float* x, int64_t rows, int64_t stride, int64_t col0, int64_t cols, float s) override {
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c) x[r * stride + col0 + c] *= s;
    }
    void write_blocks(float* x, const int64_t* offsets, int64_t n_blocks, int32_t block, const float* values) override {
        for (int64_t i = 0; i < n_blocks; ++i)
            std::memcpy(x + offsets[i], values + i * block, sizeof(float) * size_t(block));
    }
    void add_cyclic(float* x, int64_t rows, const float* a, int64_t a_rows, int64_t n) override {
        for (int64_t r = 0; r < rows; ++r) {
            const float* ar = a + (r % a_rows) * n;
            float* xr = x + r * n;
            for (int64_t i = 0; i < n; ++i) xr[i] += ar[i];
        }
    }

    // ---- backward ops
    void matmul_dx(const float* dy, const Matrix& w, float* dx, int64_t rows, bool acc) override {
        if (rows == 0) return;
        if (w.type != WeightType::F32) return cpu::matmul_dx_blocks(dy, block_matrix(w), dx, rows, acc, kernels_);
        // dx[rows, in] = dy[rows, out] . W[out, in]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(w.cols), int(w.rows), 1.0f, dy,
                    int(w.rows), w.data, int(w.cols), acc ? 1.0f : 0.0f, dx, int(w.cols));
    }
    void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, int64_t rows, int64_t n,
                          float eps, bool acc) override {
        cpu::rmsnorm_backward(x, w, dy, dx, rows, n, double(eps), acc);
    }
    void rope_backward(float* dx, int64_t batch, int64_t seq, int64_t pos0, int32_t n_heads, int32_t d_head,
                       float base) override {
        cpu::RopeTable& t = rope_tables_[{base, d_head}];
        cpu::rope_table_extend(t, base, d_head, pos0 + seq);
        cpu::rope_apply(dx, batch, seq, pos0, n_heads, d_head, t.cos.data(), t.sin.data(), /*inverse=*/true);
    }
    void attention_backward(const AttentionArgs& a, const float* dz, float* dq, float* dk, float* dv) override {
        check(a.pos0 == 0 && a.cache_len == a.seq, "attention_backward: needs the training form (pos0 = 0, "
              "cache_len = seq), got pos0 ", a.pos0, ", cache_len ", a.cache_len, ", seq ", a.seq);
        cpu::AttnShape s{a.batch, a.seq, a.n_head, a.n_head_kv, a.d_head, double(a.scale), a.window};
        cpu::attention_backward(a.q, a.k_cache, a.v_cache, dz, dq, dk, dv, s);
    }
    void gated_activation_backward(const float* g, const float* u, const float* dout, float* dg, float* du, int64_t n,
                                   Activation act) override {
        cpu::gated_activation_backward(g, u, dout, dg, du, n, act);
    }
    void softmax_cross_entropy(float* logits, const int32_t* targets, int64_t rows, int64_t V, double grad_scale,
                               double* loss, uint8_t* correct) override {
        for (int64_t r = 0; r < rows; ++r)
            check(targets[r] >= 0 && targets[r] < V, "cross-entropy: target ", targets[r], " outside the vocabulary");
        cpu::softmax_cross_entropy(logits, targets, rows, V, grad_scale, loss, correct);
    }
    void head_dots(const float* a, const float* b, int64_t rows, int64_t stride, int32_t n_blocks, int32_t block,
                   double* out) override {
        cpu::head_dots(a, b, rows, stride, n_blocks, block, out);
    }

private:
    void copy(const float* src, float* dst, int64_t n) {
        if (src != dst && n > 0) std::memmove(dst, src, sizeof(float) * size_t(n));
    }
    int threads_;
    std::unique_ptr<cpu::ThreadPool> pool_;  // our kernels' threads (OpenBLAS keeps its own)
    cpu::KernelOptions kernels_;
    std::unique_ptr<cpu::OnednnBf16Gemm> onednn_;  // nullptr: bf16 prefill on the SGEMM path only
    std::string no_onednn_;                         // why there is none
    std::map<std::pair<float, int32_t>, cpu::RopeTable> rope_tables_;  // per (base, d_head)
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads, const std::string& kernels, const std::string& native_prefill,
                                          bool onednn) {
    const CpuFeatures cpu = detect_cpu_features();
    cpu::KernelIsa isa = cpu::best_kernel_isa(cpu);
    if (!kernels.empty() && kernels != "auto") {
        isa = cpu::parse_kernel_isa(kernels);
        check(cpu::can_run_kernel_isa(cpu, isa), "--cpu-kernels ", kernels, ": this CPU cannot run them (it offers: ",
              cpu.summary(), "; best: ", cpu::kernel_isa_name(cpu::best_kernel_isa(cpu)), ")");
    }
    return std::make_unique<CpuBackend>(threads, isa,
                                        cpu::parse_native_prefill(native_prefill.empty() ? "auto" : native_prefill), onednn);
}

}  // namespace hs
