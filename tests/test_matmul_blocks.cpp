// tests/test_matmul_blocks.cpp: the native-precision matmul kernels (backend/cpu/matmul_blocks.hpp) of every weight
// type and every instruction-set variant this machine can run, against double-precision references.
//
// Three references per product: (1) the exact one, sum of double(x) * double(decode(W)), which the fp32 paths
// (float weights, the SGEMM path) must match to ~1e-5 and the 8-bit GEMV within the activation rounding;
// (2) for the 8-bit GEMV, the same sum with the activations quantised as ggml does (Q8_0 / Q8_K, re-derived here),
// which the kernels must match to float rounding: a wrong scale, offset, min or nibble order cannot hide in the
// activation rounding there; (3) the SCALAR variant, which every SIMD variant must equal up to the order of the
// float sums (their integer block sums are identical).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/matmul_blocks.hpp"
#include "backend/cpu/matmul_blocks_kernels.hpp"
#include "backend/cpu/onednn_gemm.hpp"
#include "gguf/quant.hpp"
#include "util/cpu_features.hpp"
#include "util/error.hpp"
#include "backend/cpu/thread_pool.hpp"
#include <map>
#include <memory>

using namespace hs;

// Kernel options with a pool of `threads` threads (one pool per count, kept for the process).
static hs::cpu::KernelOptions kernel_options(hs::cpu::KernelIsa isa, int threads) {
    static std::map<int, std::unique_ptr<hs::cpu::ThreadPool>> pools;
    auto& p = pools[threads];
    if (!p) p = std::make_unique<hs::cpu::ThreadPool>(threads);
    return hs::cpu::KernelOptions{isa, p.get()};
}
using namespace hs::cpu;

namespace {

constexpr KernelIsa kAllIsas[] = {KernelIsa::SCALAR, KernelIsa::AVX2, KernelIsa::AVX512, KernelIsa::AVX512_VNNI};
constexpr GgmlType kAllTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0,
                                  GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                                  GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

std::vector<KernelIsa> runnable_isas() {
    const CpuFeatures cpu = detect_cpu_features();
    std::vector<KernelIsa> v;
    for (KernelIsa isa : kAllIsas)
        if (can_run_kernel_isa(cpu, isa)) v.push_back(isa);
    return v;
}

bool is_float_type(GgmlType t) { return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16; }
bool is_k_type(GgmlType t) { return t == GgmlType::Q4_K || t == GgmlType::Q5_K || t == GgmlType::Q6_K; }

void put_f16(uint8_t* p, float v) {
    const uint16_t h = fp32_to_fp16(v);
    std::memcpy(p, &h, 2);
}

// A weight matrix of `rows` x `cols`. Types with an encoder: random normal rows (each row its own scale) encoded
// with quantize_row. Q8_0 is also built raw (random bytes, so -128 occurs, which the encoder never writes). The
// other types: random bytes with the fp16 scale fields set to small finite values of either sign.
struct TestMatrix {
    std::vector<uint8_t> bytes;
    BlockMatrix m;
    std::vector<float> decoded;  // rows x cols
};

TestMatrix make_matrix(GgmlType t, int64_t rows, int64_t cols, std::mt19937& rng, bool raw = false) {
    TestMatrix tm;
    const uint64_t rb = ggml_row_bytes(t, cols);
    tm.bytes.resize(rb * rows + 64);  // slack: no kernel may read past the matrix, but a bug should not crash here
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::uniform_real_distribution<float> scale(0.01f, 0.05f);
    std::uniform_int_distribution<int> byte(0, 255), coin(0, 1);
    auto sgn = [&] { return coin(rng) ? 1.0f : -1.0f; };
    if (ggml_type_can_encode(t) && !raw) {
        std::vector<float> row(cols);
        for (int64_t r = 0; r < rows; ++r) {
            const float s = 0.1f + 0.9f * (static_cast<float>(r % 7) / 7.0f);
            for (float& v : row) v = s * nd(rng);
            REQUIRE(quantize_row(t, row.data(), tm.bytes.data() + r * rb, cols));
        }
    } else {
        for (uint64_t i = 0; i < rb * rows; ++i) tm.bytes[i] = static_cast<uint8_t>(byte(rng));
        const int64_t bs = ggml_block_size(t), bb = ggml_block_bytes(t);
        for (int64_t b = 0; b < rows * cols / bs; ++b) {
            uint8_t* p = tm.bytes.data() + b * bb;
            switch (t) {
            case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: put_f16(p, sgn() * scale(rng)); break;
            case GgmlType::Q4_1: case GgmlType::Q5_1:
            case GgmlType::Q4_K: case GgmlType::Q5_K:
                put_f16(p, sgn() * scale(rng));
                put_f16(p + 2, sgn() * scale(rng));
                break;
            case GgmlType::Q6_K: put_f16(p + 208, sgn() * scale(rng) * 0.1f); break;
            default: FAIL("no raw construction for " << ggml_type_name(t));
            }
        }
    }
    tm.m = BlockMatrix{t, tm.bytes.data(), rows, cols, rb};
    tm.decoded.resize(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r) dequantize_row(t, tm.bytes.data() + r * rb, tm.decoded.data() + r * cols, cols);
    REQUIRE(std::all_of(tm.decoded.begin(), tm.decoded.end(), [](float v) { return std::isfinite(v); }));
    return tm;
}

std::vector<float> random_x(int64_t n, int64_t cols, std::mt19937& rng) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(n * cols));
    for (float& v : x) v = nd(rng);
    if (!x.empty()) x[0] = 4.0f;  // an outlier that sets a block's scale
    return x;
}

// The activations as the 8-bit kernels see them (re-derived from ggml's quantize_row_q8_0 / q8_K).
std::vector<double> quantised_activations(GgmlType t, const float* x, int64_t cols) {
    std::vector<double> q(static_cast<size_t>(cols));
    if (is_k_type(t)) {
        for (int64_t b = 0; b < cols / 256; ++b) {
            float amax = 0.0f;
            for (int j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(x[256 * b + j]));
            const float iscale = amax != 0.0f ? 127.0f / amax : 0.0f;
            const float d = amax != 0.0f ? 1.0f / iscale : 0.0f;
            for (int j = 0; j < 256; ++j)
                q[256 * b + j] = double(d) * std::nearbyint(std::clamp(x[256 * b + j] * iscale, -127.0f, 127.0f));
        }
    } else {
        for (int64_t b = 0; b < cols / 32; ++b) {
            float amax = 0.0f;
            for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
            const float d = amax / 127.0f;
            const float id = d != 0.0f ? 1.0f / d : 0.0f;
            const double dh = fp16_to_fp32(fp32_to_fp16(d));
            for (int j = 0; j < 32; ++j)
                q[32 * b + j] = dh * std::roundf(std::clamp(x[32 * b + j] * id, -127.0f, 127.0f));
        }
    }
    return q;
}

double norm(const float* v, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += double(v[i]) * v[i];
    return std::sqrt(s);
}

struct Reference {
    std::vector<double> exact;      // n x rows: sum x * w
    std::vector<double> quantised;  // n x rows: sum q(x) * w (8-bit types)
    std::vector<double> scale;      // n x rows: ||x_i|| * ||w_r|| (the error scale)
    std::vector<double> abs_q;      // n x rows: sum |q(x)| * |w| (the float-rounding scale of the quantised sum)
};

Reference reference(const TestMatrix& tm, const std::vector<float>& x, int64_t n) {
    const int64_t rows = tm.m.rows, cols = tm.m.cols;
    Reference ref;
    ref.exact.assign(n * rows, 0.0);
    ref.quantised.assign(n * rows, 0.0);
    ref.scale.assign(n * rows, 0.0);
    ref.abs_q.assign(n * rows, 0.0);
    for (int64_t i = 0; i < n; ++i) {
        const float* xi = x.data() + i * cols;
        const std::vector<double> q =
            is_float_type(tm.m.type) ? std::vector<double>(xi, xi + cols) : quantised_activations(tm.m.type, xi, cols);
        const double nx = norm(xi, cols);
        for (int64_t r = 0; r < rows; ++r) {
            const float* w = tm.decoded.data() + r * cols;
            double e = 0, qs = 0, aq = 0;
            for (int64_t j = 0; j < cols; ++j) {
                e += double(xi[j]) * w[j];
                qs += q[j] * w[j];
                aq += std::fabs(q[j] * w[j]);
            }
            ref.exact[i * rows + r] = e;
            ref.quantised[i * rows + r] = qs;
            ref.scale[i * rows + r] = nx * norm(w, cols);
            ref.abs_q[i * rows + r] = aq;
        }
    }
    return ref;
}

// Largest |y - want| / (scale + tiny) over the output.
double worst(const std::vector<float>& y, const std::vector<double>& want, const std::vector<double>& scale) {
    double m = 0;
    for (size_t k = 0; k < y.size(); ++k) m = std::max(m, std::fabs(double(y[k]) - want[k]) / (scale[k] + 1e-30));
    return m;
}

std::vector<int64_t> cols_for(GgmlType t) {
    if (is_float_type(t)) return {1, 7, 33, 256, 515};
    if (is_k_type(t)) return {256, 512, 768};
    return {32, 64, 96, 256, 544};
}

// Tolerances, relative to ||x|| * ||w_row||: the 8-bit activations against the exact sum (their rounding error is
// ~0.5% of ||x|| per element, far less in a dot with unrelated weights), and the float paths.
constexpr double kTol8Bit = 1e-2;
constexpr double kTolFloat = 2e-5;
// Relative to sum |q(x) w|: the 8-bit kernels against the quantised-activation sum, and SIMD against scalar.
constexpr double kTolSameInts = 2e-5;

}  // namespace

TEST_CASE("matmul_blocks: ISA names round-trip, the best ISA is runnable, every type has kernels", "[matmul_blocks]") {
    for (KernelIsa isa : kAllIsas) CHECK(parse_kernel_isa(kernel_isa_name(isa)) == isa);
    CHECK(std::string(kernel_isa_name(KernelIsa::AVX512_VNNI)) == "avx512-vnni");
    CHECK_THROWS_AS(parse_kernel_isa("avx9000"), Error);
    const CpuFeatures cpu = detect_cpu_features();
    CHECK(can_run_kernel_isa(cpu, KernelIsa::SCALAR));
    CHECK(can_run_kernel_isa(cpu, best_kernel_isa(cpu)));
    if (cpu.avx512_core() && cpu.avx512_vnni) CHECK(best_kernel_isa(cpu) == KernelIsa::AVX512_VNNI);
    CpuFeatures none;
    CHECK(best_kernel_isa(none) == KernelIsa::SCALAR);
    CHECK_FALSE(can_run_kernel_isa(none, KernelIsa::AVX2));
    for (GgmlType t : kAllTypes) CHECK(has_block_kernels(t));
    WARN("kernel variants runnable here: " << [] {
        std::string s;
        for (KernelIsa isa : runnable_isas()) s += std::string(kernel_isa_name(isa)) + " ";
        return s;
    }());
}

TEST_CASE("matmul_blocks: GEMV (n < kGemmMinRows) of every type and ISA against the double references",
          "[matmul_blocks]") {
    std::mt19937 rng(1234);
    const std::vector<KernelIsa> isas = runnable_isas();
    for (GgmlType t : kAllTypes) {
        for (bool raw : {false, true}) {
            if (raw && !(t == GgmlType::Q8_0 || t == GgmlType::Q4_0 || t == GgmlType::Q4_1)) continue;
            for (int64_t cols : cols_for(t)) {
                for (int64_t rows : {1, 7, 65, 131}) {
                    const TestMatrix tm = make_matrix(t, rows, cols, rng, raw);
                    for (int64_t n : {1, 2, 3, 7}) {
                        const std::vector<float> x = random_x(n, cols, rng);
                        const Reference ref = reference(tm, x, n);
                        std::vector<float> y_scalar;
                        for (KernelIsa isa : isas) {
                            INFO(ggml_type_name(t) << (raw ? " (raw)" : "") << " " << kernel_isa_name(isa) << " rows "
                                                   << rows << " cols " << cols << " n " << n);
                            std::vector<float> y(n * rows, std::nanf(""));
                            matmul_blocks(x.data(), tm.m, y.data(), n, false, kernel_options(isa, 2));
                            if (is_float_type(t)) {
                                CHECK(worst(y, ref.exact, ref.scale) <= kTolFloat);
                            } else {
                                CHECK(worst(y, ref.quantised, ref.abs_q) <= kTolSameInts);
                                CHECK(worst(y, ref.exact, ref.scale) <= kTol8Bit);
                            }
                            if (isa == KernelIsa::SCALAR) {
                                y_scalar = y;
                            } else {
                                std::vector<double> ys(y_scalar.begin(), y_scalar.end());
                                CHECK(worst(y, ys, is_float_type(t) ? ref.scale : ref.abs_q) <= kTolSameInts);
                            }
                        }
                    }
                }
            }
        }
    }
}

TEST_CASE("matmul_blocks: the SGEMM path (n >= kGemmMinRows) of every type equals the fp32 reference",
          "[matmul_blocks]") {
    std::mt19937 rng(99);
    for (GgmlType t : kAllTypes) {
        for (int64_t cols : {cols_for(t).front(), cols_for(t).back()}) {
            for (int64_t rows : {7, 131}) {
                const TestMatrix tm = make_matrix(t, rows, cols, rng);
                for (int64_t n : {kGemmMinRows, kGemmMinRows + 1, int64_t{33}}) {
                    const std::vector<float> x = random_x(n, cols, rng);
                    const Reference ref = reference(tm, x, n);
                    for (int threads : {1, 2}) {
                        INFO(ggml_type_name(t) << " rows " << rows << " cols " << cols << " n " << n << " threads "
                                               << threads);
                        std::vector<float> y(n * rows, std::nanf(""));
                        KernelOptions o = kernel_options(KernelIsa::SCALAR, threads);
                        o.prefill = NativePrefill::F32;
                        matmul_blocks(x.data(), tm.m, y.data(), n, false, o);
                        CHECK(worst(y, ref.exact, ref.scale) <= kTolFloat);
                    }
                }
            }
        }
    }
}

TEST_CASE("matmul_blocks: accumulate adds to y on both paths, and 1 and 2 threads give identical results",
          "[matmul_blocks]") {
    std::mt19937 rng(7);
    const KernelIsa best = best_kernel_isa(detect_cpu_features());
    for (GgmlType t : {GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q6_K, GgmlType::BF16}) {
        const int64_t cols = is_k_type(t) ? 512 : 576, rows = 1000;  // big enough for the parallel GEMV
        const TestMatrix tm = make_matrix(t, rows, cols, rng);
        for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{9}}) {
            INFO(ggml_type_name(t) << " n " << n);
            const std::vector<float> x = random_x(n, cols, rng);
            std::vector<float> y1(n * rows), y2(n * rows), base(n * rows), acc(n * rows);
            matmul_blocks(x.data(), tm.m, y1.data(), n, false, kernel_options(best, 1));
            matmul_blocks(x.data(), tm.m, y2.data(), n, false, kernel_options(best, 2));
            if (n < kGemmMinRows) {
                CHECK(y1 == y2);  // each output is computed by one thread, the same way
            } else {
                double m = 0;  // OpenBLAS may split the sums differently
                for (size_t k = 0; k < y1.size(); ++k) m = std::max(m, double(std::fabs(y1[k] - y2[k])));
                CHECK(m <= 1e-4);
            }
            for (size_t k = 0; k < base.size(); ++k) base[k] = acc[k] = static_cast<float>(k % 13) - 6.0f;
            matmul_blocks(x.data(), tm.m, acc.data(), n, true, kernel_options(best, 2));
            double m = 0;
            for (size_t k = 0; k < acc.size(); ++k) m = std::max(m, double(std::fabs(acc[k] - (base[k] + y2[k]))));
            CHECK(m <= 1e-4);
        }
    }
}

TEST_CASE("matmul_dx_blocks: dx = dy . W of every type equals the double reference", "[matmul_blocks]") {
    std::mt19937 rng(5);
    for (GgmlType t : kAllTypes) {
        const int64_t cols = cols_for(t).back(), rows = 300;  // 300 rows: several SGEMM tiles for the wide types
        const TestMatrix tm = make_matrix(t, rows, cols, rng);
        for (int64_t n : {1, 3, 9}) {
            for (bool accumulate : {false, true}) {
                INFO(ggml_type_name(t) << " n " << n << (accumulate ? " accumulate" : ""));
                const std::vector<float> dy = random_x(n, rows, rng);
                std::vector<float> dx(n * cols);
                for (size_t k = 0; k < dx.size(); ++k) dx[k] = accumulate ? 0.5f * static_cast<float>(k % 5) : NAN;
                std::vector<double> want(n * cols), scale(n * cols);
                for (int64_t i = 0; i < n; ++i) {
                    for (int64_t j = 0; j < cols; ++j) {
                        double s = accumulate ? dx[i * cols + j] : 0.0, a = 0;
                        for (int64_t r = 0; r < rows; ++r) {
                            s += double(dy[i * rows + r]) * tm.decoded[r * cols + j];
                            a += std::fabs(double(dy[i * rows + r]) * tm.decoded[r * cols + j]);
                        }
                        want[i * cols + j] = s;
                        scale[i * cols + j] = a + 1.0;
                    }
                }
                matmul_dx_blocks(dy.data(), tm.m, dx.data(), n, accumulate, kernel_options(KernelIsa::SCALAR, 2));
                CHECK(worst(dx, want, scale) <= kTolFloat);
            }
        }
    }
}

TEST_CASE("matmul_blocks: dequantize_rows equals dequantize_row, and bad shapes are refused", "[matmul_blocks]") {
    std::mt19937 rng(3);
    for (GgmlType t : kAllTypes) {
        const int64_t cols = cols_for(t).back(), rows = 9;
        const TestMatrix tm = make_matrix(t, rows, cols, rng);
        std::vector<float> out(4 * cols, NAN);
        dequantize_rows(tm.m, 3, 4, out.data());
        CHECK(std::memcmp(out.data(), tm.decoded.data() + 3 * cols, out.size() * sizeof(float)) == 0);
        CHECK_THROWS_AS(dequantize_rows(tm.m, 7, 3, out.data()), Error);
        BlockMatrix bad = tm.m;
        bad.row_bytes += 1;
        std::vector<float> y(rows);
        CHECK_THROWS_AS(matmul_blocks(out.data(), bad, y.data(), 1, false, KernelOptions{}), Error);
    }
}

TEST_CASE("matmul_blocks: the SIMD row decoders equal dequantize_row", "[matmul_blocks]") {
    // Up to the rounding of one fused multiply-add (y = q*d + m, d*q - m): the scalar reference may be contracted or
    // not, depending on the compiler's flags. A wrong nibble, bit or scale is off by far more.
    std::mt19937 rng(17);
    const CpuFeatures cpu = detect_cpu_features();
    int checked = 0;
    for (KernelIsa isa : kAllIsas) {
        if (!can_run_kernel_isa(cpu, isa)) continue;
        const detail::GemvKernels* k = isa == KernelIsa::SCALAR        ? detail::gemv_kernels_scalar()
                                       : isa == KernelIsa::AVX2        ? detail::gemv_kernels_avx2()
                                       : isa == KernelIsa::AVX512      ? detail::gemv_kernels_avx512()
                                                                       : detail::gemv_kernels_avx512_vnni();
        REQUIRE(k != nullptr);
        for (GgmlType t : kAllTypes) {
            for (bool raw : {false, true}) {
                if (raw && !(t == GgmlType::Q8_0 || t == GgmlType::Q4_1)) continue;  // random bytes, not encoded
                const int64_t cols = is_float_type(t) ? 77 : cols_for(t).back(), rows = 5;
                const TestMatrix tm = make_matrix(t, rows, cols, rng, raw);
                // kAllTypes is in DotType order
                const auto dt = std::find(std::begin(kAllTypes), std::end(kAllTypes), t) - std::begin(kAllTypes);
                const detail::DecodeFn dec = k->decode[dt];
                if (!dec) continue;  // this variant decodes with dequantize_row
                INFO(kernel_isa_name(isa) << " " << ggml_type_name(t) << (raw ? " (raw)" : ""));
                std::vector<float> out(rows * cols, NAN);
                dec(tm.bytes.data(), out.data(), rows * cols);
                double worst_err = 0;
                for (int64_t r = 0; r < rows; ++r) {
                    double rowmax = 0;
                    for (int64_t j = 0; j < cols; ++j)
                        rowmax = std::max(rowmax, double(std::fabs(tm.decoded[r * cols + j])));
                    for (int64_t j = 0; j < cols; ++j) {
                        const double e = std::fabs(double(out[r * cols + j]) - tm.decoded[r * cols + j]);
                        const double tol = 1e-6 * (std::fabs(tm.decoded[r * cols + j]) + rowmax) + 1e-30;
                        worst_err = std::max(worst_err, e / tol);
                    }
                }
                CHECK(worst_err <= 1.0);
                ++checked;
            }
        }
    }
    if (cpu.avx512_core()) CHECK(checked >= 2 * 13);  // both AVX-512 variants decode every type
}

TEST_CASE("matmul_blocks: the SGEMM path with every ISA's tile decoders equals the fp32 reference", "[matmul_blocks]") {
    std::mt19937 rng(23);
    for (KernelIsa isa : runnable_isas()) {
        for (GgmlType t : kAllTypes) {
            const int64_t cols = cols_for(t).back(), rows = 37, n = kGemmMinRows + 3;
            const TestMatrix tm = make_matrix(t, rows, cols, rng);
            const std::vector<float> x = random_x(n, cols, rng);
            const Reference ref = reference(tm, x, n);
            INFO(kernel_isa_name(isa) << " " << ggml_type_name(t));
            KernelOptions o, o_scalar;  // one thread (the default)
            o.isa = isa;
            o.prefill = o_scalar.prefill = NativePrefill::F32;
            std::vector<float> y(n * rows, std::nanf(""));
            matmul_blocks(x.data(), tm.m, y.data(), n, false, o);
            CHECK(worst(y, ref.exact, ref.scale) <= kTolFloat);
            const std::vector<float> dy = random_x(2, rows, rng);
            std::vector<float> dx(2 * cols, NAN), dx_scalar(2 * cols, NAN);
            matmul_dx_blocks(dy.data(), tm.m, dx.data(), 2, false, o);
            matmul_dx_blocks(dy.data(), tm.m, dx_scalar.data(), 2, false, o_scalar);
            double m = 0, scale = 0;
            for (size_t k = 0; k < dx.size(); ++k) {
                m = std::max(m, double(std::fabs(dx[k] - dx_scalar[k])));
                scale = std::max(scale, double(std::fabs(dx_scalar[k])));
            }
            CHECK(m <= 1e-5 * (scale + 1.0));
        }
    }
}

TEST_CASE("matmul_blocks: the tests see a wrong block scale", "[matmul_blocks]") {
    // The check above would pass a kernel that ignored one block's scale only if the tolerance hid it: change one
    // block's d after decoding the reference and require the comparison to fail.
    std::mt19937 rng(11);
    for (GgmlType t : {GgmlType::Q4_1, GgmlType::Q4_K}) {
        TestMatrix tm = make_matrix(t, 16, 256, rng);
        const std::vector<float> x = random_x(1, 256, rng);
        const Reference ref = reference(tm, x, 1);
        uint16_t h;
        std::memcpy(&h, tm.bytes.data(), 2);
        put_f16(tm.bytes.data(), 1.5f * fp16_to_fp32(h));
        std::vector<float> y(16);
        matmul_blocks(x.data(), tm.m, y.data(), 1, false, kernel_options(best_kernel_isa(detect_cpu_features()), 1));
        CHECK(worst(y, ref.quantised, ref.abs_q) > 100 * kTolSameInts);
    }
}

namespace {

const detail::GemvKernels* kernel_table(KernelIsa isa) {
    switch (isa) {
    case KernelIsa::SCALAR: return detail::gemv_kernels_scalar();
    case KernelIsa::AVX2: return detail::gemv_kernels_avx2();
    case KernelIsa::AVX512: return detail::gemv_kernels_avx512();
    case KernelIsa::AVX512_VNNI: return detail::gemv_kernels_avx512_vnni();
    }
    return nullptr;
}

// One input row quantised as the kernels read it (XRow), re-derived from ggml's quantize_row_q8_0 / q8_K.
struct QuantRow {
    std::vector<int8_t> qs;
    std::vector<float> d;
    std::vector<int32_t> s32;
    std::vector<int16_t> bsums;
    detail::XRow row;
};

QuantRow quant_row(GgmlType t, const float* x, int64_t cols) {
    QuantRow q;
    q.qs.resize(static_cast<size_t>(cols) + 64);
    if (is_k_type(t)) {
        for (int64_t b = 0; b < cols / 256; ++b) {
            float amax = 0.0f;
            for (int j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(x[256 * b + j]));
            const float iscale = amax != 0.0f ? 127.0f / amax : 0.0f;
            for (int j = 0; j < 256; ++j)
                q.qs[256 * b + j] = int8_t(std::nearbyint(std::clamp(x[256 * b + j] * iscale, -127.0f, 127.0f)));
            for (int g = 0; g < 16; ++g) {
                int s = 0;
                for (int j = 0; j < 16; ++j) s += q.qs[256 * b + 16 * g + j];
                q.bsums.push_back(int16_t(s));
            }
            q.d.push_back(amax != 0.0f ? 1.0f / iscale : 0.0f);
        }
        q.row.dk = q.d.data();
        q.row.bsums = q.bsums.data();
    } else {
        for (int64_t b = 0; b < cols / 32; ++b) {
            float amax = 0.0f;
            for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
            const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            int s = 0;
            for (int j = 0; j < 32; ++j) {
                q.qs[32 * b + j] = int8_t(std::roundf(std::clamp(x[32 * b + j] * id, -127.0f, 127.0f)));
                s += q.qs[32 * b + j];
            }
            q.d.push_back(fp16_to_fp32(fp32_to_fp16(d)));
            q.s32.push_back(s);
        }
        q.row.d32 = q.d.data();
        q.row.s32 = q.s32.data();
    }
    q.row.qs = q.qs.data();
    return q;
}

}  // namespace

TEST_CASE("matmul_blocks: the 4-row kernels equal the 1-row kernel of their ISA bit for bit", "[matmul_blocks]") {
    std::mt19937 rng(4242);
    int tested = 0;
    for (KernelIsa isa : runnable_isas()) {
        const detail::GemvKernels* k = kernel_table(isa);
        REQUIRE(k != nullptr);
        for (size_t ti = 0; ti < std::size(kAllTypes); ++ti) {  // kAllTypes is in DotType order
            const GgmlType t = kAllTypes[ti];
            if (k->dot4[ti] == nullptr || is_float_type(t)) continue;
            std::vector<int64_t> cols_list = cols_for(t);
            if (!is_k_type(t)) cols_list.push_back(576), cols_list.push_back(1056);  // 18 and 33 blocks
            for (bool raw : {false, true}) {
                if (raw && !(t == GgmlType::Q8_0 || t == GgmlType::Q4_0 || t == GgmlType::Q4_1)) continue;
                for (int64_t cols : cols_list) {
                    INFO(ggml_type_name(t) << (raw ? " (raw)" : "") << " " << kernel_isa_name(isa) << " cols " << cols);
                    const TestMatrix tm = make_matrix(t, 4, cols, rng, raw);
                    const std::vector<float> x = random_x(1, cols, rng);
                    const QuantRow q = quant_row(t, x.data(), cols);
                    float y4[4];
                    k->dot4[ti](tm.bytes.data(), tm.m.row_bytes, cols, q.row, y4);
                    for (int r = 0; r < 4; ++r)
                        CHECK(y4[r] == k->dot[ti](tm.bytes.data() + r * tm.m.row_bytes, cols, q.row));
                    ++tested;
                }
            }
        }
    }
    WARN("4-row kernels checked: " << tested << " (type, ISA, width) cases");
}

TEST_CASE("matmul_blocks_many: equals matmul_blocks per matrix on every ISA and thread count", "[matmul_blocks]") {
    std::mt19937 rng(31);
    const int64_t cols = 512;
    // q/k/v-like and mixed: types that quantise the activations differently (Q8_0, Q8_K, none) share one input
    const TestMatrix a = make_matrix(GgmlType::Q4_1, 131, cols, rng), b = make_matrix(GgmlType::Q8_0, 65, cols, rng),
                     c = make_matrix(GgmlType::Q6_K, 7, cols, rng), d = make_matrix(GgmlType::BF16, 333, cols, rng),
                     e = make_matrix(GgmlType::Q5_0, 1000, cols, rng);
    for (KernelIsa isa : runnable_isas()) {
        for (int threads : {1, 2, 3}) {
            for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{9}}) {
                INFO(kernel_isa_name(isa) << " threads " << threads << " n " << n);
                const KernelOptions o = kernel_options(isa, threads);
                const std::vector<float> x = random_x(n, cols, rng);
                std::vector<std::vector<float>> want, got;
                std::vector<BlockProduct> ps;
                for (const TestMatrix* tm : {&a, &b, &c, &d, &e}) {
                    const bool acc = tm == &b;
                    std::vector<float> y0(static_cast<size_t>(n * tm->m.rows));
                    for (size_t i = 0; i < y0.size(); ++i) y0[i] = float(i % 5) - 2.0f;
                    want.push_back(y0);
                    got.push_back(y0);
                    matmul_blocks(x.data(), tm->m, want.back().data(), n, acc, o);
                }
                for (size_t j = 0; j < got.size(); ++j) {
                    const TestMatrix* tm = std::vector<const TestMatrix*>{&a, &b, &c, &d, &e}[j];
                    ps.push_back(BlockProduct{tm->m, got[j].data(), tm == &b});
                }
                matmul_blocks_many(x.data(), ps.data(), int(ps.size()), n, o);
                for (size_t j = 0; j < got.size(); ++j) {
                    if (n < kGemmMinRows) {
                        CHECK(got[j] == want[j]);
                    } else {
                        double m = 0;  // OpenBLAS may split its sums differently from call to call
                        for (size_t i = 0; i < got[j].size(); ++i)
                            m = std::max(m, double(std::fabs(got[j][i] - want[j][i])));
                        CHECK(m <= 1e-4);
                    }
                }
            }
        }
    }
    std::vector<float> y(1000);
    const TestMatrix narrow = make_matrix(GgmlType::Q4_0, 4, 256, rng);
    const BlockProduct bad[2] = {{a.m, y.data(), false}, {narrow.m, y.data(), false}};
    const std::vector<float> x = random_x(1, cols, rng);
    CHECK_THROWS_AS(matmul_blocks_many(x.data(), bad, 2, 1, kernel_options(KernelIsa::SCALAR, 1)), Error);
}

TEST_CASE("matmul_blocks: native prefill names, and which products take the int8 path", "[matmul_blocks]") {
    for (NativePrefill p : {NativePrefill::AUTO, NativePrefill::INT8, NativePrefill::F32})
        CHECK(parse_native_prefill(native_prefill_name(p)) == p);
    CHECK_THROWS_AS(parse_native_prefill("int4"), Error);
    CHECK(native_prefill_label(NativePrefill::F32).empty());
    const KernelIsa best = best_kernel_isa(detect_cpu_features());
    KernelOptions o;
    o.isa = best;
    for (GgmlType t : kAllTypes) {
        INFO(ggml_type_name(t));
        o.prefill = NativePrefill::F32;
        CHECK(uses_int8_path(t, 576, kGemmMinRows - 1, o));  // decode: always the GEMV
        CHECK_FALSE(uses_int8_path(t, 576, kGemmMinRows, o));
        o.prefill = NativePrefill::INT8;
        CHECK(uses_int8_path(t, 576, 4096, o) == !is_float_type(t));  // float weights: SGEMM whatever the option
        o.prefill = NativePrefill::AUTO;
        CHECK_FALSE(uses_int8_path(t, 576, kInt8PrefillMaxRows, o));
        CHECK_FALSE(uses_int8_path(t, 4096, kInt8PrefillMaxRowsWide, o));
        if (is_float_type(t)) CHECK_FALSE(uses_int8_path(t, 4096, kGemmMinRows, o));
    }
    if (best == KernelIsa::AVX512_VNNI || best == KernelIsa::AVX512) {  // the 4 x 4 tiles of the 32-element types
        for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0}) {
            CHECK(uses_int8_path(t, 576, kGemmMinRows, o));
            CHECK(uses_int8_path(t, 576, kInt8PrefillMaxRows - 1, o));
            CHECK_FALSE(uses_int8_path(t, 2016, kInt8PrefillMaxRows, o));
            CHECK(uses_int8_path(t, kInt8PrefillWideCols, kInt8PrefillMaxRowsWide - 1, o));
        }
    }
    o.isa = KernelIsa::SCALAR;  // no tiles: AUTO keeps the SGEMM path
    CHECK_FALSE(uses_int8_path(GgmlType::Q4_0, 4096, kGemmMinRows, o));
}

TEST_CASE("matmul_blocks: the int8 prefill path of every quantised type and ISA against the double references",
          "[matmul_blocks]") {
    // As the GEMV test, for n >= kGemmMinRows under NativePrefill::INT8: the 4 x 4 tiles (the 32-element types on
    // AVX-512), the tails of n and of the rows (n % 4, rows % 4), partial groups of 16 blocks (544, 1056 columns).
    std::mt19937 rng(4321);
    const std::vector<KernelIsa> isas = runnable_isas();
    for (GgmlType t : kAllTypes) {
        if (is_float_type(t)) continue;
        for (bool raw : {false, true}) {
            if (raw && !(t == GgmlType::Q8_0 || t == GgmlType::Q4_0 || t == GgmlType::Q4_1)) continue;
            const std::vector<int64_t> cols_list =
                is_k_type(t) ? std::vector<int64_t>{256, 768} : std::vector<int64_t>{32, 96, 544, 1056};
            for (int64_t cols : cols_list) {
                for (int64_t rows : {5, 67}) {
                    const TestMatrix tm = make_matrix(t, rows, cols, rng, raw);
                    for (int64_t n : {kGemmMinRows, int64_t{11}, int64_t{33}}) {
                        const std::vector<float> x = random_x(n, cols, rng);
                        const Reference ref = reference(tm, x, n);
                        std::vector<float> y_scalar;
                        for (KernelIsa isa : isas) {
                            INFO(ggml_type_name(t) << (raw ? " (raw)" : "") << " " << kernel_isa_name(isa) << " rows "
                                                   << rows << " cols " << cols << " n " << n);
                            KernelOptions o = kernel_options(isa, 2);
                            o.prefill = NativePrefill::INT8;
                            std::vector<float> y(n * rows, std::nanf(""));
                            matmul_blocks(x.data(), tm.m, y.data(), n, false, o);
                            CHECK(worst(y, ref.quantised, ref.abs_q) <= kTolSameInts);
                            CHECK(worst(y, ref.exact, ref.scale) <= kTol8Bit);
                            if (isa == KernelIsa::SCALAR) {
                                y_scalar = y;
                            } else {
                                std::vector<double> ys(y_scalar.begin(), y_scalar.end());
                                CHECK(worst(y, ys, ref.abs_q) <= kTolSameInts);
                            }
                        }
                    }
                }
            }
        }
    }
}

TEST_CASE("matmul_blocks: the int8 prefill path gives the same outputs on 1 and 2 threads and through matmul_blocks_many",
          "[matmul_blocks]") {
    std::mt19937 rng(11);
    const KernelIsa best = best_kernel_isa(detect_cpu_features());
    for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q6_K}) {
        const int64_t cols = is_k_type(t) ? 512 : 576, rows = 1002, n = 13;  // many work items, tails of 4
        const TestMatrix a = make_matrix(t, rows, cols, rng), b = make_matrix(t, 130, cols, rng);
        const std::vector<float> x = random_x(n, cols, rng);
        INFO(ggml_type_name(t));
        KernelOptions o1 = kernel_options(best, 1), o2 = kernel_options(best, 2);
        o1.prefill = o2.prefill = NativePrefill::INT8;
        std::vector<float> y1(n * rows), y2(n * rows), ya(n * rows), yb(n * 130), yb1(n * 130);
        matmul_blocks(x.data(), a.m, y1.data(), n, false, o1);
        matmul_blocks(x.data(), a.m, y2.data(), n, false, o2);
        CHECK(y1 == y2);  // each output is computed by one thread, by a kernel chosen by its position
        matmul_blocks(x.data(), b.m, yb1.data(), n, false, o1);
        const BlockProduct ps[2] = {{a.m, ya.data(), false}, {b.m, yb.data(), false}};
        matmul_blocks_many(x.data(), ps, 2, n, o2);
        CHECK(ya == y1);
        CHECK(yb == yb1);
        std::vector<float> acc(n * rows);
        for (size_t k = 0; k < acc.size(); ++k) acc[k] = static_cast<float>(k % 13) - 6.0f;
        matmul_blocks(x.data(), a.m, acc.data(), n, true, o2);
        double m = 0;
        for (size_t k = 0; k < acc.size(); ++k)
            m = std::max(m, double(std::fabs(acc[k] - (static_cast<float>(k % 13) - 6.0f + y1[k]))));
        CHECK(m <= 1e-4);
    }
}

// ---------------------------------------------------------------------------------------------- oneDNN bf16 GEMM
// BF16 weights with kGemmMinRows <= n < kOnednnMaxRows go to oneDNN where the build and the CPU have it
// (backend/cpu/onednn_gemm.hpp). oneDNN rounds the activations to bf16 (nearest even), so its reference is the
// exact product of the ROUNDED activations with the bf16 weights (fp32 accumulation: kTolFloat); against the
// unrounded fp32 reference it is within the bf16 rounding of the activations (2^-9 relative per element).

namespace {

constexpr double kTolBf16Activations = 4e-3;

std::vector<float> bf16_rounded(const std::vector<float>& x) {
    std::vector<float> r(x.size());
    for (size_t i = 0; i < x.size(); ++i) r[i] = bf16_to_fp32(fp32_to_bf16(x[i]));
    return r;
}

}  // namespace

TEST_CASE("matmul_blocks: the oneDNN bf16 path at odd sizes against the fp32 reference, 1 and 2 threads",
          "[matmul_blocks][onednn]") {
    const CpuFeatures cpu = detect_cpu_features();
    std::string why;
    auto dnn = OnednnBf16Gemm::create(cpu, &why);
    if (!dnn) {
        // Absent only for the documented reasons.
        CHECK((!onednn_built() || !onednn_bf16_cpu_ok(cpu)));
        WARN("oneDNN bf16 GEMM not available here: " << why << "; only the fallback is tested");
        return;
    }
    CHECK(dnn->kernel().rfind("brg", 0) == 0);
    std::mt19937 rng(2024);
    const KernelIsa best = best_kernel_isa(cpu);
    for (int64_t cols : {int64_t{1}, int64_t{7}, int64_t{33}, int64_t{515}}) {
        for (int64_t rows : {int64_t{7}, int64_t{131}, int64_t{333}}) {
            const TestMatrix tm = make_matrix(GgmlType::BF16, rows, cols, rng);
            for (int64_t n : {kGemmMinRows, kGemmMinRows + 1, int64_t{33}, kOnednnMaxRows - 1}) {
                INFO("rows " << rows << " cols " << cols << " n " << n);
                const std::vector<float> x = random_x(n, cols, rng);
                const Reference ref = reference(tm, x, n);
                const Reference ref16 = reference(tm, bf16_rounded(x), n);
                std::vector<float> y1(n * rows, std::nanf("")), y2(y1), ys(y1);
                KernelOptions o1 = kernel_options(best, 1), o2 = kernel_options(best, 2);
                o1.onednn = o2.onednn = dnn.get();  // 2 threads: W's rows split in two (above 64 rows)
                matmul_blocks(x.data(), tm.m, y1.data(), n, false, o1);
                matmul_blocks(x.data(), tm.m, y2.data(), n, false, o2);
                matmul_blocks(x.data(), tm.m, ys.data(), n, false, kernel_options(best, 2));  // no oneDNN: SGEMM
                CHECK(worst(y1, ref16.exact, ref16.scale) <= kTolFloat);
                CHECK(worst(y2, ref16.exact, ref16.scale) <= kTolFloat);
                CHECK(worst(y1, ref.exact, ref.scale) <= kTolBf16Activations);
                CHECK(worst(ys, ref.exact, ref.scale) <= kTolFloat);  // the fallback keeps fp32 activations
                double d12 = 0;
                for (size_t k = 0; k < y1.size(); ++k) d12 = std::max(d12, double(std::fabs(y1[k] - y2[k])));
                CHECK(d12 <= 1e-4);
                // accumulate: y + product
                std::vector<float> acc(n * rows);
                for (size_t k = 0; k < acc.size(); ++k) acc[k] = static_cast<float>(k % 11) - 5.0f;
                const std::vector<float> base = acc;
                matmul_blocks(x.data(), tm.m, acc.data(), n, true, o2);
                double m = 0;
                for (size_t k = 0; k < acc.size(); ++k) m = std::max(m, double(std::fabs(acc[k] - (base[k] + y2[k]))));
                CHECK(m <= 1e-4);
            }
        }
    }
}

TEST_CASE("matmul_blocks: the oneDNN path runs only for bf16 weights below kOnednnMaxRows rows",
          "[matmul_blocks][onednn]") {
    const CpuFeatures cpu = detect_cpu_features();
    auto dnn = OnednnBf16Gemm::create(cpu);
    if (!dnn) {
        WARN("oneDNN bf16 GEMM not available here: nothing to route");
        return;
    }
    std::mt19937 rng(5);
    const KernelIsa best = best_kernel_isa(cpu);
    const int64_t cols = 576, rows = 200;
    const TestMatrix b16 = make_matrix(GgmlType::BF16, rows, cols, rng);
    const TestMatrix f16 = make_matrix(GgmlType::F16, rows, cols, rng);
    KernelOptions with = kernel_options(best, 2), without = kernel_options(best, 2);
    with.onednn = dnn.get();
    auto run = [&](const TestMatrix& tm, int64_t n, const KernelOptions& o, const std::vector<float>& x) {
        std::vector<float> y(n * rows);
        matmul_blocks(x.data(), tm.m, y.data(), n, false, o);
        return y;
    };
    // below the crossover: oneDNN (its bf16 activations change the result), from it: the SGEMM path, bit for bit
    for (int64_t n : {kGemmMinRows, kOnednnMaxRows - 1, kOnednnMaxRows, int64_t{100}}) {
        INFO("n " << n);
        const std::vector<float> x = random_x(n, cols, rng);
        if (n < kOnednnMaxRows)
            CHECK(run(b16, n, with, x) != run(b16, n, without, x));
        else
            CHECK(run(b16, n, with, x) == run(b16, n, without, x));
        CHECK(run(f16, n, with, x) == run(f16, n, without, x));  // other weight types never
    }
    // the exact prefill (NativePrefill::F32) keeps bf16 weights off oneDNN
    {
        KernelOptions exact = with;
        exact.prefill = NativePrefill::F32;
        const std::vector<float> x = random_x(16, cols, rng);
        CHECK(run(b16, 16, exact, x) == run(b16, 16, without, x));
    }
    // decode (n < kGemmMinRows) stays on our GEMV
    const std::vector<float> x1 = random_x(1, cols, rng);
    CHECK(run(b16, 1, with, x1) == run(b16, 1, without, x1));
    CHECK(dnn->describe().find(dnn->kernel()) != std::string::npos);
}

TEST_CASE("onednn_gemm: availability follows the build, the CPU and HEADSWEEP_ONEDNN", "[matmul_blocks][onednn]") {
    CpuFeatures none;  // no bf16 instructions
    std::string why;
    CHECK(OnednnBf16Gemm::create(none, &why) == nullptr);
    CHECK(!why.empty());
    if (!onednn_built()) CHECK(onednn_version().empty());
    else CHECK(onednn_version().rfind("oneDNN ", 0) == 0);
    const char* old = std::getenv("HEADSWEEP_ONEDNN");
    const std::string saved = old ? old : "";
    setenv("HEADSWEEP_ONEDNN", "off", 1);
    CHECK(onednn_disabled_by_env());
    setenv("HEADSWEEP_ONEDNN", "on", 1);
    CHECK(!onednn_disabled_by_env());
    if (old) setenv("HEADSWEEP_ONEDNN", saved.c_str(), 1);
    else unsetenv("HEADSWEEP_ONEDNN");
}
