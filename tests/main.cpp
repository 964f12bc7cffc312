// Test runner entry point. Tests that need MPI initialise it themselves through dist/; plain tests need nothing.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "backend/cpu/cpu_runtime.hpp"

int main(int argc, char** argv) {
    hs::prepare_cpu_runtime(argv);  // the tests run the kernels the program would (tests/test_cpu_runtime.cpp)
    return Catch::Session().run(argc, argv);
}
