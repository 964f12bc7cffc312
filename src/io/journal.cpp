// Append-only journal of checksummed records (journal.hpp).
#include "io/journal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "util/error.hpp"

namespace hs::io {

namespace {

constexpr uint32_t kMagic = 0x4c4e524a;  // "JRNL" read as little-endian bytes
constexpr size_t kHeader = 24;

uint32_t crc(const void* p, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    const Bytef* b = static_cast<const Bytef*>(p);
    while (n > 0) {  // zlib takes uInt lengths
        const uInt k = uInt(std::min<size_t>(n, 1u << 30));
        c = crc32(c, b, k);
        b += k;
        n -= k;
    }
    return uint32_t(c);
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

void RecordReader::need(uint64_t n) const { check(n <= uint64_t(end - p), what, ": record too short"); }

void RecordReader::check_count(uint64_t n, size_t size) const {
    check(n <= uint64_t(end - p) / size, what, ": record too short");
}

JournalContents Journal::read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    check(bool(in), path, ": cannot open the journal: ", errno_text());
    std::vector<char> all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    JournalContents out;
    out.file_bytes = all.size();
    size_t at = 0;
    while (at < all.size()) {
        if (all.size() - at < kHeader) {
            out.damage = "truncated record header at byte " + std::to_string(at);
            break;
        }
        uint32_t magic, type, pcrc, hcrc;
        uint64_t len;
        std::memcpy(&magic, &all[at], 4);
        std::memcpy(&type, &all[at + 4], 4);
        std::memcpy(&len, &all[at + 8], 8);
        std::memcpy(&pcrc, &all[at + 16], 4);
        std::memcpy(&hcrc, &all[at + 20], 4);
        if (magic != kMagic || hcrc != crc(&all[at], 20)) {
            out.damage = "corrupt record header at byte " + std::to_string(at);
            break;
        }
        if (len > all.size() - at - kHeader) {
            out.damage = "truncated record at byte " + std::to_string(at) + " (" + std::to_string(len) +
                         " payload bytes, " + std::to_string(all.size() - at - kHeader) + " in the file)";
            break;
        }
        if (pcrc != crc(&all[at + kHeader], size_t(len))) {
            out.damage = "record at byte " + std::to_string(at) + " fails its checksum";
            break;
        }
        JournalRecord r;
        r.type = type;
        r.payload.assign(all.begin() + std::ptrdiff_t(at + kHeader), all.begin() + std::ptrdiff_t(at + kHeader + len));
        out.records.push_back(std::move(r));
        at += kHeader + size_t(len);
    }
    out.valid_bytes = at;
    return out;
}

Journal Journal::create(const std::string& path) {
    Journal j;
    j.path_ = path;
    j.fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    check(j.fd_ >= 0, path, ": cannot create the journal: ", errno_text());
    return j;
}

Journal Journal::open_append(const std::string& path, uint64_t valid_bytes) {
    Journal j;
    j.path_ = path;
    j.fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    check(j.fd_ >= 0, path, ": cannot open the journal for writing: ", errno_text());
    check(::ftruncate(j.fd_, off_t(valid_bytes)) == 0, path, ": cannot cut the journal's damaged tail: ", errno_text());
    check(::lseek(j.fd_, off_t(valid_bytes), SEEK_SET) == off_t(valid_bytes), path, ": cannot seek in the journal: ",
          errno_text());
    return j;
}

Journal::Journal(Journal&& o) noexcept : path_(std::move(o.path_)), fd_(o.fd_), staged_(std::move(o.staged_)) {
    o.fd_ = -1;
}

Journal& Journal::operator=(Journal&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) ::close(fd_);
        path_ = std::move(o.path_);
        fd_ = o.fd_;
        staged_ = std::move(o.staged_);
        o.fd_ = -1;
    }
    return *this;
}

Journal::~Journal() {
    if (fd_ >= 0) ::close(fd_);
}

void Journal::append(uint32_t type, const void* payload, size_t bytes) {
    char h[kHeader];
    const uint32_t magic = kMagic, pcrc = crc(payload, bytes);
    const uint64_t len = bytes;
    std::memcpy(h, &magic, 4);
    std::memcpy(h + 4, &type, 4);
    std::memcpy(h + 8, &len, 8);
    std::memcpy(h + 16, &pcrc, 4);
    const uint32_t hcrc = crc(h, 20);
    std::memcpy(h + 20, &hcrc, 4);
    staged_.insert(staged_.end(), h, h + kHeader);
    const char* p = static_cast<const char*>(payload);
    staged_.insert(staged_.end(), p, p + bytes);
}

void Journal::sync() {
    check(fd_ >= 0, path_, ": the journal is not open");
    size_t done = 0;
    while (done < staged_.size()) {
        const ssize_t n = ::write(fd_, staged_.data() + done, staged_.size() - done);
        if (n < 0 && errno == EINTR) continue;
        check(n > 0, path_, ": cannot write the journal: ", errno_text());
        done += size_t(n);
    }
    staged_.clear();
    check(::fdatasync(fd_) == 0, path_, ": cannot sync the journal to disk: ", errno_text());
}

void Journal::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

}  // namespace hs::io
