// backend/backend_factory.cpp: make_backend, and the loader of the CUDA module (backend/cuda_module.hpp).
#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "backend/backend.hpp"
#include "backend/cuda_module.hpp"
#include "util/error.hpp"

namespace hs {

std::unique_ptr<Backend> make_backend(Device device, const BackendOptions& options) {
    if (device == Device::CUDA) return load_cuda_module().create_backend(options);
    return make_cpu_backend(options.threads, options.cpu_kernels, options.native_prefill);
}

std::vector<std::string> cuda_module_paths() {
    if (const char* p = std::getenv(kCudaModuleEnv); p && *p) return {p};
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (ec) return {kCudaModuleFile};  // no /proc: the loader's own search (LD_LIBRARY_PATH, ...)
    const fs::path dir = exe.parent_path();
    return {(dir / kCudaModuleFile).string(), (dir.parent_path() / "lib" / "headsweep" / kCudaModuleFile).string()};
}

#if defined(HEADSWEEP_HAVE_CUDA)

namespace {
// The first of cuda_module_paths() that exists; the first when none does (dlopen then says what is missing).
std::string cuda_module_path() {
    const std::vector<std::string> paths = cuda_module_paths();
    for (const std::string& p : paths) {
        std::error_code ec;
        if (std::filesystem::exists(p, ec)) return p;
    }
    return paths.front();
}
}  // namespace

const CudaModuleApi& load_cuda_module() {
    const std::string path = cuda_module_path();
    // RTLD_NOW: a missing symbol or library shows here, not at the first call into the module. RTLD_LOCAL: the
    // module's symbols (and cuBLAS's) stay out of the program's namespace. Never dlclose'd (see the header).
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char* why = dlerror();
        const std::string reason = why ? why : "dlopen failed";
        std::error_code ec;
        if (!std::filesystem::exists(path, ec))
            fail("this build has no CUDA module: ", path, ": ", reason, " (build the headsweep_cuda target, which ",
                 "puts it beside the programs, or set ", kCudaModuleEnv, "; or use --device cpu)");
        // Present but unloadable: most often a library it needs (libcudart.so.13, libcublas.so.13) is not found.
        fail("the CUDA module ", path, " does not load: ", reason,
             " (the CUDA runtime and cuBLAS must be on the loader's path, e.g. LD_LIBRARY_PATH; or use --device cpu)");
    }
    using Entry = const CudaModuleApi* (*)();
    auto entry = reinterpret_cast<Entry>(dlsym(handle, "headsweep_cuda_module"));
    if (!entry) fail("CUDA module ", path, ": no entry point headsweep_cuda_module (not a headsweep CUDA module)");
    const CudaModuleApi* api = entry();
    check(api && api->abi == kCudaModuleAbi && api->options_size == sizeof(BackendOptions) && api->create_backend &&
              api->describe_devices,
          "CUDA module ", path, " comes from another build of headsweep (module ", api ? api->version : "?", " ABI ",
          api ? api->abi : 0, ", this program ", HEADSWEEP_VERSION, " ABI ", kCudaModuleAbi,
          "): rebuild it with the program");
    return *api;
}

CudaModuleStatus probe_cuda_module() {
    CudaModuleStatus s;
    s.built = true;
    s.path = cuda_module_path();
    try {
        const CudaModuleApi& api = load_cuda_module();
        s.loaded = true;
        s.detail = api.describe_devices();
    } catch (const Error& e) {
        s.detail = e.what();
    }
    return s;
}

#else

const CudaModuleApi& load_cuda_module() {
    fail("this build of headsweep has no CUDA backend (configure with the CUDA toolkit installed)");
}

CudaModuleStatus probe_cuda_module() {
    CudaModuleStatus s;
    s.detail = "this build has no CUDA backend (configured without a CUDA compiler)";
    return s;
}

#endif

}  // namespace hs
