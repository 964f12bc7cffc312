// rtd/builder.hpp: embedding prompts into an RTD datastore with an Engine (the key of a prompt = the final
// hidden state after the final norm at its last token; ForwardHooks::final_hidden + hidden_only: no logits).
//
// The plan (entries in file order) is made by the caller (eval/tasks_choice: prompts, rotations, cap). The build
// is resumable (entries are appended in plan order and the file records how many are written) and runs on one
// process or over MPI ranks through the dist/ coordinator: each rank embeds the entries it is handed, results
// (the key as doubles: exact for floats) travel to rank 0, which writes them in plan order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rtd/datastore.hpp"

namespace boost::mpi {
class communicator;
}
namespace hs {
class Engine;
}

namespace hs::rtd {

struct BuildEntry {
    int32_t item = 0;              // source item index (rotations of one question share it)
    int32_t label = 0;             // value: the label index under this entry's rotation
    std::vector<int32_t> ids;      // the tokenised prompt
};

struct BuildOptions {
    bool resume = false, overwrite = false, progress = true;
    std::string label = "datastore";   // progress label
    int64_t flush_every = 64;          // entries per HDF5 append (a crash loses at most this many)
    int64_t max_entries = -1;          // stop after this many new entries (tests: an interrupted build)
    bool share_prefix = true;          // embed the entries of one item together (embed_group); the work unit is
                                       // then an item, and a resume may start inside one
};

struct BuildStats {
    int64_t planned = 0, computed = 0, already = 0;   // already: written before a resume
    int64_t tokens = 0;                               // prompt tokens embedded now
    double seconds = 0;
};

// The key of one prompt: [d_model].
std::vector<float> embed_prompt(Engine& engine, const std::vector<int32_t>& ids);

// The keys of several prompts ([n, d_model]) that share a token prefix (the rotations of one question share the
// instruction and the question): the prefix is run once into a KV cache and each prompt's rest continues it. The
// same function as embed_prompt up to float rounding (tested); falls back to embed_prompt when the common prefix
// is shorter than min_prefix tokens.
std::vector<float> embed_group(Engine& engine, const std::vector<const std::vector<int32_t>*>& prompts,
                               int64_t min_prefix = 8);

// Builds (or resumes) `path`. comm == nullptr: this process alone; otherwise collective over comm (rank 0
// writes; every rank must pass the same plan). Returns the stats on rank 0.
BuildStats build_datastore(Engine& engine, const std::vector<BuildEntry>& plan, const DatastoreInfo& info,
                           const std::string& path, const BuildOptions& options,
                           const boost::mpi::communicator* comm = nullptr);

}  // namespace hs::rtd
