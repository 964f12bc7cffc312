// Reading and writing safetensors files and checkpoint folders (safetensors.hpp).
#include "safetensors/safetensors.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "gguf/quant.hpp"
#include "util/error.hpp"
#include "util/mapped_file.hpp"

namespace hs {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct DtypeInfo {
    SafetensorsDtype dtype;
    const char* name;
    uint64_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {SafetensorsDtype::BOOL, "BOOL", 1}, {SafetensorsDtype::U8, "U8", 1},     {SafetensorsDtype::I8, "I8", 1},
    {SafetensorsDtype::F8_E5M2, "F8_E5M2", 1}, {SafetensorsDtype::F8_E4M3, "F8_E4M3", 1},
    {SafetensorsDtype::I16, "I16", 2},   {SafetensorsDtype::U16, "U16", 2},   {SafetensorsDtype::F16, "F16", 2},
    {SafetensorsDtype::BF16, "BF16", 2}, {SafetensorsDtype::I32, "I32", 4},   {SafetensorsDtype::U32, "U32", 4},
    {SafetensorsDtype::F32, "F32", 4},   {SafetensorsDtype::F64, "F64", 8},   {SafetensorsDtype::I64, "I64", 8},
    {SafetensorsDtype::U64, "U64", 8},
};

// The reference implementation refuses larger headers (a 100 MB JSON header would describe millions of tensors).
constexpr uint64_t kMaxHeaderBytes = 100000000;

// Parses `text` as JSON, refusing duplicate keys in objects at depth <= max_depth_checked (nlohmann keeps the last
// value of a repeated key silently; a header or index that says two things about one tensor is refused instead).
json parse_json_strict(std::string_view text, const std::string& where) {
    std::vector<std::set<std::string>> keys_at_depth;
    std::string duplicate;
    auto cb = [&](int depth, json::parse_event_t event, json& parsed) {
        if (event == json::parse_event_t::object_start) {
            if (keys_at_depth.size() <= size_t(depth)) keys_at_depth.resize(size_t(depth) + 1);
            keys_at_depth[size_t(depth)].clear();
        } else if (event == json::parse_event_t::key && depth >= 1) {
            // A key of an object that started at depth - 1.
            auto& seen = keys_at_depth.at(size_t(depth - 1));
            const std::string& k = parsed.get_ref<const std::string&>();
            if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
        }
        return true;
    };
    json j;
    try {
        j = json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
    } catch (const json::exception& e) {
        fail(where, ": not valid JSON (", e.what(), ")");
    }
    check(duplicate.empty(), where, ": key \"", duplicate, "\" appears twice");
    return j;
}

bool checked_mul(uint64_t a, uint64_t b, uint64_t& out) { return !__builtin_mul_overflow(a, b, &out); }

}  // namespace

const char* safetensors_dtype_name(SafetensorsDtype t) {
    for (const auto& d : kDtypes)
        if (d.dtype == t) return d.name;
    return "?";
}

std::optional<SafetensorsDtype> safetensors_dtype_from_name(std::string_view name) {
    for (const auto& d : kDtypes)
        if (name == d.name) return d.dtype;
    return std::nullopt;
}

uint64_t safetensors_dtype_size(SafetensorsDtype t) {
    for (const auto& d : kDtypes)
        if (d.dtype == t) return d.size;
    return 0;
}

int64_t SafetensorsTensor::n_elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;  // validated at open: no overflow
    return n;
}

// ---------------------------------------------------------------- SafetensorsFile

struct SafetensorsFile::Impl {
    MappedFile map;
    std::vector<SafetensorsTensor> tensors;
    std::map<std::string, size_t, std::less<>> index;
    std::map<std::string, std::string> metadata;
    uint64_t data_offset = 0;
};

SafetensorsFile::SafetensorsFile() : impl_(std::make_unique<Impl>()) {}
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

const std::string& SafetensorsFile::path() const { return impl_->map.path(); }
uint64_t SafetensorsFile::file_size() const { return impl_->map.size(); }
uint64_t SafetensorsFile::data_offset() const { return impl_->data_offset; }
const std::vector<SafetensorsTensor>& SafetensorsFile::tensors() const { return impl_->tensors; }
const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return impl_->metadata; }
void SafetensorsFile::release_pages() const { impl_->map.release_pages(); }

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
    auto it = impl_->index.find(name);
    return it == impl_->index.end() ? nullptr : &impl_->tensors[it->second];
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
    SafetensorsFile f;
    Impl& s = *f.impl_;
    s.map = MappedFile(path);
    const uint8_t* base = s.map.data();
    const uint64_t size = s.map.size();
    check(size >= 8, path, ": ", size, " bytes is too short for a safetensors file (8-byte header length first)");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | base[i];
    check(n <= kMaxHeaderBytes, path, ": header length ", n, " is larger than the limit of ", kMaxHeaderBytes,
          " bytes");
    check(n <= size - 8, path, ": header length ", n, " runs past the end of the file (", size, " bytes)");
    check(n >= 2 && base[8] == '{', path, ": the header is not a JSON object (it must start with '{')");
    s.data_offset = 8 + n;
    const std::string_view text(reinterpret_cast<const char*>(base + 8), size_t(n));
    const json header = parse_json_strict(text, path + ": header");
    check(header.is_object(), path, ": the header is not a JSON object");

    for (const auto& [name, entry] : header.items()) {
        if (name == "__metadata__") {
            check(entry.is_object(), path, ": __metadata__ must be an object of strings");
            for (const auto& [k, v] : entry.items()) {
                check(v.is_string(), path, ": __metadata__.", k, " must be a string");
                s.metadata[k] = v.get<std::string>();
            }
            continue;
        }
        const std::string at = path + ": tensor " + name;
        check(entry.is_object(), at, ": the entry must be an object with dtype, shape and data_offsets");
        for (const auto& [k, v] : entry.items())
            check(k == "dtype" || k == "shape" || k == "data_offsets", at, ": unknown field \"", k, "\"");
        SafetensorsTensor t;
        t.name = name;
        check(entry.contains("dtype") && entry["dtype"].is_string(), at, ": missing or non-string field dtype");
        const std::string dtype = entry["dtype"].get<std::string>();
        const auto dt = safetensors_dtype_from_name(dtype);
        check(dt.has_value(), at, ": unknown dtype \"", dtype, "\"");
        t.dtype = *dt;
        check(entry.contains("shape") && entry["shape"].is_array(), at, ": missing field shape (an array)");
        uint64_t elements = 1;
        for (const json& d : entry["shape"]) {
            check(d.is_number_unsigned(), at, ": shape ", entry["shape"].dump(), " must hold non-negative integers");
            const uint64_t v = d.get<uint64_t>();
            check(v <= uint64_t(INT64_MAX) && checked_mul(elements, v, elements) && elements <= uint64_t(INT64_MAX), at,
                  ": shape ", entry["shape"].dump(), " overflows");
            t.shape.push_back(int64_t(v));
        }
        const json& off = entry.contains("data_offsets") ? entry["data_offsets"] : json();
        check(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(), at,
              ": field data_offsets must be [begin, end] (non-negative integers)");
        t.begin = off[0].get<uint64_t>();
        t.end = off[1].get<uint64_t>();
        check(t.begin <= t.end, at, ": data_offsets [", t.begin, ", ", t.end, "] end before they begin");
        uint64_t bytes = 0;
        check(checked_mul(elements, safetensors_dtype_size(t.dtype), bytes), at, ": shape x dtype size overflows");
        check(bytes == t.end - t.begin, at, ": shape ", entry["shape"].dump(), " of ", dtype, " is ", bytes,
              " bytes but data_offsets [", t.begin, ", ", t.end, "] span ", t.end - t.begin);
        s.tensors.push_back(std::move(t));
    }
    // Data order: the tensors must tile the data section exactly.
    std::sort(s.tensors.begin(), s.tensors.end(), [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    const uint64_t data_size = size - s.data_offset;
    uint64_t pos = 0;
    for (SafetensorsTensor& t : s.tensors) {
        check(t.begin == pos, path, ": tensor ", t.name, ": data_offsets [", t.begin, ", ", t.end, "] ",
              t.begin < pos ? "overlap the previous tensor" : "leave a gap after the previous tensor", " (which ends at ",
              pos, ")");
        check(t.end <= data_size, path, ": tensor ", t.name, ": data_offsets [", t.begin, ", ", t.end,
              "] run past the end of the file (the data section has ", data_size, " bytes: truncated?)");
        pos = t.end;
        t.data = base + s.data_offset + t.begin;
    }
    check(pos == data_size, path, ": the tensors end at data offset ", pos, " but the data section has ", data_size,
          " bytes (extra bytes after the last tensor)");
    for (size_t i = 0; i < s.tensors.size(); ++i) s.index.emplace(s.tensors[i].name, i);
    return f;
}

void safetensors_read_f32(const SafetensorsTensor& t, int64_t first, int64_t n, float* dst, const std::string& where) {
    check(first >= 0 && n >= 0 && first + n <= t.n_elements(), where, ": tensor ", t.name, ": elements ", first, "..",
          first + n, " outside its ", t.n_elements());
    switch (t.dtype) {
        case SafetensorsDtype::F32:
            std::memcpy(dst, t.data + 4 * first, size_t(n) * 4);
            return;
        case SafetensorsDtype::F16:
        case SafetensorsDtype::BF16: {
            const uint8_t* p = t.data + 2 * first;
            const bool bf = t.dtype == SafetensorsDtype::BF16;
            for (int64_t i = 0; i < n; ++i) {
                const uint16_t h = uint16_t(p[2 * i] | (p[2 * i + 1] << 8));
                dst[i] = bf ? bf16_to_fp32(h) : fp16_to_fp32(h);
            }
            return;
        }
        default:
            fail(where, ": tensor ", t.name, " has dtype ", safetensors_dtype_name(t.dtype),
                 " (weights must be F32, F16 or BF16)");
    }
}

// ---------------------------------------------------------------- index and checkpoint

SafetensorsIndex read_safetensors_index(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    check(bool(in), path, ": cannot open");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const json j = parse_json_strict(text, path);
    check(j.is_object(), path, ": not a JSON object");
    check(j.contains("weight_map") && j["weight_map"].is_object(), path, ": missing field weight_map (an object)");
    SafetensorsIndex idx;
    idx.path = path;
    std::set<std::string> shards;
    for (const auto& [name, file] : j["weight_map"].items()) {
        check(file.is_string(), path, ": weight_map[\"", name, "\"] must be a file name");
        const std::string f = file.get<std::string>();
        check(!f.empty() && f != "." && f != ".." && f.find('/') == std::string::npos &&
                  f.find('\\') == std::string::npos && f.find('\0') == std::string::npos,
              path, ": weight_map[\"", name, "\"] = \"", f, "\" is not a file name in the checkpoint's folder");
        idx.weight_map[name] = f;
        shards.insert(f);
    }
    check(!idx.weight_map.empty(), path, ": weight_map names no tensor");
    idx.shards.assign(shards.begin(), shards.end());
    return idx;
}

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& dir) {
    SafetensorsCheckpoint c;
    c.dir_ = dir;
    const std::string index_path = (fs::path(dir) / kIndexName).string();
    const std::string single_path = (fs::path(dir) / kSingleName).string();
    if (fs::exists(index_path)) {
        const SafetensorsIndex idx = read_safetensors_index(index_path);
        c.source_ = index_path;
        c.files_.push_back(index_path);
        std::map<std::string, size_t> shard_no;
        for (const std::string& s : idx.shards) {
            const std::string p = (fs::path(dir) / s).string();
            check(fs::exists(p), index_path, ": shard ", s, " (named in weight_map) is missing: ", p);
            shard_no[s] = c.shards_.size();
            c.shards_.push_back(SafetensorsFile::open(p));
            c.files_.push_back(p);
        }
        for (const auto& [name, s] : idx.weight_map) {
            const SafetensorsFile& f = c.shards_[shard_no.at(s)];
            const SafetensorsTensor* t = f.find(name);
            check(t != nullptr, index_path, ": weight_map names tensor ", name, " in ", s, ", which has no such tensor");
            c.by_name_[name] = {shard_no.at(s), t};
        }
        for (size_t i = 0; i < c.shards_.size(); ++i)
            for (const SafetensorsTensor& t : c.shards_[i].tensors()) {
                auto it = c.by_name_.find(t.name);
                check(it != c.by_name_.end(), c.shards_[i].path(), ": tensor ", t.name, " is not in the index ",
                      index_path);
                check(it->second.first == i, c.shards_[i].path(), ": tensor ", t.name, " is also here, but the index ",
                      index_path, " places it in ", idx.weight_map.at(t.name));
            }
    } else {
        check(fs::exists(single_path), dir, ": no ", kIndexName, " and no ", kSingleName,
              " (a Hugging Face checkpoint in safetensors format is expected)");
        c.source_ = single_path;
        c.files_.push_back(single_path);
        c.shards_.push_back(SafetensorsFile::open(single_path));
        for (const SafetensorsTensor& t : c.shards_[0].tensors()) c.by_name_[t.name] = {0, &t};
    }
    return c;
}

const SafetensorsTensor* SafetensorsCheckpoint::find(std::string_view name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second.second;
}

const SafetensorsTensor& SafetensorsCheckpoint::tensor(std::string_view name) const {
    const SafetensorsTensor* t = find(name);
    check(t != nullptr, source_, ": missing tensor ", name);
    return *t;
}

const std::string& SafetensorsCheckpoint::file_of(std::string_view name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? source_ : shards_[it->second.first].path();
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
    std::vector<std::string> out;
    for (const auto& [n, _] : by_name_) out.push_back(n);
    return out;
}

uint64_t SafetensorsCheckpoint::data_bytes() const {
    uint64_t n = 0;
    for (const auto& [_, v] : by_name_) n += v.second->nbytes();
    return n;
}

void SafetensorsCheckpoint::release_pages() const {
    for (const SafetensorsFile& f : shards_) f.release_pages();
}

// ---------------------------------------------------------------- writing

void SafetensorsWriter::add(std::string name, SafetensorsDtype dtype, std::vector<int64_t> shape,
                            std::vector<uint8_t> bytes) {
    tensors.push_back(Entry{std::move(name), dtype, std::move(shape), std::move(bytes)});
}

uint64_t SafetensorsWriter::data_bytes() const {
    uint64_t n = 0;
    for (const Entry& e : tensors) n += e.bytes.size();
    return n;
}

std::vector<uint8_t> SafetensorsWriter::to_bytes() const {
    std::vector<const Entry*> order;
    for (const Entry& e : tensors) order.push_back(&e);
    std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
        const uint64_t sa = safetensors_dtype_size(a->dtype), sb = safetensors_dtype_size(b->dtype);
        return sa != sb ? sa > sb : a->name < b->name;
    });
    json header = json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t off = 0;
    for (const Entry* e : order) {
        header[e->name] = {{"dtype", safetensors_dtype_name(e->dtype)},
                           {"shape", e->shape},
                           {"data_offsets", {off, off + e->bytes.size()}}};
        off += e->bytes.size();
    }
    std::string h = header.dump();
    h.append((8 - h.size() % 8) % 8, ' ');
    std::vector<uint8_t> out(8);
    for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(uint64_t(h.size()) >> (8 * i));
    out.insert(out.end(), h.begin(), h.end());
    for (const Entry* e : order) out.insert(out.end(), e->bytes.begin(), e->bytes.end());
    return out;
}

void SafetensorsWriter::write(const std::string& path) const {
    const std::vector<uint8_t> bytes = to_bytes();
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        check(bool(out), path, ": cannot write");
        out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
        check(bool(out), path, ": write failed");
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    check(!ec, path, ": cannot rename the temporary file into place: ", ec.message());
}

void write_safetensors_checkpoint(const std::string& dir, const std::vector<SafetensorsWriter::Entry>& tensors,
                                  uint64_t max_shard_bytes) {
    fs::create_directories(dir);
    std::vector<SafetensorsWriter> shards(1);
    for (const auto& e : tensors) {
        if (max_shard_bytes > 0 && !shards.back().tensors.empty() &&
            shards.back().data_bytes() + e.bytes.size() > max_shard_bytes)
            shards.emplace_back();
        shards.back().tensors.push_back(e);
    }
    for (auto& s : shards) s.metadata["format"] = "pt";
    if (shards.size() == 1) {
        shards[0].write((fs::path(dir) / SafetensorsCheckpoint::kSingleName).string());
        return;
    }
    json weight_map = json::object();
    uint64_t total = 0;
    for (size_t i = 0; i < shards.size(); ++i) {
        char name[64];
        std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
        shards[i].write((fs::path(dir) / name).string());
        for (const auto& e : shards[i].tensors) weight_map[e.name] = name, total += e.bytes.size();
    }
    const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    const std::string path = (fs::path(dir) / SafetensorsCheckpoint::kIndexName).string();
    std::ofstream out(path, std::ios::trunc);
    check(bool(out), path, ": cannot write");
    out << index.dump(2) << "\n";
    check(bool(out), path, ": write failed");
}

}  // namespace hs
