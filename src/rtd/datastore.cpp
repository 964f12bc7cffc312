#include "rtd/datastore.hpp"

#include <cmath>
#include <filesystem>

#include "io/h5.hpp"
#include "util/error.hpp"
#include "util/sha256.hpp"

namespace hs::rtd {

namespace {

const char* kFormat = "headsweep-rtd-datastore";

std::string bad(const std::string& path) { return "RTD datastore " + path + ": "; }

void write_info(h5::File& f, const DatastoreInfo& in) {
    f.set_attr("format", kFormat);
    f.set_attr("format_version", kFormatVersion);
    f.set_attr("task", in.task);
    f.set_attr("sources", in.sources);
    f.set_attr("prompt_template", in.prompt_template);
    f.set_attr("model_spec", in.model_spec);
    f.set_attr("model_sha256", in.model_sha256);
    f.set_attr("d", in.d);
    f.set_attr("n_head", in.n_head);
    f.set_attr("head_dim", in.head_dim);
    f.set_attr("n_labels", in.n_labels);
    f.set_attr("cap", in.cap);
    f.set_attr("planned", in.planned);
    f.set_attr("items_used", in.items_used);
    f.set_attr("items_skipped", in.items_skipped);
    f.set_attr("rotations", int32_t(in.rotations));
    f.set_attr("build_settings", in.build_settings);
    f.set_attr("tuned_T", in.tuned_T);
    f.set_attr("tuned_T_mh", in.tuned_T_mh);
    f.set_attr("tune_report", in.tune_report);
    h5::Dataset names = f.create_string_dataset("label_names", 0, 16);
    names.write_strings(in.label_names);
}

DatastoreInfo read_info(const h5::File& f, const std::string& path) {
    DatastoreInfo in;
    try {
        check(f.has_attr("format") && f.attr_string("format") == kFormat, "not an RTD datastore (no format = ",
              kFormat, ")");
        const int32_t v = f.attr<int32_t>("format_version");
        check(v == kFormatVersion, "format version ", v, " (this program reads ", kFormatVersion, ")");
        in.task = f.attr_string("task");
        in.sources = f.attr_string("sources");
        in.prompt_template = f.attr_string("prompt_template");
        in.model_spec = f.attr_string("model_spec");
        in.model_sha256 = f.attr_string("model_sha256");
        in.d = f.attr<int32_t>("d");
        in.n_head = f.attr<int32_t>("n_head");
        in.head_dim = f.attr<int32_t>("head_dim");
        in.n_labels = f.attr<int32_t>("n_labels");
        in.cap = f.attr<int64_t>("cap");
        in.planned = f.attr<int64_t>("planned");
        in.items_used = f.attr<int64_t>("items_used");
        in.items_skipped = f.attr<int64_t>("items_skipped");
        in.rotations = f.attr<int32_t>("rotations") != 0;
        in.build_settings = f.attr_string("build_settings");
        in.tuned_T = f.attr<double>("tuned_T");
        in.tuned_T_mh = f.attr<double>("tuned_T_mh");
        in.tune_report = f.attr_string("tune_report");
        in.label_names = f.open_dataset("label_names").read_strings();
    } catch (const Error& e) {
        fail(bad(path), e.what());
    }
    check_info(in, path);
    return in;
}

h5::File open_checked(const std::string& path, h5::Mode mode) {
    check(std::filesystem::exists(path), bad(path), "no such file");
    check(std::filesystem::file_size(path) > 0, bad(path), "empty file (0 bytes)");
    try {
        return h5::File::open(path, mode);
    } catch (const Error& e) {
        fail(bad(path), "cannot open as HDF5 (corrupt or truncated file?): ", e.what());
    }
}

// The same as the file's info on every field a resumed build must agree on (tuning is free).
std::string differing(const DatastoreInfo& a, const DatastoreInfo& b) {
    std::string d;
    auto cmp = [&](const char* name, const auto& x, const auto& y) {
        if (!(x == y)) d += std::string(d.empty() ? "" : ", ") + name;
    };
    cmp("task", a.task, b.task);
    cmp("sources", a.sources, b.sources);
    cmp("prompt_template", a.prompt_template, b.prompt_template);
    cmp("model_sha256", a.model_sha256, b.model_sha256);
    cmp("d", a.d, b.d);
    cmp("n_head", a.n_head, b.n_head);
    cmp("n_labels", a.n_labels, b.n_labels);
    cmp("label_names", a.label_names, b.label_names);
    cmp("cap", a.cap, b.cap);
    cmp("planned", a.planned, b.planned);
    cmp("rotations", a.rotations, b.rotations);
    cmp("build_settings", a.build_settings, b.build_settings);
    return d;
}

}  // namespace

void check_info(const DatastoreInfo& in, const std::string& where) {
    check(in.d > 0, bad(where), "key dimension d = ", in.d, " must be > 0");
    check(in.n_head > 0 && in.head_dim > 0 && int64_t(in.n_head) * in.head_dim == in.d, bad(where),
          "head partition n_head = ", in.n_head, " x head_dim = ", in.head_dim, " != d = ", in.d);
    check(in.n_labels >= 2, bad(where), "n_labels = ", in.n_labels, " must be >= 2");
    check(in.label_names.size() == size_t(in.n_labels), bad(where), in.label_names.size(), " label names for ",
          in.n_labels, " labels");
    check(in.cap > 0, bad(where), "cap = ", in.cap, " must be > 0");
    check(!in.model_sha256.empty(), bad(where), "no model_sha256");
}

std::string model_identity(const std::string& base_sha, const std::string& composed_config) {
    if (composed_config.empty()) return base_sha;
    return sha256_hex(base_sha + "|" + composed_config);
}

struct DatastoreWriter::Impl {
    h5::File file;
    h5::Dataset keys, labels, items;
};

DatastoreWriter::DatastoreWriter(const std::string& path, const DatastoreInfo& info, bool resume, bool overwrite)
    : impl_(new Impl), path_(path), d_(info.d), n_labels_(info.n_labels) {
    try {
        check_info(info, path);
        if (resume && std::filesystem::exists(path)) {
            impl_->file = open_checked(path, h5::Mode::read_write);
            const DatastoreInfo old = read_info(impl_->file, path);
            const std::string diff = differing(old, info);
            check(diff.empty(), bad(path), "cannot resume: the file was built with other settings (", diff, ")");
            impl_->keys = impl_->file.open_dataset("keys");
            impl_->labels = impl_->file.open_dataset("labels");
            impl_->items = impl_->file.open_dataset("items");
            written_ = impl_->file.attr<int64_t>("n_written");
            check(written_ >= 0 && int64_t(impl_->labels.dims()[0]) >= written_ &&
                      int64_t(impl_->keys.dims()[0]) >= written_ && int64_t(impl_->items.dims()[0]) >= written_,
                  bad(path), "n_written = ", written_, " exceeds the stored entries (truncated file?)");
            // Entries past n_written (a crash between append and the attribute update) are dropped.
            impl_->keys.resize({uint64_t(written_), uint64_t(d_)});
            impl_->labels.resize({uint64_t(written_)});
            impl_->items.resize({uint64_t(written_)});
            return;
        }
        impl_->file = h5::File::create(path, overwrite ? h5::Overwrite::yes : h5::Overwrite::no);
        write_info(impl_->file, info);
        h5::DatasetOptions o;
        o.max_dims = {h5::kUnlimited, uint64_t(d_)};
        o.chunk = {64, uint64_t(d_)};
        impl_->keys = impl_->file.create_dataset<float>("keys", {0, uint64_t(d_)}, o);
        h5::DatasetOptions o1;
        o1.max_dims = {h5::kUnlimited};
        o1.chunk = {4096};
        impl_->labels = impl_->file.create_dataset<int32_t>("labels", {0}, o1);
        impl_->items = impl_->file.create_dataset<int32_t>("items", {0}, o1);
        impl_->file.set_attr("n_written", int64_t(0));
        impl_->file.set_attr("complete", int32_t(0));
        impl_->file.flush();
    } catch (...) {
        delete impl_;
        throw;
    }
}

DatastoreWriter::~DatastoreWriter() { delete impl_; }

void DatastoreWriter::append(const float* keys, const int32_t* labels, const int32_t* items, int64_t n) {
    if (n <= 0) return;
    for (int64_t i = 0; i < n; ++i)
        check(labels[i] >= 0 && labels[i] < n_labels_, bad(path_), "label ", labels[i], " out of range 0..",
              n_labels_ - 1);
    impl_->keys.append(keys, size_t(n) * size_t(d_));
    impl_->labels.append(labels, size_t(n));
    impl_->items.append(items, size_t(n));
    written_ += n;
    impl_->file.set_attr("n_written", written_);
    impl_->file.flush();
}

void DatastoreWriter::truncate(int64_t n) {
    check(n >= 0 && n <= written_, bad(path_), "cannot truncate to ", n, " of ", written_, " entries");
    impl_->keys.resize({uint64_t(n), uint64_t(d_)});
    impl_->labels.resize({uint64_t(n)});
    impl_->items.resize({uint64_t(n)});
    written_ = n;
    impl_->file.set_attr("n_written", written_);
    impl_->file.flush();
}

void DatastoreWriter::finish() {
    impl_->file.set_attr("complete", int32_t(1));
    impl_->file.close();
}

void write_datastore(const std::string& path, const Datastore& ds, bool overwrite) {
    DatastoreWriter w(path, ds.info, false, overwrite);
    check(ds.keys.size() == size_t(ds.size()) * size_t(ds.info.d) && ds.items.size() == ds.labels.size(), bad(path),
          "keys/labels/items sizes disagree");
    w.append(ds.keys.data(), ds.labels.data(), ds.items.data(), ds.size());
    w.finish();
    if (ds.info.tuned_T > 0 || ds.info.tuned_T_mh > 0) write_tuned(path, ds.info.tuned_T, ds.info.tuned_T_mh, ds.info.tune_report);
}

DatastoreInfo read_datastore_info(const std::string& path) {
    h5::File f = open_checked(path, h5::Mode::read_only);
    return read_info(f, path);
}

Datastore read_datastore(const std::string& path) {
    h5::File f = open_checked(path, h5::Mode::read_only);
    Datastore ds;
    ds.info = read_info(f, path);
    try {
        const int64_t n = f.attr<int64_t>("n_written");
        check(f.attr<int32_t>("complete") == 1, "incomplete build (", n, " of ", ds.info.planned,
              " entries written; resume it with headsweep datastore build --resume)");
        check(n > 0, "empty datastore (0 entries)");
        const h5::Dataset k = f.open_dataset("keys"), l = f.open_dataset("labels"), it = f.open_dataset("items");
        const auto kd = k.dims();
        check(kd.size() == 2 && int64_t(kd[0]) == n && int64_t(kd[1]) == ds.info.d, "keys have shape [",
              kd.size() > 0 ? kd[0] : 0, ", ", kd.size() > 1 ? kd[1] : 0, "], expected [", n, ", ", ds.info.d, "]");
        check(int64_t(l.size()) == n && int64_t(it.size()) == n, "labels/items have ", l.size(), "/", it.size(),
              " entries, expected ", n);
        ds.keys = k.read<float>();
        ds.labels = l.read<int32_t>();
        ds.items = it.read<int32_t>();
    } catch (const Error& e) {
        const std::string m = e.what();
        fail(m.rfind(bad(path), 0) == 0 ? m : bad(path) + m);
    }
    for (size_t i = 0; i < ds.labels.size(); ++i)
        check(ds.labels[i] >= 0 && ds.labels[i] < ds.info.n_labels, bad(path), "label ", ds.labels[i], " of entry ",
              i, " is out of range 0..", ds.info.n_labels - 1);
    for (size_t i = 0; i < ds.keys.size(); ++i)
        check(std::isfinite(ds.keys[i]), bad(path), "key of entry ", i / size_t(ds.info.d), " is not finite");
    return ds;
}

void check_compatible(const Datastore& ds, const std::string& path, const std::string& model_sha256, int32_t d,
                      int32_t n_labels, const std::string& what, const std::string& model_spec) {
    check(ds.info.d == d, bad(path), "keys have dimension ", ds.info.d, " but the model's hidden size is ", d,
          " (a datastore of another model: ", ds.info.model_spec, ")");
    check(ds.info.model_sha256 == model_sha256, bad(path), "built by another model (sha256 ",
          ds.info.model_sha256.substr(0, 16), "... from ", ds.info.model_spec, "; this model is ",
          model_sha256.substr(0, 16), "...", model_spec.empty() ? "" : " from " + model_spec, ")");
    check(ds.info.n_labels == n_labels, bad(path), what, " has ", n_labels, " choices but the datastore has ",
          ds.info.n_labels, " labels");
}

void write_tuned(const std::string& path, double T, double T_mh, const std::string& report) {
    h5::File f = open_checked(path, h5::Mode::read_write);
    read_info(f, path);
    f.set_attr("tuned_T", T);
    f.set_attr("tuned_T_mh", T_mh);
    f.set_attr("tune_report", report);
    f.close();
}

}  // namespace hs::rtd
