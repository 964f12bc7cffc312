// gguf/gguf.cpp: the GGUF v3 reader (strict, bounds-checked) and writer.
//
// File layout (little-endian, no alignment inside the header):
//   "GGUF" | u32 version (3) | u64 tensor_count | u64 kv_count
//   kv_count x  { string key | u32 value_type | value }
//   tensor_count x { string name | u32 n_dims | n_dims x i64 dims | u32 ggml_type | u64 offset }
//   zero padding to ALIGNMENT (general.alignment, default 32)
//   tensor data: tensor i at data_start + offset_i, offsets multiples of ALIGNMENT
// where string = u64 length + bytes (no NUL), and an array value = u32 elem_type | u64 count | elements.
//
// Every read goes through Cursor, which checks the bytes left before touching them, and every count is checked
// against the bytes left before anything is reserved, so hostile files fail with hs::Error instead of crashing.
#include "gguf/gguf.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <unordered_set>

#include "util/error.hpp"

namespace hs {

namespace {

constexpr uint32_t kGgufVersion = 3;
constexpr uint32_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;
constexpr uint64_t kMaxKeyBytes = 65535;      // the spec's limit for keys
constexpr uint64_t kMaxTensorNameBytes = 63;  // ggml's GGML_MAX_NAME (64) includes the NUL
// Array elements live in memory as GgufValue (~72 bytes each) although a u8 element takes 1 byte in the file; this
// cap on all arrays together bounds that blow-up (~300 MB) on hostile files. Real vocabularies use < 1M elements.
constexpr uint64_t kMaxTotalArrayElements = uint64_t{1} << 22;

constexpr bool is_integer_type(GgufValueType t) {
    switch (t) {
    case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::U16: case GgufValueType::I16:
    case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::U64: case GgufValueType::I64:
        return true;
    default:
        return false;
    }
}
constexpr bool is_signed_type(GgufValueType t) {
    return t == GgufValueType::I8 || t == GgufValueType::I16 || t == GgufValueType::I32 || t == GgufValueType::I64;
}
constexpr bool is_float_type(GgufValueType t) { return t == GgufValueType::F32 || t == GgufValueType::F64; }

// Bytes one value of a fixed-size type occupies in the file; 0 for STRING and ARRAY.
constexpr uint64_t fixed_size(GgufValueType t) {
    switch (t) {
    case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::BOOL: return 1;
    case GgufValueType::U16: case GgufValueType::I16: return 2;
    case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::F32: return 4;
    case GgufValueType::U64: case GgufValueType::I64: case GgufValueType::F64: return 8;
    default: return 0;
    }
}

constexpr bool is_known_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::F64); }

std::string type_desc(GgufValueType t, GgufValueType elem) {
    if (t != GgufValueType::ARRAY) return gguf_value_type_name(t);
    return std::string("array of ") + gguf_value_type_name(elem);
}

uint64_t pad_to(uint64_t x, uint64_t a) { return x + (a - x % a) % a; }

// double -> float where out-of-range values become +-inf (a plain cast of those is undefined in C++).
float narrow_to_float(double d) {
    if (d > std::numeric_limits<float>::max()) return std::numeric_limits<float>::infinity();
    if (d < -std::numeric_limits<float>::max()) return -std::numeric_limits<float>::infinity();
    return static_cast<float>(d);
}

// A bounds-checked little-endian reader over the mapped file. `where` describes the current item for messages.
class Cursor {
public:
    Cursor(const std::string& path, const uint8_t* data, uint64_t size) : path_(path), data_(data), size_(size) {}

    uint64_t pos() const { return pos_; }
    uint64_t left() const { return size_ - pos_; }
    const std::string& path() const { return path_; }

    template <typename T>
    T read(const char* what, const std::string& where) {
        need(sizeof(T), what, where);
        T v;
        std::memcpy(&v, data_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    // GGUF string: u64 length + bytes. `limit` caps the length (keys, tensor names).
    std::string read_string(const char* what, const std::string& where, uint64_t limit) {
        const uint64_t at = pos_;
        const uint64_t len = read<uint64_t>(what, where);
        if (len > left())
            fail(path_, ": ", what, " length ", len, " runs past the end of the file (", left(), " bytes left), ", where,
                 " at byte ", at);
        if (len > limit) fail(path_, ": ", what, " is ", len, " bytes long (limit ", limit, "), ", where, " at byte ", at);
        std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
        pos_ += len;
        return s;
    }

    void need(uint64_t n, const char* what, const std::string& where) const {
        if (n > left())
            fail(path_, ": file ends inside ", what, " (needs ", n, " bytes, ", left(), " left), ", where, " at byte ",
                 pos_);
    }

private:
    const std::string& path_;
    const uint8_t* data_;
    uint64_t size_;
    uint64_t pos_ = 0;
};

// Reads one scalar (non-array) value of type t.
GgufValue read_scalar(Cursor& c, GgufValueType t, const std::string& where) {
    GgufValue v;
    v.type = t;
    const uint64_t at = c.pos();
    switch (t) {
    case GgufValueType::U8: v.scalar = uint64_t{c.read<uint8_t>("a u8 value", where)}; break;
    case GgufValueType::I8: v.scalar = int64_t{c.read<int8_t>("an i8 value", where)}; break;
    case GgufValueType::U16: v.scalar = uint64_t{c.read<uint16_t>("a u16 value", where)}; break;
    case GgufValueType::I16: v.scalar = int64_t{c.read<int16_t>("an i16 value", where)}; break;
    case GgufValueType::U32: v.scalar = uint64_t{c.read<uint32_t>("a u32 value", where)}; break;
    case GgufValueType::I32: v.scalar = int64_t{c.read<int32_t>("an i32 value", where)}; break;
    case GgufValueType::U64: v.scalar = uint64_t{c.read<uint64_t>("a u64 value", where)}; break;
    case GgufValueType::I64: v.scalar = int64_t{c.read<int64_t>("an i64 value", where)}; break;
    case GgufValueType::F32: v.scalar = double{c.read<float>("an f32 value", where)}; break;
    case GgufValueType::F64: v.scalar = c.read<double>("an f64 value", where); break;
    case GgufValueType::BOOL: {
        const uint8_t b = c.read<uint8_t>("a bool value", where);
        if (b > 1) fail(c.path(), ": bool value is ", int{b}, " (must be 0 or 1), ", where, " at byte ", at);
        v.scalar = b == 1;
        break;
    }
    case GgufValueType::STRING:
        v.scalar = c.read_string("string value", where, std::numeric_limits<uint64_t>::max());
        break;
    case GgufValueType::ARRAY:
        fail(c.path(), ": nested arrays are not supported, ", where, " at byte ", at);
    }
    return v;
}

GgufValueType read_value_type(Cursor& c, const char* what, const std::string& where) {
    const uint64_t at = c.pos();
    const uint32_t t = c.read<uint32_t>(what, where);
    if (!is_known_value_type(t)) fail(c.path(), ": unknown metadata value type ", t, ", ", where, " at byte ", at);
    return static_cast<GgufValueType>(t);
}

// Reads an array value (after its ARRAY type tag). `total_elems` accumulates over the file for the memory cap.
GgufValue read_array(Cursor& c, const std::string& where, uint64_t& total_elems) {
    GgufValue v;
    v.type = GgufValueType::ARRAY;
    const uint64_t at = c.pos();
    v.elem_type = read_value_type(c, "an array element type", where);
    if (v.elem_type == GgufValueType::ARRAY)
        fail(c.path(), ": nested arrays are not supported, ", where, " at byte ", at);
    const uint64_t count_at = c.pos();
    const uint64_t count = c.read<uint64_t>("an array length", where);
    // Strings take at least their 8-byte length prefix; fixed types their size. Check before reserving.
    const uint64_t min_elem = v.elem_type == GgufValueType::STRING ? 8 : fixed_size(v.elem_type);
    if (count > c.left() / min_elem)
        fail(c.path(), ": array length ", count, " of ", gguf_value_type_name(v.elem_type),
             " cannot fit in the ", c.left(), " bytes left, ", where, " at byte ", count_at);
    total_elems += count;
    if (total_elems > kMaxTotalArrayElements)
        fail(c.path(), ": metadata arrays hold more than ", kMaxTotalArrayElements, " elements in total (limit), ",
             where, " at byte ", count_at);
    v.array.reserve(static_cast<size_t>(count));
    for (uint64_t i = 0; i < count; ++i) v.array.push_back(read_scalar(c, v.elem_type, where));
    return v;
}

}  // namespace

// ------------------------------------------------------------------------------------------------ GgufValue

const char* gguf_value_type_name(GgufValueType t) {
    switch (t) {
    case GgufValueType::U8: return "u8";
    case GgufValueType::I8: return "i8";
    case GgufValueType::U16: return "u16";
    case GgufValueType::I16: return "i16";
    case GgufValueType::U32: return "u32";
    case GgufValueType::I32: return "i32";
    case GgufValueType::F32: return "f32";
    case GgufValueType::BOOL: return "bool";
    case GgufValueType::STRING: return "string";
    case GgufValueType::ARRAY: return "array";
    case GgufValueType::U64: return "u64";
    case GgufValueType::I64: return "i64";
    case GgufValueType::F64: return "f64";
    }
    return "unknown";
}

int64_t GgufValue::as_int(std::string_view key) const {
    if (!is_integer_type(type))
        fail("metadata key ", key, " is ", type_desc(type, elem_type), ", expected an integer");
    if (const auto* s = std::get_if<int64_t>(&scalar)) return *s;
    if (const auto* u = std::get_if<uint64_t>(&scalar)) {
        if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            fail("metadata key ", key, " value ", *u, " does not fit in int64");
        return static_cast<int64_t>(*u);
    }
    fail("metadata key ", key, " holds no integer");
}

double GgufValue::as_float(std::string_view key) const {
    if (is_float_type(type)) {
        if (const auto* d = std::get_if<double>(&scalar)) return *d;
    }
    if (is_integer_type(type)) {
        if (const auto* s = std::get_if<int64_t>(&scalar)) return static_cast<double>(*s);
        if (const auto* u = std::get_if<uint64_t>(&scalar)) return static_cast<double>(*u);
    }
    fail("metadata key ", key, " is ", type_desc(type, elem_type), ", expected a number");
}

bool GgufValue::as_bool(std::string_view key) const {
    if (type == GgufValueType::BOOL) {
        if (const auto* b = std::get_if<bool>(&scalar)) return *b;
    }
    fail("metadata key ", key, " is ", type_desc(type, elem_type), ", expected a bool");
}

const std::string& GgufValue::as_string(std::string_view key) const {
    if (type == GgufValueType::STRING) {
        if (const auto* s = std::get_if<std::string>(&scalar)) return *s;
    }
    fail("metadata key ", key, " is ", type_desc(type, elem_type), ", expected a string");
}

// ------------------------------------------------------------------------------------------------ tensor info

int64_t GgufTensorInfo::n_elements() const {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;  // validated at open: no overflow
    return n;
}

int64_t GgufTensorInfo::n_rows() const {
    int64_t n = 1;
    for (size_t i = 1; i < dims.size(); ++i) n *= dims[i];
    return n;
}

// ------------------------------------------------------------------------------------------------ GgufFile

struct GgufFile::Impl {
    MappedFile map;
    uint32_t version = 0;
    uint32_t alignment = kDefaultAlignment;
    uint64_t data_start = 0;
    std::vector<std::pair<std::string, GgufValue>> metadata;
    std::map<std::string, size_t, std::less<>> key_index;
    std::vector<GgufTensorInfo> tensors;
    std::map<std::string, size_t, std::less<>> tensor_index;

    const std::string& path() const { return map.path(); }
    void parse();
    void parse_header(Cursor& c, uint64_t& n_tensors, uint64_t& n_kv);
    void parse_metadata(Cursor& c, uint64_t n_kv);
    void parse_tensor_infos(Cursor& c, uint64_t n_tensors);
    void place_tensors();
};

void GgufFile::Impl::parse_header(Cursor& c, uint64_t& n_tensors, uint64_t& n_kv) {
    const std::string where = "in the header";
    if (map.size() < 4 || std::memcmp(map.data(), "GGUF", 4) != 0) {
        if (map.size() >= 4 && std::memcmp(map.data(), "FUGG", 4) == 0)
            fail(path(), ": magic is byte-swapped (\"FUGG\"): big-endian GGUF files are not supported, at byte 0");
        fail(path(), ": not a GGUF file (bad magic, expected \"GGUF\"), at byte 0");
    }
    c.read<uint32_t>("the magic", where);
    version = c.read<uint32_t>("the version", where);
    // A file of the other byte order has its small version number in the high 16 bits.
    if (version != 0 && (version & 0xFFFFu) == 0)
        fail(path(), ": version field 0x", std::hex, version, std::dec,
             " looks byte-swapped: big-endian GGUF files are not supported, at byte 4");
    if (version == 0) fail(path(), ": invalid GGUF version 0, at byte 4");
    if (version == 1 || version == 2)
        fail(path(), ": GGUF version ", version, " is not supported (only version 3); re-convert the model with a "
                     "current llama.cpp, at byte 4");
    if (version > kGgufVersion)
        fail(path(), ": GGUF version ", version, " is newer than the supported version 3, at byte 4");
    n_tensors = c.read<uint64_t>("the tensor count", where);
    n_kv = c.read<uint64_t>("the metadata count", where);
    // A KV pair needs at least 8 (key length) + 1 (key) + 4 (type) + 1 (value) bytes; a tensor info at least
    // 8 (name length) + 1 (name) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset).
    if (n_kv > c.left() / 14)
        fail(path(), ": metadata count ", n_kv, " cannot fit in the ", c.left(), " bytes left, at byte 16");
    if (n_tensors > c.left() / 33)
        fail(path(), ": tensor count ", n_tensors, " cannot fit in the ", c.left(), " bytes left, at byte 8");
}

void GgufFile::Impl::parse_metadata(Cursor& c, uint64_t n_kv) {
    metadata.reserve(static_cast<size_t>(n_kv));
    uint64_t total_elems = 0;
    for (uint64_t i = 0; i < n_kv; ++i) {
        const uint64_t at = c.pos();
        std::string where = "metadata pair #" + std::to_string(i);
        std::string key = c.read_string("key", where, kMaxKeyBytes);
        if (key.empty()) fail(path(), ": empty metadata key, ", where, " at byte ", at);
        where = "key " + key;
        if (key_index.count(key)) fail(path(), ": duplicate metadata key, ", where, " at byte ", at);
        const GgufValueType t = read_value_type(c, "a value type", where);
        GgufValue v = t == GgufValueType::ARRAY ? read_array(c, where, total_elems) : read_scalar(c, t, where);
        key_index.emplace(key, metadata.size());
        metadata.emplace_back(std::move(key), std::move(v));
    }
    if (const GgufValue* a = key_index.count("general.alignment") ? &metadata[key_index.at("general.alignment")].second
                                                                    : nullptr) {
        if (a->type != GgufValueType::U32)
            fail(path(), ": general.alignment is ", type_desc(a->type, a->elem_type), ", must be u32, key general.alignment");
        const uint64_t v = std::get<uint64_t>(a->scalar);
        if (v == 0 || (v & (v - 1)) != 0)
            fail(path(), ": general.alignment ", v, " is not a power of two, key general.alignment");
        alignment = static_cast<uint32_t>(v);
    }
}

void GgufFile::Impl::parse_tensor_infos(Cursor& c, uint64_t n_tensors) {
    tensors.reserve(static_cast<size_t>(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) {
        const uint64_t at = c.pos();
        std::string where = "tensor #" + std::to_string(i);
        GgufTensorInfo t;
        t.name = c.read_string("tensor name", where, kMaxTensorNameBytes);
        if (t.name.empty()) fail(path(), ": empty tensor name, ", where, " at byte ", at);
        where = "tensor " + t.name + " (info at byte " + std::to_string(at) + ")";
        if (tensor_index.count(t.name)) fail(path(), ": duplicate tensor name, ", where);

        const uint32_t n_dims = c.read<uint32_t>("the dimension count", where);
        if (n_dims == 0 || n_dims > kMaxDims)
            fail(path(), ": tensor has ", n_dims, " dimensions (must be 1 to ", kMaxDims, "), ", where);
        int64_t n_elem = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            const int64_t ne = c.read<int64_t>("a dimension", where);
            if (ne <= 0) fail(path(), ": dimension ", d, " is ", ne, " (must be positive), ", where);
            if (n_elem > std::numeric_limits<int64_t>::max() / ne)
                fail(path(), ": element count overflows int64, ", where);
            n_elem *= ne;
            t.dims.push_back(ne);
        }

        const uint32_t type_id = c.read<uint32_t>("the tensor type", where);
        const std::optional<GgmlType> type = ggml_type_from_id(type_id);
        if (!type) fail(path(), ": unsupported tensor type ", ggml_type_name_of_id(type_id), " (", type_id, "), ", where);
        t.type = *type;
        const int64_t blck = ggml_block_size(t.type);
        if (t.dims[0] % blck != 0)
            fail(path(), ": row length ", t.dims[0], " is not a multiple of the ", ggml_type_name(t.type),
                 " block size ", blck, ", ", where);
        // nbytes = n_rows * row_bytes; row_bytes <= 4 * dims[0], so only the product can overflow.
        const uint64_t row_bytes = ggml_row_bytes(t.type, t.dims[0]);
        const uint64_t n_rows = static_cast<uint64_t>(n_elem / t.dims[0]);
        if (n_rows > std::numeric_limits<uint64_t>::max() / 2 / row_bytes)
            fail(path(), ": tensor byte size overflows, ", where);
        t.nbytes = row_bytes * n_rows;

        t.offset = c.read<uint64_t>("the data offset", where);
        if (t.offset % alignment != 0)
            fail(path(), ": data offset ", t.offset, " is not a multiple of the alignment ", alignment, ", ", where);
        tensor_index.emplace(t.name, tensors.size());
        tensors.push_back(std::move(t));
    }
}

// Checks that every tensor's bytes lie inside the data section and that no two tensors overlap, then sets data.
void GgufFile::Impl::place_tensors() {
    const uint64_t data_size = data_start <= map.size() ? map.size() - data_start : 0;
    for (GgufTensorInfo& t : tensors) {
        if (data_start > map.size() || t.offset > data_size || t.nbytes > data_size - t.offset)
            fail(path(), ": tensor data [", t.offset, ", +", t.nbytes, ") runs past the end of the file (data section "
                 "starts at byte ", data_start, ", file is ", map.size(), " bytes), tensor ", t.name);
        t.data = map.data() + data_start + t.offset;
    }
    std::vector<const GgufTensorInfo*> by_offset;
    by_offset.reserve(tensors.size());
    for (const GgufTensorInfo& t : tensors) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
        const GgufTensorInfo& prev = *by_offset[i - 1];
        const GgufTensorInfo& cur = *by_offset[i];
        if (prev.offset + prev.nbytes > cur.offset)
            fail(path(), ": tensor data overlaps: ", prev.name, " [", prev.offset, ", ", prev.offset + prev.nbytes,
                 ") and ", cur.name, " starting at ", cur.offset, ", tensor ", cur.name);
    }
}

void GgufFile::Impl::parse() {
    Cursor c(path(), map.data(), map.size());
    uint64_t n_tensors = 0, n_kv = 0;
    parse_header(c, n_tensors, n_kv);
    parse_metadata(c, n_kv);
    parse_tensor_infos(c, n_tensors);
    data_start = pad_to(c.pos(), alignment);
    place_tensors();
}

GgufFile::GgufFile() : impl_(std::make_unique<Impl>()) {}
GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;
GgufFile::~GgufFile() = default;

GgufFile GgufFile::open(const std::string& path) {
    GgufFile f;
    f.impl_->map = MappedFile(path);
    f.impl_->parse();
    return f;
}

GgufFile GgufFile::open_bytes(const std::string& path, const uint8_t* data, size_t size) {
    GgufFile f;
    f.impl_->map = MappedFile::borrow(path, data, size);
    f.impl_->parse();
    return f;
}

const std::string& GgufFile::path() const { return impl_->path(); }
uint32_t GgufFile::version() const { return impl_->version; }
uint32_t GgufFile::alignment() const { return impl_->alignment; }
uint64_t GgufFile::data_offset() const { return impl_->data_start; }
uint64_t GgufFile::file_size() const { return impl_->map.size(); }
const std::vector<std::pair<std::string, GgufValue>>& GgufFile::metadata() const { return impl_->metadata; }

const GgufValue* GgufFile::find(std::string_view key) const {
    auto it = impl_->key_index.find(key);
    return it == impl_->key_index.end() ? nullptr : &impl_->metadata[it->second].second;
}

const GgufValue& GgufFile::get(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) fail(path(), ": missing metadata key ", key);
    return *v;
}

// Runs a typed accessor and prefixes its error with the file path.
template <typename Fn>
static auto with_path(const std::string& path, Fn fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const Error& e) {
        fail(path, ": ", e.what());
    }
}

int64_t GgufFile::get_int(std::string_view key) const {
    const GgufValue& v = get(key);
    return with_path(path(), [&] { return v.as_int(key); });
}
int64_t GgufFile::get_int(std::string_view key, int64_t fallback) const {
    const GgufValue* v = find(key);
    return v ? with_path(path(), [&] { return v->as_int(key); }) : fallback;
}
double GgufFile::get_float(std::string_view key) const {
    const GgufValue& v = get(key);
    return with_path(path(), [&] { return v.as_float(key); });
}
double GgufFile::get_float(std::string_view key, double fallback) const {
    const GgufValue* v = find(key);
    return v ? with_path(path(), [&] { return v->as_float(key); }) : fallback;
}
bool GgufFile::get_bool(std::string_view key, bool fallback) const {
    const GgufValue* v = find(key);
    return v ? with_path(path(), [&] { return v->as_bool(key); }) : fallback;
}
const std::string& GgufFile::get_string(std::string_view key) const {
    const GgufValue& v = get(key);
    if (v.type != GgufValueType::STRING)
        fail(path(), ": metadata key ", key, " is ", type_desc(v.type, v.elem_type), ", expected a string");
    return std::get<std::string>(v.scalar);
}

static const GgufValue& get_array(const GgufFile& f, std::string_view key) {
    const GgufValue& v = f.get(key);
    if (v.type != GgufValueType::ARRAY)
        fail(f.path(), ": metadata key ", key, " is ", type_desc(v.type, v.elem_type), ", expected an array");
    return v;
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
    const GgufValue& v = get_array(*this, key);
    if (v.elem_type != GgufValueType::STRING)
        fail(path(), ": metadata key ", key, " is ", type_desc(v.type, v.elem_type), ", expected an array of string");
    std::vector<std::string> out;
    out.reserve(v.array.size());
    for (const GgufValue& e : v.array) out.push_back(std::get<std::string>(e.scalar));
    return out;
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
    const GgufValue& v = get_array(*this, key);
    if (!is_integer_type(v.elem_type))
        fail(path(), ": metadata key ", key, " is ", type_desc(v.type, v.elem_type), ", expected an array of integers");
    std::vector<int64_t> out;
    out.reserve(v.array.size());
    for (const GgufValue& e : v.array) out.push_back(with_path(path(), [&] { return e.as_int(key); }));
    return out;
}

std::vector<float> GgufFile::get_float_array(std::string_view key) const {
    const GgufValue& v = get_array(*this, key);
    if (!is_integer_type(v.elem_type) && !is_float_type(v.elem_type))
        fail(path(), ": metadata key ", key, " is ", type_desc(v.type, v.elem_type), ", expected an array of numbers");
    std::vector<float> out;
    out.reserve(v.array.size());
    for (const GgufValue& e : v.array) out.push_back(narrow_to_float(e.as_float(key)));
    return out;
}

const std::vector<GgufTensorInfo>& GgufFile::tensors() const { return impl_->tensors; }

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
    auto it = impl_->tensor_index.find(name);
    return it == impl_->tensor_index.end() ? nullptr : &impl_->tensors[it->second];
}

const GgufTensorInfo& GgufFile::tensor(std::string_view name) const {
    const GgufTensorInfo* t = find_tensor(name);
    if (!t) fail(path(), ": missing tensor ", name);
    return *t;
}

void GgufFile::release_pages() const { impl_->map.release_pages(); }
void GgufFile::release_pages(const GgufTensorInfo& t) const { impl_->map.release_pages(t.data, t.nbytes); }

// ------------------------------------------------------------------------------------------------ GgufWriter

namespace {

class ByteSink {
public:
    explicit ByteSink(std::vector<uint8_t>& out) : out_(out) {}
    template <typename T>
    void put(T v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        out_.insert(out_.end(), p, p + sizeof(T));
    }
    void put_bytes(const void* p, size_t n) {
        const auto* b = static_cast<const uint8_t*>(p);
        out_.insert(out_.end(), b, b + n);
    }
    void put_string(const std::string& s) {
        put<uint64_t>(s.size());
        put_bytes(s.data(), s.size());
    }
    void pad(uint64_t alignment) { out_.resize(static_cast<size_t>(pad_to(out_.size(), alignment)), 0); }
    size_t size() const { return out_.size(); }

private:
    std::vector<uint8_t>& out_;
};

// The writer checks that each scalar holds the variant alternative its type implies and fits its width.
template <typename T>
T checked_int(const GgufValue& v, const std::string& key) {
    int64_t lo = std::numeric_limits<T>::min();
    if (const auto* u = std::get_if<uint64_t>(&v.scalar)) {
        if (*u > static_cast<uint64_t>(std::numeric_limits<T>::max()))
            fail("GgufWriter: value ", *u, " does not fit in ", gguf_value_type_name(v.type), ", key ", key);
        return static_cast<T>(*u);
    }
    if (const auto* s = std::get_if<int64_t>(&v.scalar)) {
        if (*s < lo || (*s > 0 && static_cast<uint64_t>(*s) > static_cast<uint64_t>(std::numeric_limits<T>::max())))
            fail("GgufWriter: value ", *s, " does not fit in ", gguf_value_type_name(v.type), ", key ", key);
        return static_cast<T>(*s);
    }
    fail("GgufWriter: ", gguf_value_type_name(v.type), " value holds no integer, key ", key);
}

void put_scalar(ByteSink& out, const GgufValue& v, const std::string& key) {
    switch (v.type) {
    case GgufValueType::U8: out.put(checked_int<uint8_t>(v, key)); break;
    case GgufValueType::I8: out.put(checked_int<int8_t>(v, key)); break;
    case GgufValueType::U16: out.put(checked_int<uint16_t>(v, key)); break;
    case GgufValueType::I16: out.put(checked_int<int16_t>(v, key)); break;
    case GgufValueType::U32: out.put(checked_int<uint32_t>(v, key)); break;
    case GgufValueType::I32: out.put(checked_int<int32_t>(v, key)); break;
    case GgufValueType::U64: out.put(checked_int<uint64_t>(v, key)); break;
    case GgufValueType::I64: out.put(checked_int<int64_t>(v, key)); break;
    case GgufValueType::F32:
    case GgufValueType::F64: {
        const auto* d = std::get_if<double>(&v.scalar);
        if (!d) fail("GgufWriter: ", gguf_value_type_name(v.type), " value holds no float, key ", key);
        if (v.type == GgufValueType::F32) out.put(narrow_to_float(*d));
        else out.put(*d);
        break;
    }
    case GgufValueType::BOOL: {
        const auto* b = std::get_if<bool>(&v.scalar);
        if (!b) fail("GgufWriter: bool value holds no bool, key ", key);
        out.put<uint8_t>(*b ? 1 : 0);
        break;
    }
    case GgufValueType::STRING: {
        const auto* s = std::get_if<std::string>(&v.scalar);
        if (!s) fail("GgufWriter: string value holds no string, key ", key);
        out.put_string(*s);
        break;
    }
    case GgufValueType::ARRAY: fail("GgufWriter: nested arrays are not supported, key ", key);
    }
}

}  // namespace

void GgufWriter::add(std::string key, GgufValue value) {
    check(!key.empty(), "GgufWriter: empty metadata key");
    for (const auto& kv : kv_) check(kv.first != key, "GgufWriter: duplicate metadata key ", key);
    if (value.type == GgufValueType::ARRAY) {
        for (const GgufValue& e : value.array)
            check(e.type == value.elem_type, "GgufWriter: array element of type ", gguf_value_type_name(e.type),
                  " in an array of ", gguf_value_type_name(value.elem_type), ", key ", key);
    }
    kv_.emplace_back(std::move(key), std::move(value));
}

void GgufWriter::add_tensor(std::string name, std::vector<int64_t> dims, GgmlType type, std::vector<uint8_t> data) {
    check(!name.empty() && name.size() <= kMaxTensorNameBytes, "GgufWriter: tensor name '", name,
          "' must be 1 to ", kMaxTensorNameBytes, " bytes");
    for (const auto& t : tensors_) check(t.name != name, "GgufWriter: duplicate tensor ", name);
    check(!dims.empty() && dims.size() <= kMaxDims, "GgufWriter: tensor ", name, " has ", dims.size(), " dims");
    int64_t n = 1;
    for (int64_t d : dims) {
        check(d > 0, "GgufWriter: tensor ", name, " has a non-positive dimension ", d);
        n *= d;
    }
    check(dims[0] % ggml_block_size(type) == 0, "GgufWriter: tensor ", name, " row length ", dims[0],
          " is not a multiple of the ", ggml_type_name(type), " block size");
    const uint64_t expect = ggml_row_bytes(type, dims[0]) * static_cast<uint64_t>(n / dims[0]);
    check(data.size() == expect, "GgufWriter: tensor ", name, " has ", data.size(), " bytes of data, expected ",
          expect);
    tensors_.push_back({std::move(name), std::move(dims), type, std::move(data)});
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
    uint32_t alignment = kDefaultAlignment;
    for (const auto& [key, v] : kv_) {
        if (key == "general.alignment" && v.type == GgufValueType::U32) {
            alignment = checked_int<uint32_t>(v, key);
            check(alignment != 0 && (alignment & (alignment - 1)) == 0, "GgufWriter: general.alignment ", alignment,
                  " is not a power of two");
        }
    }
    std::vector<uint8_t> bytes;
    ByteSink out(bytes);
    out.put_bytes("GGUF", 4);
    out.put<uint32_t>(kGgufVersion);
    out.put<uint64_t>(tensors_.size());
    out.put<uint64_t>(kv_.size());
    for (const auto& [key, v] : kv_) {
        out.put_string(key);
        out.put<uint32_t>(static_cast<uint32_t>(v.type));
        if (v.type == GgufValueType::ARRAY) {
            out.put<uint32_t>(static_cast<uint32_t>(v.elem_type));
            out.put<uint64_t>(v.array.size());
            for (const GgufValue& e : v.array) put_scalar(out, e, key);
        } else {
            put_scalar(out, v, key);
        }
    }
    uint64_t offset = 0;
    for (const PendingTensor& t : tensors_) {
        out.put_string(t.name);
        out.put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
        for (int64_t d : t.dims) out.put<int64_t>(d);
        out.put<uint32_t>(static_cast<uint32_t>(t.type));
        out.put<uint64_t>(offset);
        offset = pad_to(offset + t.data.size(), alignment);
    }
    out.pad(alignment);
    for (size_t i = 0; i < tensors_.size(); ++i) {
        out.put_bytes(tensors_[i].data.data(), tensors_[i].data.size());
        if (i + 1 < tensors_.size()) out.pad(alignment);  // no trailing padding after the last tensor
    }
    return bytes;
}

void GgufWriter::write(const std::string& path) const {
    const std::vector<uint8_t> bytes = to_bytes();
    std::string tmp = path + ".tmp.XXXXXX";
    const int fd = ::mkstemp(tmp.data());
    if (fd < 0) fail(path, ": cannot create a temporary file next to it: ", std::strerror(errno));
    size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            const int e = errno;
            ::close(fd);
            ::unlink(tmp.c_str());
            fail(path, ": write failed: ", std::strerror(e));
        }
        done += static_cast<size_t>(n);
    }
    if (::close(fd) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        fail(path, ": write failed: ", std::strerror(e));
    }
    ::chmod(tmp.c_str(), 0644);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        fail(path, ": cannot rename the temporary file into place: ", std::strerror(e));
    }
}

GgufValue GgufWriter::u32(uint32_t v) { GgufValue x; x.type = GgufValueType::U32; x.scalar = uint64_t{v}; return x; }
GgufValue GgufWriter::i32(int32_t v) { GgufValue x; x.type = GgufValueType::I32; x.scalar = int64_t{v}; return x; }
GgufValue GgufWriter::f32(float v) { GgufValue x; x.type = GgufValueType::F32; x.scalar = double{v}; return x; }
GgufValue GgufWriter::boolean(bool v) { GgufValue x; x.type = GgufValueType::BOOL; x.scalar = v; return x; }
GgufValue GgufWriter::string(std::string v) {
    GgufValue x;
    x.type = GgufValueType::STRING;
    x.scalar = std::move(v);
    return x;
}
namespace {
// An ARRAY value of elem_type from the items, each made by make (one of the writer's scalar constructors).
template <class T, class Make>
GgufValue make_array(GgufValueType elem_type, const std::vector<T>& items, Make make) {
    GgufValue x;
    x.type = GgufValueType::ARRAY;
    x.elem_type = elem_type;
    for (const T& e : items) x.array.push_back(make(e));
    return x;
}
}  // namespace
GgufValue GgufWriter::string_array(const std::vector<std::string>& v) {
    return make_array(GgufValueType::STRING, v, [](const std::string& e) { return string(e); });
}
GgufValue GgufWriter::i32_array(const std::vector<int32_t>& v) {
    return make_array(GgufValueType::I32, v, [](int32_t e) { return i32(e); });
}
GgufValue GgufWriter::f32_array(const std::vector<float>& v) {
    return make_array(GgufValueType::F32, v, [](float e) { return f32(e); });
}

}  // namespace hs
