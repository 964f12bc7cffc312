// util/timer.hpp: a steady-clock stopwatch.
//
//   hs::Timer t;            // starts running
//   ... t.seconds() ...     // elapsed since start (or the last restart)
//   t.restart();
#pragma once

#include <chrono>

namespace hs {

class Timer {
public:
    using clock = std::chrono::steady_clock;

    Timer() : start_(clock::now()) {}
    void restart() { start_ = clock::now(); }
    double seconds() const { return std::chrono::duration<double>(clock::now() - start_).count(); }
    double millis() const { return seconds() * 1e3; }
    clock::time_point started() const { return start_; }

private:
    clock::time_point start_;
};

}  // namespace hs
