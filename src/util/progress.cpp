#include "util/progress.hpp"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

namespace hs {

Progress::Progress(Options opt)
    : opt_(std::move(opt)), out_(opt_.out ? opt_.out : &std::cerr), start_(clock::now()), last_report_(start_) {}

Progress::~Progress() {
    try {
        finish();
    } catch (...) {
    }
}

double Progress::elapsed_s() const { return std::chrono::duration<double>(clock::now() - start_).count(); }

void Progress::set(int64_t done) {
    done_ = done;
    if (!opt_.enabled || finished_) return;
    auto now = clock::now();
    if (std::chrono::duration<double>(now - last_report_).count() < opt_.interval_s) return;
    last_report_ = now;
    *out_ << format_line(opt_.label, done_, opt_.total, std::chrono::duration<double>(now - start_).count(),
                         opt_.unit)
          << '\n'
          << std::flush;
}

void Progress::finish() {
    if (!opt_.enabled || finished_) return;
    finished_ = true;
    *out_ << format_summary(opt_.label, done_, opt_.total, elapsed_s(), opt_.unit) << '\n' << std::flush;
}

std::string Progress::format_duration(double s) {
    if (!std::isfinite(s) || s < 0) return "?";
    char buf[48];
    if (s < 10) {
        std::snprintf(buf, sizeof buf, "%.1fs", s);
    } else if (s < 60) {
        std::snprintf(buf, sizeof buf, "%ds", int(s));
    } else if (s < 3600) {
        long t = long(s);
        std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
    } else {
        long t = long(s);
        std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    }
    return buf;
}

std::string Progress::format_rate(double r, const std::string& unit) {
    char buf[48];
    if (!std::isfinite(r) || r < 0) r = 0;
    if (r >= 100)
        std::snprintf(buf, sizeof buf, "%.0f", r);
    else if (r >= 10)
        std::snprintf(buf, sizeof buf, "%.1f", r);
    else
        std::snprintf(buf, sizeof buf, "%.3g", r);
    std::string s = buf;
    if (!unit.empty()) s.append(" ").append(unit);
    s.append("/s");
    return s;
}

// Built with an ostringstream: chains of std::string operator+ trip a false -Wrestrict in GCC 12 at -O2/-O3.
std::string Progress::format_line(const std::string& label, int64_t done, int64_t total, double elapsed,
                                  const std::string& unit) {
    double rate = elapsed > 0 ? double(done) / elapsed : 0.0;
    std::ostringstream os;
    os << label << ": " << done;
    if (total > 0) {
        char pct[32];
        std::snprintf(pct, sizeof pct, " (%.1f%%)", 100.0 * double(done) / double(total));
        os << '/' << total << pct;
    }
    os << ' ' << format_rate(rate, unit);
    if (total > 0) {
        if (done >= total)
            os << " ETA 0.0s";
        else if (rate > 0)
            os << " ETA " << format_duration(double(total - done) / rate);
        else
            os << " ETA ?";
    }
    return os.str();
}

std::string Progress::format_summary(const std::string& label, int64_t done, int64_t total, double elapsed,
                                     const std::string& unit) {
    double rate = elapsed > 0 ? double(done) / elapsed : 0.0;
    std::ostringstream os;
    os << label << ": done " << done;
    if (total > 0) os << '/' << total;
    os << " in " << format_duration(elapsed) << " (" << format_rate(rate, unit) << ')';
    return os.str();
}

}  // namespace hs
