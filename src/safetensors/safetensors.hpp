// safetensors/safetensors.hpp: read (and write) Hugging Face safetensors files and sharded checkpoints.
//
// A safetensors file is: 8 bytes N (little-endian u64), N bytes of a UTF-8 JSON object (the header), then the data
// section. The header maps each tensor name to {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}
// (offsets relative to the data section; row-major, little-endian); the optional "__metadata__" maps strings to
// strings. SafetensorsFile memory-maps the file and checks everything at the boundary, with the rules of the
// reference implementation (huggingface/safetensors): N <= 100,000,000 and 8 + N <= file size; the header is one
// JSON object (starting with '{', trailing spaces allowed) without duplicate keys; every entry has exactly dtype,
// shape and data_offsets; the dtype is a known name; shape x dtype size == end - begin (no overflow); sorted by
// offset, the tensors tile the data section from 0 with no gap or overlap, and the last end is the end of the file.
// Any violation throws hs::Error whose message starts with the file path and names the tensor and field.
//
// A sharded checkpoint (transformers' save_pretrained) is a folder with model.safetensors.index.json, whose
// "weight_map" names the shard file of every tensor, and the shards; an unsharded one has model.safetensors only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hs {

// The reference implementation's dtypes (element sizes in bytes in safetensors_dtype_size).
enum class SafetensorsDtype : uint8_t { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };
const char* safetensors_dtype_name(SafetensorsDtype t);  // as in headers: "F32", "BF16", ...
std::optional<SafetensorsDtype> safetensors_dtype_from_name(std::string_view name);
uint64_t safetensors_dtype_size(SafetensorsDtype t);

struct SafetensorsTensor {
    std::string name;
    SafetensorsDtype dtype = SafetensorsDtype::F32;
    std::vector<int64_t> shape;  // row-major: shape.back() varies fastest (the reverse of GGUF's dims order)
    uint64_t begin = 0, end = 0;  // data_offsets, relative to the data section
    const uint8_t* data = nullptr;  // points into the mapping
    uint64_t nbytes() const { return end - begin; }
    int64_t n_elements() const;
};

class SafetensorsFile {
public:
    // Opens, maps and validates. Throws hs::Error("<path>: <problem>").
    static SafetensorsFile open(const std::string& path);

    const std::string& path() const;
    uint64_t file_size() const;
    uint64_t data_offset() const;  // 8 + N
    const std::vector<SafetensorsTensor>& tensors() const;  // in data order
    const SafetensorsTensor* find(std::string_view name) const;  // nullptr when absent
    const std::map<std::string, std::string>& metadata() const;  // "__metadata__"
    void release_pages() const;

    SafetensorsFile(SafetensorsFile&&) noexcept;
    SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
    ~SafetensorsFile();

private:
    SafetensorsFile();
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Float tensors only (F32, F16, BF16): dst[0..n) = elements first .. first + n of t as fp32. Throws for other dtypes
// (naming the file `where`, the tensor and its dtype).
void safetensors_read_f32(const SafetensorsTensor& t, int64_t first, int64_t n, float* dst, const std::string& where);

// model.safetensors.index.json: {"metadata": {...}, "weight_map": {tensor name: shard file name}}. Shard names must
// be plain file names in the same folder (no '/', not "." or ".."). Throws "<path>: ..." naming the field.
struct SafetensorsIndex {
    std::string path;
    std::map<std::string, std::string> weight_map;
    std::vector<std::string> shards;  // distinct shard names, sorted byte-wise
};
SafetensorsIndex read_safetensors_index(const std::string& path);

// All tensors of a checkpoint folder: the shards named by model.safetensors.index.json, or model.safetensors. Every
// shard is opened and validated; every tensor the index names must be in its shard, and every tensor of a shard must
// be in the index (a missing shard, a tensor the index names but its shard lacks, and a tensor in two places are
// refused naming the files).
class SafetensorsCheckpoint {
public:
    static SafetensorsCheckpoint open(const std::string& dir);
    static constexpr const char* kIndexName = "model.safetensors.index.json";
    static constexpr const char* kSingleName = "model.safetensors";

    const std::string& dir() const { return dir_; }
    const SafetensorsTensor* find(std::string_view name) const;
    // The tensor, or hs::Error("<dir>/<index or file>: missing tensor <name>").
    const SafetensorsTensor& tensor(std::string_view name) const;
    // The file that holds `name` (for messages).
    const std::string& file_of(std::string_view name) const;
    std::vector<std::string> names() const;  // sorted
    // The index (when there is one) then the shards in byte-wise name order, as paths: the files whose bytes are
    // the weights (the model's sha256 rule uses them).
    const std::vector<std::string>& files() const { return files_; }
    const std::string& source() const { return source_; }  // the index path, or model.safetensors's path
    uint64_t data_bytes() const;  // sum of tensor bytes
    void release_pages() const;

private:
    std::string dir_, source_;
    std::vector<std::string> files_;
    std::vector<SafetensorsFile> shards_;
    std::map<std::string, std::pair<size_t, const SafetensorsTensor*>, std::less<>> by_name_;  // -> shard, tensor
};

// Writes safetensors files as the reference implementation does: tensors sorted by dtype size (larger first) then
// name, header padded with spaces to a multiple of 8. For `headsweep write-random --format hf` and tests.
struct SafetensorsWriter {
    struct Entry {
        std::string name;
        SafetensorsDtype dtype;
        std::vector<int64_t> shape;
        std::vector<uint8_t> bytes;
    };
    std::vector<Entry> tensors;
    std::map<std::string, std::string> metadata;

    void add(std::string name, SafetensorsDtype dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes);
    uint64_t data_bytes() const;
    std::vector<uint8_t> to_bytes() const;
    void write(const std::string& path) const;  // throws hs::Error naming the path
};

// Writes `tensors` into dir as transformers' save_pretrained does: one model.safetensors when they fit in
// max_shard_bytes (0: no limit), else shards model-0000i-of-0000n.safetensors (tensors in the given order, a new
// shard when the next would pass the limit) and model.safetensors.index.json.
void write_safetensors_checkpoint(const std::string& dir, const std::vector<SafetensorsWriter::Entry>& tensors,
                                  uint64_t max_shard_bytes);

}  // namespace hs
