// Sweep jobs: TOML parsing, expansion into (model, mode) runs, validation before any work.
#include "pear/job.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "backend/backend.hpp"
#include "backend/cpu/matmul_blocks.hpp"
#include "backend/cpu/onednn_gemm.hpp"
#include "gguf/gguf.hpp"
#include "model/model.hpp"
#include "util/error.hpp"

namespace hs::pear {

namespace fs = std::filesystem;

std::string SweepJob::where(const std::string& key) const {
    auto it = origin.find(key);
    return it != origin.end() ? it->second : "key " + key + " (default)";
}

const std::vector<std::string>& job_keys() {
    static const std::vector<std::string> keys = {
        "model", "models", "mode", "modes", "settings", "seed", "top_k", "exclude_special", "mean_over",
        "positions", "output", "overwrite", "resume", "threads", "device", "gpu_weights", "precision",
        "native_prefill", "heads_per_item", "model_read", "share_clean_runs"};
    return keys;
}

namespace {

std::string node_text(const toml::node& n) {
    std::ostringstream os;
    if (auto s = n.as_string())
        os << '"' << s->get() << '"';
    else
        n.visit([&](const auto& v) { os << v; });
    return os.str();
}

std::string type_text(const toml::node& n) {
    std::ostringstream os;
    os << n.type();
    return os.str();
}

struct Reader {
    const std::string& file;
    SweepJob& job;

    std::string key_where(const std::string& key) const { return file + ": key " + key; }

    [[noreturn]] void bad_type(const std::string& key, const toml::node& n, const char* want) const {
        fail(key_where(key), " = ", node_text(n), " must be ", want, " (got ", type_text(n), ")");
    }
    int64_t integer(const std::string& key, const toml::node& n, int64_t lo, int64_t hi) const {
        if (!n.is_integer()) bad_type(key, n, "an integer");
        const int64_t v = n.as_integer()->get();
        if (v < lo) fail(key_where(key), " = ", v, " must be >= ", lo);
        if (v > hi) fail(key_where(key), " = ", v, " must be <= ", hi);
        return v;
    }
    bool boolean(const std::string& key, const toml::node& n) const {
        if (!n.is_boolean()) bad_type(key, n, "true or false");
        return n.as_boolean()->get();
    }
    std::string string(const std::string& key, const toml::node& n) const {
        if (!n.is_string()) bad_type(key, n, "a string");
        return n.as_string()->get();
    }
    // A string or a list of strings (model/models, mode/modes).
    std::vector<std::string> strings(const std::string& key, const toml::node& n) const {
        std::vector<std::string> out;
        if (n.is_string()) {
            out.push_back(n.as_string()->get());
        } else if (auto a = n.as_array()) {
            for (size_t i = 0; i < a->size(); ++i)
                out.push_back(string(key + "[" + std::to_string(i) + "]", *a->get(i)));
            if (out.empty()) fail(key_where(key), " = [] must list at least one value");
        } else {
            bad_type(key, n, "a string or a list of strings");
        }
        return out;
    }
};

ScoreMode mode_from(const std::string& where, const std::string& name) {
    if (name == "path") return ScoreMode::PATH;
    if (name == "total") return ScoreMode::TOTAL;
    if (name == "attribution") return ScoreMode::ATTRIBUTION;
    fail(where, " = \"", name, "\" is not a mode (path, total, attribution)");
}

MeanOver mean_over_from(const std::string& where, const std::string& name) {
    if (name == "batch") return MeanOver::BATCH;
    if (name == "sequence") return MeanOver::SEQUENCE;
    fail(where, " = \"", name, "\" is not batch or sequence");
}

void check_setting(const std::string& where_N, const std::string& where_n, int64_t N, int64_t n) {
    check(N >= 2, where_N, " = ", N, " must be >= 2 (the ablation mean is over the N samples)");
    check(N <= 1000000, where_N, " = ", N, " must be <= 1000000");
    check(n >= 2, where_n, " = ", n, " must be >= 2");
    check(n <= 1000000, where_n, " = ", n, " must be <= 1000000");
}

void check_output_template(const SweepJob& job) {
    const std::string w = job.where("output") + " = \"" + job.output + "\"";
    check(!job.output.empty(), w, " must not be empty");
    size_t pos = 0;
    while ((pos = job.output.find('{', pos)) != std::string::npos) {
        const size_t end = job.output.find('}', pos);
        check(end != std::string::npos, w, ": unclosed '{'");
        const std::string name = job.output.substr(pos + 1, end - pos - 1);
        check(name == "model" || name == "mode", w, ": unknown placeholder {", name, "} (known: {model}, {mode})");
        pos = end + 1;
    }
    check(job.models.size() < 2 || job.output.find("{model}") != std::string::npos, w,
          " must contain {model} when several models are listed");
    check(job.modes.size() < 2 || job.output.find("{mode}") != std::string::npos, w,
          " must contain {mode} when several modes are listed");
}

// Makes sure `dir` exists (creating it) and that a file can be created in it.
void check_writable_dir(const fs::path& dir, const std::string& w) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) fail(w, ": cannot create directory ", dir.string(), ": ", ec.message());
    check(fs::is_directory(dir), w, ": ", dir.string(), " is not a directory");
    const std::string probe = (dir / (".headsweep-probe-" + std::to_string(::getpid()))).string();
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) fail(w, ": directory ", dir.string(), " is not writable: ", std::strerror(errno));
    ::close(fd);
    ::unlink(probe.c_str());
}

}  // namespace

std::vector<ProxySetting> parse_settings_list(const std::string& text, const std::string& where) {
    if (text == "paper") return paper_settings();
    std::vector<ProxySetting> out;
    std::stringstream ss(text);
    std::string part;
    int i = 0;
    while (std::getline(ss, part, ',')) {
        const std::string w = where + "[" + std::to_string(i) + "]";
        const size_t x = part.find('x');
        int64_t N = 0, n = 0;
        try {
            size_t used1 = 0, used2 = 0;
            check(x != std::string::npos, "");
            N = std::stoll(part.substr(0, x), &used1);
            n = std::stoll(part.substr(x + 1), &used2);
            check(used1 == x && used2 == part.size() - x - 1, "");
        } catch (const std::exception&) {
            fail(w, " = \"", part, "\" is not NxN (e.g. 20x50: N sequences of n tokens)");
        }
        check_setting(w + ".N", w + ".n", N, n);
        out.push_back({int32_t(N), int32_t(n)});
        ++i;
    }
    check(!out.empty(), where, " = \"", text, "\" lists no settings");
    return out;
}

SweepJob parse_job_text(std::string_view text, const std::string& source) {
    toml::table tbl;
    try {
        tbl = toml::parse(text, source);
    } catch (const toml::parse_error& e) {
        fail(source, ":", e.source().begin.line, ":", e.source().begin.column, ": TOML syntax error: ",
             e.description());
    }
    SweepJob job;
    job.source = source;
    Reader r{source, job};
    const auto& known = job_keys();
    for (auto&& [k, v] : tbl) {
        const std::string key(k.str());
        if (std::find(known.begin(), known.end(), key) == known.end()) {
            std::string list;
            for (const auto& n : known) list += (list.empty() ? "" : ", ") + n;
            fail(source, ": unknown key '", key, "' (known keys: ", list, ")");
        }
        job.origin[key] = r.key_where(key);
    }
    check(!(tbl.contains("model") && tbl.contains("models")), source, ": give either key model or key models, not both");
    check(!(tbl.contains("mode") && tbl.contains("modes")), source, ": give either key mode or key modes, not both");
    for (const char* key : {"model", "models"})
        if (const toml::node* n = tbl.get(key)) {
            job.models = r.strings(key, *n);
            for (size_t i = 0; i < job.models.size(); ++i)
                check(!job.models[i].empty(), r.key_where(key), " = \"\" must name a model");
            job.origin["models"] = job.origin["model"] = r.key_where(key);
        }
    for (const char* key : {"mode", "modes"})
        if (const toml::node* n = tbl.get(key)) {
            const auto names = r.strings(key, *n);
            job.modes.clear();
            for (size_t i = 0; i < names.size(); ++i)
                job.modes.push_back(mode_from(
                    r.key_where(n->is_array() ? std::string(key) + "[" + std::to_string(i) + "]" : key), names[i]));
            job.origin["modes"] = job.origin["mode"] = r.key_where(key);
        }
    SweepOptions& o = job.options;
    if (const toml::node* n = tbl.get("settings")) {
        if (n->is_string()) {
            o.settings = parse_settings_list(n->as_string()->get(), r.key_where("settings"));
        } else if (auto a = n->as_array()) {
            check(!a->empty(), r.key_where("settings"), " = [] must list at least one {N, n} setting");
            o.settings.clear();
            for (size_t i = 0; i < a->size(); ++i) {
                const std::string ki = "settings[" + std::to_string(i) + "]";
                const toml::table* t = a->get(i)->as_table();
                if (!t) r.bad_type(ki, *a->get(i), "a table {N = .., n = ..}");
                for (auto&& [sk, sv] : *t) {
                    const std::string s(sk.str());
                    check(s == "N" || s == "n", source, ": unknown key '", ki, ".", s, "' (a setting has N and n)");
                }
                const toml::node* N = t->get("N");
                const toml::node* nn = t->get("n");
                check(N && nn, r.key_where(ki), " = ", node_text(*a->get(i)), " must have both N and n");
                const int64_t Nv = r.integer(ki + ".N", *N, INT64_MIN, INT64_MAX);
                const int64_t nv = r.integer(ki + ".n", *nn, INT64_MIN, INT64_MAX);
                check_setting(r.key_where(ki + ".N"), r.key_where(ki + ".n"), Nv, nv);
                o.settings.push_back({int32_t(Nv), int32_t(nv)});
            }
        } else {
            r.bad_type("settings", *n, "a list of {N, n} tables or \"paper\"");
        }
    }
    if (const toml::node* n = tbl.get("seed")) o.seed = uint64_t(r.integer("seed", *n, 0, INT64_MAX));
    if (const toml::node* n = tbl.get("top_k")) o.top_k = int32_t(r.integer("top_k", *n, 0, 1 << 30));
    if (const toml::node* n = tbl.get("exclude_special")) o.exclude_special = r.boolean("exclude_special", *n);
    if (const toml::node* n = tbl.get("mean_over"))
        o.mean_over = mean_over_from(r.key_where("mean_over"), r.string("mean_over", *n));
    if (const toml::node* n = tbl.get("positions")) {
        const toml::array* a = n->as_array();
        if (!a) r.bad_type("positions", *n, "a list of integers (token positions t)");
        o.total_positions.clear();
        for (size_t i = 0; i < a->size(); ++i)
            o.total_positions.push_back(
                int32_t(r.integer("positions[" + std::to_string(i) + "]", *a->get(i), 0, 1 << 30)));
    }
    if (const toml::node* n = tbl.get("output")) job.output = r.string("output", *n);
    if (const toml::node* n = tbl.get("overwrite")) job.overwrite = r.boolean("overwrite", *n);
    if (const toml::node* n = tbl.get("resume")) job.resume = r.boolean("resume", *n);
    if (const toml::node* n = tbl.get("threads")) job.threads = int32_t(r.integer("threads", *n, 0, 4096));
    if (const toml::node* n = tbl.get("model_read")) job.model_read = r.string("model_read", *n);
    if (const toml::node* n = tbl.get("share_clean_runs")) job.share_clean_runs = r.boolean("share_clean_runs", *n);
    if (const toml::node* n = tbl.get("heads_per_item"))
        job.heads_per_item = int32_t(r.integer("heads_per_item", *n, 0, 1 << 20));
    if (const toml::node* n = tbl.get("device")) {
        job.device = r.string("device", *n);
        try {
            parse_device(job.device);
        } catch (const Error& e) {
            fail(r.key_where("device"), " = \"", job.device, "\" is not a device (cpu, cuda)");
        }
    }
    if (const toml::node* n = tbl.get("gpu_weights")) job.gpu_weights = r.string("gpu_weights", *n);
    if (const toml::node* n = tbl.get("precision")) {
        job.precision = r.string("precision", *n);
        try {
            parse_weight_precision(job.precision);
        } catch (const Error&) {
            fail(r.key_where("precision"), " = \"", job.precision, "\" is not a weight precision (f32, bf16, native)");
        }
    }
    if (const toml::node* n = tbl.get("native_prefill")) {
        job.native_prefill = r.string("native_prefill", *n);
        try {
            cpu::parse_native_prefill(job.native_prefill);
        } catch (const Error&) {
            fail(r.key_where("native_prefill"), " = \"", job.native_prefill, "\" is not auto, int8 or f32");
        }
    }
    check_output_template(job);
    return job;
}

SweepJob parse_job_file(const std::string& path) {
    std::error_code ec;
    check(fs::is_regular_file(path, ec), path, ": job file not found");
    std::ifstream in(path, std::ios::binary);
    check(bool(in), path, ": cannot open the job file");
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_job_text(ss.str(), path);
}

std::string model_stem(const std::string& spec) {
    if (spec.rfind("random:", 0) == 0) {
        std::string s = "random-" + spec.substr(7);
        std::replace(s.begin(), s.end(), ':', '-');
        return s;
    }
    if (is_hf_folder(spec)) {  // a checkpoint folder: its name ("SmolLM2-135M-Instruct", "gemma-3-270m/")
        fs::path p(spec);
        while (!p.empty() && p.filename().empty()) p = p.parent_path();
        return p.filename().string();
    }
    return fs::path(spec).stem().string();
}

std::string expand_output(const std::string& tmpl, const std::string& model, ScoreMode mode) {
    std::string out;
    for (size_t i = 0; i < tmpl.size();) {
        if (tmpl.compare(i, 7, "{model}") == 0) {
            out += model_stem(model);
            i += 7;
        } else if (tmpl.compare(i, 6, "{mode}") == 0) {
            out += score_mode_name(mode);
            i += 6;
        } else {
            out += tmpl[i++];
        }
    }
    return out;
}

std::vector<SweepRun> expand_runs(const SweepJob& job) {
    std::vector<SweepRun> runs;
    for (const auto& m : job.models)
        for (ScoreMode mode : job.modes) runs.push_back({m, mode, expand_output(job.output, m, mode)});
    return runs;
}

BackendOptions backend_options(const SweepJob& job) {
    BackendOptions o;
    o.threads = job.threads;
    o.gpu_weights = parse_weight_type(job.gpu_weights);
    o.native_prefill = job.native_prefill;
    return o;
}

std::string device_label(const SweepJob& job) {
    // f32 host weights (the default) leave the label as files before --precision had it.
    const WeightPrecision p = parse_weight_precision(job.precision);
    if (job.device == "cuda")
        return "cuda (" + job.gpu_weights + " weights" +
               (p == WeightPrecision::F32 ? std::string() : std::string(", from ") + weight_precision_name(p) + " host weights") + ")";
    if (p == WeightPrecision::F32) return job.device;
    // native on the CPU: the prefill arithmetic too; f32 prefill (files written before the option) as it was
    std::string prefill;
    if (p == WeightPrecision::NATIVE && job.device == "cpu")
        prefill = cpu::native_prefill_label(cpu::parse_native_prefill(job.native_prefill));
    if (p == WeightPrecision::BF16 && job.device == "cpu" && !cpu::bf16_prefill_tag(job.native_prefill).empty())
        prefill = ", oneDNN bf16 prefill below " + std::to_string(cpu::kOnednnMaxRows) + " tokens";
    return job.device + " (" + weight_precision_name(p) + " weights" + prefill + ")";
}

LoadOptions load_options(const SweepJob& job, bool verbose) {
    LoadOptions lo;
    lo.verbose = verbose;
    lo.precision = parse_weight_precision(job.precision);
    return lo;
}

void validate_job(const SweepJob& job) {
    check(!job.models.empty(), job.where("models"), " lists no model");
    check(!job.modes.empty(), job.where("modes"), " lists no mode");
    check(!job.options.settings.empty(), job.where("settings"), " lists no setting");
    check(!(job.overwrite && job.resume), job.where("overwrite"), " = true and ", job.where("resume"),
          " = true: choose one (overwrite starts again, resume continues the file)");
    check(job.options.top_k >= 0, job.where("top_k"), " = ", job.options.top_k, " must be >= 0 (0: default)");
    check(job.threads >= 0, job.where("threads"), " = ", job.threads, " must be >= 0");
    check(job.heads_per_item >= 0, job.where("heads_per_item"), " = ", job.heads_per_item,
          " must be >= 0 (0: whole layers)");
    check(job.model_read == "rank" || job.model_read == "node", job.where("model_read"), " = \"", job.model_read,
          "\" is not rank or node");
    try {
        parse_device(job.device);
    } catch (const Error&) {
        fail(job.where("device"), " = \"", job.device, "\" is not a device (cpu, cuda)");
    }
    try {
        parse_weight_type(job.gpu_weights);
    } catch (const Error&) {
        fail(job.where("gpu_weights"), " = \"", job.gpu_weights, "\" is not a weight type (bf16, fp16, fp32)");
    }
    try {
        parse_weight_precision(job.precision);
    } catch (const Error&) {
        fail(job.where("precision"), " = \"", job.precision, "\" is not a weight precision (f32, bf16, native)");
    }
    for (size_t i = 0; i < job.options.settings.size(); ++i) {
        const std::string ki = job.where("settings") + "[" + std::to_string(i) + "]";
        check_setting(ki + ".N", ki + ".n", job.options.settings[i].n_samples, job.options.settings[i].half_len);
    }
    check_output_template(job);
    const auto runs = expand_runs(job);
    std::set<std::string> seen;
    for (const SweepRun& run : runs) {
        const std::string w = job.where("output") + " = \"" + job.output + "\"";
        check(seen.insert(fs::weakly_canonical(run.output).string()).second, w, ": two runs would write ", run.output,
              " (models with the same file stem?)");
        fs::path dir = fs::path(run.output).parent_path();
        if (dir.empty()) dir = ".";
        check_writable_dir(dir, w);
        std::error_code ec;
        if (fs::exists(run.output, ec)) {
            check(!fs::is_directory(run.output), w, ": ", run.output, " is a directory");
            check(job.overwrite || job.resume, w, ": output file ", run.output,
                  " exists (use --overwrite / overwrite = true to replace it, or --resume / resume = true to "
                  "continue it)");
        }
    }
}

ModelShape peek_model_shape(const std::string& spec, const std::string& where) {
    ModelShape s;
    s.spec = spec;
    try {
        if (spec.rfind("random:", 0) == 0) {
            std::string shape = spec.substr(7);
            if (auto c = shape.find(':'); c != std::string::npos) shape = shape.substr(0, c);
            const ModelConfig c = random_model_config(shape);
            s.n_layer = c.n_layer;
            s.n_head = c.n_head;
            s.n_ctx = c.n_ctx;
        } else if (is_hf_folder(spec)) {
            const ModelConfig c = read_hf_config(spec);
            s.n_layer = c.n_layer;
            s.n_head = c.n_head;
            s.n_ctx = c.n_ctx;
        } else {
            const GgufFile f = GgufFile::open(spec);
            const std::string a = f.get_string("general.architecture");
            s.n_layer = int32_t(f.get_int(a + ".block_count"));
            s.n_head = int32_t(f.get_int(a + ".attention.head_count"));
            s.n_ctx = int32_t(f.get_int(a + ".context_length"));
        }
    } catch (const Error& e) {
        fail(where, " = \"", spec, "\": ", e.what());
    }
    return s;
}

void validate_job_for_model(const SweepJob& job, const ModelShape& shape) {
    const SweepOptions& o = job.options;
    const std::string model = " of model " + shape.spec;
    for (size_t i = 0; i < o.settings.size(); ++i) {
        const int64_t n = o.settings[i].half_len;
        check(2 * n <= shape.n_ctx, job.where("settings"), "[", i, "].n = ", n, " does not fit the context", model,
              ": 2n = ", 2 * n, " > n_ctx = ", shape.n_ctx);
        for (size_t j = 0; j < o.total_positions.size(); ++j)
            check(o.total_positions[j] < 2 * n, job.where("positions"), "[", j, "] = ", o.total_positions[j],
                  " is outside the sequences of setting ", i, " (", o.settings[i].n_samples, "x", n, ": 2n = ", 2 * n,
                  ")");
    }
    const int64_t heads = int64_t(shape.n_layer) * shape.n_head;
    check(o.top_k <= heads, job.where("top_k"), " = ", o.top_k, " is larger than the number of heads", model, " (",
          shape.n_layer, " layers x ", shape.n_head, " heads = ", heads, ")");
    // The sweep's own checks (e.g. modes that are not implemented yet), on the shape as far as it is known.
    ModelConfig c;
    c.n_layer = shape.n_layer;
    c.n_head = shape.n_head;
    c.n_ctx = shape.n_ctx;
    for (ScoreMode mode : job.modes) {
        SweepOptions per_mode = o;
        per_mode.mode = mode;
        try {
            per_mode.validate(c);
        } catch (const Error& e) {
            fail(job.where("modes"), " = \"", score_mode_name(mode), "\": ", e.what());
        }
    }
}

}  // namespace hs::pear
