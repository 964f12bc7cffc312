// Test runner entry point. Tests that need MPI initialise it themselves through dist/; plain tests need nothing.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

int main(int argc, char** argv) { return Catch::Session().run(argc, argv); }
