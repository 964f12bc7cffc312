#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include "util/error.hpp"
#include "util/sha256.hpp"

TEST_CASE("sha256 of known vectors", "[sha256]") {
    CHECK(hs::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(hs::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(hs::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const std::string million(1000000, 'a');
    CHECK(hs::sha256_hex(million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256 incremental updates match one-shot at every split", "[sha256]") {
    std::string msg;
    for (int i = 0; i < 200; ++i) msg += char('a' + i % 26);
    const std::string want = hs::sha256_hex(msg);
    for (size_t cut = 0; cut <= msg.size(); cut += 7) {
        hs::Sha256 h;
        h.update(msg.substr(0, cut));
        h.update(msg.substr(cut));
        CHECK(h.hex() == want);
    }
}

TEST_CASE("sha256 of a file streams the same bytes", "[sha256]") {
    auto path = std::filesystem::temp_directory_path() /
                ("headsweep_test_sha256_" + std::to_string(::getpid()) + ".bin");
    const std::string million(1000000, 'a');
    {
        std::ofstream f(path, std::ios::binary);
        f << million;
    }
    CHECK(hs::sha256_file(path.string()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    std::filesystem::remove(path);
    CHECK_THROWS_WITH(hs::sha256_file(path.string()), Catch::Contains(path.filename().string()));
}
