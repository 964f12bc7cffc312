// tests/cuda_emu/cuda_emu.cpp: the CUDA emulator's runtime, scheduler and cuBLAS (see cuda_emu.hpp for what it is).
#include <boost/context/fiber.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>

#include "cuda_emu.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define HS_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HS_EMU_ASAN 1
#endif
#endif
#ifdef HS_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace hs_emu {

namespace detail {
ThreadContext* g_thread = nullptr;
dim3 g_block_idx, g_block_dim, g_grid_dim;
unsigned char* g_dynamic_smem = nullptr;
}  // namespace detail

namespace {

namespace bctx = boost::context;

constexpr size_t kDeviceMemory = size_t(16) << 30;     // what the emulated device reports and can hold
constexpr size_t kAllocationAlignment = 256;          // cudaMalloc's guarantee
constexpr size_t kMaxThreadsPerBlock = 1024;
constexpr size_t kMaxDefaultDynamicSmem = 48 * 1024;  // more needs cudaFuncSetAttribute, as on a real GPU
constexpr size_t kMaxOptinSmem = 232448;              // sm_90's opt-in maximum per block (227 KiB)
constexpr size_t kFiberStackBytes = 128 * 1024;

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char buf[1024];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

std::string dims(dim3 d) { return format("(%u,%u,%u)", d.x, d.y, d.z); }

// ---------------------------------------------------------------- error state (per host thread, like CUDA's)

struct ErrorState {
    cudaError_t last = cudaSuccess;
    cudaError_t pending = cudaSuccess;  // a kernel's failure, also reported by the next synchronize
    std::string detail;
};
ErrorState& errors() {
    thread_local ErrorState state;
    return state;
}

cudaError_t fail(cudaError_t error, std::string detail) {
    ErrorState& s = errors();
    s.last = error;
    s.detail = std::move(detail);
    return error;
}

// A synchronize reports a failure of an earlier kernel, as it would on a GPU, where kernels run asynchronously.
cudaError_t take_pending() {
    ErrorState& s = errors();
    const cudaError_t e = s.pending;
    s.pending = cudaSuccess;
    if (e != cudaSuccess) s.last = e;
    return e;
}

bool env_flag(const char* name) {
    const char* v = std::getenv(name);
    return v && *v && std::strcmp(v, "0") != 0;
}

bool no_device() { return env_flag("HS_EMU_NO_DEVICE"); }

cudaError_t fail_no_device(const char* api) {
    return fail(cudaErrorNoDevice, format("%s: no device (HS_EMU_NO_DEVICE is set)", api));
}

// The device's capacity: 16 GiB, or HS_EMU_MEMORY_LIMIT bytes when that is set and smaller.
size_t memory_capacity() {
    const char* v = std::getenv("HS_EMU_MEMORY_LIMIT");
    if (!v || !*v) return kDeviceMemory;
    char* end = nullptr;
    const unsigned long long limit = std::strtoull(v, &end, 10);
    if (end == v) return kDeviceMemory;
    return std::min<size_t>(kDeviceMemory, limit);
}

}  // namespace

// ---------------------------------------------------------------- device memory, streams, events, handles

struct StreamObject {
    unsigned flags;
};
struct EventObject {
    bool recorded = false;
    std::chrono::steady_clock::time_point when;
};
struct MemPoolObject {
    uint64_t release_threshold = 0;
};
struct CublasObject {
    cudaStream_t stream = nullptr;
    cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace {

struct Allocation {
    uintptr_t base;
    size_t size;
};

// One cudaMalloc: its own mapping of whole pages, of which the first `size` bytes are the caller's.
struct Block {
    size_t size;    // as asked for
    size_t mapped;  // size rounded up to whole pages
    int slot;       // its entry in the signal handler's table (-1: none)
    bool guarded;   // PROT_NONE outside device operations
};

// A range of guarded blocks that lie next to each other in memory, protected with one mprotect call.
struct Run {
    uintptr_t base;
    size_t bytes;
};

// Everything the device owns. Leaked on purpose: objects destroyed at exit may still free device memory.
// Locks: work_mutex() (held by every device operation, and by cudaMalloc/cudaFree, which change the blocks' map)
// is taken before mu (held briefly for the tables). Reading `allocations` needs either lock; changing it, both.
struct Device {
    std::mutex mu;
    std::map<uintptr_t, Block> allocations;  // base -> block
    uint64_t generation = 0;                 // bumped whenever a guarded block comes or goes
    uint64_t runs_generation = ~uint64_t(0);
    std::vector<Run> runs;       // the guarded blocks as runs of adjacent mappings, as of runs_generation
    std::vector<int> free_slots;  // entries of the signal handler's table to reuse
    std::set<StreamObject*> streams;
    std::set<EventObject*> events;
    std::set<CublasObject*> cublas_handles;
    std::map<const void*, size_t> max_dynamic_smem;  // per kernel, from cudaFuncSetAttribute
    MemPoolObject default_pool;
    Stats stats;
};
Device& device() {
    static Device* d = new Device;
    return *d;
}

// The live allocation that holds address p, with p == base + size counted in (a kernel may get an end pointer).
const Allocation* find_allocation(Device& d, const void* p, Allocation& out, bool include_end) {
    const auto a = reinterpret_cast<uintptr_t>(p);
    auto it = d.allocations.upper_bound(a);
    if (it == d.allocations.begin()) return nullptr;
    --it;
    const size_t size = it->second.size;
    const bool inside = include_end ? a <= it->first + size : a < it->first + size;
    if (!inside) return nullptr;
    out = Allocation{it->first, size};
    return &out;
}

// Why [p, p+bytes) is not a valid device range ("" if it is: entirely inside one live allocation).
std::string device_range_problem(Device& d, const void* p, size_t bytes) {
    Allocation a;
    if (!find_allocation(d, p, a, false)) {
        return format("%p is not in any live device allocation (a host pointer, or freed memory?)", p);
    }
    const uintptr_t begin = reinterpret_cast<uintptr_t>(p);
    if (bytes > a.base + a.size - begin) {
        return format("[%p, +%zu bytes) runs %zu bytes past the end of the device allocation at 0x%" PRIxPTR
                      " of %zu bytes",
                      p, bytes, static_cast<size_t>(begin + bytes - (a.base + a.size)), a.base, a.size);
    }
    return {};
}

// Why [p, p+bytes) is not a valid host range ("" if it is: overlapping no device allocation).
std::string host_range_problem(Device& d, const void* p, size_t bytes) {
    const auto begin = reinterpret_cast<uintptr_t>(p);
    auto it = d.allocations.lower_bound(begin + bytes);  // first allocation starting at or after the end
    if (it == d.allocations.begin()) return {};
    --it;
    if (it->first + it->second.size > begin) {
        return format("[%p, +%zu bytes) is device memory (the allocation at 0x%" PRIxPTR " of %zu bytes)", p, bytes,
                      it->first, it->second.size);
    }
    return {};
}

bool is_device_pointer(Device& d, const void* p) {
    Allocation a;
    return find_allocation(d, p, a, false) != nullptr;
}

cudaError_t check_stream(Device& d, const char* api, cudaStream_t stream) {
    if (stream == nullptr || d.streams.count(stream)) return cudaSuccess;
    return fail(cudaErrorInvalidResourceHandle,
                format("%s: stream %p is not a live stream (destroyed, or never created)", api, (void*)stream));
}

// ---------------------------------------------------------------- the guard: device memory is off-limits to the host
//
// Every guarded block is PROT_NONE while no emulated device operation runs, so that host code reading or writing
// device memory faults here as it would on a GPU. A device operation (a launch, a copy, a memset, a GEMM) holds
// work_mutex() through a DeviceWork, which opens what it touches (a launch: every guarded block; a copy, memset
// or GEMM: only the blocks of its operands) and protects exactly that again when it ends. One device operation
// runs at a time, so the blocks are either all closed or opened by the one running operation. A fault on a
// guarded block outside that is host code touching device memory: guard_signal reports it and aborts; any other
// fault goes to the handler installed before it.

// Held by every device operation and by cudaMalloc/cudaFree.
std::mutex& work_mutex() {
    static std::mutex* mu = new std::mutex;
    return *mu;
}

size_t page_size() {
    static const size_t bytes = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return bytes;
}

// HS_EMU_GUARD=0 leaves the blocks allocated while it is set accessible to the host. Read at each allocation.
bool guard_wanted() {
    const char* v = std::getenv("HS_EMU_GUARD");
    return !(v && std::strcmp(v, "0") == 0);
}

[[noreturn]] void guard_fatal(const char* what, uintptr_t base, size_t bytes) {
    std::fprintf(stderr, "cuda emulator: %s(0x%" PRIxPTR ", %zu bytes) failed: %s\n", what, base, bytes,
                 std::strerror(errno));
    std::abort();
}

void set_access(uintptr_t base, size_t bytes, bool open) {
    if (mprotect(reinterpret_cast<void*>(base), bytes, open ? PROT_READ | PROT_WRITE : PROT_NONE) != 0) {
        guard_fatal("mprotect", base, bytes);
    }
}

// The signal handler's view of the guarded blocks: a fixed table of atomics, which it can scan without locks or
// allocation. Written under both device locks; a block gets its entry (base last) before it is first protected,
// and loses it (base = 0) before it is unmapped. A block that finds no free entry is simply not guarded.
struct GuardSlot {
    std::atomic<uintptr_t> base{0};  // 0: a free entry
    std::atomic<size_t> size{0}, mapped{0};
};
constexpr int kGuardSlots = 1 << 16;
GuardSlot g_guard_slots[kGuardSlots];
std::atomic<int> g_guard_slots_used{0};  // entries at and above this one were never used

struct sigaction g_previous_action[2];  // for SIGSEGV and SIGBUS: what was installed before guard_signal
volatile sig_atomic_t g_chained_sent_signal = 0;

// Async-signal-safe formatting into a fixed buffer.
struct SignalText {
    char buf[320];
    size_t len = 0;
    void add(const char* s) {
        while (*s && len < sizeof buf) buf[len++] = *s++;
    }
    void add_number(uint64_t v, unsigned base) {
        char digits[24];
        int n = 0;
        do {
            digits[n++] = "0123456789abcdef"[v % base];
            v /= base;
        } while (v);
        while (n > 0 && len < sizeof buf) buf[len++] = digits[--n];
    }
};

[[noreturn]] void report_host_access(uintptr_t address, size_t offset, size_t size) {
    SignalText t;
    t.add("cuda emulator: host code touched device memory at 0x");
    t.add_number(address, 16);
    t.add(" (offset ");
    t.add_number(offset, 10);
    t.add(" of a cudaMalloc'ed block of ");
    t.add_number(size, 10);
    t.add(" bytes): a host/device pointer mix-up; on a GPU this is a segfault\n");
    for (size_t done = 0; done < t.len;) {
        const ssize_t n = write(STDERR_FILENO, t.buf + done, t.len - done);
        if (n <= 0) break;
        done += static_cast<size_t>(n);
    }
    std::abort();
}

// What a fault that is not ours gets: the previous handler, or the default action.
void chain_signal(int sig, siginfo_t* info, void* context) {
    const struct sigaction& prev = g_previous_action[sig == SIGBUS ? 1 : 0];
    const bool fault = info && info->si_code > 0;  // raised by the kernel for an access, not sent by kill/raise
    // A signal sent while a previous handler ran once already is most likely its re-raise after it restored its own
    // predecessor, which may be this handler: from then on, the default action ends the loop.
    const bool call_previous = fault || !g_chained_sent_signal;
    if (call_previous && (prev.sa_flags & SA_SIGINFO) && prev.sa_sigaction) {
        if (!fault) g_chained_sent_signal = 1;
        prev.sa_sigaction(sig, info, context);
        return;
    }
    if (call_previous && !(prev.sa_flags & SA_SIGINFO) && prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
        if (!fault) g_chained_sent_signal = 1;
        prev.sa_handler(sig);
        return;
    }
    if (!fault && !(prev.sa_flags & SA_SIGINFO) && prev.sa_handler == SIG_IGN) return;
    // The default action: reinstated, after which the faulting access repeats (a sent signal is sent again).
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, nullptr);
    if (!fault) raise(sig);
}

void guard_signal(int sig, siginfo_t* info, void* context) {
    if (info && info->si_code > 0) {
        const auto address = reinterpret_cast<uintptr_t>(info->si_addr);
        const int used = g_guard_slots_used.load(std::memory_order_acquire);
        for (int i = 0; i < used; ++i) {
            const uintptr_t base = g_guard_slots[i].base.load(std::memory_order_acquire);
            if (base == 0 || address < base) continue;
            if (address - base >= g_guard_slots[i].mapped.load(std::memory_order_relaxed)) continue;
            report_host_access(address, address - base, g_guard_slots[i].size.load(std::memory_order_relaxed));
        }
    }
    chain_signal(sig, info, context);
}

// Puts guard_signal in front of whatever handles SIGSEGV and SIGBUS now; one system call when it already is (only
// SIGSEGV is asked: whoever replaces one handler replaces both). Called whenever blocks were protected, because
// test frameworks (Catch2 among them) install handlers of their own for each test and restore the old ones after
// it, which drops this one.
void install_guard_handler() {
    struct sigaction current {};
    if (sigaction(SIGSEGV, nullptr, &current) == 0 && (current.sa_flags & SA_SIGINFO) &&
        current.sa_sigaction == guard_signal) {
        return;
    }
    const int signals[2] = {SIGSEGV, SIGBUS};
    for (int k = 0; k < 2; ++k) {
        if (sigaction(signals[k], nullptr, &current) != 0) continue;
        if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == guard_signal) continue;
        struct sigaction action {};
        action.sa_sigaction = guard_signal;
        action.sa_flags = SA_SIGINFO | SA_ONSTACK;  // on the alternate stack where there is one (stack overflows)
        sigemptyset(&action.sa_mask);
        g_previous_action[k] = current;
        sigaction(signals[k], &action, nullptr);
    }
}

// A table entry for a new guarded block; -1 when the table is full. Under both device locks.
int take_slot(Device& d, uintptr_t base, size_t size, size_t mapped) {
    int slot = -1;
    if (!d.free_slots.empty()) {
        slot = d.free_slots.back();
        d.free_slots.pop_back();
    } else if (g_guard_slots_used.load(std::memory_order_relaxed) < kGuardSlots) {
        slot = g_guard_slots_used.load(std::memory_order_relaxed);
    } else {
        return -1;
    }
    g_guard_slots[slot].size.store(size, std::memory_order_relaxed);
    g_guard_slots[slot].mapped.store(mapped, std::memory_order_relaxed);
    g_guard_slots[slot].base.store(base, std::memory_order_release);
    if (slot == g_guard_slots_used.load(std::memory_order_relaxed)) {
        g_guard_slots_used.store(slot + 1, std::memory_order_release);
    }
    return slot;
}

void give_slot(Device& d, int slot) {
    if (slot < 0) return;
    g_guard_slots[slot].base.store(0, std::memory_order_release);
    d.free_slots.push_back(slot);
}

// The guarded blocks as runs of adjacent mappings (mmap tends to place new mappings next to each other), rebuilt
// only when blocks came or went since the last time.
const std::vector<Run>& guarded_runs(Device& d) {
    if (d.runs_generation != d.generation) {
        d.runs.clear();
        for (const auto& [base, block] : d.allocations) {
            if (!block.guarded) continue;
            if (!d.runs.empty() && d.runs.back().base + d.runs.back().bytes == base) {
                d.runs.back().bytes += block.mapped;
            } else {
                d.runs.push_back(Run{base, block.mapped});
            }
        }
        d.runs_generation = d.generation;
    }
    return d.runs;
}

// One emulated device operation: holds work_mutex(), opens the guarded blocks the operation touches and, when it
// ends, protects exactly those again.
class DeviceWork {
public:
    DeviceWork() : lock_(work_mutex()) {}
    DeviceWork(const DeviceWork&) = delete;
    DeviceWork& operator=(const DeviceWork&) = delete;
    ~DeviceWork() {
        if (all_) {
            for (const Run& r : device().runs) set_access(r.base, r.bytes, false);
        }
        for (int i = 0; i < count_; ++i) set_access(opened_[i].base, opened_[i].bytes, false);
        if (all_ || count_ > 0) install_guard_handler();
    }

    // Opens the guarded block that holds p; nothing for nullptr, host memory or unguarded blocks.
    void open(const void* p) {
        if (all_ || !p) return;
        Device& d = device();
        const auto a = reinterpret_cast<uintptr_t>(p);
        auto it = d.allocations.upper_bound(a);
        if (it == d.allocations.begin()) return;
        --it;
        if (!it->second.guarded || a - it->first >= it->second.mapped) return;
        for (int i = 0; i < count_; ++i) {
            if (opened_[i].base == it->first) return;
        }
        if (count_ == kMaxOpened) {  // more operands than any operation has: open everything instead
            open_all();
            return;
        }
        set_access(it->first, it->second.mapped, true);
        opened_[count_++] = Run{it->first, it->second.mapped};
    }

    // Opens every guarded block (a kernel may reach blocks through pointers that are not its arguments).
    void open_all() {
        if (all_) return;
        for (int i = 0; i < count_; ++i) set_access(opened_[i].base, opened_[i].bytes, false);
        count_ = 0;
        for (const Run& r : guarded_runs(device())) set_access(r.base, r.bytes, true);
        all_ = true;
    }

private:
    static constexpr int kMaxOpened = 4;
    std::lock_guard<std::mutex> lock_;
    bool all_ = false;
    int count_ = 0;
    Run opened_[kMaxOpened];
};

cudaError_t allocate(const char* api, void** ptr, size_t bytes) {
    if (!ptr) return fail(cudaErrorInvalidValue, format("%s: devPtr is nullptr", api));
    *ptr = nullptr;
    if (no_device()) return fail_no_device(api);
    if (bytes == 0) return cudaSuccess;
    Device& d = device();
    std::lock_guard work(work_mutex());
    std::lock_guard lock(d.mu);
    const size_t capacity = memory_capacity();
    if (bytes > capacity - std::min(capacity, size_t(d.stats.bytes_live))) {
        return fail(cudaErrorMemoryAllocation,
                    format("%s of %zu bytes: %" PRIu64 " bytes in use of the device's %zu (HS_EMU_MEMORY_LIMIT sets "
                           "a smaller capacity)",
                           api, bytes, d.stats.bytes_live, capacity));
    }
    // A mapping of its own, in whole pages (page-aligned, so beyond cudaMalloc's 256 bytes), which the guard can
    // make inaccessible to the host.
    const size_t unit = std::max(page_size(), kAllocationAlignment);
    if (bytes > SIZE_MAX - unit) {
        return fail(cudaErrorMemoryAllocation, format("%s of %zu bytes: too large", api, bytes));
    }
    const size_t mapped = (bytes + unit - 1) / unit * unit;
    void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return fail(cudaErrorMemoryAllocation,
                    format("%s of %zu bytes: mmap of %zu bytes failed: %s", api, bytes, mapped, std::strerror(errno)));
    }
    std::memset(p, 0xFF, mapped);  // never-written device memory reads as NaN
#ifdef HS_EMU_ASAN
    // AddressSanitizer flags accesses past `bytes` (one past the end, too), as it would for a heap block.
    ASAN_UNPOISON_MEMORY_REGION(p, mapped);
    ASAN_POISON_MEMORY_REGION(static_cast<char*>(p) + bytes, mapped - bytes);
#endif
    const auto base = reinterpret_cast<uintptr_t>(p);
    const int slot = guard_wanted() ? take_slot(d, base, bytes, mapped) : -1;
    const bool guarded = slot >= 0;
    if (guarded) {
        set_access(base, mapped, false);  // no device operation runs while work_mutex() is held here
        d.generation += 1;
    }
    d.allocations.emplace(base, Block{bytes, mapped, slot, guarded});
    if (guarded) install_guard_handler();
    d.stats.allocations_live += 1;
    d.stats.bytes_live += bytes;
    d.stats.bytes_peak = std::max(d.stats.bytes_peak, d.stats.bytes_live);
    *ptr = p;
    return cudaSuccess;
}

cudaError_t release(const char* api, void* ptr) {
    if (!ptr) return cudaSuccess;
    Device& d = device();
    std::lock_guard work(work_mutex());
    std::lock_guard lock(d.mu);
    auto it = d.allocations.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == d.allocations.end()) {
        Allocation a;
        if (find_allocation(d, ptr, a, false)) {
            return fail(cudaErrorInvalidValue,
                        format("%s: %p points %zu bytes into the allocation at 0x%" PRIxPTR
                               "; free its start instead",
                               api, ptr, static_cast<size_t>(reinterpret_cast<uintptr_t>(ptr) - a.base), a.base));
        }
        return fail(cudaErrorInvalidValue,
                    format("%s: %p is not a live device allocation (freed twice, or a host pointer?)", api, ptr));
    }
    d.stats.allocations_live -= 1;
    const Block block = it->second;
    d.stats.bytes_live -= block.size;
    give_slot(d, block.slot);  // before the unmapping: a fault at this address is no longer ours
    if (block.guarded) d.generation += 1;
    d.allocations.erase(it);
#ifdef HS_EMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(ptr, block.mapped);  // the address range may be mapped again for something else
#endif
    if (munmap(ptr, block.mapped) != 0) guard_fatal("munmap", reinterpret_cast<uintptr_t>(ptr), block.mapped);
    return cudaSuccess;
}

const char* kind_name(cudaMemcpyKind kind) {
    switch (kind) {
        case cudaMemcpyHostToHost: return "cudaMemcpyHostToHost";
        case cudaMemcpyHostToDevice: return "cudaMemcpyHostToDevice";
        case cudaMemcpyDeviceToHost: return "cudaMemcpyDeviceToHost";
        case cudaMemcpyDeviceToDevice: return "cudaMemcpyDeviceToDevice";
        case cudaMemcpyDefault: return "cudaMemcpyDefault";
    }
    return "an unknown cudaMemcpyKind";
}

// Checks the source and destination extents of a copy against its kind; "" when they fit.
std::string copy_problem(Device& d, void* dst, size_t dst_extent, const void* src, size_t src_extent,
                         cudaMemcpyKind& kind) {
    if (kind == cudaMemcpyDefault) {  // as with unified addressing: the pointers say where they live
        const bool dd = is_device_pointer(d, dst), sd = is_device_pointer(d, src);
        kind = dd ? (sd ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                  : (sd ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    }
    const bool dst_on_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool src_on_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    std::string why = dst_on_device ? device_range_problem(d, dst, dst_extent) : host_range_problem(d, dst, dst_extent);
    if (!why.empty()) return std::string("destination ") + why;
    why = src_on_device ? device_range_problem(d, src, src_extent) : host_range_problem(d, src, src_extent);
    if (!why.empty()) return std::string("source ") + why;
    return {};
}

bool valid_kind(cudaMemcpyKind kind) { return kind >= cudaMemcpyHostToHost && kind <= cudaMemcpyDefault; }

// ---------------------------------------------------------------- the scheduler

// Fiber stacks with a guard page, kept for reuse: mapping and protecting a stack per GPU thread per block would
// cost more than running most kernels.
class StackPool {
public:
    StackPool() : allocator_(kFiberStackBytes) { free_.reserve(kMaxThreadsPerBlock); }
    bctx::stack_context take() {
        if (free_.empty()) return allocator_.allocate();
        const bctx::stack_context s = free_.back();
        free_.pop_back();
        return s;
    }
    // At most kMaxThreadsPerBlock stacks exist (one per live fiber), so the reserved capacity never grows here.
    void give(const bctx::stack_context& s) noexcept { free_.push_back(s); }

private:
    bctx::protected_fixedsize_stack allocator_;
    std::vector<bctx::stack_context> free_;
};
StackPool& stack_pool() {
    static StackPool* pool = new StackPool;
    return *pool;
}

// A stack's extent, for AddressSanitizer.
struct StackSpan {
    const void* bottom = nullptr;
    size_t size = 0;
};
StackSpan span_of(const bctx::stack_context& s) {
    return StackSpan{static_cast<const char*>(s.sp) - s.size, s.size};
}
StackSpan g_last_stack;  // the stack of the fiber constructed last (the allocator is only told, not asked)
StackSpan g_main_stack;  // the scheduler's stack, as AddressSanitizer reports it

// AddressSanitizer must be told of every switch between stacks, or it takes a fiber's frames for the main stack's
// and reports false overflows; without it these are no-ops. start: just before switching to `to` (fake == nullptr
// when the current fiber ends); finish: just after arriving, learning where we came from.
void asan_start_switch(void** fake, StackSpan to) {
#ifdef HS_EMU_ASAN
    __sanitizer_start_switch_fiber(fake, to.bottom, to.size);
#else
    (void)fake, (void)to;
#endif
}
void asan_finish_switch(void* fake, StackSpan* from) {
#ifdef HS_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, from ? &from->bottom : nullptr, from ? &from->size : nullptr);
#else
    (void)fake, (void)from;
#endif
}

// Boost.Context's StackAllocator over the pool.
struct PooledStack {
    bctx::stack_context allocate() {
        const bctx::stack_context s = stack_pool().take();
        g_last_stack = span_of(s);
#ifdef HS_EMU_ASAN
        // A reused stack may carry poison from frames that were abandoned, not returned from.
        const size_t guard = bctx::stack_traits::page_size();
        ASAN_UNPOISON_MEMORY_REGION(static_cast<const char*>(g_last_stack.bottom) + guard, s.size - guard);
#endif
        return s;
    }
    void deallocate(bctx::stack_context& s) noexcept { stack_pool().give(s); }
};

enum class Wait : uint8_t { none, warp, block, done };

// A warp-level meeting point. The two phases of a shuffle are distinct meetings, so that lanes at different warp
// operations (or at different phases) are told apart.
struct WarpOp {
    const char* name;
    enum Phase : uint8_t { sync, publish, read } phase;
};
constexpr WarpOp kSyncwarp{"__syncwarp", WarpOp::sync};
constexpr WarpOp kShuffleOps[3][2] = {
    {{"__shfl_sync", WarpOp::publish}, {"__shfl_sync", WarpOp::read}},
    {{"__shfl_down_sync", WarpOp::publish}, {"__shfl_down_sync", WarpOp::read}},
    {{"__shfl_xor_sync", WarpOp::publish}, {"__shfl_xor_sync", WarpOp::read}},
};

struct EmuThread : detail::ThreadContext {
    bctx::fiber fiber;  // the suspended GPU thread (empty while it runs, and once it finished)
    bctx::fiber sched;  // the scheduler, to switch back to (valid while the thread runs)
    StackSpan stack;    // the fiber's stack
    unsigned linear = 0, warp = 0, lane = 0;
    Wait wait = Wait::none;
    const WarpOp* op = nullptr;  // the warp meeting it waits at
    uint64_t shuffle_value = 0;
    bool published = false;  // took part in the publish phase of the current shuffle
};

struct WarpState {
    unsigned first = 0, lanes = 0;  // linear index of lane 0; lanes in this warp (fewer in a last partial warp)
    unsigned unfinished = 0, at_warp = 0, at_block = 0;
};

struct Launch {
    const detail::LaunchRequest* request = nullptr;
    unsigned nthreads = 0;
    std::vector<EmuThread> threads;
    std::vector<WarpState> warps;
    std::vector<unsigned> ready;  // ring buffer of runnable threads; each is in it at most once
    size_t ready_head = 0, ready_count = 0;
    unsigned unfinished = 0, at_block = 0;
    bool descending = false;  // this block's scheduling order
    bool aborted = false;
    std::string fault;  // why the launch stopped
};
Launch* g_launch = nullptr;

void push_ready(Launch& L, unsigned i) {
    L.ready[(L.ready_head + L.ready_count) % L.nthreads] = i;
    ++L.ready_count;
}
unsigned pop_ready(Launch& L) {
    const unsigned i = L.ready[L.ready_head];
    L.ready_head = (L.ready_head + 1) % L.nthreads;
    --L.ready_count;
    return i;
}

EmuThread& current_thread() { return *static_cast<EmuThread*>(detail::g_thread); }

// Switch from a GPU thread back to the scheduler; returns when the scheduler resumes this thread.
void suspend(EmuThread& t) {
    void* fake = nullptr;
    asan_start_switch(&fake, g_main_stack);
    try {
        t.sched = std::move(t.sched).resume();
    } catch (const bctx::detail::forced_unwind&) {
        asan_finish_switch(fake, &g_main_stack);  // the scheduler switched here to unwind this fiber
        throw;
    }
    asan_finish_switch(fake, &g_main_stack);
    detail::g_thread = &t;
}

// The scheduler's side of a switch into thread t: running it, or destroying it (which unwinds a suspended fiber).
void resume_thread(EmuThread& t) {
    void* fake = nullptr;
    asan_start_switch(&fake, t.stack);
    t.fiber = std::move(t.fiber).resume();
    asan_finish_switch(fake, nullptr);
}
void destroy_thread(EmuThread& t) {
    if (!t.fiber) return;
    void* fake = nullptr;
    asan_start_switch(&fake, t.stack);
    t.fiber = bctx::fiber();
    asan_finish_switch(fake, nullptr);
}

// Stops the launch from inside a GPU thread: records why and never returns (the scheduler unwinds the fiber).
[[noreturn]] void kernel_fault(std::string why) {
    Launch& L = *g_launch;
    if (!L.aborted) {
        L.aborted = true;
        L.fault = std::move(why);
    }
    suspend(current_thread());
    std::abort();  // unreachable: an aborted launch never resumes its threads
}

std::string where(const EmuThread& t) {
    return format("thread %s (warp %u, lane %u) of block %s", dims(t.thread_idx).c_str(), t.warp, t.lane,
                  dims(detail::g_block_idx).c_str());
}

// Releases the lanes of warp w that wait at a warp meeting, all of them at the same one.
void release_warp(Launch& L, WarpState& w, const EmuThread* self) {
    const WarpOp* op = nullptr;
    unsigned op_lane = 0;
    for (unsigned i = 0; i < w.lanes; ++i) {
        const EmuThread& t = L.threads[w.first + i];
        if (t.wait != Wait::warp) continue;
        if (!op) {
            op = t.op;
            op_lane = t.lane;
        } else if (t.op->name != op->name || t.op->phase != op->phase) {
            kernel_fault(format("lanes of warp %u in block %s met at different warp operations: lane %u at %s, "
                                "lane %u at %s (a warp operation in divergent code?)",
                                t.warp, dims(detail::g_block_idx).c_str(), op_lane, op->name, t.lane, t.op->name));
        }
    }
    for (unsigned k = 0; k < w.lanes; ++k) {
        const unsigned i = L.descending ? w.lanes - 1 - k : k;
        EmuThread& t = L.threads[w.first + i];
        if (t.wait != Wait::warp) continue;
        t.wait = Wait::none;
        if (op->phase == WarpOp::publish) t.published = true;
        if (op->phase == WarpOp::read) t.published = false;
        if (&t != self) push_ready(L, w.first + i);
    }
    w.at_warp = 0;
}

void release_block(Launch& L, const EmuThread* self) {
    for (unsigned k = 0; k < L.nthreads; ++k) {
        const unsigned i = L.descending ? L.nthreads - 1 - k : k;
        EmuThread& t = L.threads[i];
        if (t.wait != Wait::block) continue;
        t.wait = Wait::none;
        if (&t != self) push_ready(L, i);
    }
    for (WarpState& w : L.warps) w.at_block = 0;
    L.at_block = 0;
}

// A warp meeting: returns once every unfinished lane of the warp has arrived at it.
void arrive_warp(const WarpOp& op) {
    Launch& L = *g_launch;
    EmuThread& t = current_thread();
    WarpState& w = L.warps[t.warp];
    t.wait = Wait::warp;
    t.op = &op;
    ++w.at_warp;
    if (w.at_warp == w.unfinished) {
        release_warp(L, w, &t);  // the last to arrive goes on without a switch
    } else {
        suspend(t);
    }
}

void finish_thread(Launch& L, EmuThread& t) {
    WarpState& w = L.warps[t.warp];
    t.wait = Wait::done;
    --w.unfinished;
    --L.unfinished;
    // Finished threads do not count for barriers (as on sm_70+): the others may now be complete.
    if (w.at_warp > 0 && w.at_warp == w.unfinished) release_warp(L, w, &t);
    if (L.at_block > 0 && L.at_block == L.unfinished) release_block(L, &t);
}

void run_thread(Launch& L, EmuThread& t) {
    try {
        L.request->body(L.request->frame);
    } catch (const bctx::detail::forced_unwind&) {
        throw;  // the scheduler is tearing this fiber down: let Boost.Context finish the unwinding
    } catch (const std::exception& e) {
        if (!L.aborted) {
            L.aborted = true;
            L.fault = format("%s threw: %s", where(t).c_str(), e.what());
        }
    } catch (...) {
        if (!L.aborted) {
            L.aborted = true;
            L.fault = format("%s threw an exception", where(t).c_str());
        }
    }
    finish_thread(L, t);
}

// Who waits where, as ranges of consecutive threads in the same state, for the deadlock message.
std::string describe_waits(const Launch& L) {
    std::string out;
    auto label = [](const EmuThread& t) -> std::string {
        switch (t.wait) {
            case Wait::block: return "__syncthreads";
            case Wait::warp: return t.op->name;
            case Wait::done: return "finished";
            case Wait::none: return "runnable";
        }
        return "?";
    };
    unsigned shown = 0, i = 0;
    while (i < L.nthreads) {
        const std::string what = label(L.threads[i]);
        unsigned j = i + 1;
        while (j < L.nthreads && label(L.threads[j]) == what) ++j;
        if (shown++ < 8) {
            out += j - i == 1 ? format("; thread %u: %s", i, what.c_str())
                              : format("; threads %u-%u: %s", i, j - 1, what.c_str());
        }
        i = j;
    }
    if (shown > 8) out += format("; ... (%u groups in all)", shown);
    return out;
}

// Runs one block to completion; false when the launch stopped (L.fault says why).
bool run_block(Launch& L) {
    const size_t smem_bytes = std::max<size_t>(L.request->smem, 16);
    std::memset(detail::g_dynamic_smem, 0xFF, smem_bytes);  // uninitialised shared memory reads as NaN
    L.unfinished = L.nthreads;
    L.at_block = 0;
    L.ready_head = L.ready_count = 0;
    for (WarpState& w : L.warps) {
        w.unfinished = w.lanes;
        w.at_warp = w.at_block = 0;
    }
    for (unsigned k = 0; k < L.nthreads; ++k) {
        const unsigned i = L.descending ? L.nthreads - 1 - k : k;
        EmuThread& t = L.threads[i];
        t.wait = Wait::none;
        t.published = false;
        t.fiber = bctx::fiber(std::allocator_arg, PooledStack{}, [&L, &t](bctx::fiber&& sched) {
            asan_finish_switch(nullptr, &g_main_stack);  // first arrival on this stack
            t.sched = std::move(sched);
            try {
                run_thread(L, t);
            } catch (const bctx::detail::forced_unwind&) {
                asan_start_switch(nullptr, g_main_stack);  // this fiber ends
                throw;
            }
            asan_start_switch(nullptr, g_main_stack);  // this fiber ends
            return std::move(t.sched);
        });
        t.stack = g_last_stack;
        push_ready(L, i);
    }
    while (L.ready_count > 0 && !L.aborted) {
        const unsigned i = pop_ready(L);
        EmuThread& t = L.threads[i];
        detail::g_thread = &t;
        resume_thread(t);
    }
    if (!L.aborted && L.unfinished > 0) {
        L.aborted = true;
        L.fault = format("deadlock in block %s: %u of %u threads wait at barriers that can never be released (a "
                         "__syncthreads or warp operation in divergent code, or lanes of one warp split between "
                         "__syncthreads and a warp operation)%s",
                         dims(detail::g_block_idx).c_str(), L.unfinished, L.nthreads, describe_waits(L).c_str());
    }
    if (L.aborted) {
        for (EmuThread& t : L.threads) {  // destroying a suspended fiber unwinds its stack
            detail::g_thread = &t;
            destroy_thread(t);
        }
    }
    detail::g_thread = nullptr;
    return !L.aborted;
}

std::string config_problem(const detail::LaunchRequest& r) {
    const dim3 b = r.block, g = r.grid;
    const uint64_t threads = uint64_t(b.x) * b.y * b.z;
    if (b.x == 0 || b.y == 0 || b.z == 0) return format("block %s has a zero dimension", dims(b).c_str());
    if (threads > kMaxThreadsPerBlock) {
        return format("block %s has %" PRIu64 " threads, more than 1024", dims(b).c_str(), threads);
    }
    if (b.x > 1024 || b.y > 1024 || b.z > 64) {
        return format("block %s exceeds the per-dimension limits (1024, 1024, 64)", dims(b).c_str());
    }
    if (g.x == 0 || g.y == 0 || g.z == 0) return format("grid %s has a zero dimension", dims(g).c_str());
    if (g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
        return format("grid %s exceeds the limits (2^31-1, 65535, 65535)", dims(g).c_str());
    }
    if (r.smem > kMaxOptinSmem) {
        return format("%zu bytes of dynamic shared memory, more than the device's %zu", r.smem, kMaxOptinSmem);
    }
    return {};
}

void prepare_threads(Launch& L, dim3 block) {
    L.nthreads = block.x * block.y * block.z;
    L.threads.resize(L.nthreads);
    L.ready.assign(L.nthreads, 0);
    L.warps.assign((L.nthreads + warpSize - 1) / warpSize, WarpState{});
    for (unsigned i = 0; i < L.nthreads; ++i) {
        EmuThread& t = L.threads[i];
        t.linear = i;
        t.warp = i / warpSize;
        t.lane = i % warpSize;
        t.thread_idx = dim3(i % block.x, i / block.x % block.y, i / (block.x * block.y));
    }
    for (unsigned w = 0; w < L.warps.size(); ++w) {
        L.warps[w].first = w * warpSize;
        L.warps[w].lanes = std::min<unsigned>(warpSize, L.nthreads - w * warpSize);
    }
}

struct AlignedFree {
    void operator()(unsigned char* p) const { ::operator delete[](p, std::align_val_t(16)); }
};

// The checks CUDA makes before a kernel runs; false (with the error recorded) when it must not run.
bool validate_launch(const detail::LaunchRequest& r) {
    Device& d = device();
    std::lock_guard lock(d.mu);
    const std::string name = r.kernel_name;
    if (const std::string why = config_problem(r); !why.empty()) {
        fail(cudaErrorInvalidConfiguration, format("launch of %s: %s", name.c_str(), why.c_str()));
        return false;
    }
    size_t max_dynamic = kMaxDefaultDynamicSmem;
    if (auto it = d.max_dynamic_smem.find(r.kernel); it != d.max_dynamic_smem.end()) max_dynamic = it->second;
    if (r.smem > max_dynamic) {
        fail(cudaErrorInvalidValue,
             format("launch of %s: %zu bytes of dynamic shared memory, more than the kernel's limit of %zu (above 48 "
                    "KiB a kernel needs cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, "
                    "bytes) first, as on a real GPU)",
                    name.c_str(), r.smem, max_dynamic));
        return false;
    }
    if (check_stream(d, ("launch of " + name).c_str(), r.stream) != cudaSuccess) return false;
    for (size_t i = 0; i < r.pointer_count; ++i) {
        const detail::KernelPointerArg& p = r.pointers[i];
        Allocation a;
        if (p.value == nullptr || find_allocation(d, p.value, a, true)) continue;
        fail(cudaErrorInvalidValue,
             format("launch of %s: argument %u (counting from 0) is %p, which is not nullptr and not in any live "
                    "device allocation: a host pointer (or freed memory) passed to a kernel",
                    name.c_str(), p.index, p.value));
        return false;
    }
    if (no_device()) {
        fail_no_device(("launch of " + name).c_str());
        return false;
    }
    d.stats.launches += 1;
    return true;
}

}  // namespace

// ---------------------------------------------------------------- kernel execution entry points

namespace detail {

void outside_kernel(const char* what) {
    throw std::logic_error(std::string("hs_emu: ") + what + " used outside a kernel launched with HS_LAUNCH");
}

cudaError_t func_set_attribute(const void* kernel, cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) {
        return fail(cudaErrorInvalidValue,
                    format("cudaFuncSetAttribute: attribute %d is not emulated", static_cast<int>(attr)));
    }
    if (value < 0 || static_cast<size_t>(value) > kMaxOptinSmem) {
        return fail(cudaErrorInvalidValue,
                    format("cudaFuncSetAttribute: %d bytes of dynamic shared memory (allowed: 0..%zu)", value,
                           kMaxOptinSmem));
    }
    Device& d = device();
    std::lock_guard lock(d.mu);
    d.max_dynamic_smem[kernel] = static_cast<size_t>(value);
    return cudaSuccess;
}

void run_launch(const LaunchRequest& r) {
    if (g_thread) throw std::logic_error("hs_emu: HS_LAUNCH inside a kernel (dynamic parallelism) is not emulated");
    DeviceWork work;  // one device operation at a time; launches are serialised as before
    if (!validate_launch(r)) return;
    work.open_all();  // kernels may reach blocks through pointers that are not their arguments (structs)

    thread_local Launch L;  // reused across launches: its vectors keep their capacity
    L.request = &r;
    L.aborted = false;
    L.fault.clear();
    prepare_threads(L, r.block);
    std::unique_ptr<unsigned char[], AlignedFree> smem(
        new (std::align_val_t(16)) unsigned char[std::max<size_t>(r.smem, 16)]);
    g_dynamic_smem = smem.get();
    g_block_dim = r.block;
    g_grid_dim = r.grid;
    g_launch = &L;
    uint64_t block_number = 0;
    for (unsigned z = 0; z < r.grid.z && !L.aborted; ++z) {
        for (unsigned y = 0; y < r.grid.y && !L.aborted; ++y) {
            for (unsigned x = 0; x < r.grid.x && !L.aborted; ++x) {
                g_block_idx = dim3(x, y, z);
                L.descending = (block_number++ % 2) == 1;
                run_block(L);
            }
        }
    }
    g_launch = nullptr;
    g_dynamic_smem = nullptr;
    if (L.aborted) {
        fail(cudaErrorLaunchFailure,
             format("kernel %s (grid %s, block %s, %zu bytes dynamic shared memory): %s", r.kernel_name,
                    dims(r.grid).c_str(), dims(r.block).c_str(), r.smem, L.fault.c_str()));
        errors().pending = cudaErrorLaunchFailure;
    }
    L.request = nullptr;
}

// The source lane of a shuffle, exactly as PTX's shfl.sync computes it from the operand c that CUDA's
// __shfl_*_sync pass: c = ((32 - width) << 8) | 0x1f. A source outside the caller's segment yields the caller.
unsigned source_lane(ShuffleMode mode, unsigned lane, unsigned b, int width) {
    const unsigned c = ((32u - static_cast<unsigned>(width)) << 8) | 0x1fu;
    const unsigned segmask = (c >> 8) & 0x1fu;
    const unsigned max_lane = (lane & segmask) | ((c & 0x1fu) & ~segmask);
    const unsigned min_lane = lane & segmask;
    unsigned j = lane;
    switch (mode) {
        case ShuffleMode::idx: j = min_lane | (b & 0x1fu & ~segmask); break;
        case ShuffleMode::down: j = lane + b; break;
        case ShuffleMode::xor_: j = lane ^ b; break;
    }
    return j <= max_lane ? j : lane;
}

uint64_t shuffle(ShuffleMode mode, unsigned mask, uint64_t value, unsigned b, int width) {
    if (!g_thread) outside_kernel("a warp shuffle");
    Launch& L = *g_launch;
    EmuThread& t = current_thread();
    const WarpOp* ops = kShuffleOps[static_cast<int>(mode)];
    if (mask != 0xffffffffu) {
        kernel_fault(format("%s: %s with mask 0x%08x; only full-warp masks (0xffffffff) are emulated",
                            where(t).c_str(), ops[0].name, mask));
    }
    if (width < 1 || width > warpSize || (width & (width - 1)) != 0) {
        kernel_fault(format("%s: %s with width %d (must be a power of 2 in 1..32)", where(t).c_str(), ops[0].name,
                            width));
    }
    t.shuffle_value = value;
    arrive_warp(ops[0]);  // every lane has published its value
    const unsigned src = source_lane(mode, t.lane, b, width);
    const WarpState& w = L.warps[t.warp];
    if (src >= w.lanes || !L.threads[w.first + src].published) {
        kernel_fault(format("%s: %s reads lane %u, which %s (a shuffle after some lanes returned, or in a partial "
                            "warp?)",
                            where(t).c_str(), ops[0].name, src,
                            src >= w.lanes ? "does not exist (the block's last warp is partial)"
                                           : "did not take part"));
    }
    const uint64_t out = L.threads[w.first + src].shuffle_value;
    arrive_warp(ops[1]);  // every lane has read: the values may be overwritten by the next shuffle
    return out;
}

}  // namespace detail

void __syncthreads() {
    if (!detail::g_thread) detail::outside_kernel("__syncthreads");
    Launch& L = *g_launch;
    EmuThread& t = current_thread();
    t.wait = Wait::block;
    ++L.at_block;
    ++L.warps[t.warp].at_block;
    if (L.at_block == L.unfinished) {
        release_block(L, &t);
    } else {
        suspend(t);
    }
}

void __syncwarp(unsigned mask) {
    if (!detail::g_thread) detail::outside_kernel("__syncwarp");
    if (mask != 0xffffffffu) {
        kernel_fault(format("%s: __syncwarp with mask 0x%08x; only full-warp masks (0xffffffff) are emulated",
                            where(current_thread()).c_str(), mask));
    }
    arrive_warp(kSyncwarp);
}

// ---------------------------------------------------------------- runtime API

cudaError_t cudaGetDeviceCount(int* count) {
    if (!count) return fail(cudaErrorInvalidValue, "cudaGetDeviceCount: count is nullptr");
    if (no_device()) {
        *count = 0;
        return fail_no_device("cudaGetDeviceCount");
    }
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int dev) {
    if (no_device()) return fail_no_device("cudaSetDevice");
    if (dev != 0) return fail(cudaErrorInvalidDevice, format("cudaSetDevice(%d): the emulator has device 0 only", dev));
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int* dev) {
    if (!dev) return fail(cudaErrorInvalidValue, "cudaGetDevice: device is nullptr");
    if (no_device()) return fail_no_device("cudaGetDevice");
    *dev = 0;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int dev) {
    if (!prop) return fail(cudaErrorInvalidValue, "cudaGetDeviceProperties: prop is nullptr");
    if (no_device()) return fail_no_device("cudaGetDeviceProperties");
    if (dev != 0) {
        return fail(cudaErrorInvalidDevice, format("cudaGetDeviceProperties(%d): the emulator has device 0 only", dev));
    }
    *prop = cudaDeviceProp{};
    std::snprintf(prop->name, sizeof prop->name, "%s", "headsweep CUDA emulator (CPU)");
    prop->totalGlobalMem = kDeviceMemory;
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = 4;
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
    if (!free_bytes || !total_bytes) return fail(cudaErrorInvalidValue, "cudaMemGetInfo: nullptr argument");
    if (no_device()) return fail_no_device("cudaMemGetInfo");
    Device& d = device();
    std::lock_guard lock(d.mu);
    *total_bytes = memory_capacity();
    *free_bytes = *total_bytes - std::min<size_t>(*total_bytes, d.stats.bytes_live);
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
    if (!stream) return fail(cudaErrorInvalidValue, "cudaStreamCreateWithFlags: stream is nullptr");
    if (no_device()) return fail_no_device("cudaStreamCreateWithFlags");
    if (flags & ~cudaStreamNonBlocking) {
        return fail(cudaErrorInvalidValue, format("cudaStreamCreateWithFlags: unknown flags 0x%x", flags));
    }
    Device& d = device();
    std::lock_guard lock(d.mu);
    *stream = new StreamObject{flags};
    d.streams.insert(*stream);
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    Device& d = device();
    std::lock_guard lock(d.mu);
    if (!stream || !d.streams.count(stream)) {
        return fail(cudaErrorInvalidResourceHandle,
                    format("cudaStreamDestroy: %p is not a live stream", static_cast<void*>(stream)));
    }
    d.streams.erase(stream);
    delete stream;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    Device& d = device();
    {
        std::lock_guard lock(d.mu);
        if (const cudaError_t e = check_stream(d, "cudaStreamSynchronize", stream)) return e;
    }
    return take_pending();
}

cudaError_t cudaDeviceSynchronize() { return take_pending(); }

cudaError_t cudaMalloc(void** ptr, size_t bytes) { return allocate("cudaMalloc", ptr, bytes); }
cudaError_t cudaFree(void* ptr) { return release("cudaFree", ptr); }

cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t stream) {
    {
        Device& d = device();
        std::lock_guard lock(d.mu);
        if (const cudaError_t e = check_stream(d, "cudaMallocAsync", stream)) return e;
    }
    return allocate("cudaMallocAsync", ptr, bytes);
}

cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream) {
    {
        Device& d = device();
        std::lock_guard lock(d.mu);
        if (const cudaError_t e = check_stream(d, "cudaFreeAsync", stream)) return e;
    }
    return release("cudaFreeAsync", ptr);
}

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int dev) {
    if (!pool) return fail(cudaErrorInvalidValue, "cudaDeviceGetDefaultMemPool: pool is nullptr");
    if (no_device()) return fail_no_device("cudaDeviceGetDefaultMemPool");
    if (dev != 0) return fail(cudaErrorInvalidDevice, format("cudaDeviceGetDefaultMemPool(%d): no such device", dev));
    *pool = &device().default_pool;
    return cudaSuccess;
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value) {
    Device& d = device();
    if (pool != &d.default_pool) {
        return fail(cudaErrorInvalidValue, "cudaMemPoolSetAttribute: not the pool of cudaDeviceGetDefaultMemPool");
    }
    if (!value) return fail(cudaErrorInvalidValue, "cudaMemPoolSetAttribute: value is nullptr");
    if (attr != cudaMemPoolAttrReleaseThreshold) {
        return fail(cudaErrorInvalidValue,
                    format("cudaMemPoolSetAttribute: attribute %d is not emulated", static_cast<int>(attr)));
    }
    std::lock_guard lock(d.mu);
    d.default_pool.release_threshold = *static_cast<const uint64_t*>(value);  // as in CUDA: a cuuint64_t
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
    Device& d = device();
    DeviceWork work;
    std::lock_guard lock(d.mu);
    if (const cudaError_t e = check_stream(d, "cudaMemcpyAsync", stream)) return e;
    if (!valid_kind(kind)) {
        return fail(cudaErrorInvalidMemcpyDirection,
                    format("cudaMemcpyAsync: kind %d is not a cudaMemcpyKind", static_cast<int>(kind)));
    }
    if (bytes == 0) return cudaSuccess;
    if (!dst || !src) return fail(cudaErrorInvalidValue, format("cudaMemcpyAsync of %zu bytes: nullptr", bytes));
    const cudaMemcpyKind asked = kind;
    if (const std::string why = copy_problem(d, dst, bytes, src, bytes, kind); !why.empty()) {
        return fail(cudaErrorInvalidValue,
                    format("cudaMemcpyAsync(%s, %zu bytes): %s", kind_name(asked), bytes, why.c_str()));
    }
    work.open(dst);
    work.open(src);
    std::memmove(dst, src, bytes);
    d.stats.bytes_copied += bytes;
    return cudaSuccess;
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width_bytes,
                              size_t height, cudaMemcpyKind kind, cudaStream_t stream) {
    Device& d = device();
    DeviceWork work;
    std::lock_guard lock(d.mu);
    if (const cudaError_t e = check_stream(d, "cudaMemcpy2DAsync", stream)) return e;
    if (!valid_kind(kind)) {
        return fail(cudaErrorInvalidMemcpyDirection,
                    format("cudaMemcpy2DAsync: kind %d is not a cudaMemcpyKind", static_cast<int>(kind)));
    }
    if (width_bytes > dpitch || width_bytes > spitch) {
        return fail(cudaErrorInvalidPitchValue,
                    format("cudaMemcpy2DAsync: width %zu bytes exceeds dpitch %zu or spitch %zu", width_bytes, dpitch,
                           spitch));
    }
    if (width_bytes == 0 || height == 0) return cudaSuccess;
    if (!dst || !src) return fail(cudaErrorInvalidValue, "cudaMemcpy2DAsync: nullptr");
    const size_t dst_extent = (height - 1) * dpitch + width_bytes;
    const size_t src_extent = (height - 1) * spitch + width_bytes;
    const cudaMemcpyKind asked = kind;
    if (const std::string why = copy_problem(d, dst, dst_extent, src, src_extent, kind); !why.empty()) {
        return fail(cudaErrorInvalidValue, format("cudaMemcpy2DAsync(%s, %zu x %zu bytes): %s", kind_name(asked),
                                                  height, width_bytes, why.c_str()));
    }
    work.open(dst);
    work.open(src);
    for (size_t row = 0; row < height; ++row) {
        std::memmove(static_cast<char*>(dst) + row * dpitch, static_cast<const char*>(src) + row * spitch,
                     width_bytes);
    }
    d.stats.bytes_copied += width_bytes * height;
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
    Device& d = device();
    DeviceWork work;
    std::lock_guard lock(d.mu);
    if (const cudaError_t e = check_stream(d, "cudaMemsetAsync", stream)) return e;
    if (bytes == 0) return cudaSuccess;
    if (const std::string why = device_range_problem(d, ptr, bytes); !why.empty()) {
        return fail(cudaErrorInvalidValue, format("cudaMemsetAsync of %zu bytes: %s", bytes, why.c_str()));
    }
    work.open(ptr);
    std::memset(ptr, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaGetLastError() {
    const cudaError_t e = errors().last;
    errors().last = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError() { return errors().last; }

const char* cudaGetErrorString(cudaError_t error) {
    switch (error) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInitializationError: return "initialization error";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorInvalidPitchValue: return "invalid pitch argument";
        case cudaErrorInvalidDevicePointer: return "invalid device pointer";
        case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
        case cudaErrorNoDevice: return "no CUDA-capable device is detected";
        case cudaErrorInvalidDevice: return "invalid device ordinal";
        case cudaErrorInvalidResourceHandle: return "invalid resource handle";
        case cudaErrorNotReady: return "device not ready";
        case cudaErrorLaunchFailure: return "unspecified launch failure";
        case cudaErrorNotSupported: return "operation not supported";
        case cudaErrorUnknown: return "unknown error";
    }
    return "unrecognized error code";
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
    if (!event) return fail(cudaErrorInvalidValue, "cudaEventCreate: event is nullptr");
    if (no_device()) return fail_no_device("cudaEventCreate");
    Device& d = device();
    std::lock_guard lock(d.mu);
    *event = new EventObject;
    d.events.insert(*event);
    return cudaSuccess;
}

namespace {
cudaError_t check_event(Device& d, const char* api, cudaEvent_t event) {
    if (event && d.events.count(event)) return cudaSuccess;
    return fail(cudaErrorInvalidResourceHandle,
                format("%s: %p is not a live event", api, static_cast<void*>(event)));
}
}  // namespace

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    Device& d = device();
    std::lock_guard lock(d.mu);
    if (const cudaError_t e = check_event(d, "cudaEventRecord", event)) return e;
    if (const cudaError_t e = check_stream(d, "cudaEventRecord", stream)) return e;
    event->recorded = true;
    event->when = std::chrono::steady_clock::now();
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    Device& d = device();
    {
        std::lock_guard lock(d.mu);
        if (const cudaError_t e = check_event(d, "cudaEventSynchronize", event)) return e;
    }
    return take_pending();
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
    if (!ms) return fail(cudaErrorInvalidValue, "cudaEventElapsedTime: ms is nullptr");
    Device& d = device();
    std::lock_guard lock(d.mu);
    if (const cudaError_t e = check_event(d, "cudaEventElapsedTime", start)) return e;
    if (const cudaError_t e = check_event(d, "cudaEventElapsedTime", end)) return e;
    if (!start->recorded || !end->recorded) {
        return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: an event was never recorded");
    }
    *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
    Device& d = device();
    std::lock_guard lock(d.mu);
    if (const cudaError_t e = check_event(d, "cudaEventDestroy", event)) return e;
    d.events.erase(event);
    delete event;
    return cudaSuccess;
}

const char* last_error_detail() { return errors().detail.c_str(); }

Stats stats() {
    Device& d = device();
    std::lock_guard lock(d.mu);
    return d.stats;
}

void reset_stats() {
    Device& d = device();
    std::lock_guard lock(d.mu);
    d.stats.launches = 0;
    d.stats.bytes_copied = 0;
    d.stats.bytes_peak = d.stats.bytes_live;
}

// ---------------------------------------------------------------- cuBLAS

namespace {

cublasStatus_t blas_fail(cublasStatus_t status, std::string detail) {
    errors().detail = std::move(detail);  // a cuBLAS status is not a CUDA error: only the detail is kept
    return status;
}

bool live_handle(cublasHandle_t h) {
    Device& d = device();
    std::lock_guard lock(d.mu);
    return h && d.cublas_handles.count(h);
}

size_t element_size(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

const char* type_name(cudaDataType t) {
    switch (t) {
        case CUDA_R_32F: return "CUDA_R_32F";
        case CUDA_R_16F: return "CUDA_R_16F";
        case CUDA_R_16BF: return "CUDA_R_16BF";
    }
    return "an unsupported cudaDataType";
}

float load_element(const void* base, cudaDataType t, size_t i) {
    switch (t) {
        case CUDA_R_32F: return static_cast<const float*>(base)[i];
        case CUDA_R_16F: return hs_to_float(static_cast<const hs_f16*>(base)[i]);
        case CUDA_R_16BF: return hs_to_float(static_cast<const hs_bf16*>(base)[i]);
    }
    return 0.0f;
}

void store_element(void* base, cudaDataType t, size_t i, float v) {
    switch (t) {
        case CUDA_R_32F: static_cast<float*>(base)[i] = v; break;
        case CUDA_R_16F: static_cast<hs_f16*>(base)[i] = hs_from_float<hs_f16>(v); break;
        case CUDA_R_16BF: static_cast<hs_bf16*>(base)[i] = hs_from_float<hs_bf16>(v); break;
    }
}

bool supported_types(cudaDataType a, cudaDataType b, cudaDataType c) {
    if (a != b) return false;
    if (c == CUDA_R_32F) return a == CUDA_R_32F || a == CUDA_R_16F || a == CUDA_R_16BF;
    return c == a && (c == CUDA_R_16F || c == CUDA_R_16BF);
}

// Checks that a column-major matrix of rows x cols with leading dimension ld lies in one device allocation.
std::string matrix_problem(const char* name, const void* p, cudaDataType t, int rows, int cols, int ld) {
    if (rows == 0 || cols == 0) return {};
    const size_t bytes = (size_t(cols - 1) * size_t(ld) + size_t(rows)) * element_size(t);
    Device& d = device();
    std::lock_guard lock(d.mu);
    const std::string why = device_range_problem(d, p, bytes);
    return why.empty() ? why : format("%s (%d x %d, ld %d, %s): %s", name, rows, cols, ld, type_name(t), why.c_str());
}

// op(X) as a row-major float panel: out[r * inner + i] = op(X)(r, i) for r < outer, i < inner, where op(X) is
// outer x inner (A: m x k) or its transpose is (B: op(B) is k x n, wanted as n rows of k).
void gather(const void* X, cudaDataType t, int ld, bool element_rc_is_col_major_rc, int outer, int inner,
            std::vector<float>& out) {
    out.resize(size_t(outer) * size_t(inner));
    for (int r = 0; r < outer; ++r) {
        for (int i = 0; i < inner; ++i) {
            const size_t idx = element_rc_is_col_major_rc ? size_t(r) + size_t(i) * size_t(ld)
                                                          : size_t(i) + size_t(r) * size_t(ld);
            out[size_t(r) * size_t(inner) + size_t(i)] = load_element(X, t, idx);
        }
    }
}

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
    if (!handle) return blas_fail(CUBLAS_STATUS_INVALID_VALUE, "cublasCreate: handle is nullptr");
    if (no_device()) return blas_fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasCreate: no device (HS_EMU_NO_DEVICE)");
    Device& d = device();
    std::lock_guard lock(d.mu);
    *handle = new CublasObject;
    d.cublas_handles.insert(*handle);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
    Device& d = device();
    std::lock_guard lock(d.mu);
    if (!handle || !d.cublas_handles.count(handle)) {
        return blas_fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasDestroy: not a live cuBLAS handle");
    }
    d.cublas_handles.erase(handle);
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
    if (!live_handle(handle)) return blas_fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasSetStream: not a live handle");
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    if (!live_handle(handle)) return blas_fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasSetMathMode: not a live handle");
    if (mode != CUBLAS_DEFAULT_MATH && mode != CUBLAS_PEDANTIC_MATH && mode != CUBLAS_TF32_TENSOR_OP_MATH) {
        return blas_fail(CUBLAS_STATUS_INVALID_VALUE,
                         format("cublasSetMathMode: mode %d is not emulated", static_cast<int>(mode)));
    }
    handle->math = mode;  // recorded only: the emulator always computes in double
    return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusString(cublasStatus_t status) {
    switch (status) {
        case CUBLAS_STATUS_SUCCESS: return "the operation completed successfully";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
        case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
        case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
        case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    }
    return "unknown error";
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    DeviceWork work;
    if (!live_handle(handle)) return blas_fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasGemmEx: not a live handle");
    const bool ta = transa == CUBLAS_OP_T, tb = transb == CUBLAS_OP_T;
    if ((transa != CUBLAS_OP_N && !ta) || (transb != CUBLAS_OP_N && !tb)) {
        return blas_fail(CUBLAS_STATUS_INVALID_VALUE, "cublasGemmEx: transa/transb must be CUBLAS_OP_N or _T");
    }
    if (m < 0 || n < 0 || k < 0) {
        return blas_fail(CUBLAS_STATUS_INVALID_VALUE, format("cublasGemmEx: m=%d n=%d k=%d", m, n, k));
    }
    const int a_rows = ta ? k : m, a_cols = ta ? m : k;  // A as stored
    const int b_rows = tb ? n : k, b_cols = tb ? k : n;
    if (lda < std::max(1, a_rows) || ldb < std::max(1, b_rows) || ldc < std::max(1, m)) {
        return blas_fail(CUBLAS_STATUS_INVALID_VALUE,
                         format("cublasGemmEx: lda=%d (needs >= %d), ldb=%d (needs >= %d), ldc=%d (needs >= %d)", lda,
                                std::max(1, a_rows), ldb, std::max(1, b_rows), ldc, std::max(1, m)));
    }
    if (!alpha || !beta) return blas_fail(CUBLAS_STATUS_INVALID_VALUE, "cublasGemmEx: alpha or beta is nullptr");
    if (computeType != CUBLAS_COMPUTE_32F || algo != CUBLAS_GEMM_DEFAULT || !supported_types(Atype, Btype, Ctype)) {
        return blas_fail(CUBLAS_STATUS_NOT_SUPPORTED,
                         format("cublasGemmEx: A %s, B %s, C %s, compute type %d, algo %d is not an emulated "
                                "combination (A and B alike; C 32F, or C like A for 16F/16BF; CUBLAS_COMPUTE_32F; "
                                "CUBLAS_GEMM_DEFAULT)",
                                type_name(Atype), type_name(Btype), type_name(Ctype), static_cast<int>(computeType),
                                static_cast<int>(algo)));
    }
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    for (const std::string& why : {k > 0 ? matrix_problem("A", A, Atype, a_rows, a_cols, lda) : std::string(),
                                   k > 0 ? matrix_problem("B", B, Btype, b_rows, b_cols, ldb) : std::string(),
                                   matrix_problem("C", C, Ctype, m, n, ldc)}) {
        if (!why.empty()) return blas_fail(CUBLAS_STATUS_INVALID_VALUE, "cublasGemmEx: " + why);
    }
    // alpha and beta are host pointers (CUBLAS_POINTER_MODE_HOST): read before any block is opened.
    const double a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
    if (k > 0) {
        work.open(A);
        work.open(B);
    }
    work.open(C);
    // op(A) as m rows of k, op(B) transposed as n rows of k, so that each C element is a contiguous dot product.
    // Widening to float is exact for every supported type, and float products are exact in double.
    std::vector<float> ap, bp;
    gather(A, Atype, lda, !ta, m, k, ap);
    gather(B, Btype, ldb, tb, n, k, bp);
    for (int j = 0; j < n; ++j) {
        const float* bj = bp.data() + size_t(j) * size_t(k);
        for (int i = 0; i < m; ++i) {
            const float* ai = ap.data() + size_t(i) * size_t(k);
            double acc = 0.0;
            for (int p = 0; p < k; ++p) acc += double(ai[p]) * double(bj[p]);
            const size_t c_idx = size_t(i) + size_t(j) * size_t(ldc);
            double result = a * acc;
            if (b != 0.0) result += b * double(load_element(C, Ctype, c_idx));  // beta == 0: C is not read
            store_element(C, Ctype, c_idx, static_cast<float>(result));
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}

}  // namespace hs_emu
