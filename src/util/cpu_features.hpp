// util/cpu_features.hpp: what this x86-64 CPU offers, from cpuid feature bits and the OS's enabled register state.
//
// Dispatch decisions (which BLAS core, which of our own kernels) are made from these bits, never from model numbers:
// a CPU too new for a library's model table still reports the instruction sets it has. A feature counts as usable
// only when the OS also saves its registers (XCR0 via xgetbv): AVX needs the YMM state, AVX-512 the opmask and ZMM
// states, AMX the tile states, which Linux additionally hands out per process on request (request_amx_tile_state).
#pragma once

#include <string>

namespace hs {

struct CpuFeatures {
    std::string vendor;  // "GenuineIntel", "AuthenticAMD", ...; "" on a non-x86 build
    std::string brand;   // "AMD EPYC 9654 96-Core Processor", ...
    int family = 0, model = 0, stepping = 0;  // display family/model (extended fields folded in)

    bool sse3 = false, ssse3 = false, sse4_1 = false, sse4_2 = false;
    bool avx = false, avx2 = false, fma = false, f16c = false;
    bool avx512f = false, avx512dq = false, avx512cd = false, avx512bw = false, avx512vl = false;
    bool avx512_vnni = false, avx512_bf16 = false, avx512_fp16 = false, avx_vnni = false;
    bool amx_tile = false, amx_bf16 = false, amx_int8 = false;  // CPU support and OS tile state in XCR0

    // The AVX-512 subset every AVX-512 kernel library assumes (Skylake-SP and later, AMD Zen 4 and later).
    bool avx512_core() const { return avx512f && avx512dq && avx512cd && avx512bw && avx512vl; }
    // Usable features, best first, space-separated: "avx512_bf16 avx512_vnni avx512 avx2 fma avx ...".
    std::string summary() const;
};

// The features of the CPU this process runs on (cpuid + xgetbv; cheap, no caching needed).
CpuFeatures detect_cpu_features();

enum class AmxState {
    ABSENT,        // the CPU (or the OS) has no AMX tile state
    DENIED,        // the kernel refused ARCH_REQ_XCOMP_PERM (old kernel, or a seccomp filter)
    GRANTED,       // this process may execute tile instructions
};
const char* amx_state_name(AmxState s);

// Asks Linux for permission to use the AMX tile data state (arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA). Without it
// the first tile instruction of the process dies with SIGILL. Idempotent; call it before any library may use AMX.
AmxState request_amx_tile_state(const CpuFeatures& cpu);

// Executes a tile instruction in a forked child (so that a SIGILL kills only the child): true when it ran. For
// `headsweep info` and the tests; the engine itself relies on request_amx_tile_state.
bool probe_amx_tile_instructions();

}  // namespace hs
