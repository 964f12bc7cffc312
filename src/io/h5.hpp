// io/h5.hpp: a small RAII wrapper over the HDF5 C API for headsweep's result files.
//
// What it offers (and nothing else):
//   * File: create (refuses to replace an existing file unless Overwrite::yes), open read-write or read-only,
//     flush, close. Files, groups and datasets are move-only and close their HDF5 id with the right H5?close.
//   * Groups: create (intermediate groups too), open, "require" (open or create), has(path), children().
//   * Numeric datasets of float, double, int32, int64, uint8, uint64: any rank, optionally chunked, with a fill
//     value for unwritten cells, gzip + shuffle, and extendible dimensions (kUnlimited). Write and read all of
//     a dataset or a hyperslab (offset + count), resize(), append() records along dimension 0.
//   * Variable-length UTF-8 string datasets (1-D, extendible): write, read, append.
//   * Attributes on files, groups and datasets: strings (variable-length UTF-8, so that h5py reads str) and
//     numeric scalars or arrays; listing and existence checks.
//   * Dimension scales (hdf5_hl H5DS): make a dataset a named scale, attach it to a dimension of another
//     dataset, read the names back.
// HDF5's automatic error printing is turned off; every failure becomes hs::Error whose message names the file,
// the object path and the innermost HDF5 error ("h5: out.h5:/sweep/scores: cannot write hyperslab: ...").
// The file driver is the default POSIX one; parallel (MPI-IO) access can be had by passing a file access
// property list id (hid_t) that the caller made with H5Pset_fapl_mpio.
#pragma once

#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace hs::h5 {

using hid = int64_t;  // hid_t (static_assert'ed in h5.cpp), so that this header does not pull in hdf5.h / mpi.h

inline constexpr uint64_t kUnlimited = ~uint64_t(0);  // a max_dims entry for an extendible dimension

template <class T>
concept Number = std::same_as<T, float> || std::same_as<T, double> || std::same_as<T, int32_t> ||
                 std::same_as<T, int64_t> || std::same_as<T, uint8_t> || std::same_as<T, uint64_t>;

enum class Overwrite { no, yes };
enum class Mode { read_only, read_write };

// Owner of one HDF5 id; closes it with the H5?close that fits its kind. Move-only.
class Handle {
public:
    enum class Kind { file, group, dataset, datatype, dataspace, attribute, plist };
    Handle() = default;
    Handle(hid id, Kind kind) : id_(id), kind_(kind) {}
    ~Handle() { reset(); }
    Handle(Handle&& o) noexcept : id_(o.id_), kind_(o.kind_) { o.id_ = -1; }
    Handle& operator=(Handle&& o) noexcept;
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;

    hid get() const { return id_; }
    bool valid() const { return id_ >= 0; }
    void reset() noexcept;  // closes, ignoring errors (destructors cannot report them)
    bool close() noexcept;  // closes; false when HDF5 reported an error. The id is released either way.

private:
    hid id_ = -1;
    Kind kind_ = Kind::file;
};

// Creation options for numeric datasets.
struct DatasetOptions {
    std::vector<uint64_t> chunk;     // empty: contiguous, or an automatic chunk shape when one is needed
                                     // (extendible dims or compression)
    std::vector<uint64_t> max_dims;  // empty: fixed at the created dims; kUnlimited marks an extendible dim
    std::optional<double> fill;      // value that unwritten cells read as (converted to the element type)
    int gzip = 0;                    // deflate level 1..9; 0: no compression
    bool shuffle = false;            // byte shuffle before deflate (only with gzip)
};

// Something that carries attributes: a file (its root group), a group or a dataset.
class Object {
public:
    const std::string& file_path() const { return file_; }
    const std::string& path() const { return path_; }  // object path inside the file, "/" for the root
    hid id() const { return h_.get(); }
    bool valid() const { return h_.valid(); }

    bool has_attr(const std::string& name) const;
    std::vector<std::string> attr_names() const;
    void set_attr(const std::string& name, std::string_view value);  // replaces an existing attribute
    void set_attr(const std::string& name, const char* value) { set_attr(name, std::string_view(value)); }
    void set_attr(const std::string& name, const std::string& value) { set_attr(name, std::string_view(value)); }
    template <Number T>
    void set_attr(const std::string& name, T value);
    template <Number T>
    void set_attr(const std::string& name, const std::vector<T>& values);

    std::string attr_string(const std::string& name) const;  // fixed- or variable-length string attributes
    template <Number T>
    T attr(const std::string& name) const;  // a scalar (or 1-element) numeric attribute, converted to T
    template <Number T>
    std::vector<T> attr_vector(const std::string& name) const;

protected:
    Object() = default;
    Object(Handle h, std::string file, std::string path) : h_(std::move(h)), file_(std::move(file)), path_(std::move(path)) {}
    std::string child_path(const std::string& name) const;
    Handle h_;
    std::string file_;
    std::string path_;
};

class Group;
class Dataset;

// A file or a group: a place to create groups and datasets. Names may be relative paths ("a/b/c").
class Location : public Object {
public:
    Group create_group(const std::string& name);   // creates missing intermediate groups; fails if it exists
    Group open_group(const std::string& name) const;
    Group require_group(const std::string& name);  // open, or create when missing
    void unlink(const std::string& name);          // remove a link (group or dataset); the space is not reclaimed
    bool has(const std::string& name) const;       // any link (group or dataset) at that relative path
    bool has_group(const std::string& name) const; // a group at that relative path (false: absent or a dataset)
    std::vector<std::string> children() const;     // link names directly under this location, sorted

    template <Number T>
    Dataset create_dataset(const std::string& name, const std::vector<uint64_t>& dims,
                           const DatasetOptions& opt = {});
    // 1-D variable-length UTF-8 strings, initially `size` empty strings, extendible, chunked.
    Dataset create_string_dataset(const std::string& name, uint64_t size = 0, uint64_t chunk = 256);
    Dataset open_dataset(const std::string& name) const;

protected:
    using Object::Object;
};

class Group : public Location {
public:
    Group() = default;

private:
    friend class Location;
    using Location::Location;
};

class File : public Location {
public:
    File() = default;

    // fapl: a file access property list id (0 = H5P_DEFAULT), e.g. one set up for MPI-IO by the caller.
    static File create(const std::string& path, Overwrite overwrite = Overwrite::no, hid fapl = 0);
    static File open(const std::string& path, Mode mode = Mode::read_only, hid fapl = 0);

    void flush();  // writes everything buffered to disk; throws on failure (e.g. a full disk)
    void close();  // flush + close; throws on failure. The destructor closes too, but cannot report errors.
    bool read_only() const { return read_only_; }

private:
    using Location::Location;
    bool read_only_ = false;
};

class Dataset : public Object {
public:
    Dataset() = default;

    std::vector<uint64_t> dims() const;
    std::vector<uint64_t> max_dims() const;
    size_t rank() const { return dims().size(); }
    uint64_t size() const;  // number of elements
    bool is_string() const;

    // Whole dataset: n must equal size().
    template <Number T>
    void write(const T* data, size_t n);
    template <Number T>
    void write(const std::vector<T>& v) { write(v.data(), v.size()); }
    template <Number T>
    std::vector<T> read() const;

    // Hyperslab: a block of `count` elements per dimension starting at `offset`; n must equal prod(count).
    template <Number T>
    void write(const T* data, size_t n, const std::vector<uint64_t>& offset, const std::vector<uint64_t>& count);
    template <Number T>
    void write(const std::vector<T>& v, const std::vector<uint64_t>& offset, const std::vector<uint64_t>& count) {
        write(v.data(), v.size(), offset, count);
    }
    template <Number T>
    std::vector<T> read(const std::vector<uint64_t>& offset, const std::vector<uint64_t>& count) const;

    void resize(const std::vector<uint64_t>& new_dims);  // needs a chunked dataset and max_dims that allow it
    // Appends n / prod(dims[1:]) records along dimension 0; returns the index of the first new record.
    template <Number T>
    uint64_t append(const T* data, size_t n);
    template <Number T>
    uint64_t append(const std::vector<T>& v) { return append(v.data(), v.size()); }

    // String datasets (create_string_dataset).
    void write_strings(const std::vector<std::string>& v, uint64_t offset = 0);  // grows the dataset if needed
    std::vector<std::string> read_strings(uint64_t offset = 0, std::optional<uint64_t> count = {}) const;
    uint64_t append_strings(const std::vector<std::string>& v);

    // Dimension scales.
    void make_scale(const std::string& scale_name);
    void attach_scale(const Dataset& scale, unsigned dim);
    bool is_scale() const;
    std::string scale_name() const;  // "" when it is no scale or has no name
    std::vector<std::string> attached_scale_names(unsigned dim) const;

private:
    friend class Location;
    Dataset(Handle h, std::string file, std::string path) : Object(std::move(h), std::move(file), std::move(path)) {}
};

}  // namespace hs::h5
