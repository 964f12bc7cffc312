// Comparing sweeps (compare.hpp).
#include "pear/compare.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>

#include "pear/sample_stats.hpp"
#include "pear/sweep_file.hpp"
#include "util/error.hpp"
#include "util/json.hpp"

namespace hs::pear {

namespace {

std::vector<double> ranks(const std::vector<double>& v) {
    std::vector<size_t> order(v.size());
    std::iota(order.begin(), order.end(), size_t(0));
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
    std::vector<double> r(v.size());
    for (size_t i = 0; i < order.size();) {
        size_t j = i;
        while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
        const double mean_rank = 0.5 * double(i + j) + 1.0;
        for (size_t k = i; k <= j; ++k) r[order[k]] = mean_rank;
        i = j + 1;
    }
    return r;
}

std::string num(double v, int digits = 9) {
    if (!std::isfinite(v)) return "null";
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    return buf;
}

std::string fixed(double v, int decimals) {
    if (!std::isfinite(v)) return "-";
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

std::string head_name(int32_t l, int32_t h) { return "L" + std::to_string(l) + "H" + std::to_string(h); }

}  // namespace

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
    check(a.size() == b.size() && !a.empty(), "spearman: vectors of different or zero length");
    const auto ra = ranks(a), rb = ranks(b);
    const double n = double(a.size()), m = (n + 1) / 2;
    double sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < ra.size(); ++i) {
        sab += (ra[i] - m) * (rb[i] - m);
        saa += (ra[i] - m) * (ra[i] - m);
        sbb += (rb[i] - m) * (rb[i] - m);
    }
    if (saa == 0 || sbb == 0) return std::nan("");
    return sab / std::sqrt(saa * sbb);
}

double jaccard(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
    check(a.size() == b.size(), "jaccard: masks of different length");
    size_t both = 0, any = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        both += a[i] && b[i];
        any += a[i] || b[i];
    }
    return any == 0 ? 1.0 : double(both) / double(any);
}

CompareResult compare_sweeps(const std::vector<std::string>& paths, const CompareOptions& o) {
    check(paths.size() >= 2, "compare: give at least two sweep files");
    check(o.top_k >= 0, "compare: --top-k must not be negative");
    CompareResult res;
    std::vector<SweepFileInfo> infos;
    std::vector<int32_t> file_k;
    std::vector<HeadScores> scores;
    for (const std::string& p : paths) {
        SweepFile f = SweepFile::open(p);
        check(f.complete(), p, ": the sweep is not complete (root attribute complete = 0); compare needs finished "
              "files (resume the sweep first)");
        infos.push_back(f.info());
        scores.push_back(f.read_scores());
        file_k.push_back(scores.back().top_k);
        CompareFile cf;
        cf.path = p;
        cf.mode = score_mode_name(f.info().options.mode);
        cf.model_name = f.info().model_name;
        cf.device = f.info().device;
        cf.seed = f.info().options.seed;
        cf.format_version = f.format_version();
        cf.has_samples = f.has_samples();
        cf.mean_ratio = scores.back().mean_ratio;
        res.files.push_back(cf);
    }
    // Compatibility with the first file.
    const SweepFileInfo& i0 = infos[0];
    for (size_t j = 1; j < infos.size(); ++j) {
        const SweepFileInfo& ij = infos[j];
        auto refuse = [&](const std::string& what, const std::string& a, const std::string& b) {
            fail("compare: ", paths[0], " and ", paths[j], " cannot be compared: ", what, " differs (", paths[0], ": ",
                 a, ", ", paths[j], ": ", b, ")");
        };
        if (ij.n_layer != i0.n_layer) refuse("n_layer", std::to_string(i0.n_layer), std::to_string(ij.n_layer));
        if (ij.n_head != i0.n_head) refuse("n_head", std::to_string(i0.n_head), std::to_string(ij.n_head));
        const std::string sa = settings_string(i0.options.settings), sb = settings_string(ij.options.settings);
        if (sa != sb) refuse("settings (N x n)", sa, sb);
        if (!o.allow_modes && ij.options.mode != i0.options.mode)
            fail("compare: ", paths[0], " and ", paths[j], " cannot be compared: mode differs (", paths[0], ": ",
                 score_mode_name(i0.options.mode), ", ", paths[j], ": ", score_mode_name(ij.options.mode),
                 "); give --allow-modes to compare scoring modes");
    }
    res.n_layer = i0.n_layer;
    res.n_head = i0.n_head;
    const int32_t LH = res.n_layer * res.n_head;
    if (o.top_k > 0) {
        res.top_k = o.top_k;
    } else {
        for (size_t j = 1; j < file_k.size(); ++j)
            check(file_k[j] == file_k[0], "compare: ", paths[0], " and ", paths[j], " have different top_k (",
                  file_k[0], " and ", file_k[j], "): give --top-k");
        res.top_k = file_k[0];
    }
    check(res.top_k >= 1 && res.top_k <= LH, "compare: top-K ", res.top_k, " is not between 1 and the ", LH,
          " heads");

    // Per-sample statistics (checked: a damaged dataset is an error naming the file and the dataset).
    for (size_t j = 0; j < paths.size(); ++j) {
        CompareFile& cf = res.files[j];
        if (!cf.has_samples) continue;
        SweepFile f = SweepFile::open(paths[j]);
        const SampleData d = f.read_samples();
        const std::optional<HeadStats> stored = f.read_stats();
        check(stored.has_value(), paths[j], ": group /stats is absent in a complete version-", cf.format_version,
              " file: the file is damaged");
        if (stored->bootstrap.top_k == res.top_k && stored->bootstrap.resamples > 0) {
            cf.mean_ratio_se = stored->mean_ratio_se;
            cf.top_k_frequency = stored->top_k_frequency;
        } else {
            BootstrapOptions bo;
            bo.resamples = stored->bootstrap.resamples > 0 ? stored->bootstrap.resamples : o.resamples;
            bo.seed = stored->bootstrap.resamples > 0 ? stored->bootstrap.seed : cf.seed;
            bo.confidence = stored->bootstrap.resamples > 0 ? stored->bootstrap.confidence : 0.95;
            bo.top_k = res.top_k;
            const HeadStats st = head_stats(d, bo);
            cf.mean_ratio_se = st.mean_ratio_se;
            cf.top_k_frequency = st.top_k_frequency;
        }
    }

    std::vector<std::vector<uint8_t>> masks;
    for (const CompareFile& cf : res.files) masks.push_back(top_k_mask(cf.mean_ratio, res.top_k));
    for (size_t a = 0; a < res.files.size(); ++a)
        for (size_t b = a + 1; b < res.files.size(); ++b) {
            const CompareFile &fa = res.files[a], &fb = res.files[b];
            PairComparison pc;
            pc.a = a;
            pc.b = b;
            pc.spearman = spearman(fa.mean_ratio, fb.mean_ratio);
            pc.jaccard = jaccard(masks[a], masks[b]);
            for (int32_t i = 0; i < LH; ++i) pc.top_k_common += masks[a][size_t(i)] && masks[b][size_t(i)];
            std::vector<int32_t> order(static_cast<size_t>(LH));
            std::iota(order.begin(), order.end(), 0);
            auto absdiff = [&](int32_t i) { return std::fabs(fb.mean_ratio[size_t(i)] - fa.mean_ratio[size_t(i)]); };
            std::stable_sort(order.begin(), order.end(), [&](int32_t x, int32_t y) { return absdiff(x) > absdiff(y); });
            for (int32_t r = 0; r < o.changes && r < LH; ++r) {
                const int32_t i = order[size_t(r)];
                HeadChange c;
                c.layer = i / res.n_head;
                c.head = i % res.n_head;
                c.a = fa.mean_ratio[size_t(i)];
                c.b = fb.mean_ratio[size_t(i)];
                c.diff = c.b - c.a;
                if (!fa.mean_ratio_se.empty() && !fb.mean_ratio_se.empty())
                    c.se = std::sqrt(fa.mean_ratio_se[size_t(i)] * fa.mean_ratio_se[size_t(i)] +
                                     fb.mean_ratio_se[size_t(i)] * fb.mean_ratio_se[size_t(i)]);
                pc.changes.push_back(c);
            }
            res.pairs.push_back(pc);
        }

    const bool all_boot = std::all_of(res.files.begin(), res.files.end(),
                                      [](const CompareFile& f) { return !f.top_k_frequency.empty(); });
    const double F = double(res.files.size());
    for (int32_t i = 0; i < LH; ++i) {
        HeadStability hs;
        hs.layer = i / res.n_head;
        hs.head = i % res.n_head;
        double in = 0, boot = 0, mean = 0;
        for (size_t j = 0; j < res.files.size(); ++j) {
            in += masks[j][size_t(i)];
            mean += res.files[j].mean_ratio[size_t(i)] / F;
            if (all_boot) boot += res.files[j].top_k_frequency[size_t(i)] / F;
        }
        if (in == 0) continue;
        hs.file_frequency = in / F;
        hs.bootstrap_frequency = all_boot ? boot : -1;
        hs.mean_score = mean;
        res.stability.push_back(hs);
    }
    std::stable_sort(res.stability.begin(), res.stability.end(), [](const HeadStability& x, const HeadStability& y) {
        if (x.file_frequency != y.file_frequency) return x.file_frequency > y.file_frequency;
        if (x.bootstrap_frequency != y.bootstrap_frequency) return x.bootstrap_frequency > y.bootstrap_frequency;
        return x.mean_score > y.mean_score;
    });
    return res;
}

std::string compare_table(const CompareResult& r) {
    std::ostringstream os;
    os << "compare: " << r.files.size() << " sweeps, " << r.n_layer << "x" << r.n_head << " heads, top-" << r.top_k
       << " by mean_ratio\n";
    for (size_t j = 0; j < r.files.size(); ++j) {
        const CompareFile& f = r.files[j];
        os << "  [" << j << "] " << f.path << "  " << f.model_name << " " << f.mode << " seed " << f.seed << " "
           << f.device << "  per-sample: "
           << (f.has_samples ? "yes" : "absent (format version " + std::to_string(f.format_version) + ")") << "\n";
    }
    char line[256];
    for (const PairComparison& p : r.pairs) {
        os << "\n[" << p.a << "] vs [" << p.b << "]: spearman " << fixed(p.spearman, 4) << ", top-" << r.top_k
           << " jaccard " << fixed(p.jaccard, 3) << " (" << p.top_k_common << " in both)\n";
        std::snprintf(line, sizeof line, "  %-8s %12s %12s %12s %12s\n", "head", "A", "B", "B-A", "se(B-A)");
        os << line;
        for (const HeadChange& c : p.changes) {
            std::snprintf(line, sizeof line, "  %-8s %12.6f %12.6f %+12.6f %12s\n", head_name(c.layer, c.head).c_str(),
                          c.a, c.b, c.diff, c.se < 0 ? "absent" : fixed(c.se, 6).c_str());
            os << line;
        }
    }
    os << "\ntop-" << r.top_k << " stability: files = fraction of the sweeps with the head in their top K; "
       << "bootstrap = mean over sweeps of the fraction of resamples\n";
    std::snprintf(line, sizeof line, "  %-8s %6s %10s %12s\n", "head", "files", "bootstrap", "mean score");
    os << line;
    for (const HeadStability& h : r.stability) {
        std::snprintf(line, sizeof line, "  %-8s %6.2f %10s %12.6f\n", head_name(h.layer, h.head).c_str(),
                      h.file_frequency, h.bootstrap_frequency < 0 ? "absent" : fixed(h.bootstrap_frequency, 3).c_str(),
                      h.mean_score);
        os << line;
    }
    return os.str();
}

std::string compare_json(const CompareResult& r) {
    std::ostringstream os;
    os << "{\"n_layer\":" << r.n_layer << ",\"n_head\":" << r.n_head << ",\"top_k\":" << r.top_k << ",\"files\":[";
    for (size_t j = 0; j < r.files.size(); ++j) {
        const CompareFile& f = r.files[j];
        os << (j ? "," : "") << "{\"path\":\"" << json::escape(f.path) << "\",\"model_name\":\""
           << json::escape(f.model_name) << "\",\"mode\":\"" << f.mode << "\",\"seed\":" << f.seed << ",\"device\":\""
           << json::escape(f.device) << "\",\"format_version\":" << f.format_version
           << ",\"per_sample\":" << (f.has_samples ? "true" : "false") << ",\"mean_ratio\":[";
        for (size_t i = 0; i < f.mean_ratio.size(); ++i) os << (i ? "," : "") << num(f.mean_ratio[i]);
        os << "],\"mean_ratio_se\":";
        if (f.mean_ratio_se.empty()) {
            os << "null";
        } else {
            os << "[";
            for (size_t i = 0; i < f.mean_ratio_se.size(); ++i) os << (i ? "," : "") << num(f.mean_ratio_se[i]);
            os << "]";
        }
        os << "}";
    }
    os << "],\"pairs\":[";
    for (size_t k = 0; k < r.pairs.size(); ++k) {
        const PairComparison& p = r.pairs[k];
        os << (k ? "," : "") << "{\"a\":" << p.a << ",\"b\":" << p.b << ",\"spearman\":" << num(p.spearman)
           << ",\"jaccard\":" << num(p.jaccard) << ",\"top_k_common\":" << p.top_k_common << ",\"changes\":[";
        for (size_t i = 0; i < p.changes.size(); ++i) {
            const HeadChange& c = p.changes[i];
            os << (i ? "," : "") << "{\"layer\":" << c.layer << ",\"head\":" << c.head << ",\"a\":" << num(c.a)
               << ",\"b\":" << num(c.b) << ",\"diff\":" << num(c.diff) << ",\"se\":" << (c.se < 0 ? "null" : num(c.se))
               << "}";
        }
        os << "]}";
    }
    os << "],\"stability\":[";
    for (size_t i = 0; i < r.stability.size(); ++i) {
        const HeadStability& h = r.stability[i];
        os << (i ? "," : "") << "{\"layer\":" << h.layer << ",\"head\":" << h.head
           << ",\"file_frequency\":" << num(h.file_frequency) << ",\"bootstrap_frequency\":"
           << (h.bootstrap_frequency < 0 ? "null" : num(h.bootstrap_frequency)) << ",\"mean_score\":"
           << num(h.mean_score) << "}";
    }
    os << "]}";
    return os.str();
}

}  // namespace hs::pear
