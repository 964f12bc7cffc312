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

#include "backend/cpu/cpu_runtime.hpp"
#include "io/h5.hpp"
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

SweepFile SweepFile::create(const std::string& path, const SweepFileInfo& info, bool overwrite) {
    check(!info.options.settings.empty(), path, ": a sweep needs at least one setting");
    check(info.n_layer > 0 && info.n_head > 0, path, ": model shape n_layer = ", info.n_layer, ", n_head = ",
          info.n_head, " is not positive");
    if (!overwrite && std::filesystem::exists(path))
        fail(path, ": output file exists (use --overwrite to replace it or --resume to continue it)");
    auto impl = std::make_unique<Impl>();
    impl->path = path;
    impl->info = info;
    impl->set_sizes();
    impl->file = h5::File::create(path, overwrite ? h5::Overwrite::yes : h5::Overwrite::no);
    impl->write_info();
    impl->create_layout();
    h5::Group run = impl->file.create_group("run");
    run.set_attr("start_time", utc_now());
    run.set_attr("end_time", "");
    run.set_attr("resumed_time", "");
    run.set_attr("job_file", info.job_file);
    impl->file.flush();
    return SweepFile(std::move(impl));
}

SweepFile SweepFile::open_for_resume(const std::string& path, const SweepFileInfo& info) {
    check(std::filesystem::exists(path), path, ": cannot resume: no such file");
    auto impl = std::make_unique<Impl>();
    impl->path = path;
    impl->file = h5::File::open(path, h5::Mode::read_write);
    impl->read_info();
    check(impl->version == kSweepFormatVersion, path, ": cannot resume: the file has format version ",
          impl->version, " and this build writes version ", kSweepFormatVersion,
          " (it would hold per-sample values for the new layers only); start again with --overwrite, or finish "
          "it with the headsweep that started it");
    const auto diff = differing_parameters(impl->info, info);
    if (!diff.empty()) {
        std::string all;
        for (const auto& d : diff) all += (all.empty() ? "" : "; ") + d;
        fail(path, ": cannot resume: job parameter", diff.size() == 1 ? "" : "s", " differ", diff.size() == 1 ? "s" : "",
             " from the file's: ", all, " (use --overwrite to start again, or another output path)");
    }
    h5::Group run = impl->file.open_group("run");
    run.set_attr("resumed_time", utc_now());
    impl->file.flush();
    return SweepFile(std::move(impl));
}

SweepFile SweepFile::open(const std::string& path) {
    check(std::filesystem::exists(path), path, ": no such file");
    auto impl = std::make_unique<Impl>();
    impl->path = path;
    impl->file = h5::File::open(path, h5::Mode::read_only);
    impl->read_info();
    return SweepFile(std::move(impl));
}

const std::string& SweepFile::path() const { return impl_->path; }
const SweepFileInfo& SweepFile::info() const { return impl_->info; }
int32_t SweepFile::n_settings() const { return impl_->S; }
int32_t SweepFile::format_version() const { return impl_->version; }
bool SweepFile::has_samples() const { return impl_->version >= 2; }

void SweepFile::write_clean(int32_t setting, double pi_clean, double copy_accuracy, const std::vector<int32_t>& tokens,
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
    m.mark_incomplete();
    m.file.open_dataset("pi_clean").write(&pi_clean, 1, {uint64_t(setting)}, {1});
    m.file.open_dataset("copy_accuracy").write(&copy_accuracy, 1, {uint64_t(setting)}, {1});
    m.file.open_dataset("inputs/tokens").write(tokens, {uint64_t(setting), 0, 0}, {1, uint64_t(N), uint64_t(T)});
    m.file.open_dataset("pi_clean_samples").write(pi_clean_samples, {uint64_t(setting), 0}, {1, uint64_t(N)});
    m.file.flush();
}

void SweepFile::write_item(const WorkItem& item, const ItemScores& scores) {
    Impl& m = *impl_;
    const std::vector<double>& pi_ablated = scores.pi_ablated;
    check(item.setting >= 0 && item.setting < m.S, m.path, ": work item setting ", item.setting, " is outside 0..",
          m.S - 1);
    check(item.layer_begin >= 0 && item.layer_begin < item.layer_end && item.layer_end <= m.L, m.path,
          ": work item layers ", item.layer_begin, "..", item.layer_end, " are outside 0..", m.L);
    check(item.head_begin == 0 && item.head_end == m.H, m.path, ": work item heads ", item.head_begin, "..",
          item.head_end, " must cover all ", m.H, " heads (the done mask is per setting and layer)");
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
    m.mark_incomplete();
    const uint64_t nl = uint64_t(item.layer_end - item.layer_begin);
    m.file.open_dataset("pi_ablated")
        .write(pi_ablated, {uint64_t(item.setting), uint64_t(item.layer_begin), 0}, {1, nl, uint64_t(m.H)});
    m.file.open_dataset("pi_tilde")
        .write(scores.pi_tilde, {uint64_t(item.setting), uint64_t(item.layer_begin), 0, 0},
               {1, nl, uint64_t(m.H), uint64_t(N)});
    // The values reach the disk before the done mark does, so a killed run never marks unwritten layers done.
    m.file.flush();
    std::vector<uint8_t> ones(nl, 1);
    m.file.open_dataset("done").write(ones, {uint64_t(item.setting), uint64_t(item.layer_begin)}, {1, nl});
    m.file.flush();
}

std::vector<uint8_t> SweepFile::done() const { return impl_->file.open_dataset("done").read<uint8_t>(); }

bool SweepFile::setting_done(int32_t setting) const {
    const Impl& m = *impl_;
    check(setting >= 0 && setting < m.S, m.path, ": setting ", setting, " is outside 0..", m.S - 1);
    auto d = m.file.open_dataset("done").read<uint8_t>({uint64_t(setting), 0}, {1, uint64_t(m.L)});
    return std::all_of(d.begin(), d.end(), [](uint8_t v) { return v != 0; });
}

bool SweepFile::all_done() const {
    auto d = done();
    return std::all_of(d.begin(), d.end(), [](uint8_t v) { return v != 0; });
}

bool SweepFile::complete() const { return impl_->file.attr<int32_t>("complete") == 1; }

std::vector<WorkItem> SweepFile::remaining(const std::vector<WorkItem>& plan) const {
    const Impl& m = *impl_;
    const auto d = done();
    std::vector<WorkItem> out;
    for (const WorkItem& it : plan) {
        bool all = true;
        for (int32_t l = it.layer_begin; l < it.layer_end; ++l) all = all && d[size_t(it.setting) * m.L + l] != 0;
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
    const auto d = done();
    for (int32_t s = 0; s < m.S; ++s)
        for (int32_t l = 0; l < m.L; ++l)
            check(d[size_t(s) * m.L + l] != 0, m.path, ": cannot finish: setting ", s, " (",
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
    f.flush();
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
    const auto done = m.file.open_dataset("done").read<uint8_t>();
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
            if (!done[size_t(s) * m.L + l]) continue;
            for (int32_t h = 0; h < m.H; ++h) {
                const float* x = &d.pi_tilde[d.at(s, l, h)];
                for (int32_t b = 0; b < N; ++b)
                    check(std::isfinite(x[b]), m.path, ": dataset /pi_tilde is damaged: setting ", s, " layer ", l,
                          " head ", h, " sample ", b, " is not finite in a layer marked done");
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
    if (impl_ && impl_->file.valid()) impl_->file.close();
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
