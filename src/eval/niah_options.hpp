// eval/niah_options.hpp: the settings of the needle-in-a-haystack task (eval/tasks_niah.cpp), part of
// TaskBuildOptions. Defaults: the KVCache-Factory / gkamradt harness (shared/data/niah/needle_config.json).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hs::eval {

struct NiahOptions {
    std::string haystack;  // a folder (every *.txt in it, sorted by name) or one text file; "" = <data>/niah/PaulGrahamEssays
    std::string needle = "\nThe best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.\n";
    std::string question = "What is the best thing to do in San Francisco?";
    std::string answer = "eat a sandwich and sit in Dolores Park on a sunny day.";
    std::vector<int64_t> lengths = {4096, 16384, 65536, 262144, 1048576};  // context lengths in tokens
    std::vector<int32_t> depths = {0, 25, 50, 75, 100};                    // needle depth, % of the context
    int32_t buffer = 200;  // tokens of each length left for the prompt around the haystack (final_context_length_buffer)
    int32_t max_new_tokens = 48;

    // Canonical one-line description of what changes answers (stored in the eval file; a resume must match): not
    // the lengths and depths, which only choose cells (the record ids name them), so a grid can grow over runs.
    std::string settings() const;
};

// "4k,16k,1m" / "4096,16384": k = 1024, m = 1048576. Throws hs::Error naming `what` on bad input.
std::vector<int64_t> parse_niah_lengths(const std::string& s, const std::string& what = "--niah-lengths");
std::vector<int32_t> parse_niah_depths(const std::string& s, const std::string& what = "--niah-depths");

}  // namespace hs::eval
