// tests/cuda_emu/emulated_backend.hpp: the CUDA backend (src/backend/cuda/cuda_backend.cu) built against the CPU
// emulator of CUDA, for tests on machines without a GPU.
#pragma once

#include <memory>

#include "backend/backend.hpp"

namespace hs {
std::unique_ptr<Backend> make_emulated_cuda_backend(const BackendOptions& options);
}
