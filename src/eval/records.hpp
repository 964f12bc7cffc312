// eval/records.hpp: the evaluation output file (HDF5, docs/file-formats.md "Evaluation output (HDF5)").
//
//   /                 attrs: format = "headsweep-eval", format_version = 2, headsweep_version, settings (the
//                     task-building settings; a resumed run must give the same), data_dir
//   /methods          attrs: one per method name = its config() (a resumed run must give the same)
//   /records/<col>    1-D extendible columns, one row per (model, method, task, gold_position, id), in the order
//                     the results arrived: model, method, task, id, output, detail (strings); gold_position,
//                     prompt_tokens, original_tokens, new_tokens, rank (int32); truncated (uint8); score,
//                     latency_s (float64). detail: the method's own per-answer facts as one JSON object
//                     (e.g. InfiniRetri's chunks read and fraction kept; "" when the method has none). Version 1
//                     files (no detail) are read, and upgraded when resumed.
//   /summary/<col>    rewritten at the end of every run: one row per (model, method, task, gold_position), sorted
//                     by that key: model, method, task, baseline (strings); gold_position, n, n_paired (int64 /
//                     int32); accuracy, ci_low, ci_high, diff, diff_low, diff_high (float64; diff* NaN for the
//                     baseline itself or when no example is shared). attrs: bootstrap_resamples, bootstrap_seed,
//                     ci_level, interval ("percentile, numpy linear quantiles")
// Only rank 0 writes; every appended record is flushed, so a killed run loses at most the record in flight. On
// opening, columns of unequal length (a kill between two column appends) are cut to the shortest.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "io/h5.hpp"
#include "eval/stats.hpp"

namespace hs::eval {

struct Record {
    std::string model, method, task, id;
    int32_t gold_position = -1;
    int32_t prompt_tokens = 0, original_tokens = 0, new_tokens = 0;
    uint8_t truncated = 0;
    std::string output;
    std::string detail;          // the method's Answer::detail (one JSON object, or "")
    double score = 0;
    double latency_s = 0;
    int32_t rank = 0;

    // The identity of a record: what a resumed run skips and what the summary sorts by.
    std::tuple<std::string, std::string, std::string, int32_t, std::string> key() const {
        return {model, method, task, gold_position, id};
    }
};

// Records sorted by key(): the order that does not depend on the number of ranks.
std::vector<Record> sorted_records(std::vector<Record> r);

struct SummaryRow {
    std::string model, method, task;
    int32_t gold_position = -1;
    Interval accuracy;           // bootstrap over the cell's examples
    std::string baseline;        // the method differences are taken against ("vanilla")
    Interval diff;               // method - baseline, paired over the examples both have (NaN when none / baseline)
};

struct SummaryOptions {
    std::string baseline = "vanilla";
    int32_t resamples = kBootstrapResamples;
    uint64_t seed = kBootstrapSeed;
    double level = 0.95;
};
std::vector<SummaryRow> summarize(const std::vector<Record>& records, const SummaryOptions& o = {});
std::string format_summary_table(const std::vector<SummaryRow>& rows);  // plain-text table for the terminal

class RecordsFile {
public:
    // create: refuses an existing file unless overwrite. open_for_resume: checks format and settings.
    static RecordsFile create(const std::string& path, const std::string& settings, const std::string& data_dir,
                              bool overwrite);
    static RecordsFile open_for_resume(const std::string& path, const std::string& settings);
    static std::vector<Record> read(const std::string& path);  // every record, file order

    // Registers a method's config; refuses when the file has the same name with another config.
    void check_method(const std::string& name, const std::string& config);
    std::vector<Record> records() const;
    void append(const Record& r);  // one row in every column, then flush
    void write_summary(const std::vector<SummaryRow>& rows, const SummaryOptions& o);
    void close();
    const std::string& path() const { return path_; }

private:
    RecordsFile() = default;
    void repair();
    std::string path_;
    h5::File file_;
};

}  // namespace hs::eval
