// The CPU backend runs the kernels the CPU allows: OpenBLAS's core against the cpuid features, AMX permission,
// and the core's arithmetic against a naive product. (The re-execution itself is exercised end to end by
// tests/scripts/cpu_runtime.sh, which runs the real program with OPENBLAS_CORETYPE forced.)
#include <catch2/catch.hpp>

#include <cblas.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/cpu_runtime.hpp"

using namespace hs;

namespace {

CpuFeatures features(bool avx, bool avx2_fma, bool avx512, bool bf16) {
    CpuFeatures f;
    f.sse3 = f.ssse3 = f.sse4_1 = f.sse4_2 = true;
    f.avx = avx;
    f.avx2 = f.fma = avx2_fma;
    f.avx512f = f.avx512dq = f.avx512cd = f.avx512bw = f.avx512vl = avx512;
    f.avx512_bf16 = bf16;
    return f;
}

BlasRuntime dynamic_blas(const std::string& core, const std::string& best) {
    BlasRuntime b;
    b.library = "OpenBLAS 0.3.21 DYNAMIC_ARCH";
    b.core = core;
    b.best = best;
    b.dynamic_arch = true;
    return b;
}

}  // namespace

TEST_CASE("cpu runtime: the cores a CPU can run follow its feature bits, best first", "[cpu_runtime]") {
    using V = std::vector<std::string>;
    CHECK(openblas_cores_for(features(true, true, true, true)) == V{"Cooperlake", "SkylakeX", "Haswell", "Sandybridge"});
    CHECK(openblas_cores_for(features(true, true, true, false)) == V{"SkylakeX", "Haswell", "Sandybridge"});
    CHECK(openblas_cores_for(features(true, true, false, false)) == V{"Haswell", "Sandybridge"});
    CHECK(openblas_cores_for(features(true, false, false, false)) == V{"Sandybridge"});
    CHECK(openblas_cores_for(features(false, false, false, false)).empty());
    // AVX-512F alone (Knights Landing) is not the subset SkylakeX's kernels use.
    CpuFeatures knl = features(true, true, false, false);
    knl.avx512f = knl.avx512cd = true;
    CHECK(openblas_cores_for(knl) == V{"Haswell", "Sandybridge"});
}

TEST_CASE("cpu runtime: core tiers rank instruction sets, names compare case-insensitively", "[cpu_runtime]") {
    CHECK(openblas_core_tier("Prescott") < openblas_core_tier("Sandybridge"));
    CHECK(openblas_core_tier("Sandybridge") < openblas_core_tier("Haswell"));
    CHECK(openblas_core_tier("Haswell") == openblas_core_tier("Zen"));
    CHECK(openblas_core_tier("Haswell") < openblas_core_tier("SkylakeX"));
    CHECK(openblas_core_tier("SkylakeX") < openblas_core_tier("Cooperlake"));
    CHECK(openblas_core_tier("skylakex") == openblas_core_tier("SkylakeX"));
    CHECK(openblas_core_tier("NoSuchCore") == -1);
}

TEST_CASE("cpu runtime: a fallback is weaker than the CPU allows, unknown or fixed builds are not judged",
          "[cpu_runtime]") {
    CHECK(dynamic_blas("Prescott", "Cooperlake").weaker_than_cpu_allows());  // Emerald Rapids on OpenBLAS 0.3.21
    CHECK(dynamic_blas("Haswell", "SkylakeX").weaker_than_cpu_allows());
    CHECK_FALSE(dynamic_blas("Cooperlake", "Cooperlake").weaker_than_cpu_allows());
    CHECK_FALSE(dynamic_blas("Zen", "Haswell").weaker_than_cpu_allows());   // same tier, AMD's own blocking
    CHECK_FALSE(dynamic_blas("FutureCore", "Cooperlake").weaker_than_cpu_allows());
    CHECK_FALSE(dynamic_blas("Prescott", "").weaker_than_cpu_allows());  // nothing better exists
    BlasRuntime fixed = dynamic_blas("Prescott", "Cooperlake");
    fixed.dynamic_arch = false;  // a build for one target: OPENBLAS_CORETYPE would do nothing
    CHECK_FALSE(fixed.weaker_than_cpu_allows());
    CHECK_THAT(dynamic_blas("Prescott", "Cooperlake").describe(), Catch::Contains("WEAKER than this CPU allows: Cooperlake"));
}

TEST_CASE("cpu runtime: the active BLAS core is as strong as this CPU's features allow", "[cpu_runtime]") {
    const CpuRuntime r = describe_cpu_runtime();
    INFO("cpu: " << r.cpu.brand << " [" << r.cpu.summary() << "]; blas: " << r.blas.library << "; core: "
                 << r.blas.describe());
    CHECK_FALSE(r.cpu.vendor.empty());
    if (r.blas.core.empty() || !r.blas.dynamic_arch) {
        WARN("SKIPPED (the BLAS offers no other core): " << r.blas.library);
        return;
    }
    if (r.blas.best.empty()) {
        WARN("SKIPPED (this CPU allows nothing better than " << r.blas.core << ")");
        return;
    }
    if (r.blas.origin == BlasCoreOrigin::USER && r.blas.weaker_than_cpu_allows()) {
        WARN("SKIPPED (OPENBLAS_CORETYPE is set in the environment to the weaker " << r.blas.core
             << "; headsweep keeps a user's choice): this CPU allows " << r.blas.best);
        return;
    }
    CHECK_FALSE(r.blas.weaker_than_cpu_allows());
    CHECK(openblas_core_tier(r.blas.core) >= openblas_core_tier(r.blas.best));
}

TEST_CASE("cpu runtime: the active core's SGEMM equals a naive product", "[cpu_runtime]") {
    // Odd sizes exercise every edge path of the kernels; the chosen core must compute, not just be fast.
    const int M = 67, N = 53, K = 301;
    std::mt19937 g(7);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> a(size_t(M) * K), b(size_t(K) * N), c(size_t(M) * N);
    for (float& x : a) x = u(g);
    for (float& x : b) x = u(g);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a.data(), K, b.data(), N, 0.0f, c.data(), N);
    double worst = 0;
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            double ref = 0, mag = 0;
            for (int k = 0; k < K; ++k) {
                ref += double(a[size_t(i) * K + k]) * b[size_t(k) * N + j];
                mag += std::fabs(double(a[size_t(i) * K + k]) * b[size_t(k) * N + j]);
            }
            worst = std::max(worst, std::fabs(c[size_t(i) * N + j] - ref) / mag);
        }
    INFO("core " << describe_cpu_runtime().blas.describe());
    CHECK(worst < 1e-5);
}

TEST_CASE("cpu runtime: AMX tile state is requested where the CPU has it, and tile instructions then run",
          "[cpu_runtime]") {
    const CpuFeatures cpu = detect_cpu_features();
    const AmxState s = request_amx_tile_state(cpu);
    if (!cpu.amx_tile) {
        CHECK(s == AmxState::ABSENT);
        WARN("SKIPPED (no AMX on this CPU: " << cpu.brand << ")");
        return;
    }
    REQUIRE(s == AmxState::GRANTED);
    CHECK(request_amx_tile_state(cpu) == AmxState::GRANTED);  // idempotent
    CHECK(probe_amx_tile_instructions());
}

TEST_CASE("cpu runtime: provenance names the CPU, its features and the BLAS core", "[cpu_runtime]") {
    const auto p = cpu_runtime_provenance();
    REQUIRE(p.size() == 4);
    CHECK(p[0].first == "cpu");
    CHECK_FALSE(p[0].second.empty());
    CHECK(p[1].first == "cpu_features");
    CHECK(p[3].first == "blas_core");
    const CpuRuntime r = describe_cpu_runtime();
    if (!r.blas.core.empty()) CHECK_THAT(p[3].second, Catch::StartsWith(r.blas.core));
    CHECK_THAT(cpu_runtime_tag(), Catch::StartsWith("blas "));
}
