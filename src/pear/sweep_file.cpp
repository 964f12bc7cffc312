// The HDF5 file of one PEAR sweep (layout: sweep_file.hpp and docs/file-formats.md).
#include "pear/sweep_file.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_runtime.hpp"
#include "io/h5.hpp"
#include "io/journal.hpp"
#include "model/model.hpp"
#include "util/error.hpp"
#include "util/sha256.hpp"

namespace hs::pear {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string utc_now() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::vector<int32_t> parse_positions(const std::string& s, const std::string& where) {
    std::vector<int32_t> out;
    if (s == "all" || s.empty()) return out;
    std::stringstream ss(s);
    std::string part;
    while (std::getline(ss, part, ',')) {
        try {
            out.push_back(int32_t(std::stoi(part)));
        } catch (const std::exception&) {
            fail(where, ": attribute positions = '", s, "' is not 'all' or a comma-separated list of integers");
        }
    }
    return out;
}

// Journal record types (docs/file-formats.md, "Sweep journal").
enum JournalType : uint32_t { kBegin = 1, kClean = 2, kItem = 3 };
constexpr int32_t kJournalVersion = 1;  // BEGIN's journal_version: the record layouts of this build

std::string info_json(const SweepFileInfo& i, const std::string& start_time) {
    const SweepOptions& o = i.options;
    nlohmann::json j = {{"model", i.model},
                        {"model_sha256", i.model_sha256},
                        {"model_name", i.model_name},
                        {"architecture", i.architecture},
                        {"n_layer", i.n_layer},
                        {"n_head", i.n_head},
                        {"n_head_kv", i.n_head_kv},
                        {"d_model", i.d_model},
                        {"d_head", i.d_head},
                        {"n_vocab", i.n_vocab},
                        {"n_ctx", i.n_ctx},
                        {"mode", score_mode_name(o.mode)},
                        {"settings", settings_string(o.settings)},
                        {"seed", uint64_t(o.seed)},
                        {"exclude_special", o.exclude_special},
                        {"mean_over", mean_over_name(o.mean_over)},
                        {"positions", positions_string(o.total_positions)},
                        {"heads_per_item", i.heads_per_item},
                        {"device", i.device},
                        {"job_file", i.job_file},
                        {"engine_version", i.engine_version},
                        {"start_time", start_time},
                        {"journal_version", kJournalVersion},
                        {"format_version", kSweepFormatVersion}};
    return j.dump();
}

// The BEGIN record back into the file's info (throws naming the journal when it is not one of ours).
SweepFileInfo info_from_json(const std::string& text, const std::string& where, std::string& start_time) {
    try {
        const nlohmann::json j = nlohmann::json::parse(text);
        const int32_t jv = j.at("journal_version").get<int32_t>();
        check(jv == kJournalVersion, where, ": journal version ", jv, jv > kJournalVersion ? " is newer than" : " is not",
              " the version this build reads (", kJournalVersion, ")", jv > kJournalVersion ? ": use a newer headsweep" : "");
        SweepFileInfo i;
        i.model = j.at("model").get<std::string>();
        i.model_sha256 = j.at("model_sha256").get<std::string>();
        i.model_name = j.at("model_name").get<std::string>();
        i.architecture = j.at("architecture").get<std::string>();
        i.n_layer = j.at("n_layer").get<int32_t>();
        i.n_head = j.at("n_head").get<int32_t>();
        i.n_head_kv = j.at("n_head_kv").get<int32_t>();
        i.d_model = j.at("d_model").get<int32_t>();
        i.d_head = j.at("d_head").get<int32_t>();
        i.n_vocab = j.at("n_vocab").get<int32_t>();
        i.n_ctx = j.at("n_ctx").get<int32_t>();
        SweepOptions& o = i.options;
        o.mode = parse_score_mode(j.at("mode").get<std::string>());
        o.settings.clear();
        std::stringstream ss(j.at("settings").get<std::string>());
        std::string part;
        while (std::getline(ss, part, ',')) {
            const auto x = part.find('x');
            check(x != std::string::npos, where, ": bad setting '", part, "'");
            o.settings.push_back({int32_t(std::stoi(part.substr(0, x))), int32_t(std::stoi(part.substr(x + 1)))});
        }
        o.seed = j.at("seed").get<uint64_t>();
        o.exclude_special = j.at("exclude_special").get<bool>();
        o.mean_over = parse_mean_over(j.at("mean_over").get<std::string>());
        o.total_positions = parse_positions(j.at("positions").get<std::string>(), where);
        i.heads_per_item = j.at("heads_per_item").get<int32_t>();
        i.device = j.at("device").get<std::string>();
        i.job_file = j.at("job_file").get<std::string>();
        i.engine_version = j.at("engine_version").get<std::string>();
        start_time = j.at("start_time").get<std::string>();
        return i;
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        fail(where, ": the journal's first record does not describe a sweep (", e.what(), "): the journal is damaged");
    }
}

template <class T>
std::vector<T> iota_vec(int32_t n) {
    std::vector<T> v(size_t(std::max(n, 0)));
    for (int32_t i = 0; i < n; ++i) v[size_t(i)] = T(i);
    return v;
}

}  // namespace

std::string settings_string(const std::vector<ProxySetting>& settings) {
    std::string s;
    for (const auto& st : settings) {
        if (!s.empty()) s += ',';
        s += std::to_string(st.n_samples);
        s += 'x';
        s += std::to_string(st.half_len);
    }
    return s;
}

std::string positions_string(const std::vector<int32_t>& positions) {
    if (positions.empty()) return "all";
    std::string s;
    for (int32_t p : positions) {
        if (!s.empty()) s += ',';
        s += std::to_string(p);
    }
    return s;
}

std::string model_sha256(const std::string& spec) {
    if (spec.rfind("random:", 0) == 0) {
        std::string shape = spec.substr(7), seed = "1";
        if (auto c = shape.find(':'); c != std::string::npos) {
            seed = std::to_string(std::stoull(shape.substr(c + 1)));
            shape = shape.substr(0, c);
        }
        return sha256_hex("random:" + shape + ":seed=" + seed);
    }
    if (is_hf_folder(spec)) return hf_model_sha256(spec);  // config.json, index and shards (docs/file-formats.md)
    return sha256_file(spec);
}

SweepFileInfo describe_model(const Model& model, const std::string& spec) {
    SweepFileInfo info;
    const ModelConfig& c = model.config;
    info.model = spec;
    info.model_sha256 = model_sha256(spec);
    info.model_name = c.name;
    info.architecture = c.arch_name;
    info.n_layer = c.n_layer;
    info.n_head = c.n_head;
    info.n_head_kv = c.n_head_kv;
    info.d_model = c.d_model;
    info.d_head = c.d_head;
    info.n_vocab = c.n_vocab;
    info.n_ctx = c.n_ctx;
    return info;
}

std::vector<std::string> differing_parameters(const SweepFileInfo& f, const SweepFileInfo& j) {
    std::vector<std::string> d;
    auto cmp = [&](const char* name, const std::string& a, const std::string& b) {
        if (a != b) d.push_back(std::string(name) + " (file: " + a + ", job: " + b + ")");
    };
    cmp("model_sha256", f.model_sha256, j.model_sha256);
    cmp("n_layer", std::to_string(f.n_layer), std::to_string(j.n_layer));
    cmp("n_head", std::to_string(f.n_head), std::to_string(j.n_head));
    cmp("mode", score_mode_name(f.options.mode), score_mode_name(j.options.mode));
    cmp("settings", settings_string(f.options.settings), settings_string(j.options.settings));
    cmp("seed", std::to_string(f.options.seed), std::to_string(j.options.seed));
    cmp("exclude_special", f.options.exclude_special ? "true" : "false", j.options.exclude_special ? "true" : "false");
    cmp("mean_over", mean_over_name(f.options.mean_over), mean_over_name(j.options.mean_over));
    cmp("positions", positions_string(f.options.total_positions), positions_string(j.options.total_positions));
    cmp("heads_per_item", std::to_string(f.heads_per_item), std::to_string(j.heads_per_item));
    return d;
}

// ------------------------------------------------------------------------------------------------ SweepFile

struct SweepFile::Impl {
    std::string path;
    h5::File file;
    SweepFileInfo info;
    int32_t S = 0, L = 0, H = 0;
    int32_t version = kSweepFormatVersion;
    int32_t n_max = 0, t_max = 0;  // the largest N and 2n of the settings
    std::vector<uint8_t> done_heads;  // [S, L, H]: what the file holds (in memory; /done_heads on disk)
    io::Journal journal;              // open while the file is written (not for read-only files)
    std::string start_time;
    WriteDiscipline discipline = WriteDiscipline::journal;
    int64_t exit_at = -1, boundaries = 0;  // test hook: _exit at the exit_at-th write boundary
    std::vector<std::string> notes;

    struct StagedClean {
        int32_t setting;
        double pi_clean, copy_accuracy;
        std::vector<int32_t> tokens;
        std::vector<float> samples;
    };
    struct StagedItem {
        WorkItem item;
        ItemScores scores;
    };
    std::vector<StagedClean> cleans;
    std::vector<StagedItem> items;

    // The datasets every item writes, opened once (an H5Dopen per write cost more than the write itself; their
    // chunk caches also keep partly written chunks between items). Dropped before the file is closed.
    h5::Dataset d_pi_ablated, d_pi_tilde, d_done_heads, d_done;
    h5::Dataset& cached(h5::Dataset& d, const char* name) {
        if (!d.valid()) d = file.open_dataset(name);
        return d;
    }
    void drop_handles() {
        for (h5::Dataset* d : {&d_pi_ablated, &d_pi_tilde, &d_done_heads, &d_done}) *d = h5::Dataset();
    }

    // A write boundary: the crash-safety test makes the process end here (HEADSWEEP_TEST_EXIT_AT_WRITE).
    void boundary() {
        if (exit_at >= 0 && ++boundaries == exit_at) {
            std::fflush(nullptr);
            ::_exit(kTestExitCode);
        }
    }

    size_t at(int32_t s, int32_t l, int32_t h) const { return (size_t(s) * L + size_t(l)) * H + size_t(h); }
    bool layer_done(int32_t s, int32_t l) const {
        const uint8_t* d = &done_heads[at(s, l, 0)];
        return std::all_of(d, d + H, [](uint8_t v) { return v != 0; });
    }
    // The per-head mask from the file: /done_heads, or for files written before it existed the layers of /done.
    void load_done_heads() {
        if (file.has("done_heads")) {
            done_heads = file.open_dataset("done_heads").read<uint8_t>();
            check(done_heads.size() == size_t(S) * L * H, path, ": dataset /done_heads is damaged: its shape is not [",
                  S, ", ", L, ", ", H, "]");
            return;
        }
        const auto d = file.open_dataset("done").read<uint8_t>();
        done_heads.assign(size_t(S) * L * H, 0);
        for (int32_t s = 0; s < S; ++s)
            for (int32_t l = 0; l < L; ++l)
                if (d[size_t(s) * L + l]) std::fill_n(&done_heads[at(s, l, 0)], H, uint8_t(1));
    }

    // The HDF5 writes of one clean run / one item (no flush): values, then the done marks.
    void apply_clean(const StagedClean& c) {
        const ProxySetting& st = info.options.settings[size_t(c.setting)];
        const int32_t N = st.n_samples, T = 2 * st.half_len;
        file.open_dataset("pi_clean").write(&c.pi_clean, 1, {uint64_t(c.setting)}, {1});
        file.open_dataset("copy_accuracy").write(&c.copy_accuracy, 1, {uint64_t(c.setting)}, {1});
        file.open_dataset("inputs/tokens").write(c.tokens, {uint64_t(c.setting), 0, 0}, {1, uint64_t(N), uint64_t(T)});
        file.open_dataset("pi_clean_samples").write(c.samples, {uint64_t(c.setting), 0}, {1, uint64_t(N)});
    }
    void apply_item_values(const StagedItem& x) {
        const WorkItem& it = x.item;
        const int32_t N = x.scores.n_samples;
        const uint64_t nl = uint64_t(it.layer_end - it.layer_begin), nh = uint64_t(it.head_end - it.head_begin);
        const uint64_t s = uint64_t(it.setting), l0 = uint64_t(it.layer_begin), h0 = uint64_t(it.head_begin);
        cached(d_pi_ablated, "pi_ablated").write(x.scores.pi_ablated, {s, l0, h0}, {1, nl, nh});
        cached(d_pi_tilde, "pi_tilde").write(x.scores.pi_tilde, {s, l0, h0, 0}, {1, nl, nh, uint64_t(N)});
    }
    void apply_item_done(const StagedItem& x) {
        const WorkItem& it = x.item;
        const uint64_t nl = uint64_t(it.layer_end - it.layer_begin), nh = uint64_t(it.head_end - it.head_begin);
        for (int32_t l = it.layer_begin; l < it.layer_end; ++l)
            std::fill_n(&done_heads[at(it.setting, l, it.head_begin)], nh, uint8_t(1));
        std::vector<uint8_t> ones(nl * nh, 1);
        cached(d_done_heads, "done_heads")
            .write(ones, {uint64_t(it.setting), uint64_t(it.layer_begin), uint64_t(it.head_begin)}, {1, nl, nh});
        for (int32_t l = it.layer_begin; l < it.layer_end; ++l)
            if (layer_done(it.setting, l)) {
                const uint8_t one = 1;
                cached(d_done, "done").write(&one, 1, {uint64_t(it.setting), uint64_t(l)}, {1, 1});
            }
    }

    // Journal payloads.
    static std::vector<char> encode(const StagedClean& c) {
        io::RecordWriter w;
        w.put(c.setting);
        w.put(c.pi_clean);
        w.put(c.copy_accuracy);
        w.put_array(c.tokens.data(), c.tokens.size());
        w.put_array(c.samples.data(), c.samples.size());
        return std::move(w.bytes);
    }
    static std::vector<char> encode(const StagedItem& x) {
        io::RecordWriter w;
        const WorkItem& it = x.item;
        for (int32_t v : {it.setting, it.layer_begin, it.layer_end, it.head_begin, it.head_end, x.scores.n_samples})
            w.put(v);
        w.put_array(x.scores.pi_ablated.data(), x.scores.pi_ablated.size());
        w.put_array(x.scores.pi_tilde.data(), x.scores.pi_tilde.size());
        return std::move(w.bytes);
    }
    StagedClean decode_clean(const io::JournalRecord& r, const std::string& where) const {
        io::RecordReader rd{r.payload.data(), r.payload.data() + r.payload.size(), where};
        StagedClean c;
        c.setting = rd.get<int32_t>();
        c.pi_clean = rd.get<double>();
        c.copy_accuracy = rd.get<double>();
        c.tokens = rd.get_array<int32_t>();
        c.samples = rd.get_array<float>();
        return c;
    }
    StagedItem decode_item(const io::JournalRecord& r, const std::string& where) const {
        io::RecordReader rd{r.payload.data(), r.payload.data() + r.payload.size(), where};
        StagedItem x;
        x.item.setting = rd.get<int32_t>();
        x.item.layer_begin = rd.get<int32_t>();
        x.item.layer_end = rd.get<int32_t>();
        x.item.head_begin = rd.get<int32_t>();
        x.item.head_end = rd.get<int32_t>();
        x.scores.n_samples = rd.get<int32_t>();
        x.scores.pi_ablated = rd.get_array<double>();
        x.scores.pi_tilde = rd.get_array<float>();
        return x;
    }

    std::vector<uint64_t> slh() const { return {uint64_t(S), uint64_t(L), uint64_t(H)}; }

    void set_sizes() {
        S = int32_t(info.options.settings.size());
        L = info.n_layer;
        H = info.n_head;
        n_max = t_max = 0;
        for (const auto& st : info.options.settings) {
            n_max = std::max(n_max, st.n_samples);
            t_max = std::max(t_max, 2 * st.half_len);
        }
    }

    // Fails unless the file holds per-sample data (what: what the caller wanted, for the message).
    void need_samples(const char* what) const {
        check(version >= 2, path, ": ", what, " absent: the file has format version ", version,
              ", which stores no inputs or per-sample values (version 2 does; run the sweep again to get them)");
    }

    h5::Dataset sample_dataset(const std::string& name, const std::vector<uint64_t>& dims) const {
        check(file.has(name), path, ": dataset /", name, " is missing (format version ", version,
              " should have it): the file is damaged");
        h5::Dataset d = file.open_dataset(name);
        check(!d.is_string() && d.dims() == dims, path, ": dataset /", name, " is damaged: its shape is not the [",
              [&] {
                  std::string t;
                  for (uint64_t x : dims) t += (t.empty() ? "" : ", ") + std::to_string(x);
                  return t;
              }(),
              "] the settings and model give");
        return d;
    }

    void write_info() {
        h5::File& f = file;
        const SweepOptions& o = info.options;
        f.set_attr("format", kSweepFormat);
        f.set_attr("format_version", kSweepFormatVersion);
        f.set_attr("complete", int32_t(0));
        f.set_attr("model", info.model);
        f.set_attr("model_sha256", info.model_sha256);
        f.set_attr("model_name", info.model_name);
        f.set_attr("architecture", info.architecture);
        f.set_attr("n_layer", info.n_layer);
        f.set_attr("n_head", info.n_head);
        f.set_attr("n_head_kv", info.n_head_kv);
        f.set_attr("d_model", info.d_model);
        f.set_attr("d_head", info.d_head);
        f.set_attr("n_vocab", info.n_vocab);
        f.set_attr("n_ctx", info.n_ctx);
        f.set_attr("mode", score_mode_name(o.mode));
        f.set_attr("settings", settings_string(o.settings));
        f.set_attr("seed", uint64_t(o.seed));
        f.set_attr("exclude_special", int32_t(o.exclude_special ? 1 : 0));
        f.set_attr("mean_over", mean_over_name(o.mean_over));
        f.set_attr("positions", positions_string(o.total_positions));
        f.set_attr("top_k", int32_t(0));
        f.set_attr("heads_per_item", info.heads_per_item);
        f.set_attr("device", info.device);
        f.set_attr("engine_version", info.engine_version);
        for (const auto& [key, value] : cpu_runtime_provenance()) f.set_attr(key, value);
    }

    void read_info() {
        const h5::File& f = file;
        check(f.has_attr("format") && f.attr_string("format") == kSweepFormat, path,
              ": not a headsweep sweep file (root attribute format != ", kSweepFormat, ")");
        check(f.has_attr("format_version"), path, ": sweep file without a format_version attribute");
        version = f.attr<int32_t>("format_version");
        check(version <= kSweepFormatVersion, path, ": sweep file format version ", version,
              " is newer than this build reads (versions ", kSweepFormatOldestRead, " to ", kSweepFormatVersion,
              "): use a newer headsweep");
        check(version >= kSweepFormatOldestRead, path, ": unknown sweep file format version ", version,
              " (this build reads versions ", kSweepFormatOldestRead, " to ", kSweepFormatVersion, ")");
        info.model = f.attr_string("model");
        info.model_sha256 = f.attr_string("model_sha256");
        info.model_name = f.attr_string("model_name");
        info.architecture = f.attr_string("architecture");
        info.n_layer = f.attr<int32_t>("n_layer");
        info.n_head = f.attr<int32_t>("n_head");
        info.n_head_kv = f.attr<int32_t>("n_head_kv");
        info.d_model = f.attr<int32_t>("d_model");
        info.d_head = f.attr<int32_t>("d_head");
        info.n_vocab = f.attr<int32_t>("n_vocab");
        info.n_ctx = f.attr<int32_t>("n_ctx");
        SweepOptions& o = info.options;
        o.mode = parse_score_mode(f.attr_string("mode"));
        o.seed = f.attr<uint64_t>("seed");
        o.exclude_special = f.attr<int32_t>("exclude_special") != 0;
        o.mean_over = parse_mean_over(f.attr_string("mean_over"));
        o.total_positions = parse_positions(f.attr_string("positions"), path);
        o.top_k = f.attr<int32_t>("top_k");
        // files of builds before head-range items have no attribute: they hold whole-layer items
        info.heads_per_item = f.has_attr("heads_per_item") ? f.attr<int32_t>("heads_per_item") : 0;
        const auto Ns = f.open_dataset("axes/setting_N").read<int32_t>();
        const auto ns = f.open_dataset("axes/setting_n").read<int32_t>();
        check(Ns.size() == ns.size(), path, ": /axes/setting_N and /axes/setting_n differ in length");
        o.settings.clear();
        for (size_t i = 0; i < Ns.size(); ++i) o.settings.push_back({Ns[i], ns[i]});
        info.device = f.attr_string("device");
        info.engine_version = f.attr_string("engine_version");
        h5::Group run = f.open_group("run");
        info.job_file = run.has_attr("job_file") ? run.attr_string("job_file") : "";
        set_sizes();
        check(f.open_dataset("pi_ablated").dims() == slh(), path, ": /pi_ablated does not have shape [", S, ", ", L,
              ", ", H, "]");
    }

    void create_layout() {
        h5::File& f = file;
        const SweepOptions& o = info.options;
        h5::Group axes = f.create_group("axes");
        auto axis = [&](const std::string& name, const std::vector<int32_t>& values) {
            h5::Dataset d = axes.create_dataset<int32_t>(name, {uint64_t(values.size())});
            d.write(values);
            d.make_scale(name);
            return d;
        };
        std::vector<int32_t> Ns, ns;
        for (const auto& s : o.settings) {
            Ns.push_back(s.n_samples);
            ns.push_back(s.half_len);
        }
        h5::Dataset a_setting = axis("setting", iota_vec<int32_t>(S));
        h5::Dataset a_N = axis("setting_N", Ns);
        h5::Dataset a_n = axis("setting_n", ns);
        h5::Dataset a_layer = axis("layer", iota_vec<int32_t>(L));
        h5::Dataset a_head = axis("head", iota_vec<int32_t>(H));
        h5::Dataset a_sample = axis("sample", iota_vec<int32_t>(n_max));
        h5::Dataset a_position = axis("position", iota_vec<int32_t>(t_max));
        auto attach_setting = [&](h5::Dataset& d, unsigned dim) {
            d.attach_scale(a_setting, dim);
            d.attach_scale(a_N, dim);
            d.attach_scale(a_n, dim);
        };
        h5::DatasetOptions nan;
        nan.fill = kNaN;
        for (const char* name : {"pi_ablated", "raw", "ratio"}) {
            h5::Dataset d = f.create_dataset<double>(name, slh(), nan);
            attach_setting(d, 0);
            d.attach_scale(a_layer, 1);
            d.attach_scale(a_head, 2);
        }
        for (const char* name : {"pi_clean", "copy_accuracy"}) {
            h5::Dataset d = f.create_dataset<double>(name, {uint64_t(S)}, nan);
            attach_setting(d, 0);
        }
        for (const char* name : {"mean_ratio", "weighted_ratio"}) {
            h5::Dataset d = f.create_dataset<double>(name, {uint64_t(L), uint64_t(H)}, nan);
            d.attach_scale(a_layer, 0);
            d.attach_scale(a_head, 1);
        }
        h5::DatasetOptions minus1;
        minus1.fill = -1;
        {
            h5::Dataset d = f.create_dataset<int32_t>("rank", {uint64_t(L), uint64_t(H)}, minus1);
            d.attach_scale(a_layer, 0);
            d.attach_scale(a_head, 1);
        }
        f.create_dataset<int32_t>("ranking", {uint64_t(L) * uint64_t(H)}, minus1);
        h5::DatasetOptions zero;
        zero.fill = 0;
        {
            h5::Dataset d = f.create_dataset<uint8_t>("done", {uint64_t(S), uint64_t(L)}, zero);
            attach_setting(d, 0);
            d.attach_scale(a_layer, 1);
            // the per-head mask of head-range items; /done[s, l] is set when every head of the layer is done
            h5::Dataset dh = f.create_dataset<uint8_t>("done_heads", slh(), zero);
            attach_setting(dh, 0);
            dh.attach_scale(a_layer, 1);
            dh.attach_scale(a_head, 2);
        }
        h5::DatasetOptions ext;
        ext.max_dims = {h5::kUnlimited};
        ext.chunk = {64};
        h5::Group top = f.create_group("top_k");
        top.create_dataset<int32_t>("layer", {0}, ext);
        top.create_dataset<int32_t>("head", {0}, ext);
        top.create_dataset<double>("mean_ratio", {0}, ext);
        top.create_dataset<double>("weighted_ratio", {0}, ext);
        for (const char* name : {"mean_ratio_se", "mean_ratio_lo", "mean_ratio_hi", "frequency"})
            top.create_dataset<double>(name, {0}, ext);

        // Version 2: inputs, per-sample values (one chunk per setting x layer: what write_item writes) and stats.
        {
            h5::DatasetOptions o;
            o.fill = -1;
            o.chunk = {1, uint64_t(n_max), uint64_t(t_max)};
            h5::Group inputs = f.create_group("inputs");
            h5::Dataset d = inputs.create_dataset<int32_t>("tokens", {uint64_t(S), uint64_t(n_max), uint64_t(t_max)}, o);
            attach_setting(d, 0);
            d.attach_scale(a_sample, 1);
            d.attach_scale(a_position, 2);
        }
        {
            h5::DatasetOptions o;
            o.fill = kNaN;
            h5::Dataset d = f.create_dataset<float>("pi_clean_samples", {uint64_t(S), uint64_t(n_max)}, o);
            attach_setting(d, 0);
            d.attach_scale(a_sample, 1);
            o.chunk = {1, 1, uint64_t(H), uint64_t(n_max)};
            h5::Dataset t =
                f.create_dataset<float>("pi_tilde", {uint64_t(S), uint64_t(L), uint64_t(H), uint64_t(n_max)}, o);
            attach_setting(t, 0);
            t.attach_scale(a_layer, 1);
            t.attach_scale(a_head, 2);
            t.attach_scale(a_sample, 3);
        }
        h5::Group st = f.create_group("stats");
        for (const char* name : {"pi_ablated_se", "ratio_se"}) {
            h5::Dataset d = st.create_dataset<double>(name, slh(), nan);
            attach_setting(d, 0);
            d.attach_scale(a_layer, 1);
            d.attach_scale(a_head, 2);
        }
        for (const char* name : {"mean_ratio_se", "mean_ratio_lo", "mean_ratio_hi", "top_k_frequency"}) {
            h5::Dataset d = st.create_dataset<double>(name, {uint64_t(L), uint64_t(H)}, nan);
            d.attach_scale(a_layer, 0);
            d.attach_scale(a_head, 1);
        }
        st.set_attr("bootstrap_resamples", int32_t(0));
        st.set_attr("bootstrap_seed", uint64_t(0));
        st.set_attr("confidence", 0.0);
        st.set_attr("top_k", int32_t(0));
        st.set_attr("method",
                    "se: sd/sqrt(N) of pi_tilde; ratio_se: delta method of the paired ratio; mean_ratio_se: "
                    "sqrt(sum_s ratio_se^2)/S; lo/hi: bootstrap percentile interval of mean_ratio (resamples of the "
                    "samples of every setting, the same draw for all heads); top_k_frequency: fraction of resamples "
                    "with the head in the top K (docs/file-formats.md)");
    }

    void mark_incomplete() {
        if (file.attr<int32_t>("complete") != 0) file.set_attr("complete", int32_t(0));
    }
};

SweepFile::SweepFile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SweepFile::SweepFile(SweepFile&&) noexcept = default;
SweepFile& SweepFile::operator=(SweepFile&&) noexcept = default;
SweepFile::~SweepFile() = default;

std::string journal_path(const std::string& path) { return path + ".journal"; }

WriteOptions write_options_from_env() {
    WriteOptions w;
    if (const char* v = std::getenv("HEADSWEEP_TEST_EXIT_AT_WRITE"); v && *v) w.test_exit_at_boundary = std::atoll(v);
    return w;
}

std::unique_ptr<SweepFile::Impl> SweepFile::create_hdf5(const std::string& path, const SweepFileInfo& info,
                                                        bool overwrite, const std::string& start_time) {
    auto impl = std::make_unique<Impl>();
    impl->path = path;
    impl->info = info;
    impl->start_time = start_time;
    impl->set_sizes();
    impl->file = h5::File::create(path, overwrite ? h5::Overwrite::yes : h5::Overwrite::no);
    impl->write_info();
    impl->create_layout();
    h5::Group run = impl->file.create_group("run");
    run.set_attr("start_time", start_time);
    run.set_attr("end_time", "");
    run.set_attr("resumed_time", "");
    run.set_attr("job_file", info.job_file);
    impl->done_heads.assign(size_t(impl->S) * impl->L * impl->H, 0);
    impl->file.flush();
    return impl;
}

namespace {

std::string joined(const std::vector<std::string>& v) {
    std::string all;
    for (const auto& d : v) all += (all.empty() ? "" : "; ") + d;
    return all;
}

void refuse_differing(const std::string& path, const std::vector<std::string>& diff) {
    if (diff.empty()) return;
    fail(path, ": cannot resume: job parameter", diff.size() == 1 ? "" : "s", " differ", diff.size() == 1 ? "s" : "",
         " from the file's: ", joined(diff), " (use --overwrite to start again, or another output path)");
}

int64_t exit_at_from(const WriteOptions& w) { return w.test_exit_at_boundary; }

}  // namespace

SweepFile SweepFile::create(const std::string& path, const SweepFileInfo& info, bool overwrite,
                            const WriteOptions& wo) {
    check(!info.options.settings.empty(), path, ": a sweep needs at least one setting");
    check(info.n_layer > 0 && info.n_head > 0, path, ": model shape n_layer = ", info.n_layer, ", n_head = ",
          info.n_head, " is not positive");
    if (!overwrite && std::filesystem::exists(path))
        fail(path, ": output file exists (use --overwrite to replace it or --resume to continue it)");
    const std::string start = utc_now();
    // The journal first: an HDF5 file that a crash leaves half made always has a journal to rebuild it from.
    io::Journal journal;
    if (wo.discipline == WriteDiscipline::journal) {
        journal = io::Journal::create(journal_path(path));
        const std::string begin = info_json(info, start);
        journal.append(kBegin, begin.data(), begin.size());
        journal.sync();
    } else {
        std::filesystem::remove(journal_path(path));
    }
    auto impl = create_hdf5(path, info, overwrite, start);
    impl->journal = std::move(journal);
    impl->discipline = wo.discipline;
    impl->exit_at = exit_at_from(wo);
    impl->boundary();  // 1: the journal and the empty file exist
    return SweepFile(std::move(impl));
}

SweepFileInfo SweepFile::resume_info(const std::string& path) {
    const std::string jp = journal_path(path);
    if (std::filesystem::exists(jp)) {
        const io::JournalContents jc = io::Journal::read(jp);
        if (!jc.records.empty() && jc.records[0].type == kBegin) {
            std::string start;
            return info_from_json(std::string(jc.records[0].payload.begin(), jc.records[0].payload.end()), jp, start);
        }
    }
    return open(path).info();
}

SweepFile SweepFile::open_for_resume(const std::string& path, const SweepFileInfo& info, const WriteOptions& wo) {
    namespace fs = std::filesystem;
    const std::string jp = journal_path(path);
    std::vector<std::string> notes;
    // A journal whose first record never reached the disk whole is no journal (the file was not made yet).
    if (fs::exists(jp)) {
        const io::JournalContents jc = io::Journal::read(jp);
        if (jc.records.empty() || jc.records[0].type != kBegin) {
            check(jc.records.empty(), jp, ": not a sweep journal (its first record is not the sweep's description)");
            fs::remove(jp);
            notes.push_back(jp + ": removed: its first record was cut short by a crash (" + jc.damage + ")");
        }
    }
    if (!fs::exists(jp)) {
        // A file without a journal (made by an older build, finished, or cut before its journal existed): it must
        // be readable; its contents become the journal, from which the file is rebuilt below.
        check(fs::exists(path), path, ": cannot resume: no such file");
        SweepFile old = open(path);
        Impl& o = *old.impl_;
        check(o.version == kSweepFormatVersion, path, ": cannot resume: the file has format version ", o.version,
              " and this build writes version ", kSweepFormatVersion,
              " (it would hold per-sample values for the new layers only); start again with --overwrite, or finish "
              "it with the headsweep that started it");
        refuse_differing(path, differing_parameters(o.info, info));
        const h5::Group run = o.file.open_group("run");
        const std::string start = run.has_attr("start_time") ? run.attr_string("start_time") : utc_now();
        const std::string tmp = jp + ".new";
        io::Journal j = io::Journal::create(tmp);
        const std::string begin = info_json(o.info, start);
        j.append(kBegin, begin.data(), begin.size());
        const HeadScores sc = old.read_scores();
        const SampleData sd = old.read_samples();
        for (int32_t s = 0; s < o.S; ++s) {
            if (std::isnan(sc.pi_clean[size_t(s)])) continue;
            const int32_t N = o.info.options.settings[size_t(s)].n_samples;
            Impl::StagedClean c{s, sc.pi_clean[size_t(s)], sc.copy_accuracy[size_t(s)], old.read_tokens(s),
                                std::vector<float>(&sd.pi_clean[size_t(s) * o.n_max], &sd.pi_clean[size_t(s) * o.n_max] + N)};
            const auto b = Impl::encode(c);
            j.append(kClean, b.data(), b.size());
            for (int32_t l = 0; l < o.L; ++l)
                for (int32_t h = 0; h < o.H;) {  // runs of done heads: one record each
                    if (!o.done_heads[o.at(s, l, h)]) {
                        ++h;
                        continue;
                    }
                    int32_t e = h;
                    while (e < o.H && o.done_heads[o.at(s, l, e)]) ++e;
                    Impl::StagedItem x;
                    x.item = WorkItem{s, l, l + 1, h, e};
                    x.scores.n_samples = N;
                    for (int32_t k = h; k < e; ++k) {
                        x.scores.pi_ablated.push_back(sc.pi_ablated[o.at(s, l, k)]);
                        const float* v = &sd.pi_tilde[sd.at(s, l, k)];
                        x.scores.pi_tilde.insert(x.scores.pi_tilde.end(), v, v + N);
                    }
                    const auto bi = Impl::encode(x);
                    j.append(kItem, bi.data(), bi.size());
                    h = e;
                }
        }
        j.sync();
        j.close();
        old.close();
        fs::rename(tmp, jp);
        notes.push_back(path + ": resumed from its datasets (no journal beside it): journal " + jp + " written");
    }

    // Rebuild the file from the journal: the journal holds every value the file should hold, checksummed and
    // synced before the file was written, so the rebuilt file is right whatever state a crash left the old one in.
    const io::JournalContents jc = io::Journal::read(jp);
    std::string start;
    const SweepFileInfo jinfo =
        info_from_json(std::string(jc.records[0].payload.begin(), jc.records[0].payload.end()), jp, start);
    refuse_differing(path, differing_parameters(jinfo, info));
    if (!jc.damage.empty())
        notes.push_back(jp + ": ignored its last " + std::to_string(jc.file_bytes - jc.valid_bytes) + " bytes (" +
                        jc.damage + "; a write cut short by a crash); the " + std::to_string(jc.records.size()) +
                        " records before them are replayed");
    const std::string tmp = path + ".rebuild";
    {
        SweepFile nf(create_hdf5(tmp, jinfo, /*overwrite=*/true, start));
        Impl& m = *nf.impl_;
        for (size_t r = 1; r < jc.records.size(); ++r) {
            const std::string where = jp + ": record " + std::to_string(r);
            if (jc.records[r].type == kClean) {
                const Impl::StagedClean c = m.decode_clean(jc.records[r], where);
                nf.stage_clean(c.setting, c.pi_clean, c.copy_accuracy, c.tokens, c.samples);
            } else if (jc.records[r].type == kItem) {
                const Impl::StagedItem x = m.decode_item(jc.records[r], where);
                nf.stage_item(x.item, x.scores);
            } else {
                fail(where, ": unknown record type ", jc.records[r].type);
            }
        }
        for (const auto& c : m.cleans) m.apply_clean(c);
        for (const auto& x : m.items) {
            m.apply_item_values(x);
            m.apply_item_done(x);
        }
        m.cleans.clear();
        m.items.clear();
        m.file.open_group("run").set_attr("resumed_time", utc_now());
        m.drop_handles();
        m.file.close();
    }
    fs::rename(tmp, path);
    auto impl = std::make_unique<Impl>();
    impl->path = path;
    impl->file = h5::File::open(path, h5::Mode::read_write);
    impl->read_info();
    impl->load_done_heads();
    impl->start_time = start;
    impl->journal = io::Journal::open_append(jp, jc.valid_bytes);
    impl->discipline = WriteDiscipline::journal;
    impl->exit_at = exit_at_from(wo);
    impl->notes = std::move(notes);
    return SweepFile(std::move(impl));
}

SweepFile SweepFile::open(const std::string& path) {
    check(std::filesystem::exists(path), path, ": no such file");
    auto impl = std::make_unique<Impl>();
    impl->path = path;
    impl->file = h5::File::open(path, h5::Mode::read_only);
    impl->read_info();
    impl->load_done_heads();
    return SweepFile(std::move(impl));
}

const std::string& SweepFile::path() const { return impl_->path; }
const SweepFileInfo& SweepFile::info() const { return impl_->info; }
int32_t SweepFile::n_settings() const { return impl_->S; }
int32_t SweepFile::format_version() const { return impl_->version; }
bool SweepFile::has_samples() const { return impl_->version >= 2; }

void SweepFile::stage_clean(int32_t setting, double pi_clean, double copy_accuracy, const std::vector<int32_t>& tokens,
                            const std::vector<float>& pi_clean_samples) {
    Impl& m = *impl_;
    check(setting >= 0 && setting < m.S, m.path, ": setting ", setting, " is outside 0..", m.S - 1);
    m.need_samples("writing: inputs and per-sample values");
    const ProxySetting& st = m.info.options.settings[size_t(setting)];
    const int32_t N = st.n_samples, T = 2 * st.half_len;
    check(tokens.size() == size_t(N) * T, m.path, ": setting ", setting, " has ", N, " x ", T, " proxy tokens, not ",
          tokens.size());
    check(pi_clean_samples.size() == size_t(N), m.path, ": setting ", setting, " has ", N,
          " samples but ", pi_clean_samples.size(), " clean values");
    check(sample_mean(pi_clean_samples.data(), N) == pi_clean, m.path, ": setting ", setting,
          ": pi_clean is not the mean of the per-sample clean values");
    m.cleans.push_back({setting, pi_clean, copy_accuracy, tokens, pi_clean_samples});
}

void SweepFile::stage_item(const WorkItem& item, const ItemScores& scores) {
    Impl& m = *impl_;
    const std::vector<double>& pi_ablated = scores.pi_ablated;
    check(item.setting >= 0 && item.setting < m.S, m.path, ": work item setting ", item.setting, " is outside 0..",
          m.S - 1);
    check(item.layer_begin >= 0 && item.layer_begin < item.layer_end && item.layer_end <= m.L, m.path,
          ": work item layers ", item.layer_begin, "..", item.layer_end, " are outside 0..", m.L);
    check(item.head_begin >= 0 && item.head_begin < item.head_end && item.head_end <= m.H, m.path,
          ": work item heads ", item.head_begin, "..", item.head_end, " are outside 0..", m.H);
    check(pi_ablated.size() == size_t(item.n_heads()), m.path, ": work item has ", item.n_heads(), " heads but ",
          pi_ablated.size(), " values");
    m.need_samples("writing: per-sample values");
    const int32_t N = m.info.options.settings[size_t(item.setting)].n_samples;
    check(scores.n_samples == N && scores.pi_tilde.size() == size_t(item.n_heads()) * N, m.path, ": work item of setting ",
          item.setting, " has ", scores.pi_tilde.size(), " per-sample values for ", scores.n_samples,
          " samples; the setting has ", N, " samples x ", item.n_heads(), " heads");
    for (int32_t i = 0; i < item.n_heads(); ++i)
        check(sample_mean(&scores.pi_tilde[size_t(i) * N], N) == pi_ablated[size_t(i)], m.path,
              ": work item of setting ", item.setting, " layers ", item.layer_begin, "..", item.layer_end,
              ": value ", i, " is not the mean of its per-sample values");
    m.items.push_back({item, scores});
}

size_t SweepFile::staged() const { return impl_->cleans.size() + impl_->items.size(); }

void SweepFile::commit() {
    Impl& m = *impl_;
    if (m.cleans.empty() && m.items.empty()) return;
    if (m.discipline == WriteDiscipline::flush_each) {
        // The former discipline (kept for bench_sweep_writer's comparison): per write a flush, the values of an
        // item flushed before its done marks -- safety by flush order, which HDF5 does not promise.
        m.mark_incomplete();
        for (const auto& c : m.cleans) {
            m.apply_clean(c);
            m.file.flush();
        }
        for (const auto& x : m.items) {
            m.drop_handles();  // the former code opened each dataset for each write
            m.apply_item_values(x);
            m.file.flush();
            m.apply_item_done(x);
            m.file.flush();
        }
    } else if (m.discipline == WriteDiscipline::flush_once) {
        m.mark_incomplete();
        for (const auto& c : m.cleans) m.apply_clean(c);
        for (const auto& x : m.items) {
            m.apply_item_values(x);
            m.apply_item_done(x);
        }
        m.file.flush();
    } else {
        check(m.journal.is_open(), m.path, ": the file is not open for writing");
        for (const auto& c : m.cleans) {
            const auto b = Impl::encode(c);
            m.journal.append(kClean, b.data(), b.size());
        }
        for (const auto& x : m.items) {
            const auto b = Impl::encode(x);
            m.journal.append(kItem, b.data(), b.size());
        }
        m.boundary();  // nothing of this batch is anywhere yet
        m.journal.sync();
        m.boundary();  // the batch is in the journal, not in the file
        m.mark_incomplete();
        for (const auto& c : m.cleans) m.apply_clean(c);
        for (const auto& x : m.items) {
            m.apply_item_values(x);
            m.apply_item_done(x);
        }
        m.boundary();  // written to HDF5's buffers, not flushed
        m.file.flush();
        m.boundary();  // flushed
    }
    m.cleans.clear();
    m.items.clear();
}

void SweepFile::write_clean(int32_t setting, double pi_clean, double copy_accuracy, const std::vector<int32_t>& tokens,
                            const std::vector<float>& pi_clean_samples) {
    stage_clean(setting, pi_clean, copy_accuracy, tokens, pi_clean_samples);
    commit();
}

void SweepFile::write_item(const WorkItem& item, const ItemScores& scores) {
    stage_item(item, scores);
    commit();
}

const std::vector<std::string>& SweepFile::notes() const { return impl_->notes; }

std::vector<uint8_t> SweepFile::done() const {
    const Impl& m = *impl_;
    std::vector<uint8_t> d(size_t(m.S) * m.L);
    for (int32_t s = 0; s < m.S; ++s)
        for (int32_t l = 0; l < m.L; ++l) d[size_t(s) * m.L + l] = m.layer_done(s, l) ? 1 : 0;
    return d;
}

const std::vector<uint8_t>& SweepFile::done_heads() const { return impl_->done_heads; }

bool SweepFile::setting_done(int32_t setting) const {
    const Impl& m = *impl_;
    check(setting >= 0 && setting < m.S, m.path, ": setting ", setting, " is outside 0..", m.S - 1);
    const uint8_t* d = &m.done_heads[m.at(setting, 0, 0)];
    return std::all_of(d, d + size_t(m.L) * m.H, [](uint8_t v) { return v != 0; });
}

bool SweepFile::all_done() const {
    const auto& d = impl_->done_heads;
    return std::all_of(d.begin(), d.end(), [](uint8_t v) { return v != 0; });
}

bool SweepFile::complete() const { return impl_->file.attr<int32_t>("complete") == 1; }

std::vector<WorkItem> SweepFile::remaining(const std::vector<WorkItem>& plan) const {
    const Impl& m = *impl_;
    std::vector<WorkItem> out;
    for (const WorkItem& it : plan) {
        bool all = true;
        for (int32_t l = it.layer_begin; l < it.layer_end && all; ++l)
            for (int32_t h = it.head_begin; h < it.head_end && all; ++h) all = m.done_heads[m.at(it.setting, l, h)] != 0;
        if (!all) out.push_back(it);
    }
    return out;
}

HeadScores SweepFile::read_scores() const {
    const Impl& m = *impl_;
    const h5::File& f = m.file;
    HeadScores s;
    s.n_layer = m.L;
    s.n_head = m.H;
    s.settings = m.info.options.settings;
    s.pi_clean = f.open_dataset("pi_clean").read<double>();
    s.copy_accuracy = f.open_dataset("copy_accuracy").read<double>();
    s.pi_ablated = f.open_dataset("pi_ablated").read<double>();
    s.raw = f.open_dataset("raw").read<double>();
    s.ratio = f.open_dataset("ratio").read<double>();
    s.mean_ratio = f.open_dataset("mean_ratio").read<double>();
    s.weighted_ratio = f.open_dataset("weighted_ratio").read<double>();
    s.ranking = f.open_dataset("ranking").read<int32_t>();
    if (!s.ranking.empty() && s.ranking[0] < 0) s.ranking.clear();  // not finished
    s.top_k = f.attr<int32_t>("top_k");
    return s;
}

HeadScores SweepFile::finish(int32_t top_k, int32_t resamples) {
    Impl& m = *impl_;
    for (int32_t s = 0; s < m.S; ++s)
        for (int32_t l = 0; l < m.L; ++l)
            check(m.layer_done(s, l), m.path, ": cannot finish: setting ", s, " (",
                  settings_string({m.info.options.settings[size_t(s)]}), ") layer ", l, " is not done");
    HeadScores s = read_scores();
    for (int32_t i = 0; i < m.S; ++i)
        check(!std::isnan(s.pi_clean[size_t(i)]), m.path, ": cannot finish: pi_clean of setting ", i, " is missing");
    const int32_t k = top_k > 0 ? top_k : default_top_k(m.L * m.H);
    check(k <= m.L * m.H, m.path, ": top_k = ", k, " is larger than the number of heads (", m.L * m.H, ")");
    finish_scores(s, k);
    h5::File& f = m.file;
    f.open_dataset("raw").write(s.raw);
    f.open_dataset("ratio").write(s.ratio);
    f.open_dataset("mean_ratio").write(s.mean_ratio);
    f.open_dataset("weighted_ratio").write(s.weighted_ratio);
    f.open_dataset("ranking").write(s.ranking);
    std::vector<int32_t> rank(size_t(m.L) * m.H, -1);
    for (size_t r = 0; r < s.ranking.size(); ++r) rank[size_t(s.ranking[r])] = int32_t(r);
    f.open_dataset("rank").write(rank);
    std::vector<int32_t> tl, th;
    std::vector<double> tm, tw;
    for (int32_t r = 0; r < k && size_t(r) < s.ranking.size(); ++r) {
        const int32_t idx = s.ranking[size_t(r)];
        tl.push_back(idx / m.H);
        th.push_back(idx % m.H);
        tm.push_back(s.mean_ratio[size_t(idx)]);
        tw.push_back(s.weighted_ratio[size_t(idx)]);
    }
    h5::Group top = f.open_group("top_k");
    auto put = [&](const char* name, const auto& v) {
        h5::Dataset ds = top.open_dataset(name);
        ds.resize({uint64_t(v.size())});
        if (!v.empty()) ds.write(v);
    };
    put("layer", tl);
    put("head", th);
    put("mean_ratio", tm);
    put("weighted_ratio", tw);
    if (m.version >= 2) {
        BootstrapOptions bo;
        bo.resamples = resamples;
        bo.seed = m.info.options.seed;
        bo.top_k = k;
        const HeadStats st = head_stats(read_samples(), bo);
        h5::Group g = f.open_group("stats");
        g.open_dataset("pi_ablated_se").write(st.pi_ablated_se);
        g.open_dataset("ratio_se").write(st.ratio_se);
        g.open_dataset("mean_ratio_se").write(st.mean_ratio_se);
        g.open_dataset("mean_ratio_lo").write(st.mean_ratio_lo);
        g.open_dataset("mean_ratio_hi").write(st.mean_ratio_hi);
        g.open_dataset("top_k_frequency").write(st.top_k_frequency);
        g.set_attr("bootstrap_resamples", bo.resamples);
        g.set_attr("bootstrap_seed", bo.seed);
        g.set_attr("confidence", bo.confidence);
        g.set_attr("top_k", k);
        std::vector<double> se, lo, hi, fr;
        for (int32_t r = 0; r < k && size_t(r) < s.ranking.size(); ++r) {
            const size_t idx = size_t(s.ranking[size_t(r)]);
            se.push_back(st.mean_ratio_se[idx]);
            lo.push_back(st.mean_ratio_lo[idx]);
            hi.push_back(st.mean_ratio_hi[idx]);
            fr.push_back(st.top_k_frequency[idx]);
        }
        put("mean_ratio_se", se);
        put("mean_ratio_lo", lo);
        put("mean_ratio_hi", hi);
        put("frequency", fr);
    }
    f.set_attr("top_k", k);
    s.top_k = k;
    f.flush();
    f.open_group("run").set_attr("end_time", utc_now());
    f.set_attr("complete", int32_t(1));
    m.boundary();  // finished, not flushed
    f.flush();
    m.boundary();  // complete on disk (the journal is removed when the file is closed)
    return s;
}

SampleData SweepFile::read_samples() const {
    const Impl& m = *impl_;
    m.need_samples("per-sample values (/pi_tilde)");
    SampleData d;
    d.S = m.S;
    d.L = m.L;
    d.H = m.H;
    d.n_max = m.n_max;
    for (const auto& st : m.info.options.settings) d.n.push_back(st.n_samples);
    const uint64_t S = uint64_t(m.S), L = uint64_t(m.L), H = uint64_t(m.H), NM = uint64_t(m.n_max);
    d.pi_tilde = m.sample_dataset("pi_tilde", {S, L, H, NM}).read<float>();
    d.pi_clean = m.sample_dataset("pi_clean_samples", {S, NM}).read<float>();
    const auto pa = m.file.open_dataset("pi_ablated").read<double>();
    const auto pc = m.file.open_dataset("pi_clean").read<double>();
    for (int32_t s = 0; s < m.S; ++s) {
        const int32_t N = d.n[size_t(s)];
        if (!std::isnan(pc[size_t(s)])) {
            const float* x = &d.pi_clean[size_t(s) * m.n_max];
            for (int32_t b = 0; b < N; ++b)
                check(std::isfinite(x[b]), m.path, ": dataset /pi_clean_samples is damaged: setting ", s, " sample ",
                      b, " is not finite");
            check(sample_mean(x, N) == pc[size_t(s)], m.path, ": dataset /pi_clean_samples is damaged: setting ", s,
                  " does not average to /pi_clean");
        }
        for (int32_t l = 0; l < m.L; ++l) {
            for (int32_t h = 0; h < m.H; ++h) {
                if (!m.done_heads[m.at(s, l, h)]) continue;
                const float* x = &d.pi_tilde[d.at(s, l, h)];
                for (int32_t b = 0; b < N; ++b)
                    check(std::isfinite(x[b]), m.path, ": dataset /pi_tilde is damaged: setting ", s, " layer ", l,
                          " head ", h, " sample ", b, " is not finite in a head marked done");
                check(sample_mean(x, N) == pa[(size_t(s) * m.L + l) * m.H + h], m.path,
                      ": dataset /pi_tilde is damaged: setting ", s, " layer ", l, " head ", h,
                      " does not average to /pi_ablated");
            }
        }
    }
    return d;
}

std::vector<int32_t> SweepFile::read_tokens(int32_t setting) const {
    const Impl& m = *impl_;
    check(setting >= 0 && setting < m.S, m.path, ": setting ", setting, " is outside 0..", m.S - 1);
    m.need_samples("inputs (/inputs/tokens)");
    const ProxySetting& st = m.info.options.settings[size_t(setting)];
    return m.sample_dataset("inputs/tokens", {uint64_t(m.S), uint64_t(m.n_max), uint64_t(m.t_max)})
        .read<int32_t>({uint64_t(setting), 0, 0}, {1, uint64_t(st.n_samples), 2 * uint64_t(st.half_len)});
}

std::optional<HeadStats> SweepFile::read_stats() const {
    const Impl& m = *impl_;
    if (m.version < 2 || !complete()) return std::nullopt;
    check(m.file.has_group("stats"), m.path, ": group /stats is missing (format version ", m.version,
          " should have it): the file is damaged");
    h5::Group g = m.file.open_group("stats");
    HeadStats st;
    st.bootstrap.resamples = g.attr<int32_t>("bootstrap_resamples");
    st.bootstrap.seed = g.attr<uint64_t>("bootstrap_seed");
    st.bootstrap.confidence = g.attr<double>("confidence");
    st.bootstrap.top_k = g.attr<int32_t>("top_k");
    st.pi_ablated_se = g.open_dataset("pi_ablated_se").read<double>();
    st.ratio_se = g.open_dataset("ratio_se").read<double>();
    st.mean_ratio = m.file.open_dataset("mean_ratio").read<double>();
    st.mean_ratio_se = g.open_dataset("mean_ratio_se").read<double>();
    st.mean_ratio_lo = g.open_dataset("mean_ratio_lo").read<double>();
    st.mean_ratio_hi = g.open_dataset("mean_ratio_hi").read<double>();
    st.top_k_frequency = g.open_dataset("top_k_frequency").read<double>();
    return st;
}

void SweepFile::flush() { impl_->file.flush(); }
void SweepFile::close() {
    if (!impl_ || !impl_->file.valid()) return;
    Impl& m = *impl_;
    const bool done_with_journal = m.journal.is_open() && complete();
    m.drop_handles();
    m.file.close();
    if (m.journal.is_open()) {
        m.journal.close();
        // A complete file needs its journal no more (a crash before this line leaves it: resume rebuilds the file
        // from it and finishes it again, to the same values).
        if (done_with_journal) std::filesystem::remove(journal_path(m.path));
    }
}

// ------------------------------------------------------------------------------------------------ comparison

namespace {

void collect_datasets(const h5::Location& loc, const std::string& prefix, std::vector<std::string>& out) {
    for (const std::string& name : loc.children()) {
        const std::string p = prefix + "/" + name;
        if (p == "/run") continue;
        if (loc.has_group(name))
            collect_datasets(loc.open_group(name), p, out);
        else
            out.push_back(p);
    }
}

// An attribute as text (strings as they are, numbers through their bit patterns so NaN equals NaN).
std::string attr_text(const h5::Object& o, const std::string& name) {
    try {
        return "s:" + o.attr_string(name);
    } catch (const Error&) {
    }
    std::string t = "n:";
    try {
        for (uint64_t v : o.attr_vector<uint64_t>(name)) t += std::to_string(v) + ",";
        return t;
    } catch (const Error&) {
    }
    for (double v : o.attr_vector<double>(name)) {
        uint64_t bits;
        std::memcpy(&bits, &v, 8);
        t += std::to_string(bits) + ",";
    }
    return t;
}

}  // namespace

std::vector<std::string> compare_sweep_files(const std::string& a, const std::string& b) {
    std::vector<std::string> diff;
    h5::File fa = h5::File::open(a), fb = h5::File::open(b);
    std::vector<std::string> da, db;
    collect_datasets(fa, "", da);
    collect_datasets(fb, "", db);
    std::set<std::string> sa(da.begin(), da.end()), sb(db.begin(), db.end());
    for (const auto& p : sa)
        if (!sb.count(p)) diff.push_back(p + ": only in " + a);
    for (const auto& p : sb)
        if (!sa.count(p)) diff.push_back(p + ": only in " + b);
    for (const auto& p : sa) {
        if (!sb.count(p)) continue;
        h5::Dataset x = fa.open_dataset(p), y = fb.open_dataset(p);
        if (x.dims() != y.dims()) {
            diff.push_back(p + ": shapes differ");
            continue;
        }
        if (x.is_string() != y.is_string()) {
            diff.push_back(p + ": types differ");
        } else if (x.is_string()) {
            if (x.read_strings() != y.read_strings()) diff.push_back(p + ": values differ");
        } else {
            auto vx = x.read<double>(), vy = y.read<double>();
            if (vx.size() != vy.size() ||
                (!vx.empty() && std::memcmp(vx.data(), vy.data(), vx.size() * sizeof(double)) != 0))
                diff.push_back(p + ": values differ");
        }
    }
    auto na = fa.attr_names(), nb = fb.attr_names();
    if (na != nb) diff.push_back("/: root attribute names differ");
    for (const auto& n : na)
        if (fb.has_attr(n) && attr_text(fa, n) != attr_text(fb, n)) diff.push_back("/: attribute " + n + " differs");
    return diff;
}

}  // namespace hs::pear
