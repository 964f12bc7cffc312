// The CUDA backend: GPU memory (stream-ordered allocator), weights as bf16/fp16/fp32 copies made once at load,
// cuBLAS GEMMs with fp32 accumulation, the kernels of kernels.cuh for everything else. One stream per backend;
// every op is queued on it and the host waits only where data comes back (download, attention_probs, ...).
//
// Errors: every CUDA and cuBLAS call is checked and every launch is followed by cudaGetLastError; an error names
// the op ("cuda backend: rmsnorm: an illegal memory access was encountered"). Kernel faults surface at the next
// synchronising call; HEADSWEEP_CUDA_SYNC=1 synchronises after every op so that the failing op is the one named.
//
// Built twice: by nvcc into the library (make_backend), and by a plain C++ compiler with HS_CUDA_EMULATION for
// the CPU emulator of tests/cuda_emu (make_emulated_cuda_backend), which is how CI tests this file.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cpu/ops_cpu.hpp"
#include "backend/cuda/kernels.cuh"
#include "util/error.hpp"

#if defined(HS_CUDA_EMULATION)
#include "emulated_backend.hpp"
#endif

namespace hs {
namespace {
HS_CUDA_NAMESPACE_PRELUDE

void check_cuda(cudaError_t e, const char* op) {
    if (e != cudaSuccess) fail("cuda backend: ", op, ": ", cudaGetErrorString(e));
}
void check_cublas(cublasStatus_t s, const char* op) {
    if (s != CUBLAS_STATUS_SUCCESS) fail("cuda backend: ", op, " (cuBLAS): ", cublasGetStatusString(s));
}

cudaDataType cuda_type(WeightType t) {
    switch (t) {
        case WeightType::F32: return CUDA_R_32F;
        case WeightType::BF16: return CUDA_R_16BF;
        case WeightType::F16: return CUDA_R_16F;
    }
    return CUDA_R_32F;
}
size_t type_bytes(WeightType t) { return t == WeightType::F32 ? 4 : 2; }

// This process's rank among the MPI ranks of its node (0 outside MPI): ranks of a node share its GPUs round-robin.
int local_rank() {
    for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "PMI_LOCAL_RANK"})
        if (const char* v = std::getenv(name); v && *v) return std::max(0, std::atoi(v));
    return 0;
}

// Threads for a row kernel over rows of n: a multiple of 32, at most kThreads.
int row_threads(int64_t n) { return int(std::min<int64_t>(kThreads, std::max<int64_t>(32, (n + 31) / 32 * 32))); }

class CudaBackend final : public Backend {
public:
    explicit CudaBackend(const BackendOptions& o) : weights_type_(o.gpu_weights), gpu_(o.gpu) {
        int count = 0;
        const cudaError_t e = cudaGetDeviceCount(&count);
        // The runtime's last error is per thread and sticky: drop whatever an earlier failure (a backend that could
        // not start, say) left there, so that the first op's launch check does not report it as its own.
        cudaGetLastError();
        if (e != cudaSuccess || count == 0)
            fail("cuda backend: no CUDA device is available (", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices",
                 "); use --device cpu");
        gpu_ = o.gpu >= 0 ? o.gpu : local_rank() % count;
        if (gpu_ >= count) fail("cuda backend: no GPU ", gpu_, " (this machine has ", count, ")");
        check_cuda(cudaSetDevice(gpu_), "select the device");
        check_cuda(cudaGetDeviceProperties(&props_, gpu_), "read the device properties");
        check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "create a stream");
        // Keep freed memory in the pool: scratch buffers come and go every work item.
        cudaMemPool_t pool;
        check_cuda(cudaDeviceGetDefaultMemPool(&pool, gpu_), "get the memory pool");
        uint64_t keep = ~uint64_t(0);
        check_cuda(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "configure the memory pool");
        check_cublas(cublasCreate(&blas_), "create a handle");
        check_cublas(cublasSetStream(blas_, stream_), "set the stream");
        check_cublas(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH), "set the math mode");  // fp32 stays fp32
        const char* sync = std::getenv("HEADSWEEP_CUDA_SYNC");
        sync_each_op_ = sync && *sync && std::string(sync) != "0";
    }
    ~CudaBackend() override {
        cudaStreamSynchronize(stream_);
        for (void* p : owned_) cudaFreeAsync(p, stream_);
        for (auto& [key, t] : rope_) {
            cudaFreeAsync(t.cos, stream_);
            cudaFreeAsync(t.sin, stream_);
        }
        for (void* p : {scratch16_.p, ids_.p, offsets_.p, values_.p, probs_.p, rows_.p, stage_.p})
            if (p) cudaFreeAsync(p, stream_);
        cudaStreamSynchronize(stream_);
        cublasDestroy(blas_);
        cudaStreamDestroy(stream_);
    }

    Device device() const override { return Device::CUDA; }
    std::string describe() const override {
        return "cuda:" + std::to_string(gpu_) + " (" + props_.name + ", sm_" + std::to_string(props_.major) +
               std::to_string(props_.minor) + ", " + std::to_string(props_.totalGlobalMem >> 30) + " GiB; weights " +
               weight_type_name(weights_type_) + ", cuBLAS)";
    }

    // ---- memory
    float* allocate(int64_t n) override {
        void* p = raw_alloc(size_t(std::max<int64_t>(n, 1)) * sizeof(float), "allocate");
        return static_cast<float*>(p);
    }
    void release(float* p) override {
        if (p) check_cuda(cudaFreeAsync(p, stream_), "release");
    }
    void upload(const float* host, float* dev, int64_t n) override {
        if (n > 0) copy_in(dev, host, size_t(n) * sizeof(float), "upload");
    }
    void download(const float* dev, float* host, int64_t n) override {
        if (n > 0) copy_out(host, dev, size_t(n) * sizeof(float), "download");
    }
    void copy_2d(const float* src, int64_t ss, float* dst, int64_t ds, int64_t rows, int64_t cols) override {
        if (rows <= 0 || cols <= 0) return;
        check_cuda(cudaMemcpy2DAsync(dst, size_t(ds) * 4, src, size_t(ss) * 4, size_t(cols) * 4, size_t(rows),
                                     cudaMemcpyDeviceToDevice, stream_),
                   "copy_2d");
        after("copy_2d");
    }
    void fill(float* x, int64_t n, float v) override {
        if (n <= 0) return;
        HS_LAUNCH(fill_kernel, grid_for(n), kThreads, 0, stream_, x, n, v);
        after("fill");
    }
    void synchronize() override { check_cuda(cudaStreamSynchronize(stream_), "synchronize"); }

    // ---- weights: matrices as weights_type_ (converted on the GPU), vectors fp32. Tied matrices stay shared.
    ModelWeights prepare_weights(const ModelConfig& c, const ModelWeights& host) override {
        ModelWeights w = host;
        w.arena.reset();  // the device copy does not own host memory
        std::unordered_map<const void*, void*> done;
        auto vec = [&](float*& p, int64_t n) {
            if (!p) return;
            auto it = done.find(p);
            if (it != done.end()) { p = static_cast<float*>(it->second); return; }
            void* d = raw_alloc(size_t(n) * 4, "weights");
            owned_.push_back(d);
            check_cuda(cudaMemcpyAsync(d, p, size_t(n) * 4, cudaMemcpyHostToDevice, stream_), "upload weights");
            done[p] = d;
            p = static_cast<float*>(d);
        };
        // Host matrices in another precision (--precision bf16/native) are decoded to fp32 one at a time first.
        std::vector<float> decoded;
        auto mat = [&](Matrix& m) {
            const void* key = m.type == WeightType::F32 ? static_cast<const void*>(m.data)
                              : m.type == WeightType::GGML ? m.blocks : static_cast<const void*>(m.data16);
            if (!key) return;
            auto it = done.find(key);
            if (it != done.end()) {
                set_matrix(m, it->second);
                return;
            }
            const float* src = m.data;
            if (m.type != WeightType::F32) {
                decoded.resize(size_t(m.rows * m.cols));
                read_rows(m, 0, m.rows, decoded.data());
                src = decoded.data();
            }
            void* d = upload_matrix(src, m.rows * m.cols);
            synchronize();  // `decoded` is reused by the next matrix
            done[key] = d;
            set_matrix(m, d);
        };
        mat(w.token_embd);
        vec(w.output_norm, c.d_model);
        mat(w.output);
        for (LayerWeights& L : w.layers) {
            vec(L.attn_norm, c.d_model);
            mat(L.wq);
            mat(L.wk);
            mat(L.wv);
            vec(L.bq, c.q_dim());
            vec(L.bk, c.kv_dim());
            vec(L.bv, c.kv_dim());
            vec(L.q_norm, c.d_head);
            vec(L.k_norm, c.d_head);
            mat(L.wo);
            vec(L.post_attn_norm, c.d_model);
            vec(L.ffn_norm, c.d_model);
            mat(L.w_gate);
            mat(L.w_up);
            mat(L.w_down);
            vec(L.post_ffn_norm, c.d_model);
        }
        check_cuda(cudaStreamSynchronize(stream_), "upload weights");
        return w;
    }

    // ---- ops
    void embed(const Matrix& table, const int32_t* ids, int64_t rows, float scale, float* out) override {
        if (rows <= 0) return;
        for (int64_t r = 0; r < rows; ++r)
            check(ids[r] >= 0 && ids[r] < table.rows, "token id ", ids[r], " is outside the vocabulary (",
                  table.rows, " tokens)");
        int32_t* d_ids = static_cast<int32_t*>(ids_.ensure(*this, size_t(rows) * 4));
        copy_in(d_ids, ids, size_t(rows) * 4, "embed");
        const unsigned grid = unsigned(rows);
        const int threads = row_threads(table.cols);
        switch (table.type) {
            case WeightType::F32:
                HS_LAUNCH(embed_kernel<float>, grid, threads, 0, stream_, table.data, table.cols, d_ids, scale, out);
                break;
            case WeightType::BF16:
                HS_LAUNCH(embed_kernel<hs_bf16>, grid, threads, 0, stream_, static_cast<const hs_bf16*>(table.data16),
                          table.cols, d_ids, scale, out);
                break;
            case WeightType::F16:
                HS_LAUNCH(embed_kernel<hs_f16>, grid, threads, 0, stream_, static_cast<const hs_f16*>(table.data16),
                          table.cols, d_ids, scale, out);
                break;
        }
        after("embed");
    }

    // y[rows, out] = x[rows, in] . W^T. Column-major view: y^T (out x rows) = op_T(W as in x out) . x^T (in x rows).
    void matmul(const float* x, const Matrix& w, float* y, int64_t rows, bool acc) override {
        if (rows <= 0) return;
        weight_gemm(CUBLAS_OP_T, w, x, w.cols, y, w.rows, rows, acc, "matmul");
    }
    void matmul_many(const float* x, int64_t rows, std::initializer_list<MatmulOut> outs) override {
        if (rows <= 0 || outs.size() == 0) return;
        const Matrix& first = *outs.begin()->w;
        for (const MatmulOut& o : outs)
            check(o.w->cols == first.cols && o.w->type == first.type,
                  "cuda backend: matmul_many needs matrices of one input width and type");
        const void* b = gemm_input(x, rows * first.cols, first.type);  // converted once for all of them
        for (const MatmulOut& o : outs) weight_gemm_on(CUBLAS_OP_T, *o.w, b, o.w->cols, o.y, o.w->rows, rows, false, "matmul");
    }
    void add_bias(float* y, const float* b, int64_t rows, int64_t n) override {
        if (rows * n <= 0) return;
        HS_LAUNCH(add_bias_kernel, grid_for(rows * n), kThreads, 0, stream_, y, b, rows, n);
        after("add_bias");
    }
    void rmsnorm(const float* x, const float* w, float* out, int64_t rows, int64_t n, float eps) override {
        if (rows <= 0) return;
        check(rows <= int64_t(0x7fffffff), "cuda backend: rmsnorm: too many rows (", rows, ")");
        HS_LAUNCH(rmsnorm_kernel, unsigned(rows), row_threads(n), 0, stream_, x, w, out, n, eps);
        after("rmsnorm");
    }
    void rope(float* x, int64_t batch, int64_t seq, int64_t pos0, int32_t n_heads, int32_t d_head,
              float base) override {
        rope_apply(x, batch, seq, pos0, n_heads, d_head, base, false, "rope");
    }
    void store_kv(const float* kv, float* cache, int64_t batch, int64_t seq, int64_t pos0, int64_t cache_len,
                  int64_t kv_dim) override {
        // One 2-D copy: B rows of seq*kv_dim floats, into rows of the cache (stride cache_len*kv_dim) at pos0.
        check_cuda(cudaMemcpy2DAsync(cache + pos0 * kv_dim, size_t(cache_len * kv_dim) * 4, kv,
                                     size_t(seq * kv_dim) * 4, size_t(seq * kv_dim) * 4, size_t(batch),
                                     cudaMemcpyDeviceToDevice, stream_),
                   "store_kv");
        after("store_kv");
    }
    void attention(const AttentionArgs& a) override {
        check_attention(a, "attention");
        const int dpl = (a.d_head + 31) / 32;
        // Head dims up to 128 (every model we run): keys staged in shared memory per block of 8 query rows.
        // Larger heads: the kernel that reads keys per row.
        const bool tiled = a.d_head <= kTileHeadDim;
        const int rows_per_block = tiled ? kTileWarps : kAttnWarps;
        const dim3 grid(unsigned((a.seq + rows_per_block - 1) / rows_per_block), unsigned(a.batch * a.n_head));
        auto launch = [&](auto kernel) {
            HS_LAUNCH(kernel, grid, rows_per_block * 32, 0, stream_, a.q, a.k_cache, a.v_cache, a.z, a.seq, a.pos0,
                      a.cache_len, a.n_head, a.n_head_kv, a.d_head, a.scale, a.window);
        };
        if (tiled) {
            if (dpl <= 1) launch(attention_tiled_kernel<1>);
            else if (dpl <= 2) launch(attention_tiled_kernel<2>);
            else launch(attention_tiled_kernel<4>);
        } else {
            launch(attention_kernel<8>);
        }
        after("attention");
    }
    void attention_probs(const AttentionArgs& a, const int32_t* rows, int64_t n_rows, float* out_host) override {
        check_attention(a, "attention_probs");
        if (n_rows <= 0) return;
        for (int64_t i = 0; i < n_rows; ++i)
            check(rows[i] >= 0 && rows[i] < a.seq, "attention_probs: row ", rows[i], " outside the sequence");
        const int64_t n_keys = a.pos0 + a.seq, n_out = a.batch * a.n_head * n_rows * n_keys;
        int32_t* d_rows = static_cast<int32_t*>(rows_.ensure(*this, size_t(n_rows) * 4));
        float* d_out = static_cast<float*>(probs_.ensure(*this, size_t(n_out) * 4));
        copy_in(d_rows, rows, size_t(n_rows) * 4, "attention_probs");
        const dim3 grid(unsigned(n_rows), unsigned(a.batch * a.n_head));
        HS_LAUNCH(attention_probs_kernel, grid, kThreads, 0, stream_, a.q, a.k_cache, d_rows, n_rows, d_out, a.seq,
                  a.pos0, a.cache_len, a.n_head, a.n_head_kv, a.d_head, a.scale, a.window);
        after("attention_probs");
        download(d_out, out_host, n_out);
    }
    void gated_activation(const float* g, const float* u, float* out, int64_t n, Activation act) override {
        if (n <= 0) return;
        HS_LAUNCH(gated_activation_kernel, grid_for(n), kThreads, 0, stream_, g, u, out, n,
                  act == Activation::SILU ? 0 : 1);
        after("gated_activation");
    }
    void add(float* x, const float* y, int64_t n) override {
        if (n <= 0) return;
        HS_LAUNCH(add_kernel, grid_for(n), kThreads, 0, stream_, x, y, n);
        after("add");
    }
    void scale_columns(float* x, int64_t rows, int64_t stride, int64_t col0, int64_t cols, float s) override {
        if (rows * cols <= 0) return;
        HS_LAUNCH(scale_columns_kernel, grid_for(rows * cols), kThreads, 0, stream_, x, rows, stride, col0, cols, s);
        after("scale_columns");
    }
    void write_blocks(float* x, const int64_t* offsets, int64_t n_blocks, int32_t block, const float* values) override {
        if (n_blocks <= 0 || block <= 0) return;
        auto* d_off = static_cast<int64_t*>(offsets_.ensure(*this, size_t(n_blocks) * 8));
        auto* d_val = static_cast<float*>(values_.ensure(*this, size_t(n_blocks) * block * 4));
        copy_in(d_off, offsets, size_t(n_blocks) * 8, "write_blocks");
        copy_in(d_val, values, size_t(n_blocks) * block * 4, "write_blocks");
        HS_LAUNCH(write_blocks_kernel, grid_for(n_blocks * block), kThreads, 0, stream_, x, d_off, n_blocks, block,
                  d_val);
        after("write_blocks");
    }
    void add_cyclic(float* x, int64_t rows, const float* a, int64_t a_rows, int64_t n) override {
        if (rows * n <= 0) return;
        check(a_rows > 0, "add_cyclic: a has no rows");
        HS_LAUNCH(add_cyclic_kernel, grid_for(rows * n), kThreads, 0, stream_, x, a, rows, a_rows, n);
        after("add_cyclic");
    }

    // ---- backward ops (gradients w.r.t. activations; the weights are frozen)
    void matmul_dx(const float* dy, const Matrix& w, float* dx, int64_t rows, bool acc) override {
        if (rows <= 0) return;
        // dx[rows, in] = dy[rows, out] . W[out, in]; column-major: dx^T (in x rows) = W (in x out) . dy^T.
        weight_gemm(CUBLAS_OP_N, w, dy, w.rows, dx, w.cols, rows, acc, "matmul_dx");
    }
    void rope_backward(float* dx, int64_t batch, int64_t seq, int64_t pos0, int32_t n_heads, int32_t d_head,
                       float base) override {
        rope_apply(dx, batch, seq, pos0, n_heads, d_head, base, true, "rope_backward");
    }
    void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, int64_t rows, int64_t n,
                          float eps, bool acc) override {
        if (rows <= 0) return;
        HS_LAUNCH(rmsnorm_backward_kernel, unsigned(rows), row_threads(n), 0, stream_, x, w, dy, dx, n, eps,
                  acc ? 1 : 0);
        after("rmsnorm_backward");
    }
    void gated_activation_backward(const float* g, const float* u, const float* dout, float* dg, float* du, int64_t n,
                                   Activation act) override {
        if (n <= 0) return;
        HS_LAUNCH(gated_activation_backward_kernel, grid_for(n), kThreads, 0, stream_, g, u, dout, dg, du, n,
                  act == Activation::SILU ? 0 : 1);
        after("gated_activation_backward");
    }
    void attention_backward(const AttentionArgs& a, const float* dz, float* dq, float* dk, float* dv) override {
        check(a.pos0 == 0 && a.cache_len == a.seq, "attention_backward: needs the training form (pos0 = 0, "
              "cache_len = seq), got pos0 ", a.pos0, ", cache_len ", a.cache_len, ", seq ", a.seq);
        check_attention(a, "attention_backward");
        const size_t kv_bytes = size_t(a.batch * a.seq) * a.n_head_kv * a.d_head * 4;
        check_cuda(cudaMemsetAsync(dk, 0, kv_bytes, stream_), "attention_backward");
        check_cuda(cudaMemsetAsync(dv, 0, kv_bytes, stream_), "attention_backward");
        const dim3 grid(unsigned((a.seq + kAttnWarps - 1) / kAttnWarps), unsigned(a.batch * a.n_head));
        const int dpl = (a.d_head + 31) / 32;
        auto launch = [&](auto kernel) {
            HS_LAUNCH(kernel, grid, kAttnWarps * 32, 0, stream_, a.q, a.k_cache, a.v_cache, dz, dq, dk, dv, a.seq,
                      a.n_head, a.n_head_kv, a.d_head, a.scale, a.window);
        };
        if (dpl <= 1) launch(attention_backward_kernel<1>);
        else if (dpl <= 2) launch(attention_backward_kernel<2>);
        else if (dpl <= 4) launch(attention_backward_kernel<4>);
        else launch(attention_backward_kernel<8>);
        after("attention_backward");
    }
    void softmax_cross_entropy(float* logits, const int32_t* targets, int64_t rows, int64_t V, double grad_scale,
                               double* loss, uint8_t* correct) override {
        if (rows <= 0) return;
        for (int64_t r = 0; r < rows; ++r)
            check(targets[r] >= 0 && targets[r] < V, "cross-entropy: target ", targets[r], " outside the vocabulary");
        auto* d_t = static_cast<int32_t*>(ids_.ensure(*this, size_t(rows) * 4));
        copy_in(d_t, targets, size_t(rows) * 4, "softmax_cross_entropy");
        // One scratch area: rows doubles of loss, then rows bytes of correct.
        auto* d_out = static_cast<unsigned char*>(values_.ensure(*this, size_t(rows) * 9));
        double* d_loss = reinterpret_cast<double*>(d_out);
        uint8_t* d_correct = d_out + size_t(rows) * 8;
        HS_LAUNCH(softmax_cross_entropy_kernel, unsigned(rows), kThreads, 0, stream_, logits, d_t, V, grad_scale,
                  d_loss, d_correct);
        after("softmax_cross_entropy");
        if (loss) copy_out(loss, d_loss, size_t(rows) * 8, "softmax_cross_entropy");
        if (correct) copy_out(correct, d_correct, size_t(rows), "softmax_cross_entropy");
    }
    void head_dots(const float* a, const float* b, int64_t rows, int64_t stride, int32_t n_blocks, int32_t block,
                   double* out) override {
        if (n_blocks <= 0) return;
        auto* d_out = static_cast<double*>(values_.ensure(*this, size_t(n_blocks) * 8));
        HS_LAUNCH(head_dots_kernel, unsigned(n_blocks), kThreads, 0, stream_, a, b, rows, stride, block, d_out);
        after("head_dots");
        std::vector<double> h(static_cast<size_t>(n_blocks));
        copy_out(h.data(), d_out, h.size() * 8, "head_dots");
        for (int32_t i = 0; i < n_blocks; ++i) out[i] += h[size_t(i)];
    }

private:
    // A grow-only device scratch area.
    struct Scratch {
        void* p = nullptr;
        size_t bytes = 0;
        void* ensure(CudaBackend& be, size_t n) {
            if (n > bytes) {
                if (p) check_cuda(cudaFreeAsync(p, be.stream_), "free scratch");
                p = be.raw_alloc(n, "scratch");
                bytes = n;
            }
            return p;
        }
    };
    struct RopeTableDev {
        int64_t n_pos = 0;
        float* cos = nullptr;
        float* sin = nullptr;
    };

    void* raw_alloc(size_t bytes, const char* what) {
        void* p = nullptr;
        const cudaError_t e = cudaMallocAsync(&p, std::max<size_t>(bytes, 256), stream_);
        if (e != cudaSuccess) {
            cudaGetLastError();  // clear the sticky error so the message below is the one reported
            size_t free_b = 0, total_b = 0;
            cudaMemGetInfo(&free_b, &total_b);
            fail("cuda backend: out of GPU memory in ", what, ": ", bytes >> 20, " MiB requested, ", free_b >> 20,
                 " MiB free of ", total_b >> 20, " MiB (", cudaGetErrorString(e), ")");
        }
        return p;
    }
    // Host -> device copy of a small staging array; synchronous because the host array is the caller's.
    void copy_in(void* dev, const void* host, size_t bytes, const char* op) {
        check_cuda(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, stream_), op);
        check_cuda(cudaStreamSynchronize(stream_), op);
    }
    void copy_out(void* host, const void* dev, size_t bytes, const char* op) {
        check_cuda(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, stream_), op);
        check_cuda(cudaStreamSynchronize(stream_), op);
    }
    // After a launch or an async call: the launch error now, an execution error now only in sync mode.
    void after(const char* op) {
        check_cuda(cudaGetLastError(), op);
        if (sync_each_op_) check_cuda(cudaStreamSynchronize(stream_), op);
    }
    void set_matrix(Matrix& m, void* d) {
        m.type = weights_type_;
        m.blocks = nullptr;
        if (weights_type_ == WeightType::F32) {
            m.data = static_cast<float*>(d);
            m.data16 = nullptr;
        } else {
            m.data = nullptr;
            m.data16 = d;
        }
    }
    static const void* weights_of(const Matrix& w) {
        return w.type == WeightType::F32 ? static_cast<const void*>(w.data) : w.data16;
    }
    // fp32 host matrix -> device copy of weights_type_, converted on the GPU in chunks through a staging buffer.
    void* upload_matrix(const float* host, int64_t n) {
        void* d = raw_alloc(size_t(n) * type_bytes(weights_type_), "weights");
        owned_.push_back(d);
        if (weights_type_ == WeightType::F32) {
            check_cuda(cudaMemcpyAsync(d, host, size_t(n) * 4, cudaMemcpyHostToDevice, stream_), "upload weights");
            return d;
        }
        const int64_t chunk = int64_t(1) << 24;  // 64 MiB of fp32 per step
        float* stage = static_cast<float*>(stage_.ensure(*this, size_t(std::min(n, chunk)) * 4));
        for (int64_t i = 0; i < n; i += chunk) {
            const int64_t m = std::min(chunk, n - i);
            check_cuda(cudaMemcpyAsync(stage, host + i, size_t(m) * 4, cudaMemcpyHostToDevice, stream_),
                       "upload weights");
            if (weights_type_ == WeightType::BF16)
                HS_LAUNCH(convert_kernel<hs_bf16>, grid_for(m), kThreads, 0, stream_, stage,
                          static_cast<hs_bf16*>(d) + i, m);
            else
                HS_LAUNCH(convert_kernel<hs_f16>, grid_for(m), kThreads, 0, stream_, stage,
                          static_cast<hs_f16*>(d) + i, m);
            after("convert weights");
            check_cuda(cudaStreamSynchronize(stream_), "upload weights");  // the stage is reused next step
        }
        return d;
    }
    // out[rows, n_out] (+)= in[rows, n_in] . op(W) with W [w.rows, w.cols] row-major, i.e. (w.cols x w.rows)
    // column-major: op T gives in . W^T (n_in = w.cols, n_out = w.rows), op N gives in . W (n_in = w.rows,
    // n_out = w.cols). In column-major terms out^T (n_out x rows) = op(W) . in^T, fp32 accumulation.
    void weight_gemm(cublasOperation_t op, const Matrix& w, const float* in, int64_t n_in, float* out, int64_t n_out,
                     int64_t rows, bool acc, const char* name) {
        weight_gemm_on(op, w, gemm_input(in, rows * n_in, w.type), n_in, out, n_out, rows, acc, name);
    }
    // The same with the input already in the weights' type (b: [rows, n_in]).
    void weight_gemm_on(cublasOperation_t op, const Matrix& w, const void* b, int64_t n_in, float* out, int64_t n_out,
                        int64_t rows, bool acc, const char* name) {
        check(rows <= 0x7fffffff && n_in <= 0x7fffffff && n_out <= 0x7fffffff, "cuda backend: ", name,
              ": a dimension exceeds cuBLAS's int range");
        const float alpha = 1.0f, beta = acc ? 1.0f : 0.0f;
        check_cublas(cublasGemmEx(blas_, op, CUBLAS_OP_N, int(n_out), int(rows), int(n_in), &alpha, weights_of(w),
                                  cuda_type(w.type), int(w.cols), b, cuda_type(w.type), int(n_in), &beta, out,
                                  CUDA_R_32F, int(n_out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     name);
        after(name);
    }
    // The B operand of a GEMM against weights of type t: x itself (fp32) or its 16-bit copy.
    const void* gemm_input(const float* x, int64_t n, WeightType t) {
        if (t == WeightType::F32) return x;
        void* d = scratch16_.ensure(*this, size_t(n) * 2);
        if (t == WeightType::BF16)
            HS_LAUNCH(convert_kernel<hs_bf16>, grid_for(n), kThreads, 0, stream_, x, static_cast<hs_bf16*>(d), n);
        else
            HS_LAUNCH(convert_kernel<hs_f16>, grid_for(n), kThreads, 0, stream_, x, static_cast<hs_f16*>(d), n);
        after("convert activations");
        return d;
    }
    void check_attention(const AttentionArgs& a, const char* op) {
        check(a.d_head > 0 && a.d_head <= kMaxHeadDim, "cuda backend: ", op, ": head dimension ", a.d_head,
              " is not supported (at most ", kMaxHeadDim, ")");
        check(a.n_head_kv > 0 && a.n_head % a.n_head_kv == 0, "cuda backend: ", op, ": ", a.n_head,
              " query heads do not divide into ", a.n_head_kv, " kv heads");
        check(a.batch * a.n_head <= 65535 && (a.seq + kAttnWarps - 1) / kAttnWarps <= 0x7fffffff,
              "cuda backend: ", op, ": batch x heads = ", a.batch * a.n_head, " exceeds 65535");
    }
    void rope_apply(float* x, int64_t batch, int64_t seq, int64_t pos0, int32_t n_heads, int32_t d_head, float base,
                    bool inverse, const char* op) {
        const int64_t total = batch * seq * n_heads * (d_head / 2);
        if (total <= 0) return;
        const RopeTableDev& t = rope_table(base, d_head, pos0 + seq);
        HS_LAUNCH(rope_kernel, grid_for(total), kThreads, 0, stream_, x, batch * seq, seq, pos0, n_heads, d_head,
                  static_cast<const float*>(t.cos), static_cast<const float*>(t.sin), inverse ? 1 : 0);
        after(op);
    }
    // The CPU backend's cos/sin table (computed in double and rounded once, so both backends rotate by the same
    // values), uploaded whenever it grows (it grows by doubling).
    const RopeTableDev& rope_table(float base, int32_t d_head, int64_t n_pos) {
        RopeTableDev& t = rope_[{base, d_head}];
        if (t.n_pos >= n_pos) return t;
        cpu::RopeTable host;
        cpu::rope_table_extend(host, base, d_head, std::max<int64_t>(n_pos, 2 * t.n_pos));
        if (t.cos) check_cuda(cudaFreeAsync(t.cos, stream_), "rope table");
        if (t.sin) check_cuda(cudaFreeAsync(t.sin, stream_), "rope table");
        t.cos = static_cast<float*>(raw_alloc(host.cos.size() * 4, "rope table"));
        t.sin = static_cast<float*>(raw_alloc(host.sin.size() * 4, "rope table"));
        copy_in(t.cos, host.cos.data(), host.cos.size() * 4, "rope table");
        copy_in(t.sin, host.sin.data(), host.sin.size() * 4, "rope table");
        t.n_pos = host.n_pos;
        return t;
    }

    WeightType weights_type_;
    int gpu_;
    cudaDeviceProp props_{};
    cudaStream_t stream_ = nullptr;
    cublasHandle_t blas_ = nullptr;
    bool sync_each_op_ = false;
    std::vector<void*> owned_;  // weight copies
    Scratch scratch16_, ids_, offsets_, values_, probs_, rows_, stage_;
    std::map<std::pair<float, int32_t>, RopeTableDev> rope_;
};

}  // namespace

#if defined(HS_CUDA_EMULATION)
std::unique_ptr<Backend> make_emulated_cuda_backend(const BackendOptions& options) {
    return std::make_unique<CudaBackend>(options);
}
#else
std::unique_ptr<Backend> make_backend(Device device, const BackendOptions& options) {
    if (device == Device::CUDA) return std::make_unique<CudaBackend>(options);
    return make_cpu_backend(options.threads, options.cpu_kernels, options.native_prefill);
}
#endif

}  // namespace hs
