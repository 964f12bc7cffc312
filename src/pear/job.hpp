// pear/job.hpp: a sweep job -- which models, which modes, which settings, where the results go.
//
// A job comes from a TOML file (jobs/<name>.toml; every key is documented in jobs/smollm2-pear.toml and the
// README), from command-line flags, or from both (flags override the file). One job expands into one run per
// (model, mode), each with its own output file from the output template ("out/{model}-{mode}.h5"; {model} is the
// model file's stem, {mode} the mode name). The single-process command runs them one after another; the MPI
// sweep distributes each of them.
//
// Validation happens fully before any work starts and every error names where the value came from, the key and
// the value: "jobs/x.toml: key settings[2].n = 0 must be >= 2", "command line: --top-k = 999 is larger than ...".
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "pear/sweep.hpp"

namespace hs::pear {

inline constexpr const char* kDefaultSweepModel = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
inline constexpr const char* kDefaultSweepOutput = "out/{model}-{mode}.h5";

struct SweepJob {
    std::string source;  // the job file, "" when the job comes from the command line only
    std::vector<std::string> models = {kDefaultSweepModel};
    std::vector<ScoreMode> modes = {ScoreMode::PATH};
    SweepOptions options;  // settings, seed, top_k, exclude_special, mean_over, total_positions (mode: per run)
    std::string output = kDefaultSweepOutput;
    bool overwrite = false;
    bool resume = false;
    int32_t threads = 0;   // BLAS threads, 0: library default
    // Work item size: heads of one layer per item (0 or >= the model's heads: whole layers). Like the seed it is
    // part of the result (recorded in the file, checked on resume); the rank count is not. Big MPI jobs need it:
    // the distributed sweep advises a value when there are fewer than kItemsPerWorker items per worker.
    int32_t heads_per_item = 0;
    // MPI: who reads a GGUF model file -- "rank" (every rank maps it; the page cache of a node shares the reads)
    // or "node" (the node's first rank reads it into MPI shared memory, dist/node_file.hpp).
    std::string model_read = "rank";
    // MPI: each setting's clean run computed once (by the first worker that takes the setting up) and sent through
    // rank 0 to the other workers that take it up (dist/protocol.hpp, shared group state); false: every worker
    // computes the clean run of each setting it takes up. The same file either way (bit for bit).
    bool share_clean_runs = true;
    std::string device = "cpu";
    std::string gpu_weights = "bf16";  // CUDA: bf16 | fp16 | fp32 weight copies (fp32: exact fp32 compute)
    std::string precision = "f32";     // host weights: f32 (exact; the sweeps' default) | bf16 | native
    std::string native_prefill = "auto";  // cpu, native: prompts through int8 tiles (auto, int8) or SGEMM (f32)

    // Where each key was set, for error messages: key -> "jobs/x.toml: key top_k" or "command line: --top-k".
    // Keys never set read "key top_k (default)".
    std::map<std::string, std::string> origin;
    std::string where(const std::string& key) const;
};

// A distributed sweep wants at least this many items per worker (dynamic assignment with guided batches balances
// well only with several); with fewer it prints the heads_per_item that would give them.
inline constexpr int32_t kItemsPerWorker = 8;

// The item size a job's heads_per_item means for a model of n_head heads: 0 (whole layers) for 0 or >= n_head.
inline int32_t normalised_heads_per_item(int32_t heads_per_item, int32_t n_head) {
    return heads_per_item <= 0 || heads_per_item >= n_head ? 0 : heads_per_item;
}

// The backend options a job asks for (threads, GPU weight type; the GPU index is chosen per MPI rank).
BackendOptions backend_options(const SweepJob& job);
// What output files record as the device: "cpu", "cpu (native weights)" or "cuda (bf16 weights)".
std::string device_label(const SweepJob& job);
// The load options a job asks for (weight precision).
LoadOptions load_options(const SweepJob& job, bool verbose);

// The TOML keys a job file may have (anything else is an error).
const std::vector<std::string>& job_keys();

// Parses and checks a job file or job text (types, ranges, unknown keys, mode and device names, the output
// template). Throws hs::Error("<file>: ...").
SweepJob parse_job_file(const std::string& path);
SweepJob parse_job_text(std::string_view toml, const std::string& source);

// "20x50,40x25" -> settings; `where` names the value in errors.
std::vector<ProxySetting> parse_settings_list(const std::string& text, const std::string& where);

// One (model, mode) of a job and its output file.
struct SweepRun {
    std::string model;
    ScoreMode mode = ScoreMode::PATH;
    std::string output;
};
std::vector<SweepRun> expand_runs(const SweepJob& job);
// The {model} of the output template: the file stem ("SmolLM2-135M-Instruct.Q4_1"), or "random-<shape>[-<seed>]".
std::string model_stem(const std::string& spec);
std::string expand_output(const std::string& tmpl, const std::string& model, ScoreMode mode);

// Checks that need no model: option consistency, the output template against the lists of models and modes,
// distinct outputs, writable output directories (creating missing ones), and that no output exists unless
// overwrite or resume is set.
void validate_job(const SweepJob& job);

// What a job needs to know of a model before loading it (read from the GGUF metadata, or the random shape).
struct ModelShape {
    std::string spec;
    int32_t n_layer = 0, n_head = 0, n_ctx = 0;
};
ModelShape peek_model_shape(const std::string& spec, const std::string& where);

// Checks against one model: every setting's 2n fits the context, K <= heads, positions inside every setting.
void validate_job_for_model(const SweepJob& job, const ModelShape& shape);

}  // namespace hs::pear
