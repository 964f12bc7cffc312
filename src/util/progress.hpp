// util/progress.hpp: progress reports for long loops (sweeps, evaluations, downloads).
//
//   hs::Progress p({.label = "sweep", .total = n_heads, .interval_s = 10});
//   for (...) { ...; p.add(1); }
//   p.finish();   // one-line summary; also done by the destructor if not called
//
// A report line is "sweep: 120/576 (20.8%) 3.52/s ETA 2m10s", written to the stream (stderr by default) at most
// once every interval_s seconds; finish() writes "sweep: done 576/576 in 2m44s (3.51/s)". A disabled Progress
// (enabled = false, e.g. on MPI ranks other than 0) writes nothing. No global state: each object has its own clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace hs {

class Progress {
public:
    struct Options {
        std::string label = "progress";
        int64_t total = 0;          // 0 or less: unknown; no percentage or ETA
        double interval_s = 5.0;    // at most one report per interval; 0 reports on every update
        bool enabled = true;
        std::ostream* out = nullptr;  // nullptr: std::cerr
        std::string unit = "";      // appended to the rate, e.g. "tok" gives "35.2 tok/s"
    };

    explicit Progress(Options opt);
    ~Progress();
    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;

    void add(int64_t n = 1) { set(done_ + n); }
    void set(int64_t done);   // absolute count; reports when the interval has passed
    void finish();            // writes the summary once (no-op when disabled or already finished)

    int64_t done() const { return done_; }
    double elapsed_s() const;

    // The formatting, exposed for tests and for callers that print their own lines.
    static std::string format_line(const std::string& label, int64_t done, int64_t total, double elapsed_s,
                                   const std::string& unit = "");
    static std::string format_summary(const std::string& label, int64_t done, int64_t total, double elapsed_s,
                                      const std::string& unit = "");
    static std::string format_duration(double seconds);  // "0.4s", "12s", "2m05s", "1h02m"
    static std::string format_rate(double per_second, const std::string& unit = "");  // "3.52/s", "120 tok/s"

private:
    using clock = std::chrono::steady_clock;
    Options opt_;
    std::ostream* out_;
    clock::time_point start_;
    clock::time_point last_report_;
    int64_t done_ = 0;
    bool finished_ = false;
};

}  // namespace hs
