// io/journal.hpp: an append-only write-ahead journal of checksummed records (crash safety of the sweep file).
//
// File layout: records one after another, each
//     u32 magic 0x4c4e524a ("JRNL")   u32 type   u64 payload bytes   u32 crc32(payload)   u32 crc32(first 20 bytes)
//     payload
// in the native byte order (the journal is read back by the same kind of machine that wrote it). append() stages
// records in memory; sync() writes every staged record with one write() and fdatasync()s, so a record is either
// whole on disk or (after a crash in the middle of sync) a torn tail. read() returns the records of the longest
// valid prefix and says why it stopped early (a truncated or corrupt record: the tail a crash leaves), so that a
// reader replays exactly what was synced. Opening for append cuts such a tail off first.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace hs::io {

struct JournalRecord {
    uint32_t type = 0;
    std::vector<char> payload;
};

struct JournalContents {
    std::vector<JournalRecord> records;  // the valid prefix
    uint64_t valid_bytes = 0;            // its length in bytes
    uint64_t file_bytes = 0;             // the file's length
    std::string damage;                  // empty, or why reading stopped before the end ("truncated record at byte ...")
};

class Journal {
public:
    // Reads every valid record of an existing journal (a missing file throws hs::Error naming it).
    static JournalContents read(const std::string& path);
    // Creates (or truncates) a journal for appending.
    static Journal create(const std::string& path);
    // Opens an existing journal for appending after its valid prefix (`valid_bytes` from read(): a damaged tail
    // is cut off).
    static Journal open_append(const std::string& path, uint64_t valid_bytes);

    Journal() = default;
    Journal(Journal&&) noexcept;
    Journal& operator=(Journal&&) noexcept;
    Journal(const Journal&) = delete;
    Journal& operator=(const Journal&) = delete;
    ~Journal();

    void append(uint32_t type, const void* payload, size_t bytes);  // staged until sync()
    size_t staged() const { return staged_.size(); }
    void sync();  // one write() of every staged record, then fdatasync(); throws hs::Error naming the file
    void close();
    bool is_open() const { return fd_ >= 0; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    int fd_ = -1;
    std::vector<char> staged_;
};

// Byte packing of record payloads (native layout).
struct RecordWriter {
    std::vector<char> bytes;
    template <class T>
    void put(const T& v) {
        const char* p = reinterpret_cast<const char*>(&v);
        bytes.insert(bytes.end(), p, p + sizeof(T));
    }
    template <class T>
    void put_array(const T* v, size_t n) {
        put(uint64_t(n));
        const char* p = reinterpret_cast<const char*>(v);
        bytes.insert(bytes.end(), p, p + n * sizeof(T));
    }
    void put_string(const std::string& s) { put_array(s.data(), s.size()); }
};

// Reads a payload back; any overrun throws hs::Error("<what>: record too short").
struct RecordReader {
    const char* p;
    const char* end;
    std::string what;
    template <class T>
    T get() {
        need(sizeof(T));
        T v;
        std::memcpy(&v, p, sizeof(T));
        p += sizeof(T);
        return v;
    }
    template <class T>
    std::vector<T> get_array() {
        const uint64_t n = get<uint64_t>();
        check_count(n, sizeof(T));
        std::vector<T> v(n);
        if (n) std::memcpy(v.data(), p, n * sizeof(T));
        p += n * sizeof(T);
        return v;
    }
    std::string get_string() {
        const std::vector<char> c = get_array<char>();
        return std::string(c.begin(), c.end());
    }
    void need(uint64_t n) const;
    void check_count(uint64_t n, size_t size) const;  // n elements of `size` bytes remain
};

}  // namespace hs::io
