// gguf/gguf.hpp: read (and write) GGUF v3 files, llama.cpp's model format.
//
// GgufFile memory-maps the file and validates everything at the boundary: magic, version, counts, every string and
// array length against the bytes left, value types, alignment, tensor dims (<= 4, positive, no overflow), tensor
// types (known ones only), ne[0] divisible by the block size, tensor offsets aligned and data inside the file.
// Any violation throws hs::Error whose message starts with the file path and says what is wrong and where.
// Dimension order is GGUF's: dims[0] is the fastest-varying (the row length of a row-major matrix).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "gguf/quant.hpp"
#include "util/mapped_file.hpp"

namespace hs {

enum class GgufValueType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9,
    U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_value_type_name(GgufValueType t);

// One metadata value. Scalars keep their declared type; arrays keep their element type and elements.
struct GgufValue {
    GgufValueType type = GgufValueType::U8;
    GgufValueType elem_type = GgufValueType::U8;  // for ARRAY
    std::variant<uint64_t, int64_t, double, bool, std::string> scalar;  // unsigned ints, signed ints, floats, ...
    std::vector<GgufValue> array;                                        // for ARRAY (no nested arrays)

    // Typed access: any integer width converts (range-checked); throws hs::Error naming `key` when the type does not fit.
    int64_t as_int(std::string_view key) const;
    double as_float(std::string_view key) const;   // floats and integers
    bool as_bool(std::string_view key) const;
    const std::string& as_string(std::string_view key) const;
};

struct GgufTensorInfo {
    std::string name;
    std::vector<int64_t> dims;  // dims[0] fastest-varying
    GgmlType type = GgmlType::F32;
    uint64_t offset = 0;        // relative to the data section
    const uint8_t* data = nullptr;  // points into the mapping
    uint64_t nbytes = 0;

    int64_t n_elements() const;
    int64_t n_rows() const;     // product of dims[1..]
    int64_t row_length() const { return dims.empty() ? 1 : dims[0]; }
};

class GgufFile {
public:
    // Opens, maps and validates. Throws hs::Error("<path>: <problem>").
    static GgufFile open(const std::string& path);
    // The same from the file's bytes already in memory (not copied; they must outlive the GgufFile). `path` names
    // the file in errors.
    static GgufFile open_bytes(const std::string& path, const uint8_t* data, size_t size);

    const std::string& path() const;
    uint32_t version() const;
    uint32_t alignment() const;
    uint64_t data_offset() const;  // byte offset of the tensor-data section in the file (end of header, padded)
    uint64_t file_size() const;

    // Metadata in file order.
    const std::vector<std::pair<std::string, GgufValue>>& metadata() const;
    const GgufValue* find(std::string_view key) const;            // nullptr when absent
    const GgufValue& get(std::string_view key) const;             // throws "<path>: missing metadata key <key>"
    // Convenience accessors: required (throw when missing or wrong type) and optional (fallback when missing).
    int64_t get_int(std::string_view key) const;
    int64_t get_int(std::string_view key, int64_t fallback) const;
    double get_float(std::string_view key) const;
    double get_float(std::string_view key, double fallback) const;
    bool get_bool(std::string_view key, bool fallback) const;
    const std::string& get_string(std::string_view key) const;
    std::vector<std::string> get_string_array(std::string_view key) const;
    std::vector<int64_t> get_int_array(std::string_view key) const;
    std::vector<float> get_float_array(std::string_view key) const;

    const std::vector<GgufTensorInfo>& tensors() const;
    const GgufTensorInfo* find_tensor(std::string_view name) const;  // nullptr when absent
    const GgufTensorInfo& tensor(std::string_view name) const;       // throws "<path>: missing tensor <name>"

    // Drop the mapped pages from memory (call after all weights have been copied/dequantised out).
    void release_pages() const;
    void release_pages(const GgufTensorInfo& t) const;  // one tensor's whole pages

    GgufFile(GgufFile&&) noexcept;
    GgufFile& operator=(GgufFile&&) noexcept;
    ~GgufFile();

private:
    GgufFile();
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Writes a GGUF v3 file: metadata in the order added, tensors with the given types (data already encoded in that
// type's blocks), 32-byte alignment unless general.alignment is set. Used by `headsweep export` and by tests that
// build small or deliberately broken files.
class GgufWriter {
public:
    void add(std::string key, GgufValue value);
    void add_tensor(std::string name, std::vector<int64_t> dims, GgmlType type, std::vector<uint8_t> data);
    // Writes to `path` (via a temporary file renamed into place); throws hs::Error naming the path on failure.
    void write(const std::string& path) const;
    // The exact bytes write() would produce.
    std::vector<uint8_t> to_bytes() const;

    static GgufValue u32(uint32_t v);
    static GgufValue i32(int32_t v);
    static GgufValue f32(float v);
    static GgufValue boolean(bool v);
    static GgufValue string(std::string v);
    static GgufValue string_array(const std::vector<std::string>& v);
    static GgufValue i32_array(const std::vector<int32_t>& v);
    static GgufValue f32_array(const std::vector<float>& v);

private:
    std::vector<std::pair<std::string, GgufValue>> kv_;
    struct PendingTensor { std::string name; std::vector<int64_t> dims; GgmlType type; std::vector<uint8_t> data; };
    std::vector<PendingTensor> tensors_;
};

}  // namespace hs
