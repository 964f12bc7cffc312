// The CUDA backend's own source, compiled by the C++ compiler against the emulator (cuda_compat.cuh switches on
// HS_CUDA_EMULATION): the kernels and the backend class that run on a GPU are the code under test here.
#define HS_CUDA_EMULATION 1
#include "backend/cuda/cuda_backend.cu"
