// io/journal and the sweep file's crash safety: checksummed records, torn tails, head-range items and their
// per-head done mask, resume by rebuilding the file from its journal (after the HDF5 file was damaged, or from
// an older file without a journal). The kill-at-every-write-boundary test is tests/scripts/sweep_crash.sh.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "temp_dir.hpp"
#include "io/h5.hpp"
#include "io/journal.hpp"
#include "model/model.hpp"
#include "pear/sweep_file.hpp"
#include "util/error.hpp"

using namespace hs;
using namespace hs::pear;
namespace fs = std::filesystem;

namespace {

SweepFileInfo info_2x2x4() {  // 2 settings, 2 layers, 4 heads
    SweepFileInfo info;
    info.model = "random:tiny";
    info.model_sha256 = model_sha256("random:tiny");
    info.model_name = "tiny";
    info.architecture = "llama";
    info.n_layer = 2;
    info.n_head = 4;
    info.n_head_kv = 2;
    info.d_model = 64;
    info.d_head = 16;
    info.n_vocab = 300;
    info.n_ctx = 8192;
    info.options.settings = {{3, 4}, {5, 3}};
    info.options.seed = 11;
    return info;
}

int n_of(int s) { return s == 0 ? 3 : 5; }

// Per-sample values of head (s, l, h) and their exact means.
ItemScores scores(int s, int l, int h0, int h1) {
    ItemScores sc;
    sc.n_samples = n_of(s);
    for (int h = h0; h < h1; ++h) {
        const size_t at = sc.pi_tilde.size();
        for (int b = 0; b < n_of(s); ++b) sc.pi_tilde.push_back(float(0.5 + s + 0.25 * l + 0.0625 * h + 0.01 * b));
        sc.pi_ablated.push_back(sample_mean(&sc.pi_tilde[at], n_of(s)));
    }
    return sc;
}

void stage_clean(SweepFile& f, int s) {
    std::vector<float> pc;
    for (int b = 0; b < n_of(s); ++b) pc.push_back(float(2.0 + s + 0.1 * b));
    std::vector<int32_t> tokens(size_t(n_of(s)) * (s == 0 ? 8 : 6));
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t(i % 300);
    f.stage_clean(s, sample_mean(pc.data(), n_of(s)), 0.5, tokens, pc);
}

// The whole sweep written as head ranges of 2 (2 commits per layer), finished.
void write_all(SweepFile& f) {
    for (int s = 0; s < 2; ++s) {
        stage_clean(f, s);
        for (int l = 0; l < 2; ++l)
            for (int h = 0; h < 4; h += 2) {
                f.stage_item(WorkItem{s, l, l + 1, h, h + 2}, scores(s, l, h, h + 2));
                f.commit();
            }
    }
}

std::vector<char> bytes_of(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
void put_bytes(const std::string& path, const std::vector<char>& b) {
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(b.data(), std::streamsize(b.size()));
}

}  // namespace

TEST_CASE("journal: records round trip, a torn or corrupt tail is cut at the last whole record", "[journal]") {
    TempDir tmp{"journal"};
    const std::string p = tmp.file("j");
    {
        io::Journal j = io::Journal::create(p);
        for (uint32_t t = 1; t <= 3; ++t) {
            std::string payload(t * 10, char('a' + t));
            j.append(t, payload.data(), payload.size());
        }
        j.sync();
    }
    io::JournalContents c = io::Journal::read(p);
    REQUIRE(c.records.size() == 3);
    CHECK(c.damage.empty());
    CHECK(c.records[2].type == 3);
    CHECK(std::string(c.records[1].payload.begin(), c.records[1].payload.end()) == std::string(20, 'c'));
    const std::vector<char> whole = bytes_of(p);
    const size_t third = 24 + 30;  // the last record: header and payload
    // Every cut inside the last record leaves the first two.
    for (size_t cut = 1; cut < third; cut += 7) {
        put_bytes(p, std::vector<char>(whole.begin(), whole.end() - std::ptrdiff_t(cut)));
        c = io::Journal::read(p);
        INFO("cut " << cut);
        CHECK(c.records.size() == 2);
        CHECK_THAT(c.damage, Catch::Contains("truncated"));
        CHECK(c.valid_bytes == whole.size() - third);
    }
    // A flipped payload byte fails its checksum; a flipped header byte its header checksum.
    std::vector<char> bad = whole;
    bad[whole.size() - 5] ^= 1;
    put_bytes(p, bad);
    c = io::Journal::read(p);
    CHECK(c.records.size() == 2);
    CHECK_THAT(c.damage, Catch::Contains("checksum"));
    bad = whole;
    bad[whole.size() - third + 9] ^= 1;  // its length field
    put_bytes(p, bad);
    c = io::Journal::read(p);
    CHECK(c.records.size() == 2);
    CHECK_THAT(c.damage, Catch::Contains("corrupt record header"));
    // Appending after the valid prefix drops the damaged tail.
    {
        io::Journal j = io::Journal::open_append(p, c.valid_bytes);
        j.append(9, "xyz", 3);
        j.sync();
    }
    c = io::Journal::read(p);
    REQUIRE(c.records.size() == 3);
    CHECK(c.damage.empty());
    CHECK(c.records[2].type == 9);
}

TEST_CASE("sweep file: head-range items fill the per-head done mask, a layer is done when all its heads are",
          "[journal][sweep_file]") {
    TempDir tmp{"journal"};
    const std::string path = tmp.file("heads.h5");
    SweepFile f = SweepFile::create(path, info_2x2x4());
    stage_clean(f, 0);
    f.stage_item(WorkItem{0, 1, 2, 0, 3}, scores(0, 1, 0, 3));
    f.commit();
    CHECK(f.done() == std::vector<uint8_t>{0, 0, 0, 0});
    CHECK(f.done_heads()[4 + 2] == 1);
    CHECK(f.done_heads()[4 + 3] == 0);
    const std::vector<WorkItem> plan = plan_items(hs::make_random_model("tiny").config, f.info().options, 1, 1);
    // random:tiny has 2 layers x 4 heads: 2 settings x 8 one-head items, 3 done
    REQUIRE(plan.size() == 16);
    CHECK(f.remaining(plan).size() == 13);
    f.write_item(WorkItem{0, 1, 2, 3, 4}, scores(0, 1, 3, 4));
    CHECK(f.done() == std::vector<uint8_t>{0, 1, 0, 0});
    // the file says the same
    f.close();
    SweepFile r = SweepFile::open(path);
    CHECK(r.done() == std::vector<uint8_t>{0, 1, 0, 0});
    CHECK(h5::File::open(path).open_dataset("done").read<uint8_t>() == std::vector<uint8_t>{0, 1, 0, 0});
    CHECK(r.read_scores().pi_ablated[4 + 3] == scores(0, 1, 3, 4).pi_ablated[0]);
    CHECK(r.read_samples().pi_tilde.size() == 2u * 2 * 4 * 5);
}

TEST_CASE("plan: head ranges, and the automatic range size gives enough items", "[journal][sweep_file]") {
    const ModelConfig c = hs::make_random_model("tiny").config;  // 2 layers x 4 heads
    SweepOptions o;
    o.settings = {{3, 4}, {5, 3}, {4, 4}};
    CHECK(plan_items(c, o).size() == 6);
    CHECK(plan_items(c, o, 1, 4).size() == 6);
    const auto p3 = plan_items(c, o, 1, 3);  // ranges 0..3, 3..4
    REQUIRE(p3.size() == 12);
    CHECK((p3[1].head_begin == 3 && p3[1].head_end == 4 && p3[1].layer_begin == 0));
    CHECK(heads_per_item_for(3, 2, 4, 6) == 0);   // whole layers are enough
    CHECK(heads_per_item_for(3, 2, 4, 12) == 2);  // 2 ranges per layer
    CHECK(heads_per_item_for(3, 2, 4, 13) == 1);  // 3 ranges needed: ranges of 1
    CHECK(heads_per_item_for(3, 2, 4, 1000) == 1);
    // a 70B shape (80 layers x 64 heads, 4 settings) for 1,000 ranks at 8 items each
    const int32_t h = heads_per_item_for(4, 80, 64, 8000);
    CHECK(h == 2);
    CHECK(4 * 80 * ((64 + h - 1) / h) >= 8000);
}

TEST_CASE("sweep file: resume rebuilds the file from its journal, whatever a crash left of the HDF5 file",
          "[journal][sweep_file]") {
    TempDir tmp{"journal"};
    const std::string ref = tmp.file("ref.h5"), path = tmp.file("crashed.h5");
    {
        SweepFile f = SweepFile::create(ref, info_2x2x4());
        write_all(f);
        f.finish(2);
        f.close();
        CHECK_FALSE(fs::exists(journal_path(ref)));  // a complete file keeps no journal
    }
    {
        SweepFile f = SweepFile::create(path, info_2x2x4());
        write_all(f);
        // no finish, no close: as if killed; then the HDF5 file is destroyed
    }
    REQUIRE(fs::exists(journal_path(path)));
    put_bytes(path, std::vector<char>(4096, 'x'));
    CHECK(SweepFile::resume_info(path).options.seed == 11);  // from the journal: the file is unreadable
    // and a torn record at the journal's end (a commit cut short)
    {
        std::ofstream j(journal_path(path), std::ios::binary | std::ios::app);
        j.write("JRNL\3\0\0\0\100\0", 10);
    }
    SweepFile f = SweepFile::open_for_resume(path, info_2x2x4());
    REQUIRE(f.notes().size() == 1);
    CHECK_THAT(f.notes()[0], Catch::Contains(journal_path(path)) && Catch::Contains("ignored its last 10 bytes") &&
                                 Catch::Contains("truncated"));
    CHECK(f.all_done());
    f.finish(2);
    f.close();
    CHECK(compare_sweep_files(ref, path).empty());

    // A journal of another job is refused, naming the parameter; the file is left alone.
    {
        SweepFile g = SweepFile::create(path, info_2x2x4(), /*overwrite=*/true);
        stage_clean(g, 0);
        g.commit();
    }
    SweepFileInfo other = info_2x2x4();
    other.options.seed = 12;
    CHECK_THROWS_WITH(SweepFile::open_for_resume(path, other),
                      Catch::Contains("cannot resume") && Catch::Contains("seed (file: 11, job: 12)"));
}

TEST_CASE("sweep file: a file without a journal (older build, layer items) resumes at head granularity",
          "[journal][sweep_file]") {
    TempDir tmp{"journal"};
    const std::string ref = tmp.file("ref.h5"), path = tmp.file("old.h5");
    {
        SweepFile f = SweepFile::create(ref, info_2x2x4());
        write_all(f);
        f.finish(2);
        f.close();
    }
    {
        // the old layout: whole-layer items, /done only
        SweepFile f = SweepFile::create(path, info_2x2x4());
        stage_clean(f, 0);
        f.stage_item(WorkItem{0, 0, 1, 0, 4}, scores(0, 0, 0, 4));
        f.commit();
        f.close();
    }
    fs::remove(journal_path(path));
    h5::File::open(path, h5::Mode::read_write).unlink("done_heads");
    CHECK(SweepFile::open(path).done() == std::vector<uint8_t>{1, 0, 0, 0});
    {
        SweepFile f = SweepFile::open_for_resume(path, info_2x2x4());
        REQUIRE(f.notes().size() == 1);
        CHECK_THAT(f.notes()[0], Catch::Contains("no journal"));
        CHECK(f.done() == std::vector<uint8_t>{1, 0, 0, 0});
        const auto plan = plan_items(hs::make_random_model("tiny").config, f.info().options, 1, 2);
        CHECK(f.remaining(plan).size() == 6);  // 8 items of 2 heads, the 2 of layer 0 in setting 0 done
        stage_clean(f, 1);
        for (const WorkItem& it : f.remaining(plan)) f.stage_item(it, scores(it.setting, it.layer_begin, it.head_begin, it.head_end));
        f.commit();
        f.finish(2);
        f.close();
    }
    CHECK(compare_sweep_files(ref, path).empty());
}

TEST_CASE("sweep file: a journal of a newer version is refused, naming the journal", "[journal][sweep_file]") {
    TempDir tmp{"journal"};
    const std::string path = tmp.file("newer.h5");
    {
        SweepFile f = SweepFile::create(path, info_2x2x4());
        stage_clean(f, 0);
        f.commit();
    }
    // Rewrite the journal with BEGIN saying journal_version 2 (records stay valid: new checksums).
    const io::JournalContents c = io::Journal::read(journal_path(path));
    REQUIRE(c.records.size() == 2);
    std::string begin(c.records[0].payload.begin(), c.records[0].payload.end());
    const auto at = begin.find("\"journal_version\":1");
    REQUIRE(at != std::string::npos);
    begin.replace(at, 19, "\"journal_version\":2");
    {
        io::Journal j = io::Journal::create(journal_path(path));
        j.append(c.records[0].type, begin.data(), begin.size());
        j.append(c.records[1].type, c.records[1].payload.data(), c.records[1].payload.size());
        j.sync();
    }
    CHECK_THROWS_WITH(SweepFile::open_for_resume(path, info_2x2x4()),
                      Catch::Contains(journal_path(path)) && Catch::Contains("journal version 2 is newer"));
}
