// tests/test_model_path.hpp: where the tests find the real default model; a missing file fails loudly.
#pragma once

#include <string>
#include <sys/stat.h>

#include <catch2/catch.hpp>

inline std::string test_model_path() {
    const std::string path = HEADSWEEP_TEST_MODEL;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        FAIL("the default model " << path << " is missing: run scripts/fetch_model.sh (scripts/setup.sh does it)");
    return path;
}
