// Guards the CTest registration: catch_discover_tests splits the list of test names on ';', so a name with a
// ';' turns into two CTest tests that match nothing (and pass). Every test case name must avoid it.
#include <catch2/catch.hpp>

#include <string>

TEST_CASE("test case names are safe for CTest discovery", "[meta]") {
    for (const auto& tc : Catch::getRegistryHub().getTestCaseRegistry().getAllTests()) {
        INFO("test case: " << tc.name);
        CHECK(tc.name.find(';') == std::string::npos);
    }
}
