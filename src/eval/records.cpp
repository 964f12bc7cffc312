#include "eval/records.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>

#include "backend/cpu/cpu_runtime.hpp"
#include "util/error.hpp"

namespace hs::eval {

namespace {

const char* kFormat = "headsweep-eval";
constexpr int32_t kFormatVersion = 2;  // 2: + /records/detail (version 1 files are read, and upgraded on resume)
const char* kStringCols[] = {"model", "method", "task", "id", "output", "detail"};
const char* kInt32Cols[] = {"gold_position", "prompt_tokens", "original_tokens", "new_tokens", "rank"};
const char* kDoubleCols[] = {"score", "latency_s"};

h5::DatasetOptions extendible(uint64_t chunk = 256) {
    h5::DatasetOptions o;
    o.max_dims = {h5::kUnlimited};
    o.chunk = {chunk};
    return o;
}

}  // namespace

std::vector<Record> sorted_records(std::vector<Record> r) {
    std::stable_sort(r.begin(), r.end(), [](const Record& a, const Record& b) { return a.key() < b.key(); });
    return r;
}

std::vector<SummaryRow> summarize(const std::vector<Record>& records, const SummaryOptions& o) {
    using Cell = std::tuple<std::string, std::string, std::string, int32_t>;  // model, method, task, position
    std::map<Cell, std::vector<const Record*>> cells;
    std::map<std::tuple<std::string, std::string, std::string, int32_t, std::string>, const Record*> by_key;
    const std::vector<Record> sorted = sorted_records(records);
    for (const Record& r : sorted) {
        cells[{r.model, r.method, r.task, r.gold_position}].push_back(&r);
        by_key[r.key()] = &r;
    }
    std::vector<SummaryRow> out;
    for (const auto& [cell, rs] : cells) {
        SummaryRow row;
        std::tie(row.model, row.method, row.task, row.gold_position) = cell;
        std::vector<double> s;
        for (const Record* r : rs) s.push_back(r->score);
        row.accuracy = bootstrap_mean(s, o.resamples, o.seed, o.level);
        row.baseline = o.baseline;
        std::vector<double> a, b;
        if (row.method != o.baseline)
            for (const Record* r : rs) {
                const auto it = by_key.find({r->model, o.baseline, r->task, r->gold_position, r->id});
                if (it == by_key.end()) continue;
                a.push_back(r->score);
                b.push_back(it->second->score);
            }
        if (a.empty()) {
            const double nan = std::numeric_limits<double>::quiet_NaN();
            row.diff = Interval{nan, nan, nan, 0};
        } else {
            row.diff = bootstrap_paired_difference(a, b, o.resamples, o.seed, o.level);
        }
        out.push_back(row);
    }
    return out;
}

std::string format_summary_table(const std::vector<SummaryRow>& rows) {
    std::ostringstream os;
    char buf[512];
    std::snprintf(buf, sizeof buf, "%-20s %-18s %5s %5s  %-22s %-26s\n", "task", "method", "pos", "n",
                  "accuracy [95% CI]", "diff vs baseline [95% CI]");
    os << buf;
    std::string model;
    for (const SummaryRow& r : rows) {
        if (r.model != model) {
            os << "model " << r.model << "\n";
            model = r.model;
        }
        char acc[64], diff[64] = "";
        std::snprintf(acc, sizeof acc, "%.3f [%.3f, %.3f]", r.accuracy.estimate, r.accuracy.low, r.accuracy.high);
        if (!std::isnan(r.diff.estimate))
            std::snprintf(diff, sizeof diff, "%+.3f [%+.3f, %+.3f] (n=%lld)", r.diff.estimate, r.diff.low,
                          r.diff.high, (long long)r.diff.n);
        const std::string pos = r.gold_position < 0 ? "-" : std::to_string(r.gold_position);
        std::snprintf(buf, sizeof buf, "%-20s %-18s %5s %5lld  %-22s %s\n", r.task.c_str(), r.method.c_str(),
                      pos.c_str(), (long long)r.accuracy.n, acc, diff);
        os << buf;
    }
    return os.str();
}

RecordsFile RecordsFile::create(const std::string& path, const std::string& settings, const std::string& data_dir,
                                bool overwrite) {
    check(overwrite || !std::filesystem::exists(path), path,
          ": exists (use --resume to continue it or --overwrite to replace it)");
    RecordsFile f;
    f.path_ = path;
    f.file_ = h5::File::create(path, overwrite ? h5::Overwrite::yes : h5::Overwrite::no);
    f.file_.set_attr("format", kFormat);
    f.file_.set_attr("format_version", kFormatVersion);
    f.file_.set_attr("headsweep_version", HEADSWEEP_VERSION);
    f.file_.set_attr("settings", settings);
    f.file_.set_attr("data_dir", data_dir);
    for (const auto& [key, value] : cpu_runtime_provenance()) f.file_.set_attr(key, value);
    f.file_.create_group("methods");
    h5::Group g = f.file_.create_group("records");
    for (const char* c : kStringCols) g.create_string_dataset(c, 0, 256);
    for (const char* c : kInt32Cols) g.create_dataset<int32_t>(c, {0}, extendible());
    g.create_dataset<uint8_t>("truncated", {0}, extendible());
    for (const char* c : kDoubleCols) g.create_dataset<double>(c, {0}, extendible());
    f.file_.flush();
    return f;
}

RecordsFile RecordsFile::open_for_resume(const std::string& path, const std::string& settings) {
    RecordsFile f;
    f.path_ = path;
    f.file_ = h5::File::open(path, h5::Mode::read_write);
    check(f.file_.has_attr("format") && f.file_.attr_string("format") == kFormat, path,
          ": not a headsweep evaluation file");
    const int32_t version = f.file_.attr<int32_t>("format_version");
    check(version == 1 || version == kFormatVersion, path, ": format_version ", version, " (this build reads 1..",
          kFormatVersion, "; a newer headsweep wrote it)");
    const std::string had = f.file_.attr_string("settings");
    check(had == settings, path, ": cannot resume: the file was made with settings\n  ", had, "\nbut this run has\n  ",
          settings, "\n(use another --output or --overwrite)");
    f.repair();
    if (version == 1) {  // upgrade: an empty detail for every existing record
        h5::Group g = f.file_.open_group("records");
        const uint64_t n = g.open_dataset("model").dims()[0];
        h5::Dataset d = g.create_string_dataset("detail", 0, 256);
        if (n) d.write_strings(std::vector<std::string>(n), 0);
        f.file_.set_attr("format_version", kFormatVersion);
        f.file_.flush();
    }
    return f;
}

void RecordsFile::repair() {
    h5::Group g = file_.open_group("records");
    uint64_t n = ~uint64_t(0);
    for (const std::string& c : g.children()) n = std::min(n, g.open_dataset(c).dims()[0]);
    for (const std::string& c : g.children()) {
        h5::Dataset d = g.open_dataset(c);
        if (d.dims()[0] != n) d.resize({n});
    }
}

void RecordsFile::check_method(const std::string& name, const std::string& config) {
    h5::Group g = file_.open_group("methods");
    if (g.has_attr(name)) {
        const std::string had = g.attr_string(name);
        check(had == config, path_, ": method ", name, " was run with\n  ", had, "\nbut this run has\n  ", config,
              "\n(give it another name, another --output, or --overwrite)");
        return;
    }
    g.set_attr(name, config);
    file_.flush();
}

namespace {
std::vector<Record> read_group(const h5::Group& g) {
    std::map<std::string, std::vector<std::string>> s;
    std::map<std::string, std::vector<int32_t>> i;
    std::map<std::string, std::vector<double>> d;
    uint64_t n = ~uint64_t(0);
    for (const std::string& c : g.children()) n = std::min(n, g.open_dataset(c).dims()[0]);
    if (n == ~uint64_t(0)) n = 0;
    for (const char* c : kStringCols)
        s[c] = g.has(c) ? g.open_dataset(c).read_strings(0, n) : std::vector<std::string>(n);  // v1: no detail
    for (const char* c : kInt32Cols) i[c] = g.open_dataset(c).read<int32_t>({0}, {n});
    for (const char* c : kDoubleCols) d[c] = g.open_dataset(c).read<double>({0}, {n});
    const std::vector<uint8_t> tr = g.open_dataset("truncated").read<uint8_t>({0}, {n});
    std::vector<Record> out(n);
    for (uint64_t k = 0; k < n; ++k) {
        Record& r = out[k];
        r.model = s["model"][k];
        r.method = s["method"][k];
        r.task = s["task"][k];
        r.id = s["id"][k];
        r.output = s["output"][k];
        r.detail = s["detail"][k];
        r.gold_position = i["gold_position"][k];
        r.prompt_tokens = i["prompt_tokens"][k];
        r.original_tokens = i["original_tokens"][k];
        r.new_tokens = i["new_tokens"][k];
        r.rank = i["rank"][k];
        r.truncated = tr[k];
        r.score = d["score"][k];
        r.latency_s = d["latency_s"][k];
    }
    return out;
}
}  // namespace

std::vector<Record> RecordsFile::records() const { return read_group(file_.open_group("records")); }

std::vector<Record> RecordsFile::read(const std::string& path) {
    h5::File f = h5::File::open(path, h5::Mode::read_only);
    check(f.has_attr("format") && f.attr_string("format") == kFormat, path, ": not a headsweep evaluation file");
    const int32_t version = f.attr<int32_t>("format_version");
    check(version >= 1 && version <= kFormatVersion, path, ": format_version ", version, " (this build reads 1..",
          kFormatVersion, "; a newer headsweep wrote it)");
    return read_group(f.open_group("records"));
}

void RecordsFile::append(const Record& r) {
    h5::Group g = file_.open_group("records");
    g.open_dataset("model").append_strings({r.model});
    g.open_dataset("method").append_strings({r.method});
    g.open_dataset("task").append_strings({r.task});
    g.open_dataset("id").append_strings({r.id});
    g.open_dataset("output").append_strings({r.output});
    g.open_dataset("detail").append_strings({r.detail});
    g.open_dataset("gold_position").append(std::vector<int32_t>{r.gold_position});
    g.open_dataset("prompt_tokens").append(std::vector<int32_t>{r.prompt_tokens});
    g.open_dataset("original_tokens").append(std::vector<int32_t>{r.original_tokens});
    g.open_dataset("new_tokens").append(std::vector<int32_t>{r.new_tokens});
    g.open_dataset("rank").append(std::vector<int32_t>{r.rank});
    g.open_dataset("truncated").append(std::vector<uint8_t>{r.truncated});
    g.open_dataset("score").append(std::vector<double>{r.score});
    g.open_dataset("latency_s").append(std::vector<double>{r.latency_s});
    file_.flush();
}

void RecordsFile::write_summary(const std::vector<SummaryRow>& rows, const SummaryOptions& o) {
    h5::Group g = file_.require_group("summary");
    const uint64_t n = rows.size();
    auto strings = [&](const char* name, auto get) {
        std::vector<std::string> v;
        for (const SummaryRow& r : rows) v.push_back(get(r));
        h5::Dataset d = g.has(name) ? g.open_dataset(name) : g.create_string_dataset(name, 0, 64);
        d.resize({n});
        if (n) d.write_strings(v, 0);
    };
    auto numbers = [&](const char* name, auto get) {
        using T = decltype(get(rows.front()));
        std::vector<T> v;
        for (const SummaryRow& r : rows) v.push_back(get(r));
        h5::Dataset d = g.has(name) ? g.open_dataset(name) : g.create_dataset<T>(name, {0}, extendible(64));
        d.resize({n});
        if (n) d.write(v);
    };
    if (rows.empty()) return;
    strings("model", [](const SummaryRow& r) { return r.model; });
    strings("method", [](const SummaryRow& r) { return r.method; });
    strings("task", [](const SummaryRow& r) { return r.task; });
    strings("baseline", [](const SummaryRow& r) { return r.baseline; });
    numbers("gold_position", [](const SummaryRow& r) { return r.gold_position; });
    numbers("n", [](const SummaryRow& r) { return r.accuracy.n; });
    numbers("n_paired", [](const SummaryRow& r) { return r.diff.n; });
    numbers("accuracy", [](const SummaryRow& r) { return r.accuracy.estimate; });
    numbers("ci_low", [](const SummaryRow& r) { return r.accuracy.low; });
    numbers("ci_high", [](const SummaryRow& r) { return r.accuracy.high; });
    numbers("diff", [](const SummaryRow& r) { return r.diff.estimate; });
    numbers("diff_low", [](const SummaryRow& r) { return r.diff.low; });
    numbers("diff_high", [](const SummaryRow& r) { return r.diff.high; });
    g.set_attr("bootstrap_resamples", o.resamples);
    g.set_attr("bootstrap_seed", o.seed);
    g.set_attr("ci_level", o.level);
    g.set_attr("interval", "percentile bootstrap, numpy linear quantiles; diff paired over shared examples");
    file_.flush();
}

void RecordsFile::close() { file_.close(); }

}  // namespace hs::eval
