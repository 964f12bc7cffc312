// tools/fuzz/safetensors_fuzz.cpp: libFuzzer target for the safetensors reader (build and run with
// tools/fuzz/run_fuzz.sh safetensors).
//
// Each input is written to one memfd and opened through /proc/self/fd/N, so SafetensorsFile::open sees a real file
// path and its messages keep the "<path>: ..." form. Anything but success or hs::Error is a finding; on success the
// harness checks the invariants callers rely on (the tensors tile the data section inside the file, sizes agree with
// shape x dtype, lookup by name) and touches the data by decoding the first and last element of every float tensor.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "safetensors/safetensors.hpp"
#include "util/error.hpp"

namespace {

struct Memfd {
    int fd = -1;
    std::string path;
    Memfd() {
        fd = ::memfd_create("safetensors_fuzz", 0);
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

void exercise(const hs::SafetensorsFile& f) {
    uint64_t pos = 0;
    for (const hs::SafetensorsTensor& t : f.tensors()) {
        check_invariant(f.find(t.name) == &t, "tensor index");
        check_invariant(t.begin == pos, "tensors tile the data section");
        pos = t.end;
        check_invariant(f.data_offset() + t.end <= f.file_size(), "tensor inside the file");
        check_invariant(uint64_t(t.n_elements()) * hs::safetensors_dtype_size(t.dtype) == t.nbytes(),
                        "bytes = elements x dtype size");
        const int64_t n = t.n_elements();
        if (n == 0) continue;
        float x[2];
        try {
            hs::safetensors_read_f32(t, 0, 1, x, f.path());
            hs::safetensors_read_f32(t, n - 1, 1, x + 1, f.path());
        } catch (const hs::Error&) {
            check_invariant(t.dtype != hs::SafetensorsDtype::F32 && t.dtype != hs::SafetensorsDtype::F16 &&
                                t.dtype != hs::SafetensorsDtype::BF16,
                            "float tensors decode");
        }
    }
    check_invariant(f.data_offset() + pos == f.file_size(), "the last tensor ends the file");
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
        const hs::SafetensorsFile f = hs::SafetensorsFile::open(mf.path);
        exercise(f);
    } catch (const hs::Error& e) {
        const std::string msg = e.what();
        check_invariant(msg.rfind(mf.path + ": ", 0) == 0, "message starts with the path");
    }
    return 0;
}
