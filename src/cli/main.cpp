// headsweep command-line entry point (subcommands are added as the parts land).
#include <cstdio>

int main() {
    std::puts("headsweep " HEADSWEEP_VERSION);
    return 0;
}
