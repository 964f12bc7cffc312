// pear/sweep_file.hpp: the HDF5 file of one PEAR sweep (one model, one mode) -- create, resume, write, finish.
//
// Layout (docs/file-formats.md, "Sweep output (HDF5)"): S settings, L layers, H heads per layer.
//   /pi_ablated [S,L,H] f64 (NaN until written)   /pi_clean [S] f64   /copy_accuracy [S] f64
//   /raw, /ratio [S,L,H] f64   /mean_ratio, /weighted_ratio, /rank [L,H]   /ranking [L*H] i32
//   /top_k/{layer,head,mean_ratio,weighted_ratio} [K]   /done [S,L] u8
//   /axes/{setting,setting_N,setting_n,layer,head,sample,position}: dimension scales attached to every dataset
//   format_version 2 adds the inputs and the per-sample values (N_max, T_max: the largest N and 2n of the settings;
//   setting s uses [:N_s] samples and [:2 n_s] positions, the rest is fill):
//   /inputs/tokens [S,N_max,T_max] i32 (-1 fill)   /pi_clean_samples [S,N_max] f32   /pi_tilde [S,L,H,N_max] f32
//   /stats/{pi_ablated_se,ratio_se} [S,L,H], /stats/{mean_ratio_se,mean_ratio_lo,mean_ratio_hi,top_k_frequency}
//   [L,H] f64 (written by finish(); bootstrap parameters as attributes of /stats; pear/sample_stats.hpp),
//   /top_k/{mean_ratio_se,mean_ratio_lo,mean_ratio_hi,frequency} [K].
//   Version-1 files (no inputs, no per-sample values, no /stats) are read; they cannot be resumed.
//   root attributes: format, job parameters, model provenance, complete; /run attributes: the times.
//   /done_heads [S,L,H] u8: the per-head done mask (items are head ranges); /done [S,L] is 1 where every head of
//   the layer is done. Files without /done_heads (older builds) read their mask from /done.
// Crash safety: a write-ahead journal beside the file (<file>.journal, io/journal.hpp; docs/file-formats.md):
// commit() appends every staged record (checksummed) and fdatasync()s it before the HDF5 writes, then flushes the
// file once. The journal holds everything the file should hold, so open_for_resume() rebuilds the file from it,
// whatever state a crash left the HDF5 file in (a torn journal tail, the batch being written, is ignored with a
// note). The journal is removed when a complete file is closed.
// A file is complete only when the root attribute complete = 1 (set by finish()).
// Determinism: datasets depend only on the job parameters and the model; the only time-dependent values are the
// attributes of the group /run, so `h5diff --exclude-path /run a.h5 b.h5` (or same_datasets()) compares runs.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pear/sample_stats.hpp"
#include "pear/sweep.hpp"

namespace hs::pear {

inline constexpr const char* kSweepFormat = "headsweep-pear-sweep";
inline constexpr int32_t kSweepFormatVersion = 2;     // written by this build
inline constexpr int32_t kSweepFormatOldestRead = 1;  // the oldest version this build reads
inline constexpr int32_t kDefaultBootstrapResamples = 1000;

// How writes reach the disk. journal: the crash-safe discipline above (the default). flush_each: the former one
// (values flushed, then the done marks flushed, per item; no journal); flush_once: one flush per commit and no
// journal (not crash safe: what the journal's fsync costs on top) -- both kept only so that bench_sweep_writer can
// measure all three in one invocation.
enum class WriteDiscipline { journal, flush_each, flush_once };
// The exit status of a process that the crash-safety test hook ended at a write boundary.
inline constexpr int kTestExitCode = 86;
struct WriteOptions {
    WriteDiscipline discipline = WriteDiscipline::journal;
    // Test hook (HEADSWEEP_TEST_EXIT_AT_WRITE): _exit(kTestExitCode) at the k-th write boundary of this file (1:
    // file and journal made; per commit: before the journal sync, after it, after the HDF5 writes, after the flush;
    // finish: before and after its flush). -1: never.
    int64_t test_exit_at_boundary = -1;
};

// The test hook from the environment: HEADSWEEP_TEST_EXIT_AT_WRITE=k (tests/scripts/sweep_crash.sh).
WriteOptions write_options_from_env();

// The journal beside a sweep file: "<path>.journal".
std::string journal_path(const std::string& path);

// What a sweep file records about its job and model. The fields marked [checked] must be equal for a resume.
struct SweepFileInfo {
    std::string model;            // the model as given (GGUF path, HF folder or random spec)
    std::string model_sha256;     // [checked] sha256 of the GGUF file (HF folder: hf_model_sha256); random: of the spec
    std::string model_name;       // general.name or the random shape
    std::string architecture;
    int32_t n_layer = 0;          // [checked]
    int32_t n_head = 0;           // [checked]
    int32_t n_head_kv = 0, d_model = 0, d_head = 0, n_vocab = 0, n_ctx = 0;
    // [checked] the work item size (heads of one layer per item; 0: whole layers). A head's scores depend in their
    // last bits on how many heads share its batched MLP GEMMs (BLAS results per row depend on the row count), so
    // the item size is a job parameter like the seed: any rank count gives the same file for the same item size.
    int32_t heads_per_item = 0;
    SweepOptions options;         // [checked] mode, settings, seed, exclude_special, mean_over, positions
                                  // (top_k and max_rows_per_chunk are not checked: they change no per-head score)
    std::string device = "cpu";
    std::string job_file;         // "" when the job came from the command line
    std::string engine_version = HEADSWEEP_VERSION;
};

// The provenance of a loaded model (the hash: sha256 of the GGUF file, or of source.path for random models).
SweepFileInfo describe_model(const Model& model, const std::string& spec);
// sha256 of a GGUF file; of a Hugging Face folder, hf_model_sha256 (config.json, index and shards: see
// docs/file-formats.md); for "random:<shape>[:<seed>]" the hash of "random:<shape>:seed=<seed>" (seed 1 when
// omitted), so that "random:tiny" and "random:tiny:1" are the same model.
std::string model_sha256(const std::string& spec);

// "20x50,40x25" (N x n per setting), and "all" or "0,5,7" for TOTAL-mode positions.
std::string settings_string(const std::vector<ProxySetting>& settings);
std::string positions_string(const std::vector<int32_t>& positions);

// The job parameters that differ between a file and a job: "mode (file: total, job: path)", ... (empty: equal).
std::vector<std::string> differing_parameters(const SweepFileInfo& file, const SweepFileInfo& job);

class SweepFile {
public:
    // Creates a new file with every dataset (unwritten cells NaN / -1 / 0). Refuses an existing file unless
    // overwrite. Sets /run start_time.
    static SweepFile create(const std::string& path, const SweepFileInfo& info, bool overwrite = false,
                            const WriteOptions& write = {});
    // Opens an existing file to continue it: refuses a file that is no sweep file, or whose checked job
    // parameters differ from `info` ("<path>: cannot resume: job parameter seed differs (file: 1, job: 2)").
    // With a journal beside it the file is rebuilt from the journal (notes() says what was found); without one
    // (an older build's file, or a finished one) the file must be readable and its contents become the journal.
    static SweepFile open_for_resume(const std::string& path, const SweepFileInfo& info, const WriteOptions& write = {});
    // The job parameters of a file to be resumed: from its journal when there is one (the HDF5 file may be
    // unreadable after a crash), else from the file.
    static SweepFileInfo resume_info(const std::string& path);
    // Opens read-only (reading back, analysis, tests).
    static SweepFile open(const std::string& path);

    SweepFile(SweepFile&&) noexcept;
    SweepFile& operator=(SweepFile&&) noexcept;
    ~SweepFile();

    const std::string& path() const;
    const SweepFileInfo& info() const;  // as stored in the file
    int32_t n_settings() const;

    int32_t format_version() const;
    bool has_samples() const;  // format_version >= 2: inputs and per-sample values

    // The clean run of setting s: pi, copy accuracy, the proxy tokens [N, 2n] and each sample's clean pi [N]
    // (pi_clean must equal sample_mean(pi_clean_samples) exactly).
    void stage_clean(int32_t setting, double pi_clean, double copy_accuracy, const std::vector<int32_t>& tokens,
                     const std::vector<float>& pi_clean_samples);
    // One finished item (SettingRun::score_samples): means [layer - layer_begin][head - head_begin] and per-sample
    // values [.., .., N]; any head range. Refuses means that are not the sample means of the values.
    void stage_item(const WorkItem& item, const ItemScores& scores);
    size_t staged() const;
    // Writes everything staged: one journal append (fsync'd), the HDF5 writes (values and done marks), one flush.
    void commit();
    // stage + commit of one.
    void write_clean(int32_t setting, double pi_clean, double copy_accuracy, const std::vector<int32_t>& tokens,
                     const std::vector<float>& pi_clean_samples);
    void write_item(const WorkItem& item, const ItemScores& scores);
    // What open_for_resume found and did (a torn journal tail ignored, a journal written from an older file).
    const std::vector<std::string>& notes() const;

    std::vector<uint8_t> done() const;               // [S, L]: every head of the layer done
    const std::vector<uint8_t>& done_heads() const;  // [S, L, H]
    bool setting_done(int32_t setting) const;
    bool all_done() const;
    bool complete() const;  // root attribute complete == 1
    // Items of the plan with a head not done yet (plan_items order; any item size).
    std::vector<WorkItem> remaining(const std::vector<WorkItem>& plan) const;

    // Computes raw/ratio/aggregates/ranking/top-K (finish_scores) from pi_clean and pi_ablated, and the /stats
    // (head_stats: `resamples` bootstrap resamples seeded with the sweep's seed, 95%), writes them, sets
    // complete = 1, top_k and /run end_time. Throws when some (setting, layer) is not done.
    HeadScores finish(int32_t top_k, int32_t resamples = kDefaultBootstrapResamples);

    // Reads the scores back (NaN where not written; aggregates as stored, i.e. NaN before finish()).
    HeadScores read_scores() const;

    // The per-sample values, checked: throws naming the file and the dataset when the file has none (version 1:
    // "absent"), or when a dataset is missing, has the wrong shape, holds a non-finite value in a done layer or
    // does not average to /pi_ablated (/pi_clean). Cells of layers not done are NaN.
    SampleData read_samples() const;
    // The proxy tokens of setting s, [N_s, 2 n_s] (version 2; throws for version 1).
    std::vector<int32_t> read_tokens(int32_t setting) const;
    // The stored /stats (version 2 and finished); nullopt when absent.
    std::optional<HeadStats> read_stats() const;

    void flush();
    void close();

private:
    struct Impl;
    explicit SweepFile(std::unique_ptr<Impl> impl);
    static std::unique_ptr<Impl> create_hdf5(const std::string& path, const SweepFileInfo& info, bool overwrite,
                                             const std::string& start_time);
    std::unique_ptr<Impl> impl_;
};

// Compares every dataset of two files (names, shapes and values byte for byte; NaN equals NaN) and the root
// attributes, ignoring /run (the times). Returns the differences found, empty when the files are the same.
std::vector<std::string> compare_sweep_files(const std::string& a, const std::string& b);

}  // namespace hs::pear
