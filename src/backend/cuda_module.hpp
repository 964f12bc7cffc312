// backend/cuda_module.hpp: the CUDA backend as a module that is loaded only when a CUDA device is asked for.
//
// A CUDA build puts the CUDA backend (src/backend/cuda/, with cuBLAS and the CUDA runtime) into its own shared
// library, libheadsweep_cuda.so, beside the executables, instead of into the programs: the programs do not link
// cuBLAS/cudart, whose mapping and relocation at start-up cost every run ~200 MiB of resident memory even on the CPU.
// make_backend(Device::CUDA) dlopen()s the module on first use and asks its one C entry point,
// headsweep_cuda_module(), for the table below.
//
// The module is built from the same sources and headers as the programs beside it; the table's ABI number and the
// size of BackendOptions guard against a module left over from another build. What the module takes from the
// program (hs::read_rows, hs::cpu::rope_table_extend, ...) is exported by every program that links headsweep_core
// (src/backend/cuda/host_symbols.list; tests/scripts/cuda_module_symbols.sh checks that list against the module).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"

namespace hs {

// Bump when the table or the Backend interface changes shape.
inline constexpr int kCudaModuleAbi = 1;

struct CudaModuleApi {
    int abi = 0;                 // kCudaModuleAbi of the module's build
    size_t options_size = 0;     // sizeof(BackendOptions) in the module's build
    const char* version = "";    // HEADSWEEP_VERSION of the module's build
    // A CUDA backend; throws hs::Error (no device, bad GPU index, CUDA or cuBLAS failure).
    std::unique_ptr<Backend> (*create_backend)(const BackendOptions& options) = nullptr;
    // One line on the CUDA runtime and devices as the module sees them, e.g. "runtime 13.0, driver 13.0, 1 device:
    // cuda:0 NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)", or why there is none ("no CUDA device (CUDA driver version is
    // insufficient for CUDA runtime version)"). Never throws.
    std::string (*describe_devices)() = nullptr;
};

// The file name of the module (libheadsweep_cuda.so) and the environment variable that names its path instead.
inline constexpr const char* kCudaModuleFile = "libheadsweep_cuda.so";
inline constexpr const char* kCudaModuleEnv = "HEADSWEEP_CUDA_MODULE";

// Where this program looks for the module, in order: $HEADSWEEP_CUDA_MODULE alone when set; otherwise the
// directory of the running executable, then <that directory>/../lib/headsweep (the install layout).
std::vector<std::string> cuda_module_paths();

// The module's table: loads the first path of cuda_module_paths() that exists (the first path when none does) with
// dlopen(RTLD_NOW | RTLD_LOCAL). Throws hs::Error naming the path and dlerror()'s reason when the module or a library
// it needs (libcudart, libcublas) is missing, or when it comes from another build. The module is never unloaded
// (the CUDA runtime does not support being unloaded); loading it again only finds the loaded copy.
const CudaModuleApi& load_cuda_module();

// For `headsweep info`: whether this build has a CUDA backend, whether its module loads and what it sees.
struct CudaModuleStatus {
    bool built = false;   // the build has a CUDA backend (HEADSWEEP_HAVE_CUDA)
    bool loaded = false;  // its module loaded
    std::string path;     // the module's path (the first candidate when none loads)
    std::string detail;   // loaded: describe_devices(); otherwise the error
};
CudaModuleStatus probe_cuda_module();

}  // namespace hs

// The module's one exported symbol.
extern "C" const hs::CudaModuleApi* headsweep_cuda_module();
