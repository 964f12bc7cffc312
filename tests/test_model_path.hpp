// tests/test_model_path.hpp: where the tests find their files (the real default model, the Gemma 3 model,
// tests/fixtures/, the source tree). The compile-time paths (HEADSWEEP_TEST_MODEL, HEADSWEEP_TEST_GEMMA3,
// HEADSWEEP_FIXTURES, HEADSWEEP_SOURCE_DIR) are those of the build machine; a test binary run elsewhere (the GPU
// bundle, docs/gpu.md) is pointed at the copies there by the environment, which wins when set:
// HEADSWEEP_TEST_MODEL_PATH, HEADSWEEP_TEST_GEMMA3_PATH, HEADSWEEP_FIXTURES_DIR, HEADSWEEP_REPO_DIR.
#pragma once

#include <cstdlib>
#include <string>
#include <sys/stat.h>

#include <catch2/catch.hpp>

namespace hs_test_paths {
inline std::string env_or(const char* var, const char* fallback) {
    const char* v = std::getenv(var);
    return v && *v ? std::string(v) : std::string(fallback);
}
}  // namespace hs_test_paths

// tests/fixtures (no trailing slash).
inline std::string fixtures_dir() { return hs_test_paths::env_or("HEADSWEEP_FIXTURES_DIR", HEADSWEEP_FIXTURES); }

// The repository root (analysis/ scripts and the like).
inline std::string repo_dir() { return hs_test_paths::env_or("HEADSWEEP_REPO_DIR", HEADSWEEP_SOURCE_DIR); }

// The shared evaluation data (../shared/data next to the repository; HEADSWEEP_DATA wins when set).
inline std::string shared_data_dir() { return hs_test_paths::env_or("HEADSWEEP_DATA", (repo_dir() + "/../shared/data").c_str()); }

// The default model's path, unchecked.
inline std::string test_model_file() {
    return hs_test_paths::env_or("HEADSWEEP_TEST_MODEL_PATH", HEADSWEEP_TEST_MODEL);
}

namespace hs_test_paths {
// `path` when the file exists; otherwise the test fails naming the model and how to fetch it.
inline std::string existing_model(const std::string& path, const char* what, const char* fetch) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) FAIL(what << " " << path << " is missing: run " << fetch << " (scripts/setup.sh does it)");
    return path;
}
}  // namespace hs_test_paths

// The default model's path; a missing file fails the test loudly.
inline std::string test_model_path() {
    return hs_test_paths::existing_model(test_model_file(), "the default model", "scripts/fetch_model.sh");
}

// The Gemma 3 270M model's path (scripts/fetch_model.sh --gemma3), unchecked.
inline std::string test_gemma3_file() {
    return hs_test_paths::env_or("HEADSWEEP_TEST_GEMMA3_PATH", HEADSWEEP_TEST_GEMMA3);
}

// The Gemma 3 model's path; a missing file fails the test loudly.
inline std::string test_gemma3_path() {
    return hs_test_paths::existing_model(test_gemma3_file(), "the Gemma 3 model", "scripts/fetch_model.sh --gemma3");
}
