// eval/run_eval.hpp: `headsweep eval` -- every (model, method, example) answered once, records appended to one
// HDF5 file as they finish, resumable, single-process or distributed over MPI ranks.
//
// Distribution reuses the dist/ coordinator (dist/protocol.hpp): one task = one (example, method) pair, grouped by
// method; rank 0 coordinates, is the only writer and (with <= 4 ranks) answers too. A result travels as doubles:
// score, latency, prompt tokens, original tokens, new tokens, truncated, then the output text's bytes. Every rank
// builds the same examples from the data files and prepares every method once per model. Records are the same
// whatever the number of ranks (greedy decoding, 1 BLAS thread per rank unless --threads says otherwise); only
// latency_s and rank differ, and the summary is computed from records sorted by key.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <boost/mpi/communicator.hpp>

#include "eval/methods.hpp"
#include "eval/records.hpp"
#include "eval/tasks.hpp"

namespace hs::eval {

struct EvalJob {
    std::vector<std::string> models;
    std::vector<std::string> tasks;     // registry names (expanded)
    std::vector<std::string> methods;   // registry names
    MethodSettings method_settings;
    TaskBuildOptions task_options;      // data_dir, limit, caps (n_ctx is filled per model)
    std::string output = "results/eval.h5";
    bool resume = false, overwrite = false;
    int32_t threads = 0;                // BLAS threads; distributed: 0 means 1 per rank
    std::string device = "cpu";
    std::string gpu_weights = "bf16";   // CUDA: bf16 | fp16 | fp32 weight copies
    std::string precision = "f32";      // host weights: f32 | bf16 | native (in the settings when not f32)
    std::string native_prefill = "auto";  // cpu, native: auto | int8 | f32 (in the settings when native, cpu, not f32)
    bool progress = true;
    int64_t max_results = -1;           // stop after this many new results (tests: an interrupted run)
    bool summary_only = false;          // recompute /summary from the records of an existing file, answer nothing
    SummaryOptions summary;

    std::string settings_string() const;  // stored in the file; a resume must match
};

struct EvalOutcome {
    int64_t computed = 0, skipped = 0;
    std::vector<SummaryRow> summary;    // rank 0 only
};

// The data folder: the flag when given, else $HEADSWEEP_DATA, else ../shared/data (relative to the working dir).
std::string resolve_data_dir(const std::string& flag);

// comm == nullptr: this process alone (no MPI). Otherwise collective over comm; throws the same hs::Error on
// every rank when anything fails anywhere.
EvalOutcome run_eval(const EvalJob& job, const boost::mpi::communicator* comm);

// The CLI entry: initialises MPI and runs distributed when launched by mpirun/srun (or force); returns false when
// the caller should run single-process.
bool eval_if_distributed(const EvalJob& job, bool force, bool& is_root, EvalOutcome& out);

}  // namespace hs::eval
