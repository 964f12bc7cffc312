// Guards the CTest registration: catch_discover_tests splits the list of test names on ';', so a name with a
// ';' turns into two CTest tests that match nothing (and pass). CMake lists also do not split inside square
// brackets, so an unclosed '[' (e.g. "[0, n)") glues every later name into one CTest entry that matches nothing:
// those tests silently stop running. Every test case name must avoid both.
#include <catch2/catch.hpp>

#include <string>

TEST_CASE("test case names are safe for CTest discovery", "[meta]") {
    for (const auto& tc : Catch::getRegistryHub().getTestCaseRegistry().getAllTests()) {
        INFO("test case: " << tc.name);
        CHECK(tc.name.find(';') == std::string::npos);
        int depth = 0;  // square brackets must pair up, without nesting
        bool balanced = true;
        for (char c : tc.name) {
            if (c == '[') balanced = balanced && depth++ == 0;
            if (c == ']') balanced = balanced && depth-- == 1;
        }
        CHECK((balanced && depth == 0));
    }
}
