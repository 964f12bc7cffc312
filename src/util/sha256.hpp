// util/sha256.hpp: SHA-256 (FIPS 180-4) of a byte buffer or of a whole file, as lowercase hex.
//
// Used to verify model files and to stamp outputs with the hash of their inputs. The file variant streams in
// blocks, so it works on files larger than memory.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace hs {

// Incremental hasher: update() any number of times, then hex() or digest() once.
class Sha256 {
public:
    Sha256();
    void update(const void* data, size_t n);
    void update(std::string_view s) { update(s.data(), s.size()); }
    std::array<uint8_t, 32> digest();  // finishes the hash; update() must not be called afterwards
    std::string hex();                 // digest() as 64 lowercase hex characters

private:
    void block(const uint8_t* p);
    std::array<uint32_t, 8> h_;
    std::array<uint8_t, 64> buf_{};
    size_t buf_len_ = 0;
    uint64_t total_ = 0;
    bool done_ = false;
};

std::string sha256_hex(const void* data, size_t n);
std::string sha256_hex(std::string_view bytes);
// Streams the file; throws hs::Error naming the file when it cannot be opened or read.
std::string sha256_file(const std::string& path);

}  // namespace hs
