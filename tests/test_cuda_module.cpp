// The CUDA backend as a module loaded on demand (backend/cuda_module.hpp): where the build has CUDA, the module
// beside this test program loads, its errors arrive as hs::Error through the module boundary, and a missing or
// broken module is a clear hs::Error naming its path; where the build has no CUDA, --device cuda is refused.
// (That the module needs nothing the programs do not export, and that no program links cuBLAS/cudart itself, is
// tests/scripts/cuda_module_symbols.sh.)
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cuda_module.hpp"
#include "util/error.hpp"

using namespace hs;

namespace {

// Sets an environment variable for the scope of the object and restores its earlier value (or absence) after.
class ScopedEnv {
public:
    ScopedEnv(const char* name, const std::string& value) : name_(name) {
        if (const char* v = std::getenv(name)) old_ = v;
        ::setenv(name, value.c_str(), 1);
    }
    ~ScopedEnv() {
        if (old_) ::setenv(name_, old_->c_str(), 1);
        else ::unsetenv(name_);
    }

private:
    const char* name_;
    std::optional<std::string> old_;
};

// The hs::Error message of make_backend(Device::CUDA), or "" when it made a backend (a machine with a GPU).
std::string cuda_backend_error() {
    try {
        auto be = make_backend(Device::CUDA, BackendOptions{});
        REQUIRE(be->device() == Device::CUDA);
        return "";
    } catch (const Error& e) {
        return e.what();
    }
}

}  // namespace

#if defined(HEADSWEEP_HAVE_CUDA)

TEST_CASE("cuda module: the module beside the program loads and its errors arrive as hs::Error", "[cuda_module]") {
    ScopedEnv clear(kCudaModuleEnv, "");  // the default search: the directory of this program first
    const CudaModuleStatus s = probe_cuda_module();
    INFO(s.path << ": " << s.detail);
    REQUIRE(s.built);
    REQUIRE(s.loaded);
    CHECK(s.path.size() > std::string(kCudaModuleFile).size());
    CHECK(s.path.compare(s.path.size() - std::string(kCudaModuleFile).size(), std::string::npos, kCudaModuleFile) ==
          0);
    CHECK(s.detail.rfind("runtime ", 0) == 0);  // "runtime 13.0, driver ..., ..."

    const CudaModuleApi& api = load_cuda_module();
    CHECK(api.abi == kCudaModuleAbi);
    CHECK(std::string(api.version) == HEADSWEEP_VERSION);
    CHECK(&api == &load_cuda_module());  // loading again finds the loaded module

    // Without a GPU (CI) the backend's constructor, inside the module, throws hs::Error; with one, a backend.
    const std::string err = cuda_backend_error();
    if (!err.empty()) CHECK(err.find("cuda backend: no CUDA device is available") != std::string::npos);
}

TEST_CASE("cuda module: a missing or broken module is a clear error naming its path", "[cuda_module]") {
    const std::string dir = "/tmp/hs_cuda_module_test_" + std::to_string(::getpid());
    {
        ScopedEnv env(kCudaModuleEnv, dir + "/absent/libheadsweep_cuda.so");
        CHECK(cuda_module_paths() == std::vector<std::string>{dir + "/absent/libheadsweep_cuda.so"});
        const std::string err = cuda_backend_error();
        CHECK(err.find("this build has no CUDA module: " + dir + "/absent/libheadsweep_cuda.so: ") == 0);
        CHECK(err.find("No such file or directory") != std::string::npos);
        const CudaModuleStatus s = probe_cuda_module();
        CHECK(s.built);
        CHECK_FALSE(s.loaded);
        CHECK(s.detail == err);
    }
    {
        // Not an ELF file: dlopen's own reason ("invalid ELF header", "file too short") comes through.
        REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
        const std::string bogus = dir + "/libheadsweep_cuda.so";
        std::FILE* f = std::fopen(bogus.c_str(), "w");
        REQUIRE(f);
        std::fputs("not a shared library\n", f);
        std::fclose(f);
        ScopedEnv env(kCudaModuleEnv, bogus);
        const std::string err = cuda_backend_error();
        std::remove(bogus.c_str());
        ::rmdir(dir.c_str());
        CHECK(err.find("the CUDA module " + bogus + " does not load: ") == 0);
        CHECK((err.find("invalid ELF header") != std::string::npos || err.find("too short") != std::string::npos));
    }
}

#else

TEST_CASE("cuda module: a build without CUDA refuses --device cuda", "[cuda_module]") {
    CHECK(cuda_backend_error().find("this build of headsweep has no CUDA backend") == 0);
    const CudaModuleStatus s = probe_cuda_module();
    CHECK_FALSE(s.built);
    CHECK_FALSE(s.loaded);
}

#endif
