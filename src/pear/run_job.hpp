// pear/run_job.hpp: run a sweep job in one process -- every (model, mode) of the job, one after another.
//
// For each run: validate everything first (the whole job, every model's shape, every existing output file that
// is to be resumed), then load the model, create or resume the output file, and for each setting with work left
// build its SettingRun and score its remaining items (job.heads_per_item heads of one layer each; whole layers
// by default), writing each item as it finishes (SweepFile::write_item: journal, then file); then
// finish the file (aggregates, ranking, top-K, complete = 1).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

#include "pear/job.hpp"
#include "pear/sweep_file.hpp"

namespace hs::pear {

struct RunJobOptions {
    bool progress = true;            // progress lines on stderr (Progress, one per run)
    double progress_interval_s = 5;
    int64_t max_items = -1;          // stop after this many items in all (tests: a run that was cut short)
    WriteOptions write;              // the sweep files' write discipline and test hook
};

struct RunSummary {
    std::string model, mode, output;
    int32_t n_layer = 0, n_head = 0;
    int64_t heads_scored = 0;        // heads scored by this invocation (0: the file was already complete)
    double seconds = 0;
    bool complete = false;           // false when max_items stopped the run
    bool resumed = false;
    // Clean runs of settings computed by this invocation (every rank; MPI: each worker's each setting taken up, or
    // with shared clean runs once per setting) and clean states received instead (shared clean runs).
    int64_t clean_runs = 0, clean_runs_received = 0;
    std::vector<std::pair<int32_t, int32_t>> top;  // top-K (layer, head), best first
    std::string line() const;        // the one-line summary
    // The fields known before scoring (model, mode, output, shape, resumed).
    static RunSummary start(const SweepRun& run, const ModelConfig& config, bool resumed);
};

// Validates the whole job before any work (throws hs::Error naming file, key and value), then runs it.
std::vector<RunSummary> run_job(const SweepJob& job, const RunJobOptions& options = {});

// Only the validation part of run_job (nothing is written except missing output directories).
void validate_job_fully(const SweepJob& job);

}  // namespace hs::pear
