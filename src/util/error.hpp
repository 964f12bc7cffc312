// util/error.hpp: the one exception type headsweep throws for bad input and failed operations.
//
// Every error names what it is about (a file, a key, an op) so that the CLI can print it as one line and exit
// non-zero. Library code never exits or aborts on bad input; it throws hs::Error.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace hs {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// fail("file ", path, ": tensor ", name, " has ", n, " dims") builds the message from its parts and throws.
template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
    std::ostringstream os;
    (os << ... << parts);
    throw Error(os.str());
}

// check(cond, parts...) throws hs::Error with the message when cond is false.
template <typename... Parts>
void check(bool cond, const Parts&... parts) {
    if (!cond) fail(parts...);
}

}  // namespace hs
