// rtd/datastore.hpp: the RTD datastore (shared/docs/methods.md §3): keys = the model's final hidden state (after
// the final norm) at the last prompt token, values = label indices. One HDF5 file per (model, task); layout in
// docs/file-formats.md "RTD datastore (HDF5)".
//
// A file is written in entry order (the build plan's order) and may be partial while a build runs: `complete` = 0
// and only the first `n_written` entries are valid; a resumed build continues from there. Readers refuse a partial
// file. Every check at the file boundary throws hs::Error naming the file and the problem.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hs::rtd {

inline constexpr int32_t kFormatVersion = 1;
inline constexpr int64_t kDefaultCap = 20480;   // the reference code's max_generation_amount (4096 * 5)

// Everything about a datastore except its entries. [checked] fields must match on resume and at query time.
struct DatastoreInfo {
    std::string task;                  // task name (arc-easy, sst2, user:<name>, ...)
    std::string sources;               // the data file(s) the entries come from, ';'-separated
    std::string prompt_template;       // the prompt, with {question}/{options} placeholders (documentation)
    std::string model_spec;            // what the model was opened from ("<spec>|<left method config>" composed)
    std::string model_sha256;          // [checked] identity of the model actually used (see model_identity)
    int32_t d = 0;                     // [checked] key dimension (= the model's d_model)
    int32_t n_head = 0;                // the head partition for MH-RTD: n_head slices of head_dim = d / n_head
    int32_t head_dim = 0;
    int32_t n_labels = 0;              // [checked] label values are 0..n_labels-1
    std::vector<std::string> label_names;  // n_labels names ("A".."D", "negative"/"positive", ...)
    int64_t cap = kDefaultCap;         // at most this many entries (the plan is cut at cap)
    int64_t planned = 0;               // entries in the (capped) plan
    int64_t items_used = 0, items_skipped = 0;  // source items in the plan / left out (other option count, too long)
    bool rotations = true;             // multiple choice: one entry per rotation of the options
    std::string build_settings;        // one line: everything else that changes the keys
    // Tuned temperatures (headsweep datastore tune): 0 = not tuned.
    double tuned_T = 0, tuned_T_mh = 0;
    std::string tune_report;           // one line: grid, accuracies, dev split
};

struct Datastore {
    DatastoreInfo info;
    std::vector<float> keys;           // [size, d] row-major
    std::vector<int32_t> labels;       // [size]
    std::vector<int32_t> items;        // [size] the source item of each entry (rotations share one)
    int64_t size() const { return int64_t(labels.size()); }
};

// Validates info (positive sizes, d = n_head * head_dim, names = n_labels); throws naming `where`.
void check_info(const DatastoreInfo& info, const std::string& where);

// Writes a complete datastore (refuses an existing file unless overwrite).
void write_datastore(const std::string& path, const Datastore& ds, bool overwrite = false);

// Reads and checks a complete datastore: format version, shapes, labels in range, no NaN/Inf keys, not empty,
// complete. Every error names the file.
Datastore read_datastore(const std::string& path);
DatastoreInfo read_datastore_info(const std::string& path);  // the attributes only (also of a partial file)

// The query-time checks: the datastore was built by the model with this identity and key dimension, and has
// the expected number of labels. `what` names the caller's side (e.g. "task arc-easy").
void check_compatible(const Datastore& ds, const std::string& path, const std::string& model_sha256, int32_t d,
                      int32_t n_labels, const std::string& what, const std::string& model_spec = "");

// Records the tuned temperatures into an existing complete file.
void write_tuned(const std::string& path, double T, double T_mh, const std::string& report);

// Incremental writer for builds: creates the file (or reopens a partial one for resume, checking that its info
// equals `info` except for tuning), appends entries in plan order, marks it complete.
class DatastoreWriter {
public:
    // resume: reopen an existing partial (or complete) file; otherwise create (overwrite replaces).
    DatastoreWriter(const std::string& path, const DatastoreInfo& info, bool resume, bool overwrite);
    ~DatastoreWriter();
    DatastoreWriter(const DatastoreWriter&) = delete;
    DatastoreWriter& operator=(const DatastoreWriter&) = delete;
    int64_t written() const { return written_; }
    // keys [n, d], labels [n], items [n]
    void append(const float* keys, const int32_t* labels, const int32_t* items, int64_t n);
    void truncate(int64_t n);   // keep the first n entries (n <= written()): a resume restarts at an item's start
    void finish();   // complete = 1, flush, close

private:
    struct Impl;
    Impl* impl_;
    std::string path_;
    int32_t d_ = 0, n_labels_ = 0;
    int64_t written_ = 0;
};

// The model identity stored in datastores: sha256 of the base model (file hash, or of a random model's
// normalised spec: see pear::model_sha256) when nothing else is applied, else sha256(base_sha + "|" + the
// composition's configuration). `base_sha` is computed by the caller (rtd does not depend on pear).
std::string model_identity(const std::string& base_sha, const std::string& composed_config);

}  // namespace hs::rtd
