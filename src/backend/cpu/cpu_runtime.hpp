// backend/cpu/cpu_runtime.hpp: the CPU backend runs the kernels the CPU allows, and says which ones it runs.
//
// OpenBLAS built with DYNAMIC_ARCH (Debian's) picks its kernel set ("core") once, when the library loads, from a
// table of CPU model numbers. A CPU newer than that table silently gets a generic fallback: Debian's 0.3.21 runs its
// Prescott (SSE3) kernels on Intel Emerald Rapids, about 4x slower than its SkylakeX ones. prepare_cpu_runtime()
// compares the core with what the cpuid feature bits allow and, where the library fell back, sets
// OPENBLAS_CORETYPE to the best core for those features and re-executes the program (the only way: the variable is
// read at library load, before main). It also asks Linux for the AMX tile state, which a process must request
// before its first tile instruction.
//
// Who decides, in order:
//   HEADSWEEP_BLAS_CORETYPE=off    leave OpenBLAS as it loaded (no check, no re-execution)
//   HEADSWEEP_BLAS_CORETYPE=best   choose the best core even over an OPENBLAS_CORETYPE set in the environment
//   OPENBLAS_CORETYPE=<core>       the user's choice is kept; a warning names a better core when there is one
//   (neither)                      OpenBLAS's own choice, replaced by the best core where it is weaker
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "util/cpu_features.hpp"

namespace hs {

// Who chose the BLAS core that runs.
enum class BlasCoreOrigin {
    LIBRARY,    // OpenBLAS's own detection
    HEADSWEEP,  // prepare_cpu_runtime replaced a weaker choice of the library
    USER,       // OPENBLAS_CORETYPE from the environment
    FIXED,      // the library was built for one target (no DYNAMIC_ARCH), or is not OpenBLAS
};
const char* blas_core_origin_name(BlasCoreOrigin o);

struct BlasRuntime {
    std::string library;        // openblas_get_config(): "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..."
    std::string core;           // openblas_get_corename(): "Cooperlake"; "" when the BLAS is not OpenBLAS
    int threads = 0;            // openblas_get_num_threads(); 0 when unknown
    bool dynamic_arch = false;  // the core can be chosen at load time (OPENBLAS_CORETYPE is honoured)
    BlasCoreOrigin origin = BlasCoreOrigin::LIBRARY;
    std::string replaced;       // origin HEADSWEEP: the core the library had chosen itself
    std::string best;           // the best core for this CPU's features ("" when none is known)

    // The running core is weaker than the features allow and the library has a better one.
    bool weaker_than_cpu_allows() const;
    // "Cooperlake (OpenBLAS's choice, the best for this CPU), 2 threads"
    std::string describe() const;
};

struct CpuRuntime {
    CpuFeatures cpu;
    BlasRuntime blas;
    AmxState amx = AmxState::ABSENT;
};

// Call first thing in main(), before MPI_Init and before any thread starts: may re-execute the program with
// OPENBLAS_CORETYPE set (same pid, same argv and environment otherwise), and requests the AMX tile state. Prints
// at most one warning line (on MPI rank 0 only) when the BLAS stays weaker than the CPU allows.
void prepare_cpu_runtime(char** argv);

// The state of this process (cheap; for `headsweep info`, output provenance and progress lines).
CpuRuntime describe_cpu_runtime();

// Provenance for output files: {"cpu", brand}, {"cpu_features", summary}, {"blas", library}, {"blas_core", describe}.
std::vector<std::pair<std::string, std::string>> cpu_runtime_provenance();

// "cpu AMD EPYC 9654, blas Cooperlake x2": a short tag for progress lines.
std::string cpu_runtime_tag();

// ---- the decision, as pure functions of the CPU's features (tested directly)

// OpenBLAS's x86-64 cores that matter for SGEMM/SGEMV, ranked by the instruction set their kernels use:
// 4 AVX-512 + BF16 (Cooperlake), 3 AVX-512 (SkylakeX), 2 AVX2 + FMA (Haswell, Zen, Excavator), 1 AVX (Sandybridge,
// Bulldozer, Piledriver, Steamroller), 0 anything older (Prescott, Nehalem, ...). -1 for an unknown name.
int openblas_core_tier(const std::string& core);
// The cores this CPU can run, best first (empty when nothing beyond tier 0): {"Cooperlake", "SkylakeX", "Haswell"}.
std::vector<std::string> openblas_cores_for(const CpuFeatures& cpu);

}  // namespace hs
