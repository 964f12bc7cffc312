// Tests for io/h5: round trips of every supported type and shape, fill values, hyperslabs, extendible datasets,
// strings, attributes, dimension scales (checked with h5py), and the errors for bad paths and a full disk.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "temp_dir.hpp"
#include "test_model_path.hpp"
#include "io/h5.hpp"
#include "util/error.hpp"

namespace fs = std::filesystem;
using namespace hs::h5;

namespace {


struct CmdResult {
    int status;
    std::string out;
};

CmdResult run(const std::string& cmd) {
    CmdResult r{-1, ""};
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return r;
    std::array<char, 4096> buf{};
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    r.status = ::pclose(p);
    return r;
}

template <typename T>
void round_trip_type(File& f, const std::string& name) {
    std::vector<T> v(2 * 3 * 4);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>(i * 3 + 1);
    {
        auto d = f.create_dataset<T>(name, {2, 3, 4});
        d.write(v);
        CHECK(d.dims() == std::vector<uint64_t>{2, 3, 4});
        CHECK(d.size() == 24);
        CHECK(d.rank() == 3);
        CHECK_FALSE(d.is_string());
    }
    CHECK(f.open_dataset(name).read<T>() == v);
}

}  // namespace

TEST_CASE("h5 numeric datasets round-trip for every element type", "[h5]") {
    TempDir tmp{"h5"};
    const auto path = tmp.file("types.h5");
    {
        auto f = File::create(path);
        round_trip_type<float>(f, "f32");
        round_trip_type<double>(f, "f64");
        round_trip_type<int32_t>(f, "i32");
        round_trip_type<int64_t>(f, "i64");
        round_trip_type<uint8_t>(f, "u8");
        round_trip_type<uint64_t>(f, "u64");
        auto s = f.create_dataset<double>("scalar", {});
        double pi = 3.25;
        s.write(&pi, 1);
        f.close();
        CHECK_FALSE(f.valid());
    }
    auto f = File::open(path);
    CHECK(f.read_only());
    CHECK(f.open_dataset("f32").read<float>()[5] == 16.0f);
    CHECK(f.open_dataset("i64").read<int64_t>().back() == 70);
    CHECK(f.open_dataset("scalar").read<double>() == std::vector<double>{3.25});
    CHECK(f.open_dataset("scalar").rank() == 0);
    // HDF5 converts between numeric types on read.
    CHECK(f.open_dataset("u8").read<double>()[2] == 7.0);
    CHECK(f.children() == std::vector<std::string>{"f32", "f64", "i32", "i64", "scalar", "u64", "u8"});
}

TEST_CASE("h5 fill value shows in unwritten cells, hyperslabs write and read blocks", "[h5]") {
    TempDir tmp{"h5"};
    auto f = File::create(tmp.file("fill.h5"));
    DatasetOptions opt;
    opt.fill = -1.5;
    opt.chunk = {2, 2};
    auto d = f.create_dataset<float>("grid", {4, 5}, opt);

    CHECK(d.read<float>() == std::vector<float>(20, -1.5f));
    d.write(std::vector<float>{1, 2, 3, 4, 5, 6}, {1, 2}, {2, 3});  // rows 1-2, cols 2-4
    auto all = d.read<float>();
    for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 5; ++c) {
            INFO("cell " << r << "," << c);
            bool inside = r >= 1 && r <= 2 && c >= 2;
            float want = inside ? float((r - 1) * 3 + (c - 2) + 1) : -1.5f;
            CHECK(all[r * 5 + c] == want);
        }
    CHECK(d.read<float>({2, 3}, {2, 2}) == std::vector<float>{5, 6, -1.5f, -1.5f});

    // A contiguous dataset with a fill value, and an integer fill value.
    DatasetOptions iopt;
    iopt.fill = 7;
    auto di = f.create_dataset<int32_t>("ints", {6}, iopt);
    di.write(std::vector<int32_t>{1, 2}, {4}, {2});
    CHECK(di.read<int32_t>() == std::vector<int32_t>{7, 7, 7, 7, 1, 2});

    // Wrong sizes and out-of-range blocks are errors that name the dataset.
    CHECK_THROWS_WITH(d.write(std::vector<float>{1, 2, 3}, {0, 0}, {2, 2}),
                      Catch::Contains("fill.h5:/grid") && Catch::Contains("write of 3 values"));
    CHECK_THROWS_WITH(d.read<float>({3, 0}, {2, 1}), Catch::Contains("/grid") && Catch::Contains("outside"));
    CHECK_THROWS_WITH(d.write(std::vector<float>(19)), Catch::Contains("/grid"));
}

TEST_CASE("h5 gzip + shuffle datasets round-trip", "[h5]") {
    TempDir tmp{"h5"};
    const auto path = tmp.file("gz.h5");
    std::vector<double> v(10000);
    for (size_t i = 0; i < v.size(); ++i) v[i] = double(i % 17) * 0.5;
    {
        auto f = File::create(path);
        DatasetOptions opt;
        opt.gzip = 6;
        opt.shuffle = true;
        f.create_dataset<double>("z", {100, 100}, opt).write(v);
        CHECK_THROWS_AS(f.create_dataset<double>("bad", {4}, DatasetOptions{.gzip = 12}), hs::Error);
    }
    CHECK(File::open(path).open_dataset("z").read<double>() == v);
    CHECK(fs::file_size(path) < v.size() * sizeof(double) / 4);
}

TEST_CASE("h5 extendible datasets: append records and resize", "[h5]") {
    TempDir tmp{"h5"};
    const auto path = tmp.file("ext.h5");
    {
        auto f = File::create(path);
        DatasetOptions opt;
        opt.max_dims = {kUnlimited};
        auto d = f.create_dataset<int64_t>("log/steps", {0}, opt);
        CHECK(d.append(std::vector<int64_t>{10, 11}) == 0);
        CHECK(d.append(std::vector<int64_t>{12}) == 2);
        CHECK(d.dims() == std::vector<uint64_t>{3});
        CHECK(d.max_dims() == std::vector<uint64_t>{kUnlimited});

        DatasetOptions ropt;
        ropt.max_dims = {kUnlimited, 3};
        ropt.fill = 0;
        auto rec = f.create_dataset<float>("log/records", {0, 3}, ropt);
        rec.append(std::vector<float>{1, 2, 3, 4, 5, 6});
        rec.append(std::vector<float>{7, 8, 9});
        CHECK(rec.dims() == std::vector<uint64_t>{3, 3});
        CHECK_THROWS_WITH(rec.append(std::vector<float>{1, 2}), Catch::Contains("whole number of records"));
        rec.resize({5, 3});
        CHECK(rec.read<float>({3, 0}, {2, 3}) == std::vector<float>(6, 0.0f));
        CHECK_THROWS_WITH(rec.resize({5, 4}), Catch::Contains("exceeds max dims") && Catch::Contains("/log/records"));

        auto fixed = f.create_dataset<float>("fixed", {3});
        CHECK_THROWS_AS(fixed.append(std::vector<float>{1}), hs::Error);
    }
    auto f = File::open(path, Mode::read_write);
    auto d = f.open_dataset("/log/steps");
    d.append(std::vector<int64_t>{13});
    CHECK(d.read<int64_t>() == std::vector<int64_t>{10, 11, 12, 13});
    CHECK(f.open_dataset("log/records").read<float>({0, 0}, {3, 3}) ==
          std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9});
}

TEST_CASE("h5 variable-length string datasets", "[h5]") {
    TempDir tmp{"h5"};
    const auto path = tmp.file("str.h5");
    const std::vector<std::string> first{"alpha", "", "ünïcødé ✓", std::string(5000, 'x')};
    {
        auto f = File::create(path);
        auto d = f.create_string_dataset("eval/prompts");
        CHECK(d.is_string());
        d.write_strings(first);
        CHECK(d.append_strings({"tail"}) == 4);
        d.write_strings({"replaced"}, 1);
        CHECK_THROWS_AS(d.read<float>(), hs::Error);
        auto pre = f.create_string_dataset("pre", 3);
        CHECK(pre.read_strings() == std::vector<std::string>{"", "", ""});
    }
    auto f = File::open(path);
    auto got = f.open_dataset("eval/prompts").read_strings();
    REQUIRE(got.size() == 5);
    CHECK(got[0] == "alpha");
    CHECK(got[1] == "replaced");
    CHECK(got[2] == "ünïcødé ✓");
    CHECK(got[3] == std::string(5000, 'x'));
    CHECK(got[4] == "tail");
    CHECK(f.open_dataset("eval/prompts").read_strings(2, 2) == std::vector<std::string>{"ünïcødé ✓", std::string(5000, 'x')});
}

TEST_CASE("h5 attributes on files, groups and datasets", "[h5]") {
    TempDir tmp{"h5"};
    const auto path = tmp.file("attrs.h5");
    {
        auto f = File::create(path);
        f.set_attr("model", "SmolLM2-135M-Instruct.Q4_1.gguf");
        f.set_attr("n_layers", int32_t(30));
        f.set_attr("seed", uint64_t(1234567890123ULL));
        auto g = f.create_group("sweep/layer0");
        g.set_attr("scale", 0.5);
        g.set_attr("heads", std::vector<int64_t>{0, 3, 8});
        auto d = g.create_dataset<float>("scores", {2});
        d.set_attr("units", std::string("nats"));
        d.set_attr("ratio", 1.25f);
        d.set_attr("flags", std::vector<uint8_t>{1, 0, 1});
        d.set_attr("units", "bits");  // replace
        d.set_attr("empty", std::vector<double>{});
        CHECK(d.has_attr("units"));
        CHECK_FALSE(d.has_attr("nope"));
    }
    auto f = File::open(path);
    CHECK(f.attr_string("model") == "SmolLM2-135M-Instruct.Q4_1.gguf");
    CHECK(f.attr<int32_t>("n_layers") == 30);
    CHECK(f.attr<int64_t>("n_layers") == 30);
    CHECK(f.attr<uint64_t>("seed") == 1234567890123ULL);
    auto g = f.open_group("sweep/layer0");
    CHECK(g.path() == "/sweep/layer0");
    CHECK(g.attr<double>("scale") == 0.5);
    CHECK(g.attr_vector<int64_t>("heads") == std::vector<int64_t>{0, 3, 8});
    auto d = g.open_dataset("scores");
    CHECK(d.path() == "/sweep/layer0/scores");
    CHECK(d.attr_string("units") == "bits");
    CHECK(d.attr<float>("ratio") == 1.25f);
    CHECK(d.attr_vector<uint8_t>("flags") == std::vector<uint8_t>{1, 0, 1});
    CHECK(d.attr_vector<double>("empty").empty());
    CHECK(d.attr_names() == std::vector<std::string>{"empty", "flags", "ratio", "units"});
    CHECK_THROWS_WITH(d.attr_string("missing"),
                      Catch::Contains("attrs.h5:/sweep/layer0/scores") && Catch::Contains("missing"));
    CHECK_THROWS_WITH(g.attr<double>("heads"), Catch::Contains("expected 1"));
    CHECK_THROWS_WITH(d.attr_string("ratio"), Catch::Contains("not a string"));
}

TEST_CASE("h5py's fixed-length strings that fill their size are read whole", "[h5]") {
    // tools/gen_reference_fixtures.py writes numpy.bytes_ attributes: null-padded, exactly as long as the text, no
    // terminator. A null-terminated read of the same size used to drop the last character ("float3").
    auto f = File::open(fixtures_dir() + "/reference/smollm2_hf_logits.h5");
    CHECK(f.attr_string("dtype") == "float32");
    CHECK(f.attr_string("full_rows_file") == "smollm2_hf_full_rows.h5");
    CHECK(f.open_group("prompts/0").attr_string("name") == "short_en");
}

TEST_CASE("h5 groups: nested creation, has, require, errors", "[h5]") {
    TempDir tmp{"h5"};
    auto f = File::create(tmp.file("groups.h5"));
    auto g = f.create_group("a/b/c");
    CHECK(f.has("a"));
    CHECK(f.has("a/b/c"));
    CHECK(f.has("/a/b"));
    CHECK_FALSE(f.has("a/x/c"));
    CHECK_FALSE(f.has("zzz"));
    CHECK(f.has_group("a/b"));
    CHECK_FALSE(f.has_group("zzz"));
    auto b = f.open_group("a/b");
    CHECK(b.children() == std::vector<std::string>{"c"});
    auto again = f.require_group("a/b/c");
    CHECK(again.path() == "/a/b/c");
    f.require_group("a/b/d");
    CHECK(b.children() == std::vector<std::string>{"c", "d"});
    CHECK_THROWS_WITH(f.create_group("a/b"), Catch::Contains("groups.h5:/a/b") && Catch::Contains("exists"));
    CHECK_THROWS_WITH(f.open_group("nope"), Catch::Contains("groups.h5:/nope"));
    CHECK_THROWS_WITH(f.open_dataset("a/b/missing"), Catch::Contains("/a/b/missing"));
    f.create_dataset<float>("a/data", {1});
    CHECK_THROWS_WITH(f.create_dataset<float>("a/data", {1}), Catch::Contains("/a/data"));
}

TEST_CASE("h5 dimension scales are visible to h5py", "[h5]") {
    TempDir tmp{"h5"};
    const auto path = tmp.file("scales.h5");
    {
        auto f = File::create(path);
        auto layer = f.create_dataset<int32_t>("layer", {3});
        layer.write(std::vector<int32_t>{0, 1, 2});
        layer.make_scale("layer");
        auto head = f.create_dataset<int32_t>("head", {4});
        head.write(std::vector<int32_t>{0, 1, 2, 3});
        head.make_scale("head");
        auto score = f.create_dataset<double>("score", {3, 4});
        score.attach_scale(layer, 0);
        score.attach_scale(head, 1);
        CHECK(layer.is_scale());
        CHECK_FALSE(score.is_scale());
        CHECK(head.scale_name() == "head");
        CHECK(score.scale_name().empty());
        CHECK(score.attached_scale_names(0) == std::vector<std::string>{"layer"});
        CHECK(score.attached_scale_names(1) == std::vector<std::string>{"head"});
        CHECK_THROWS_AS(score.attach_scale(head, 2), hs::Error);
    }
    {
        auto f = File::open(path);
        CHECK(f.open_dataset("score").attached_scale_names(1) == std::vector<std::string>{"head"});
    }
    const std::string py = "/usr/bin/python3";
    auto probe = run(py + " -c 'import h5py'");
    if (probe.status != 0)
        FAIL("python3-h5py is not available to " << py << " (apt-get install python3-h5py): " << probe.out);
    auto r = run(py + " -c \"import h5py; f = h5py.File('" + path +
                 "', 'r'); d = f['score']; "
                 "print(list(d.dims[0].keys()), list(d.dims[1].keys()), [s.name for s in d.dims[0].values()], "
                 "h5py.h5ds.is_scale(f['head'].id))\"");
    INFO(r.out);
    REQUIRE(r.status == 0);
    CHECK(r.out == "['layer'] ['head'] ['/layer'] True\n");
}

TEST_CASE("h5 strings and attributes read back in h5py as str", "[h5]") {
    TempDir tmp{"h5"};
    const auto path = tmp.file("py.h5");
    {
        auto f = File::create(path);
        f.set_attr("model", "smol");
        f.create_string_dataset("s").write_strings({"a", "bé"});
    }
    auto r = run("/usr/bin/python3 -c \"import h5py; f = h5py.File('" + path +
                 "', 'r'); print(type(f.attrs['model']).__name__, f.attrs['model'], "
                 "[x.decode() for x in f['s'][:]])\"");
    INFO(r.out);
    REQUIRE(r.status == 0);
    CHECK(r.out == "str smol ['a', 'bé']\n");
}

TEST_CASE("h5 refuses to overwrite unless asked, reports bad paths", "[h5]") {
    TempDir tmp{"h5"};
    const auto path = tmp.file("once.h5");
    {
        auto f = File::create(path);
        f.set_attr("v", int32_t(1));
    }
    CHECK_THROWS_WITH(File::create(path), Catch::Contains(path) && Catch::Contains("refusing to overwrite"));
    CHECK(File::open(path).attr<int32_t>("v") == 1);  // untouched
    {
        auto f = File::create(path, Overwrite::yes);
        CHECK_FALSE(f.has_attr("v"));
    }

    CHECK_THROWS_WITH(File::open(tmp.file("missing.h5")), Catch::Contains("missing.h5") && Catch::Contains("no such file"));
    CHECK_THROWS_WITH(File::create("/nonexistent-dir-headsweep/sub/out.h5"),
                      Catch::Contains("/nonexistent-dir-headsweep/sub/out.h5"));
    // /proc refuses new files even for root.
    CHECK_THROWS_WITH(File::create("/proc/headsweep_test.h5"), Catch::Contains("/proc/headsweep_test.h5"));

    const auto text = tmp.file("not_hdf5.h5");
    std::ofstream(text) << "hello";
    CHECK_THROWS_WITH(File::open(text), Catch::Contains("not_hdf5.h5") && Catch::Contains("not an HDF5 file"));

    auto ro = File::open(path);
    CHECK_THROWS_WITH(ro.create_group("g"), Catch::Contains("once.h5:/g"));
    CHECK_THROWS_AS(ro.set_attr("x", 1.0), hs::Error);
}

TEST_CASE("h5 on a full disk fails with a clear error", "[h5]") {
    TempDir tmp{"h5"};
    const auto mnt = tmp.dir / "tiny";
    fs::create_directories(mnt);
    auto m = run("mount -t tmpfs -o size=64k headsweep_test " + mnt.string());
    if (m.status != 0) {
        WARN("skipped: cannot mount a 64 KiB tmpfs (" << m.out << ")");
        return;
    }
    struct Unmount {
        std::string dir;
        ~Unmount() { run("umount " + dir); }
    } unmount{mnt.string()};

    const auto path = (mnt / "big.h5").string();
    std::vector<double> v(1 << 17, 1.0);  // 1 MiB of data on a 64 KiB file system
    std::string msg;
    try {
        auto f = File::create(path);
        auto d = f.create_dataset<double>("big", {v.size()});
        d.write(v);
        f.close();
    } catch (const hs::Error& e) {
        msg = e.what();
    }
    INFO(msg);
    CHECK(msg.find("big.h5") != std::string::npos);
}
