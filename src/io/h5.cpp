#include "io/h5.hpp"

#include <hdf5.h>
#include <hdf5_hl.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <numeric>

#include "util/error.hpp"

static_assert(std::is_same_v<hid_t, hs::h5::hid>, "hs::h5::hid must be hid_t");
static_assert(H5P_DEFAULT == 0, "File::create/open use 0 for H5P_DEFAULT");

namespace hs::h5 {
namespace {

// ---------------------------------------------------------------- errors

// Turns off HDF5's printing of its error stack; done whenever a file is created or opened (cheap), so that
// no object can exist before it took effect.
void quiet_hdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

herr_t walk_cb(unsigned n, const H5E_error2_t* e, void* client) {
    auto* out = static_cast<std::string*>(client);
    if (n == 0) {  // innermost entry: the actual cause
        char minor[160] = "";
        H5Eget_msg(e->min_num, nullptr, minor, sizeof minor);
        std::string desc = e->desc ? e->desc : "";
        // System call failures carry a long multi-line description; keep its "error message = '...'" part.
        const std::string key = "error message = '";
        if (size_t k = desc.find(key); k != std::string::npos) {
            size_t end = desc.find('\'', k + key.size());
            desc = desc.substr(k + key.size(), end == std::string::npos ? std::string::npos : end - k - key.size());
        }
        for (char& ch : desc)
            if (ch == '\n') ch = ' ';
        *out = desc;
        if (*minor) *out += out->empty() ? std::string(minor) : " (" + std::string(minor) + ")";
    }
    return 0;
}

// The innermost message on HDF5's error stack, then clears the stack.
std::string hdf5_cause() {
    std::string cause;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, &cause);
    H5Eclear2(H5E_DEFAULT);
    return cause;
}

template <typename... Parts>
[[noreturn]] void fail_at(const std::string& file, const std::string& path, const Parts&... parts) {
    std::string cause = hdf5_cause();
    std::ostringstream os;
    os << "h5: " << file;
    if (!path.empty()) os << ":" << path;
    os << ": ";
    (os << ... << parts);
    if (!cause.empty()) os << ": " << cause;
    throw Error(os.str());
}

// ---------------------------------------------------------------- types and helpers

template <Number T>
hid_t native() {
    if constexpr (std::is_same_v<T, float>) return H5T_NATIVE_FLOAT;
    else if constexpr (std::is_same_v<T, double>) return H5T_NATIVE_DOUBLE;
    else if constexpr (std::is_same_v<T, int32_t>) return H5T_NATIVE_INT32;
    else if constexpr (std::is_same_v<T, int64_t>) return H5T_NATIVE_INT64;
    else if constexpr (std::is_same_v<T, uint8_t>) return H5T_NATIVE_UINT8;
    else return H5T_NATIVE_UINT64;
}

Handle vlen_string_type() {
    Handle t(H5Tcopy(H5T_C_S1), Handle::Kind::datatype);
    H5Tset_size(t.get(), H5T_VARIABLE);
    H5Tset_cset(t.get(), H5T_CSET_UTF8);
    return t;
}

uint64_t product(const std::vector<uint64_t>& v, size_t from = 0) {
    uint64_t p = 1;
    for (size_t i = from; i < v.size(); ++i) p *= v[i];
    return p;
}

std::string join_dims(const std::vector<uint64_t>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) {
        if (i) s += ",";
        s += v[i] == kUnlimited ? std::string("inf") : std::to_string(v[i]);
    }
    return s + "]";
}

std::vector<hsize_t> to_h(const std::vector<uint64_t>& v) {
    std::vector<hsize_t> r(v.size());
    for (size_t i = 0; i < v.size(); ++i) r[i] = v[i] == kUnlimited ? H5S_UNLIMITED : hsize_t(v[i]);
    return r;
}

std::vector<uint64_t> space_dims(hid_t space, bool max) {
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank < 0) return {};
    std::vector<hsize_t> d(rank), m(rank);
    H5Sget_simple_extent_dims(space, d.data(), m.data());
    std::vector<uint64_t> r(rank);
    for (int i = 0; i < rank; ++i) {
        hsize_t x = max ? m[i] : d[i];
        r[i] = x == H5S_UNLIMITED ? kUnlimited : uint64_t(x);
    }
    return r;
}

// An automatic chunk shape: full extent in the trailing dims, about 64 Ki elements per chunk in total.
std::vector<uint64_t> auto_chunk(const std::vector<uint64_t>& dims) {
    std::vector<uint64_t> c(dims.size());
    uint64_t inner = 1;
    for (size_t i = dims.size(); i-- > 1;) {
        c[i] = std::max<uint64_t>(1, std::min<uint64_t>(dims[i], 4096));
        inner *= c[i];
    }
    if (!dims.empty()) c[0] = std::max<uint64_t>(1, std::min<uint64_t>(std::max<uint64_t>(dims[0], 1), 65536 / std::max<uint64_t>(inner, 1)));
    if (!dims.empty()) c[0] = std::max<uint64_t>(c[0], 1);
    return c;
}

std::string normalise(std::string s) {  // strips trailing and duplicated '/'
    std::string r;
    for (char ch : s)
        if (!(ch == '/' && !r.empty() && r.back() == '/')) r += ch;
    while (r.size() > 1 && r.back() == '/') r.pop_back();
    return r;
}

}  // namespace

// ---------------------------------------------------------------- Handle

Handle& Handle::operator=(Handle&& o) noexcept {
    if (this != &o) {
        reset();
        id_ = o.id_;
        kind_ = o.kind_;
        o.id_ = -1;
    }
    return *this;
}

bool Handle::close() noexcept {
    if (id_ < 0) return true;
    herr_t r = -1;
    switch (kind_) {
        case Kind::file: r = H5Fclose(id_); break;
        case Kind::group: r = H5Gclose(id_); break;
        case Kind::dataset: r = H5Dclose(id_); break;
        case Kind::datatype: r = H5Tclose(id_); break;
        case Kind::dataspace: r = H5Sclose(id_); break;
        case Kind::attribute: r = H5Aclose(id_); break;
        case Kind::plist: r = H5Pclose(id_); break;
    }
    id_ = -1;
    return r >= 0;
}

void Handle::reset() noexcept {
    if (id_ >= 0 && !close()) H5Eclear2(H5E_DEFAULT);
}

// ---------------------------------------------------------------- Object: attributes

std::string Object::child_path(const std::string& name) const {
    if (!name.empty() && name.front() == '/') return normalise(name);
    return normalise(path_ == "/" ? "/" + name : path_ + "/" + name);
}

bool Object::has_attr(const std::string& name) const {
    htri_t r = H5Aexists(id(), name.c_str());
    if (r < 0) fail_at(file_, path_, "cannot check attribute '", name, "'");
    return r > 0;
}

namespace {
herr_t attr_name_cb(hid_t, const char* name, const H5A_info_t*, void* out) {
    static_cast<std::vector<std::string>*>(out)->push_back(name);
    return 0;
}

Handle open_attr(const Object& o, const std::string& name) {
    Handle a(H5Aopen(o.id(), name.c_str(), H5P_DEFAULT), Handle::Kind::attribute);
    if (!a.valid()) fail_at(o.file_path(), o.path(), "no attribute '", name, "'");
    return a;
}

void delete_attr_if_present(const Object& o, const std::string& name) {
    if (o.has_attr(name) && H5Adelete(o.id(), name.c_str()) < 0)
        fail_at(o.file_path(), o.path(), "cannot replace attribute '", name, "'");
}
}  // namespace

std::vector<std::string> Object::attr_names() const {
    std::vector<std::string> names;
    hsize_t idx = 0;
    if (H5Aiterate2(id(), H5_INDEX_NAME, H5_ITER_INC, &idx, attr_name_cb, &names) < 0)
        fail_at(file_, path_, "cannot list attributes");
    return names;
}

void Object::set_attr(const std::string& name, std::string_view value) {
    delete_attr_if_present(*this, name);
    Handle type = vlen_string_type();
    Handle space(H5Screate(H5S_SCALAR), Handle::Kind::dataspace);
    Handle a(H5Acreate2(id(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
             Handle::Kind::attribute);
    if (!a.valid()) fail_at(file_, path_, "cannot create attribute '", name, "'");
    std::string copy(value);
    const char* p = copy.c_str();
    if (H5Awrite(a.get(), type.get(), &p) < 0) fail_at(file_, path_, "cannot write attribute '", name, "'");
}

template <Number T>
void Object::set_attr(const std::string& name, const std::vector<T>& values) {
    delete_attr_if_present(*this, name);
    hsize_t n = values.size();
    Handle space(H5Screate_simple(1, &n, nullptr), Handle::Kind::dataspace);
    Handle a(H5Acreate2(id(), name.c_str(), native<T>(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
             Handle::Kind::attribute);
    if (!a.valid()) fail_at(file_, path_, "cannot create attribute '", name, "'");
    if (n > 0 && H5Awrite(a.get(), native<T>(), values.data()) < 0)
        fail_at(file_, path_, "cannot write attribute '", name, "'");
}

template <Number T>
void Object::set_attr(const std::string& name, T value) {
    delete_attr_if_present(*this, name);
    Handle space(H5Screate(H5S_SCALAR), Handle::Kind::dataspace);
    Handle a(H5Acreate2(id(), name.c_str(), native<T>(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
             Handle::Kind::attribute);
    if (!a.valid()) fail_at(file_, path_, "cannot create attribute '", name, "'");
    if (H5Awrite(a.get(), native<T>(), &value) < 0) fail_at(file_, path_, "cannot write attribute '", name, "'");
}

std::string Object::attr_string(const std::string& name) const {
    Handle a = open_attr(*this, name);
    Handle ftype(H5Aget_type(a.get()), Handle::Kind::datatype);
    if (H5Tget_class(ftype.get()) != H5T_STRING) fail_at(file_, path_, "attribute '", name, "' is not a string");
    Handle space(H5Aget_space(a.get()), Handle::Kind::dataspace);
    if (H5Sget_simple_extent_npoints(space.get()) != 1)
        fail_at(file_, path_, "attribute '", name, "' is not a single string");
    if (H5Tis_variable_str(ftype.get()) > 0) {
        Handle mtype = vlen_string_type();
        char* p = nullptr;
        if (H5Aread(a.get(), mtype.get(), &p) < 0) fail_at(file_, path_, "cannot read attribute '", name, "'");
        std::string s = p ? p : "";
        if (p) H5free_memory(p);
        return s;
    }
    // One byte more than the stored size: a null-padded string that fills all n bytes (h5py's numpy.bytes_ writes
    // them so) converts to a null-terminated one of size n by dropping its last character.
    size_t n = H5Tget_size(ftype.get());
    Handle mtype(H5Tcopy(H5T_C_S1), Handle::Kind::datatype);
    H5Tset_size(mtype.get(), n + 1);
    std::string s(n + 1, '\0');
    if (H5Aread(a.get(), mtype.get(), s.data()) < 0) fail_at(file_, path_, "cannot read attribute '", name, "'");
    s.resize(std::strlen(s.c_str()));
    return s;
}

template <Number T>
std::vector<T> Object::attr_vector(const std::string& name) const {
    Handle a = open_attr(*this, name);
    Handle space(H5Aget_space(a.get()), Handle::Kind::dataspace);
    hssize_t n = H5Sget_simple_extent_npoints(space.get());
    if (n < 0) fail_at(file_, path_, "cannot read attribute '", name, "'");
    auto v = std::vector<T>(static_cast<size_t>(n));
    if (n > 0 && H5Aread(a.get(), native<T>(), v.data()) < 0)
        fail_at(file_, path_, "cannot read attribute '", name, "' as a number");
    return v;
}

template <Number T>
T Object::attr(const std::string& name) const {
    std::vector<T> v = attr_vector<T>(name);
    if (v.size() != 1) fail_at(file_, path_, "attribute '", name, "' has ", v.size(), " values, expected 1");
    return v[0];
}

// ---------------------------------------------------------------- Location: groups and datasets

namespace {
Handle lcpl_intermediate() {
    Handle p(H5Pcreate(H5P_LINK_CREATE), Handle::Kind::plist);
    H5Pset_create_intermediate_group(p.get(), 1);
    H5Pset_char_encoding(p.get(), H5T_CSET_UTF8);
    return p;
}
}  // namespace

Group Location::create_group(const std::string& name) {
    std::string p = child_path(name);
    if (has(name)) fail_at(file_, p, "cannot create group: it exists");
    Handle lcpl = lcpl_intermediate();
    Handle g(H5Gcreate2(id(), name.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT), Handle::Kind::group);
    if (!g.valid()) fail_at(file_, p, "cannot create group");
    return Group(std::move(g), file_, p);
}

Group Location::open_group(const std::string& name) const {
    std::string p = child_path(name);
    if (!has(name)) fail_at(file_, p, "no such group");
    Handle g(H5Gopen2(id(), name.c_str(), H5P_DEFAULT), Handle::Kind::group);
    if (!g.valid()) fail_at(file_, p, "cannot open group");
    return Group(std::move(g), file_, p);
}

void Location::unlink(const std::string& name) {
    std::string p = child_path(name);
    if (!has(name)) fail_at(file_, p, "cannot unlink: no such link");
    if (H5Ldelete(id(), name.c_str(), H5P_DEFAULT) < 0) fail_at(file_, p, "cannot unlink");
}

Group Location::require_group(const std::string& name) {
    return has(name) ? open_group(name) : create_group(name);
}

bool Location::has(const std::string& name) const {
    // H5Lexists fails on a missing intermediate group, so walk the path one component at a time.
    std::string prefix = name.size() && name.front() == '/' ? "/" : "";
    size_t pos = prefix.size();
    while (pos <= name.size()) {
        size_t next = name.find('/', pos);
        if (next == std::string::npos) next = name.size();
        std::string part = name.substr(pos, next - pos);
        if (!part.empty()) {
            prefix += (prefix.empty() || prefix.back() == '/' ? "" : "/") + part;
            htri_t r = H5Lexists(id(), prefix.c_str(), H5P_DEFAULT);
            if (r < 0) {
                H5Eclear2(H5E_DEFAULT);
                return false;
            }
            if (r == 0) return false;
        }
        pos = next + 1;
    }
    return true;
}

bool Location::has_group(const std::string& name) const {
    if (!has(name)) return false;
    hid_t o = H5Oopen(id(), name.c_str(), H5P_DEFAULT);
    if (o < 0) {
        H5Eclear2(H5E_DEFAULT);
        return false;
    }
    const bool group = H5Iget_type(o) == H5I_GROUP;
    H5Oclose(o);
    return group;
}

namespace {
herr_t link_name_cb(hid_t, const char* name, const H5L_info_t*, void* out) {
    static_cast<std::vector<std::string>*>(out)->push_back(name);
    return 0;
}
}  // namespace

std::vector<std::string> Location::children() const {
    std::vector<std::string> names;
    hsize_t idx = 0;
    if (H5Literate(id(), H5_INDEX_NAME, H5_ITER_INC, &idx, link_name_cb, &names) < 0)
        fail_at(file_, path_, "cannot list members");
    return names;
}

template <Number T>
Dataset Location::create_dataset(const std::string& name, const std::vector<uint64_t>& dims,
                                 const DatasetOptions& opt) {
    std::string p = child_path(name);
    if (has(name)) fail_at(file_, p, "cannot create dataset: it exists");
    std::vector<uint64_t> maxd = opt.max_dims.empty() ? dims : opt.max_dims;
    if (maxd.size() != dims.size())
        fail_at(file_, p, "max_dims ", join_dims(maxd), " does not match dims ", join_dims(dims));
    for (size_t i = 0; i < dims.size(); ++i)
        if (maxd[i] != kUnlimited && maxd[i] < dims[i])
            fail_at(file_, p, "max_dims ", join_dims(maxd), " smaller than dims ", join_dims(dims));
    bool extendible = maxd != dims;
    bool chunked = !opt.chunk.empty() || extendible || opt.gzip > 0;
    if (!opt.chunk.empty() && opt.chunk.size() != dims.size())
        fail_at(file_, p, "chunk ", join_dims(opt.chunk), " does not match dims ", join_dims(dims));
    if (opt.gzip < 0 || opt.gzip > 9) fail_at(file_, p, "gzip level ", opt.gzip, " is not in 0..9");

    auto hd = to_h(dims), hm = to_h(maxd);
    Handle space(H5Screate_simple(int(dims.size()), hd.data(), hm.data()), Handle::Kind::dataspace);
    if (!space.valid()) fail_at(file_, p, "bad dims ", join_dims(dims), " / max ", join_dims(maxd));
    Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), Handle::Kind::plist);
    if (chunked && !dims.empty()) {
        auto hc = to_h(opt.chunk.empty() ? auto_chunk(dims) : opt.chunk);
        if (H5Pset_chunk(dcpl.get(), int(hc.size()), hc.data()) < 0)
            fail_at(file_, p, "bad chunk shape ", join_dims(opt.chunk));
        if (opt.gzip > 0) {
            if (opt.shuffle) H5Pset_shuffle(dcpl.get());
            if (H5Pset_deflate(dcpl.get(), unsigned(opt.gzip)) < 0) fail_at(file_, p, "gzip is not available");
        }
    }
    if (opt.fill) {
        T f = static_cast<T>(*opt.fill);
        if (H5Pset_fill_value(dcpl.get(), native<T>(), &f) < 0) fail_at(file_, p, "cannot set fill value");
        H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_ALLOC);
    }
    Handle lcpl = lcpl_intermediate();
    Handle d(H5Dcreate2(id(), name.c_str(), native<T>(), space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
             Handle::Kind::dataset);
    if (!d.valid()) fail_at(file_, p, "cannot create dataset ", join_dims(dims));
    return Dataset(std::move(d), file_, p);
}

Dataset Location::create_string_dataset(const std::string& name, uint64_t size, uint64_t chunk) {
    std::string p = child_path(name);
    if (has(name)) fail_at(file_, p, "cannot create dataset: it exists");
    hsize_t d = size, m = H5S_UNLIMITED, c = std::max<uint64_t>(chunk, 1);
    Handle space(H5Screate_simple(1, &d, &m), Handle::Kind::dataspace);
    Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), Handle::Kind::plist);
    H5Pset_chunk(dcpl.get(), 1, &c);
    Handle type = vlen_string_type();
    Handle lcpl = lcpl_intermediate();
    Handle ds(H5Dcreate2(id(), name.c_str(), type.get(), space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
              Handle::Kind::dataset);
    if (!ds.valid()) fail_at(file_, p, "cannot create string dataset");
    return Dataset(std::move(ds), file_, p);
}

Dataset Location::open_dataset(const std::string& name) const {
    std::string p = child_path(name);
    if (!has(name)) fail_at(file_, p, "no such dataset");
    Handle d(H5Dopen2(id(), name.c_str(), H5P_DEFAULT), Handle::Kind::dataset);
    if (!d.valid()) fail_at(file_, p, "cannot open dataset");
    return Dataset(std::move(d), file_, p);
}

// ---------------------------------------------------------------- File

File File::create(const std::string& path, Overwrite overwrite, hid fapl) {
    quiet_hdf5();
    std::error_code ec;
    if (overwrite == Overwrite::no && std::filesystem::exists(path, ec))
        fail("h5: ", path, ": exists; refusing to overwrite it (choose another output or allow overwriting)");
    auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty() && !std::filesystem::is_directory(parent, ec))
        fail("h5: ", path, ": cannot create file: directory ", parent.string(), " does not exist");
    unsigned flags = overwrite == Overwrite::yes ? H5F_ACC_TRUNC : H5F_ACC_EXCL;
    Handle f(H5Fcreate(path.c_str(), flags, H5P_DEFAULT, fapl), Handle::Kind::file);
    if (!f.valid()) fail_at(path, "", "cannot create file");
    File file(std::move(f), path, "/");
    return file;
}

File File::open(const std::string& path, Mode mode, hid fapl) {
    quiet_hdf5();
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) fail("h5: ", path, ": cannot open: no such file");
#if H5_VERSION_GE(1, 12, 0)
    htri_t is = H5Fis_accessible(path.c_str(), fapl);
#else
    htri_t is = H5Fis_hdf5(path.c_str());
#endif
    if (is == 0) fail_at(path, "", "cannot open: not an HDF5 file");
    Handle f(H5Fopen(path.c_str(), mode == Mode::read_only ? H5F_ACC_RDONLY : H5F_ACC_RDWR, fapl),
             Handle::Kind::file);
    if (!f.valid()) fail_at(path, "", "cannot open file ", mode == Mode::read_only ? "read-only" : "read-write");
    File file(std::move(f), path, "/");
    file.read_only_ = mode == Mode::read_only;
    return file;
}

void File::flush() {
    if (!valid()) fail("h5: ", file_, ": flush on a closed file");
    if (read_only_) return;
    if (H5Fflush(id(), H5F_SCOPE_GLOBAL) < 0) fail_at(file_, "", "cannot write the file to disk (disk full?)");
}

void File::close() {
    if (!valid()) return;
    if (!read_only_ && H5Fflush(id(), H5F_SCOPE_GLOBAL) < 0) {
        std::string cause = hdf5_cause();
        h_.reset();
        fail("h5: ", file_, ": cannot write the file to disk (disk full?)", cause.empty() ? "" : ": ", cause);
    }
    if (!h_.close()) fail_at(file_, "", "error closing the file");
}

// ---------------------------------------------------------------- Dataset

namespace {
Handle dataset_space(const Dataset& d) {
    Handle s(H5Dget_space(d.id()), Handle::Kind::dataspace);
    if (!s.valid()) fail_at(d.file_path(), d.path(), "cannot get the dataspace");
    return s;
}

// Selects offset/count in the dataset's file space after checking the ranges.
Handle select_block(const Dataset& d, const std::vector<uint64_t>& offset, const std::vector<uint64_t>& count) {
    Handle s = dataset_space(d);
    auto dims = space_dims(s.get(), false);
    if (dims.empty() && offset.empty() && count.empty()) {  // scalar dataset
        H5Sselect_all(s.get());
        return s;
    }
    if (offset.size() != dims.size() || count.size() != dims.size())
        fail_at(d.file_path(), d.path(), "hyperslab offset ", join_dims(offset), " count ", join_dims(count),
                " does not match the rank of dims ", join_dims(dims));
    for (size_t i = 0; i < dims.size(); ++i)
        if (offset[i] + count[i] > dims[i])
            fail_at(d.file_path(), d.path(), "hyperslab offset ", join_dims(offset), " count ", join_dims(count),
                    " lies outside dims ", join_dims(dims));
    auto ho = to_h(offset), hc = to_h(count);
    if (product(count) > 0 &&
        H5Sselect_hyperslab(s.get(), H5S_SELECT_SET, ho.data(), nullptr, hc.data(), nullptr) < 0)
        fail_at(d.file_path(), d.path(), "cannot select hyperslab");
    if (product(count) == 0) H5Sselect_none(s.get());
    return s;
}

Handle mem_space(const std::vector<uint64_t>& count) {
    if (count.empty()) return Handle(H5Screate(H5S_SCALAR), Handle::Kind::dataspace);
    auto hc = to_h(count);
    return Handle(H5Screate_simple(int(hc.size()), hc.data(), nullptr), Handle::Kind::dataspace);
}
}  // namespace

std::vector<uint64_t> Dataset::dims() const { return space_dims(dataset_space(*this).get(), false); }
std::vector<uint64_t> Dataset::max_dims() const { return space_dims(dataset_space(*this).get(), true); }
uint64_t Dataset::size() const { return product(dims()); }

bool Dataset::is_string() const {
    Handle t(H5Dget_type(id()), Handle::Kind::datatype);
    return H5Tget_class(t.get()) == H5T_STRING;
}

template <Number T>
void Dataset::write(const T* data, size_t n) {
    auto d = dims();
    write(data, n, std::vector<uint64_t>(d.size(), 0), d);
}

template <Number T>
void Dataset::write(const T* data, size_t n, const std::vector<uint64_t>& offset,
                    const std::vector<uint64_t>& count) {
    if (n != product(count))
        fail_at(file_, path_, "write of ", n, " values into a block of ", join_dims(count), " = ", product(count));
    Handle fs = select_block(*this, offset, count);
    Handle ms = mem_space(count);
    if (product(count) == 0) H5Sselect_none(ms.get());
    if (H5Dwrite(id(), native<T>(), ms.get(), fs.get(), H5P_DEFAULT, data) < 0)
        fail_at(file_, path_, "cannot write block at ", join_dims(offset), " count ", join_dims(count));
}

template <Number T>
std::vector<T> Dataset::read() const {
    auto d = dims();
    return read<T>(std::vector<uint64_t>(d.size(), 0), d);
}

template <Number T>
std::vector<T> Dataset::read(const std::vector<uint64_t>& offset, const std::vector<uint64_t>& count) const {
    Handle fs = select_block(*this, offset, count);
    Handle ms = mem_space(count);
    auto v = std::vector<T>(size_t(product(count)));
    if (v.empty()) return v;
    if (H5Dread(id(), native<T>(), ms.get(), fs.get(), H5P_DEFAULT, v.data()) < 0)
        fail_at(file_, path_, "cannot read block at ", join_dims(offset), " count ", join_dims(count));
    return v;
}

void Dataset::resize(const std::vector<uint64_t>& new_dims) {
    auto maxd = max_dims();
    if (new_dims.size() != maxd.size())
        fail_at(file_, path_, "resize to ", join_dims(new_dims), ": rank differs from ", join_dims(dims()));
    for (size_t i = 0; i < maxd.size(); ++i)
        if (maxd[i] != kUnlimited && new_dims[i] > maxd[i])
            fail_at(file_, path_, "resize to ", join_dims(new_dims), " exceeds max dims ", join_dims(maxd));
    auto h = to_h(new_dims);
    if (H5Dset_extent(id(), h.data()) < 0) fail_at(file_, path_, "cannot resize to ", join_dims(new_dims));
}

template <Number T>
uint64_t Dataset::append(const T* data, size_t n) {
    auto d = dims();
    if (d.empty()) fail_at(file_, path_, "cannot append to a scalar dataset");
    uint64_t rec = product(d, 1);
    if (rec == 0 || n % rec != 0)
        fail_at(file_, path_, "append of ", n, " values: not a whole number of records of ", rec);
    uint64_t first = d[0];
    std::vector<uint64_t> nd = d;
    nd[0] += n / rec;
    resize(nd);
    std::vector<uint64_t> off(d.size(), 0), cnt = d;
    off[0] = first;
    cnt[0] = n / rec;
    write(data, n, off, cnt);
    return first;
}

void Dataset::write_strings(const std::vector<std::string>& v, uint64_t offset) {
    if (!is_string()) fail_at(file_, path_, "write_strings on a numeric dataset");
    auto d = dims();
    if (d.size() != 1) fail_at(file_, path_, "write_strings needs a 1-D dataset");
    if (offset + v.size() > d[0]) resize({offset + v.size()});
    std::vector<const char*> ptrs(v.size());
    for (size_t i = 0; i < v.size(); ++i) ptrs[i] = v[i].c_str();
    Handle fs = select_block(*this, {offset}, {v.size()});
    Handle ms = mem_space({v.size()});
    if (v.empty()) return;
    Handle type = vlen_string_type();
    if (H5Dwrite(id(), type.get(), ms.get(), fs.get(), H5P_DEFAULT, ptrs.data()) < 0)
        fail_at(file_, path_, "cannot write ", v.size(), " strings at ", offset);
}

std::vector<std::string> Dataset::read_strings(uint64_t offset, std::optional<uint64_t> count) const {
    if (!is_string()) fail_at(file_, path_, "read_strings on a numeric dataset");
    auto d = dims();
    if (d.size() != 1) fail_at(file_, path_, "read_strings needs a 1-D dataset");
    uint64_t n = count ? *count : (offset <= d[0] ? d[0] - offset : 0);
    Handle fs = select_block(*this, {offset}, {n});
    if (n == 0) return {};
    Handle ms = mem_space({n});
    Handle ftype(H5Dget_type(id()), Handle::Kind::datatype);
    std::vector<std::string> out(n);
    if (H5Tis_variable_str(ftype.get()) > 0) {
        Handle type = vlen_string_type();
        std::vector<char*> ptrs(n, nullptr);
        if (H5Dread(id(), type.get(), ms.get(), fs.get(), H5P_DEFAULT, ptrs.data()) < 0)
            fail_at(file_, path_, "cannot read ", n, " strings at ", offset);
        for (size_t i = 0; i < n; ++i) out[i] = ptrs[i] ? ptrs[i] : "";
#if H5_VERSION_GE(1, 12, 0)
        H5Treclaim(type.get(), ms.get(), H5P_DEFAULT, ptrs.data());
#else
        H5Dvlen_reclaim(type.get(), ms.get(), H5P_DEFAULT, ptrs.data());
#endif
    } else {
        size_t w = H5Tget_size(ftype.get());
        Handle type(H5Tcopy(H5T_C_S1), Handle::Kind::datatype);
        H5Tset_size(type.get(), w);
        std::vector<char> buf(n * w);
        if (H5Dread(id(), type.get(), ms.get(), fs.get(), H5P_DEFAULT, buf.data()) < 0)
            fail_at(file_, path_, "cannot read ", n, " strings at ", offset);
        for (size_t i = 0; i < n; ++i) out[i] = std::string(buf.data() + i * w, strnlen(buf.data() + i * w, w));
    }
    return out;
}

uint64_t Dataset::append_strings(const std::vector<std::string>& v) {
    auto d = dims();
    if (d.size() != 1) fail_at(file_, path_, "append_strings needs a 1-D dataset");
    write_strings(v, d[0]);
    return d[0];
}

void Dataset::make_scale(const std::string& scale_name) {
    if (H5DSset_scale(id(), scale_name.empty() ? nullptr : scale_name.c_str()) < 0)
        fail_at(file_, path_, "cannot make it a dimension scale named '", scale_name, "'");
}

void Dataset::attach_scale(const Dataset& scale, unsigned dim) {
    if (dim >= rank())
        fail_at(file_, path_, "cannot attach scale ", scale.path(), " to dim ", dim, " of a rank-", rank(), " dataset");
    if (H5DSattach_scale(id(), scale.id(), dim) < 0)
        fail_at(file_, path_, "cannot attach scale ", scale.path(), " to dim ", dim);
}

bool Dataset::is_scale() const {
    htri_t r = H5DSis_scale(id());
    if (r < 0) fail_at(file_, path_, "cannot check for a dimension scale");
    return r > 0;
}

std::string Dataset::scale_name() const {
    ssize_t n = H5DSget_scale_name(id(), nullptr, 0);
    if (n <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return "";
    }
    std::string s(size_t(n) + 1, '\0');
    H5DSget_scale_name(id(), s.data(), s.size());
    s.resize(std::strlen(s.c_str()));
    return s;
}

namespace {
herr_t scale_cb(hid_t, unsigned, hid_t scale, void* out) {
    ssize_t n = H5DSget_scale_name(scale, nullptr, 0);
    std::string s;
    if (n > 0) {
        s.assign(size_t(n) + 1, '\0');
        H5DSget_scale_name(scale, s.data(), s.size());
        s.resize(std::strlen(s.c_str()));
    } else {
        H5Eclear2(H5E_DEFAULT);
    }
    static_cast<std::vector<std::string>*>(out)->push_back(s);
    return 0;
}
}  // namespace

std::vector<std::string> Dataset::attached_scale_names(unsigned dim) const {
    if (dim >= rank()) fail_at(file_, path_, "no dim ", dim, " in a rank-", rank(), " dataset");
    std::vector<std::string> names;
    int n = H5DSget_num_scales(id(), dim);
    if (n <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return names;
    }
    if (H5DSiterate_scales(id(), dim, nullptr, scale_cb, &names) < 0)
        fail_at(file_, path_, "cannot list the scales of dim ", dim);
    return names;
}

// ---------------------------------------------------------------- explicit instantiations

#define HS_H5_INSTANTIATE(T)                                                                                     \
    template void Object::set_attr<T>(const std::string&, T);                                                    \
    template void Object::set_attr<T>(const std::string&, const std::vector<T>&);                                \
    template T Object::attr<T>(const std::string&) const;                                                        \
    template std::vector<T> Object::attr_vector<T>(const std::string&) const;                                    \
    template Dataset Location::create_dataset<T>(const std::string&, const std::vector<uint64_t>&,               \
                                                 const DatasetOptions&);                                         \
    template void Dataset::write<T>(const T*, size_t);                                                           \
    template void Dataset::write<T>(const T*, size_t, const std::vector<uint64_t>&, const std::vector<uint64_t>&); \
    template std::vector<T> Dataset::read<T>() const;                                                            \
    template std::vector<T> Dataset::read<T>(const std::vector<uint64_t>&, const std::vector<uint64_t>&) const;  \
    template uint64_t Dataset::append<T>(const T*, size_t);

HS_H5_INSTANTIATE(float)
HS_H5_INSTANTIATE(double)
HS_H5_INSTANTIATE(int32_t)
HS_H5_INSTANTIATE(int64_t)
HS_H5_INSTANTIATE(uint8_t)
HS_H5_INSTANTIATE(uint64_t)
#undef HS_H5_INSTANTIATE

}  // namespace hs::h5
