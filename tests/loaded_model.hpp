// tests/loaded_model.hpp: a real model loaded once per test process, with a 2-thread CPU backend and an engine, for
// the tests that only run forwards on it (loading the 270M Gemma takes seconds; every test case of a file shares it).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "engine/engine.hpp"

struct LoadedModel {
    hs::Model model;
    std::unique_ptr<hs::Backend> be;
    std::unique_ptr<hs::Engine> engine;
};

inline LoadedModel& loaded_model(const std::string& path) {
    static std::map<std::string, std::unique_ptr<LoadedModel>> cache;
    std::unique_ptr<LoadedModel>& slot = cache[path];
    if (!slot) {
        slot = std::make_unique<LoadedModel>();
        slot->model = hs::load_model(path);
        slot->be = hs::make_cpu_backend(2);
        slot->engine = std::make_unique<hs::Engine>(slot->model, *slot->be);
    }
    return *slot;
}
