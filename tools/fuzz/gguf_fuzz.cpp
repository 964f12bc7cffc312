// tools/fuzz/gguf_fuzz.cpp: libFuzzer target for the GGUF reader (build and run with tools/fuzz/run_fuzz.sh).
//
// Each input is written to one memfd and opened through /proc/self/fd/N, so GgufFile::open sees a real file path
// and its messages keep the "<path>: ..." form. Anything but success or hs::Error is a finding; on success the
// harness also checks the invariants callers rely on (tensor bytes inside the file) and touches the data by
// dequantising the first row of every tensor, and exercises the typed metadata accessors.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gguf/gguf.hpp"
#include "util/error.hpp"

namespace {

struct Memfd {
    int fd = -1;
    std::string path;
    Memfd() {
        fd = ::memfd_create("gguf_fuzz", 0);
        if (fd < 0) std::abort();
        path = "/proc/self/fd/" + std::to_string(fd);
    }
};

void check_invariant(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "invariant violated: %s\n", what);
        std::abort();
    }
}

void exercise(const hs::GgufFile& f) {
    for (const auto& [key, v] : f.metadata()) {
        try { (void)f.get_int(key); } catch (const hs::Error&) {}
        try { (void)f.get_float(key); } catch (const hs::Error&) {}
        try { (void)f.get_string(key); } catch (const hs::Error&) {}
        try { (void)f.get_bool(key, false); } catch (const hs::Error&) {}
        try { (void)f.get_string_array(key); } catch (const hs::Error&) {}
        try { (void)f.get_int_array(key); } catch (const hs::Error&) {}
        try { (void)f.get_float_array(key); } catch (const hs::Error&) {}
    }
    std::vector<float> row;
    for (const hs::GgufTensorInfo& t : f.tensors()) {
        check_invariant(f.find_tensor(t.name) == &t, "tensor index");
        check_invariant(t.offset % f.alignment() == 0, "offset aligned");
        check_invariant(f.data_offset() + t.offset + t.nbytes <= f.file_size(), "tensor inside the file");
        const uint64_t row_bytes = hs::ggml_row_bytes(t.type, t.row_length());
        check_invariant(row_bytes * static_cast<uint64_t>(t.n_rows()) == t.nbytes, "nbytes = rows * row bytes");
        if (t.row_length() > (1 << 20)) continue;
        row.resize(static_cast<size_t>(t.row_length()));
        hs::dequantize_row(t.type, t.data, row.data(), t.row_length());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static Memfd mf;  // one file for the whole run, rewritten per input
    if (::ftruncate(mf.fd, 0) != 0) std::abort();
    size_t done = 0;
    while (done < size) {
        const ssize_t n = ::pwrite(mf.fd, data + done, size - done, static_cast<off_t>(done));
        if (n <= 0) std::abort();
        done += static_cast<size_t>(n);
    }
    try {
        const hs::GgufFile f = hs::GgufFile::open(mf.path);
        exercise(f);
    } catch (const hs::Error& e) {
        const std::string msg = e.what();
        check_invariant(msg.rfind(mf.path + ": ", 0) == 0, "message starts with the path");
    }
    return 0;
}
