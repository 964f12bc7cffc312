// Checking OpenBLAS's kernel choice against the CPU, and replacing a fallback by re-executing with
// OPENBLAS_CORETYPE set (see cpu_runtime.hpp for the order of who decides).
#include "backend/cpu/cpu_runtime.hpp"

#include <strings.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

// OpenBLAS's introspection. Weak, so that a build against another BLAS still links and reports "unknown".
extern "C" {
char* openblas_get_corename(void) __attribute__((weak));
char* openblas_get_config(void) __attribute__((weak));
int openblas_get_num_threads(void) __attribute__((weak));
}

namespace hs {

namespace {

// Set before re-executing: the core we asked for, and the core the library had chosen before. Their presence with
// a matching OPENBLAS_CORETYPE tells a re-executed process (and its children) that headsweep set the variable.
constexpr const char* kRequestedVar = "HEADSWEEP_BLAS_REQUESTED";
constexpr const char* kReplacedVar = "HEADSWEEP_BLAS_REPLACED";
constexpr const char* kModeVar = "HEADSWEEP_BLAS_CORETYPE";

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
}

bool same_core(const std::string& a, const std::string& b) {
    return !a.empty() && a.size() == b.size() && strcasecmp(a.c_str(), b.c_str()) == 0;
}

// OPENBLAS_CORETYPE holds the core headsweep requested (not the user's own choice).
bool core_set_by_headsweep() {
    return !env(kReplacedVar).empty() && same_core(env("OPENBLAS_CORETYPE"), env(kRequestedVar));
}

// MPI launchers export the rank before main; without any of these we are not under MPI (rank 0).
bool rank_zero_by_environment() {
    for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
        const std::string v = env(var);
        if (!v.empty()) return v == "0";
    }
    return true;
}

void warn(const std::string& message) {
    if (rank_zero_by_environment()) std::fprintf(stderr, "headsweep: warning: %s\n", message.c_str());
}

enum class Mode { AUTO, OFF, BEST };

Mode read_mode() {
    const std::string v = env(kModeVar);
    if (v.empty() || v == "auto") return Mode::AUTO;
    if (v == "off") return Mode::OFF;
    if (v == "best") return Mode::BEST;
    warn(std::string(kModeVar) + "=" + v + " is not one of auto, off, best; using auto");
    return Mode::AUTO;
}

BlasRuntime read_blas() {
    BlasRuntime b;
    if (openblas_get_config) b.library = openblas_get_config();
    if (openblas_get_corename) b.core = openblas_get_corename();
    if (openblas_get_num_threads) b.threads = openblas_get_num_threads();
    if (b.library.empty()) b.library = "not OpenBLAS (its kernel choice is unknown)";
    b.dynamic_arch = !b.core.empty() && b.library.find("DYNAMIC_ARCH") != std::string::npos;
    return b;
}

BlasRuntime describe_blas(const CpuFeatures& cpu) {
    BlasRuntime b = read_blas();
    const std::vector<std::string> cores = openblas_cores_for(cpu);
    b.best = cores.empty() ? "" : cores.front();
    if (!b.dynamic_arch) {
        b.origin = BlasCoreOrigin::FIXED;
    } else if (core_set_by_headsweep()) {
        b.origin = BlasCoreOrigin::HEADSWEEP;
        b.replaced = env(kReplacedVar);
    } else if (!env("OPENBLAS_CORETYPE").empty()) {
        b.origin = BlasCoreOrigin::USER;
    }
    return b;
}

// Re-executes this program with OPENBLAS_CORETYPE = core; returns only when exec failed.
void reexecute_with_core(char** argv, const std::string& core, const std::string& replaced) {
    setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
    setenv(kRequestedVar, core.c_str(), 1);
    if (env(kReplacedVar).empty()) setenv(kReplacedVar, replaced.c_str(), 1);
    std::fflush(nullptr);
    execv("/proc/self/exe", argv);  // this very binary, wherever argv[0] points
    if (argv && argv[0]) execvp(argv[0], argv);  // no /proc (some containers): the name it was started by
    const int err = errno;
    warn("OpenBLAS runs its " + replaced + " kernels on a CPU that allows " + core +
         "; re-executing with OPENBLAS_CORETYPE=" + core + " failed (" + std::strerror(err) + ")");
}

}  // namespace

const char* blas_core_origin_name(BlasCoreOrigin o) {
    switch (o) {
        case BlasCoreOrigin::LIBRARY: return "OpenBLAS's choice";
        case BlasCoreOrigin::HEADSWEEP: return "chosen by headsweep";
        case BlasCoreOrigin::USER: return "OPENBLAS_CORETYPE from the environment";
        case BlasCoreOrigin::FIXED: return "fixed by the library's build";
    }
    return "?";
}

int openblas_core_tier(const std::string& core) {
    static const struct {
        const char* name;
        int tier;
    } kTiers[] = {
        {"SapphireRapids", 4}, {"Cooperlake", 4}, {"SkylakeX", 3},    {"Haswell", 2},   {"Zen", 2},
        {"Excavator", 2},      {"Sandybridge", 1}, {"Bulldozer", 1},  {"Piledriver", 1}, {"Steamroller", 1},
        {"Prescott", 0},       {"Nehalem", 0},    {"Core2", 0},       {"Penryn", 0},     {"Dunnington", 0},
        {"Atom", 0},           {"Katmai", 0},     {"Coppermine", 0},  {"Northwood", 0},  {"Banias", 0},
        {"Athlon", 0},         {"Opteron", 0},    {"Opteron(SSE3)", 0}, {"Barcelona", 0}, {"Nano", 0},
        {"Bobcat", 0},
    };
    for (const auto& t : kTiers)
        if (same_core(core, t.name)) return t.tier;
    return -1;
}

std::vector<std::string> openblas_cores_for(const CpuFeatures& cpu) {
    // Cooperlake is SkylakeX's SGEMM plus BF16 kernels; every DYNAMIC_ARCH build since 0.3.10 has both. The list
    // goes down to the first core every x86-64 with AVX can run, so that a library lacking the best still gets one.
    std::vector<std::string> cores;
    if (cpu.avx512_core() && cpu.avx512_bf16) cores.push_back("Cooperlake");
    if (cpu.avx512_core()) cores.push_back("SkylakeX");
    if (cpu.avx2 && cpu.fma) cores.push_back("Haswell");
    if (cpu.avx) cores.push_back("Sandybridge");
    return cores;
}

bool BlasRuntime::weaker_than_cpu_allows() const {
    const int tier = openblas_core_tier(core);
    return dynamic_arch && !best.empty() && tier >= 0 && tier < openblas_core_tier(best);
}

std::string BlasRuntime::describe() const {
    if (core.empty()) return library;
    std::string s = core + " (" + blas_core_origin_name(origin);
    if (origin == BlasCoreOrigin::HEADSWEEP) s += ", replacing the library's " + replaced;
    if (weaker_than_cpu_allows())
        s += "; WEAKER than this CPU allows: " + best;
    else if (!best.empty() && dynamic_arch)
        s += ", the best for this CPU";
    s += ")";
    if (threads > 0) s += ", " + std::to_string(threads) + (threads == 1 ? " thread" : " threads");
    return s;
}

void prepare_cpu_runtime(char** argv) {
    const CpuFeatures cpu = detect_cpu_features();
    request_amx_tile_state(cpu);
    const Mode mode = read_mode();
    if (mode == Mode::OFF) return;
    const BlasRuntime blas = describe_blas(cpu);
    if (!blas.weaker_than_cpu_allows()) return;

    if (blas.origin == BlasCoreOrigin::USER && mode != Mode::BEST) {
        warn("OPENBLAS_CORETYPE=" + env("OPENBLAS_CORETYPE") + " (set in the environment) runs OpenBLAS's " +
             blas.core + " kernels; this CPU (" + cpu.summary() + ") allows " + blas.best +
             ", several times faster. Unset OPENBLAS_CORETYPE, or set " + kModeVar + "=best");
        return;
    }
    // The next core to try: the best one, or, when the library did not know the one we asked for (it then falls
    // back to its own detection), the next one down that is still better than what runs.
    const std::vector<std::string> cores = openblas_cores_for(cpu);
    size_t next = 0;
    if (blas.origin == BlasCoreOrigin::HEADSWEEP) {
        const std::string asked = env(kRequestedVar);
        while (next < cores.size() && !same_core(cores[next], asked)) ++next;
        ++next;
    }
    const int running = openblas_core_tier(blas.core);
    if (next >= cores.size() || openblas_core_tier(cores[next]) <= running) {
        warn("OpenBLAS runs its " + blas.core + " kernels and knows none of the better cores this CPU (" +
             cpu.summary() + ") allows; expect slow matrix products");
        return;
    }
    reexecute_with_core(argv, cores[next], blas.core);
}

CpuRuntime describe_cpu_runtime() {
    CpuRuntime r;
    r.cpu = detect_cpu_features();
    r.blas = describe_blas(r.cpu);
    r.amx = request_amx_tile_state(r.cpu);  // idempotent: reports the state prepare_cpu_runtime obtained
    return r;
}

std::vector<std::pair<std::string, std::string>> cpu_runtime_provenance() {
    const CpuRuntime r = describe_cpu_runtime();
    return {{"cpu", r.cpu.brand.empty() ? r.cpu.vendor : r.cpu.brand},
            {"cpu_features", r.cpu.summary()},
            {"blas", r.blas.library},
            {"blas_core", r.blas.describe()}};
}

std::string cpu_runtime_tag() {
    const BlasRuntime b = describe_blas(detect_cpu_features());
    std::string tag = "blas " + (b.core.empty() ? std::string("unknown") : b.core);
    if (b.threads > 0) tag += " x" + std::to_string(b.threads);
    if (b.weaker_than_cpu_allows()) tag += " (SLOW: CPU allows " + b.best + ")";
    return tag;
}

}  // namespace hs
