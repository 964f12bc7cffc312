// util/mapped_file.hpp: a read-only memory map of a whole file (RAII).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace hs {

class MappedFile {
public:
    MappedFile() = default;
    explicit MappedFile(const std::string& path);  // throws hs::Error naming the file when it cannot be mapped
    // The file's bytes already in memory (e.g. a node-shared copy, dist/node_file.hpp): not owned, not unmapped.
    static MappedFile borrow(const std::string& path, const uint8_t* data, size_t size);
    ~MappedFile();
    MappedFile(MappedFile&& other) noexcept;
    MappedFile& operator=(MappedFile&& other) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }
    // Tell the kernel the pages are no longer needed (after weights were dequantised out of them).
    void release_pages() const;
    // The same for the whole pages inside [begin, begin + n) (a tensor copied out of the map): peak memory during a
    // load is then the weights plus one tensor, not the weights plus the file.
    void release_pages(const uint8_t* begin, size_t n) const;

private:
    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    bool owned_ = true;
};

}  // namespace hs
