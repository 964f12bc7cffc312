// Reading cpuid and XCR0, and Linux's per-process AMX permission.
#include "util/cpu_features.hpp"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define HS_X86 1
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

namespace hs {

#if HS_X86
namespace {

struct Regs {
    uint32_t a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(uint32_t leaf, uint32_t sub = 0) {
    Regs r;
    if (!__get_cpuid_count(leaf, sub, &r.a, &r.b, &r.c, &r.d)) r = Regs{};
    return r;
}

bool bit(uint32_t v, int i) { return (v >> i) & 1u; }

uint64_t read_xcr0() {
    uint32_t lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t(hi) << 32) | lo;
}

}  // namespace

CpuFeatures detect_cpu_features() {
    CpuFeatures f;
    const Regs v = cpuid(0);
    char vendor[13] = {};
    std::memcpy(vendor, &v.b, 4), std::memcpy(vendor + 4, &v.d, 4), std::memcpy(vendor + 8, &v.c, 4);
    f.vendor = vendor;
    const uint32_t max_leaf = v.a;

    const Regs l1 = cpuid(1);
    const uint32_t base_family = (l1.a >> 8) & 0xf, base_model = (l1.a >> 4) & 0xf;
    f.family = int(base_family == 0xf ? base_family + ((l1.a >> 20) & 0xff) : base_family);
    f.model = int(base_family == 0x6 || base_family == 0xf ? base_model | (((l1.a >> 16) & 0xf) << 4) : base_model);
    f.stepping = int(l1.a & 0xf);

    if (cpuid(0x80000000).a >= 0x80000004) {
        char brand[49] = {};
        for (uint32_t i = 0; i < 3; ++i) {
            const Regs r = cpuid(0x80000002 + i);
            std::memcpy(brand + 16 * i, &r, 16);
        }
        f.brand = brand;
        const size_t first = f.brand.find_first_not_of(' '), last = f.brand.find_last_not_of(' ');
        f.brand = first == std::string::npos ? "" : f.brand.substr(first, last - first + 1);
    }

    // What the OS saves on a context switch: SSE|AVX (bits 1,2), AVX-512 opmask|ZMM_Hi256|Hi16_ZMM (5,6,7),
    // AMX XTILECFG|XTILEDATA (17,18). Without OSXSAVE nothing beyond SSE is usable.
    const uint64_t xcr0 = bit(l1.c, 27) ? read_xcr0() : 0;
    const bool os_avx = (xcr0 & 0x6) == 0x6;
    const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
    const bool os_amx = (xcr0 & 0x60000) == 0x60000;

    f.sse3 = bit(l1.c, 0), f.ssse3 = bit(l1.c, 9), f.sse4_1 = bit(l1.c, 19), f.sse4_2 = bit(l1.c, 20);
    f.avx = os_avx && bit(l1.c, 28);
    f.fma = f.avx && bit(l1.c, 12);
    f.f16c = f.avx && bit(l1.c, 29);
    if (max_leaf >= 7) {
        const Regs l7 = cpuid(7, 0), l7s1 = cpuid(7, 1);
        f.avx2 = f.avx && bit(l7.b, 5);
        f.avx512f = os_avx512 && bit(l7.b, 16);
        f.avx512dq = f.avx512f && bit(l7.b, 17);
        f.avx512cd = f.avx512f && bit(l7.b, 28);
        f.avx512bw = f.avx512f && bit(l7.b, 30);
        f.avx512vl = f.avx512f && bit(l7.b, 31);
        f.avx512_vnni = f.avx512f && bit(l7.c, 11);
        f.avx512_fp16 = f.avx512f && bit(l7.d, 23);
        f.avx512_bf16 = f.avx512f && bit(l7s1.a, 5);
        f.avx_vnni = f.avx && bit(l7s1.a, 4);
        f.amx_tile = os_amx && bit(l7.d, 24);
        f.amx_bf16 = f.amx_tile && bit(l7.d, 22);
        f.amx_int8 = f.amx_tile && bit(l7.d, 25);
    }
    return f;
}
#else
CpuFeatures detect_cpu_features() { return CpuFeatures{}; }
#endif

std::string CpuFeatures::summary() const {
    std::string s;
    auto add = [&s](bool on, const char* name) {
        if (on) s += (s.empty() ? "" : " ") + std::string(name);
    };
    add(amx_tile && amx_bf16, "amx_bf16");
    add(amx_tile && amx_int8, "amx_int8");
    add(avx512_fp16, "avx512_fp16");
    add(avx512_bf16, "avx512_bf16");
    add(avx512_vnni, "avx512_vnni");
    add(avx512_core(), "avx512");
    add(avx_vnni, "avx_vnni");
    add(avx2, "avx2");
    add(fma, "fma");
    add(f16c, "f16c");
    add(avx, "avx");
    add(sse4_2, "sse4_2");
    add(ssse3, "ssse3");
    add(sse3, "sse3");
    return s.empty() ? "none beyond the baseline" : s;
}

const char* amx_state_name(AmxState s) {
    switch (s) {
        case AmxState::ABSENT: return "absent";
        case AmxState::DENIED: return "denied by the kernel";
        case AmxState::GRANTED: return "granted";
    }
    return "?";
}

#if HS_X86 && defined(__linux__)
namespace {
constexpr int kArchGetXcompPerm = 0x1022;  // <asm/prctl.h>, Linux 5.16+
constexpr int kArchReqXcompPerm = 0x1023;
constexpr int kXfeatureXtiledata = 18;
}  // namespace

AmxState request_amx_tile_state(const CpuFeatures& cpu) {
    if (!cpu.amx_tile) return AmxState::ABSENT;
    uint64_t permitted = 0;
    if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &permitted) == 0 && (permitted >> kXfeatureXtiledata) & 1u)
        return AmxState::GRANTED;
    if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return AmxState::DENIED;
    return AmxState::GRANTED;
}

bool probe_amx_tile_instructions() {
    const pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        // Palette 1; tile 0 configured as 16 rows x 64 bytes. ldtilecfg, tilezero tmm0, tilerelease.
        alignas(64) unsigned char config[64] = {};
        config[0] = 1;
        config[16] = 64;  // colsb[0] (little-endian uint16)
        config[48] = 16;  // rows[0]
        __asm__ volatile(
            "ldtilecfg (%0)\n\t"
            "tilezero %%tmm0\n\t"
            "tilerelease\n\t" ::"r"(config)
            : "memory");
        _exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}
#else
AmxState request_amx_tile_state(const CpuFeatures&) { return AmxState::ABSENT; }
bool probe_amx_tile_instructions() { return false; }
#endif

}  // namespace hs
