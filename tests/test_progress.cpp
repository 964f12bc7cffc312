#include <catch2/catch.hpp>

#include <algorithm>
#include <sstream>
#include <string>

#include "util/progress.hpp"
#include "util/timer.hpp"

using hs::Progress;

TEST_CASE("progress durations and rates", "[progress]") {
    CHECK(Progress::format_duration(0.42) == "0.4s");
    CHECK(Progress::format_duration(12.7) == "12s");
    CHECK(Progress::format_duration(125) == "2m05s");
    CHECK(Progress::format_duration(3720) == "1h02m");
    CHECK(Progress::format_duration(-1) == "?");
    CHECK(Progress::format_rate(3.5151) == "3.52/s");
    CHECK(Progress::format_rate(35.2) == "35.2/s");
    CHECK(Progress::format_rate(1234.4, "tok") == "1234 tok/s");
}

TEST_CASE("progress report line and summary", "[progress]") {
    CHECK(Progress::format_line("sweep", 120, 576, 34.0) == "sweep: 120/576 (20.8%) 3.53/s ETA 2m09s");
    CHECK(Progress::format_line("sweep", 0, 576, 0.0) == "sweep: 0/576 (0.0%) 0/s ETA ?");
    CHECK(Progress::format_line("eval", 10, 0, 5.0) == "eval: 10 2/s");
    CHECK(Progress::format_summary("sweep", 576, 576, 164.0) == "sweep: done 576/576 in 2m44s (3.51/s)");
}

TEST_CASE("progress writes at most once per interval and a summary at the end", "[progress]") {
    std::ostringstream os;
    {
        Progress p({.label = "x", .total = 10, .interval_s = 1e9, .enabled = true, .out = &os});
        for (int i = 0; i < 10; ++i) p.add();
        CHECK(os.str().empty());
        p.finish();
        p.finish();
    }
    const std::string s = os.str();
    CHECK(s.rfind("x: done 10/10 in ", 0) == 0);
    CHECK(std::count(s.begin(), s.end(), '\n') == 1);
}

TEST_CASE("progress with interval 0 reports every update, disabled reports nothing", "[progress]") {
    std::ostringstream os;
    {
        Progress p({.label = "y", .total = 3, .interval_s = 0, .out = &os});
        p.add();
        p.add();
        p.add();
    }  // destructor finishes
    const std::string s = os.str();
    CHECK(std::count(s.begin(), s.end(), '\n') == 4);
    CHECK(s.find("y: 3/3 (100.0%)") != std::string::npos);

    std::ostringstream quiet;
    {
        Progress p({.label = "z", .total = 3, .interval_s = 0, .enabled = false, .out = &quiet});
        p.add(3);
        p.finish();
    }
    CHECK(quiet.str().empty());
}

TEST_CASE("timer measures elapsed steady time", "[progress]") {
    hs::Timer t;
    double a = t.seconds();
    CHECK(a >= 0);
    CHECK(t.seconds() >= a);
    t.restart();
    CHECK(t.millis() < 1000);
}
