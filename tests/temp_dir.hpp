// tests/temp_dir.hpp: a fresh directory per test case (unique per process and use), removed at the end.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

struct TempDir {
    std::filesystem::path dir;
    explicit TempDir(const std::string& tag = "test") {
        static int counter = 0;
        dir = std::filesystem::temp_directory_path() /
              ("headsweep_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(const std::string& name) const { return (dir / name).string(); }
    // Writes `text` to a file in the directory and returns its path.
    std::string write(const std::string& name, const std::string& text) const {
        std::ofstream(file(name)) << text;
        return file(name);
    }
};
