// The `infiniretri` method (methods.md §2): reads ex.context in chunks through the model's own last-layer attention
// (infiniretri/infiniretri.hpp), then answers greedily from the kept sentences alone. It reads the model only
// through the EvalContext, so `pear+infiniretri` runs it on PEAR's folded copy with no special case.
//
// Answers are greedy, not the package's model.generate(temperature=0.5): records must not depend on sampling or
// on the number of MPI ranks (methods.hpp), and the NIH harness the authors used decodes greedily too.
#include "eval/method_infiniretri.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/engine.hpp"
#include "infiniretri/infiniretri.hpp"
#include "model/model.hpp"
#include "util/error.hpp"
#include "util/json.hpp"
#include "util/sha256.hpp"
#include "util/timer.hpp"

namespace hs::eval {

namespace {


// The facts of one answer, as one JSON object (the record's detail column).
std::string detail_json(const infiniretri::ReadResult& r, int64_t answer_prompt_tokens, double answer_seconds) {
    char buf[512];
    const double kept = r.context_tokens > 0 ? double(r.cache_tokens) / double(r.context_tokens) : 0.0;
    std::snprintf(buf, sizeof buf,
                  "{\"chunks\":%lld,\"tokens_processed\":%lld,\"context_tokens\":%lld,\"cache_tokens\":%lld,"
                  "\"kept_fraction\":%.6g,\"answer_prompt_tokens\":%lld,\"dropped_sentences\":%lld,"
                  "\"max_prob_floats\":%lld,\"read_s\":%.3f,\"answer_s\":%.3f,",
                  (long long)r.chunks, (long long)r.tokens_processed, (long long)r.context_tokens,
                  (long long)r.cache_tokens, kept, (long long)answer_prompt_tokens, (long long)r.dropped_sentences,
                  (long long)r.max_prob_floats, r.seconds, answer_seconds);
    std::string resumed;
    if (r.resumed_from_chunk > 0) resumed = "\"resumed_from_chunk\":" + std::to_string(r.resumed_from_chunk) + ",";
    return std::string(buf) + resumed + "\"cache\":\"" + json::escape(r.cache_text) + "\"}";
}

// ---- The reading state of one answer between runs (EvalContext::state_dir). The file is the 64-hex SHA-256 of
// what the state belongs to, a newline, then infiniretri::encode_state's bytes; written to a temporary name and
// renamed, so a run killed while saving leaves the previous state whole.
namespace fs = std::filesystem;

// What a state belongs to: the model (path, and the file's size and time where it is a file), the method's config,
// the example and its whole text. Any change gives another key, and the old state is not used.
std::string state_key(const EvalContext& ctx, const std::string& config, const Example& ex) {
    Sha256 h;
    std::string model = ctx.model_spec;
    std::error_code ec;
    const std::string model_file = ctx.model_spec.substr(0, ctx.model_spec.find('|'));  // composed: "path|pear ..."
    if (fs::is_regular_file(model_file, ec)) {
        const auto size = fs::file_size(model_file, ec);
        const auto time = fs::last_write_time(model_file, ec).time_since_epoch().count();
        model += "\nsize=" + std::to_string(size) + " time=" + std::to_string(time);
    }
    const std::initializer_list<const std::string*> parts = {&model, &config, &ex.task, &ex.id, &ex.question, &ex.context};
    for (const std::string* part : parts) {
        h.update(std::to_string(part->size()) + ":");
        h.update(*part);
    }
    return h.hex();
}

std::string state_path(const EvalContext& ctx, const std::string& key) {
    return (fs::path(ctx.state_dir) / ("infiniretri-" + key.substr(0, 32) + ".state")).string();
}

// The saved state for `key`, or none (no file, or a file of another key). A damaged file is reported and ignored:
// the answer is then read from the start, which is always correct.
std::optional<infiniretri::ReadState> load_state(const std::string& path, const std::string& key) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string bytes = ss.str();
    if (bytes.size() < key.size() + 1 || bytes.compare(0, key.size(), key) != 0 || bytes[key.size()] != '\n')
        return std::nullopt;
    try {
        return infiniretri::decode_state(std::string_view(bytes).substr(key.size() + 1), path);
    } catch (const Error& e) {
        std::fprintf(stderr, "\nwarning: %s; reading this document from its start\n", e.what());
        return std::nullopt;
    }
}

// Saves a state; a failure (full disk, no permission) is reported once per answer and the reading goes on: the
// state only saves time.
void save_state(const std::string& path, const std::string& key, const infiniretri::ReadState& s, bool& warned) {
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << key << '\n' << infiniretri::encode_state(s);
        out.flush();
        if (out) {
            out.close();
            if (!out.fail() && (fs::rename(tmp, path, ec), !ec)) return;
        }
    }
    fs::remove(tmp, ec);
    if (!warned)
        std::fprintf(stderr, "\nwarning: %s: could not save the InfiniRetri reading state (%s); going on without\n",
                     path.c_str(), std::strerror(errno));
    warned = true;
}

class InfiniRetri : public Method {
public:
    explicit InfiniRetri(const MethodSettings& s) {
        o_.chunk_tokens = s.ir_chunk;
        o_.top_k = s.ir_topk;
        o_.window = s.ir_window;
        o_.layer = s.ir_layer;
        check(o_.top_k >= 1, "infiniretri: --ir-topk must be >= 1 (got ", o_.top_k, ")");
        check(o_.window >= 1, "infiniretri: --ir-window must be >= 1 (got ", o_.window, ")");
        check(o_.chunk_tokens >= 1, "infiniretri: --ir-chunk must be >= 1 (got ", o_.chunk_tokens, ")");
    }
    std::string name() const override { return "infiniretri"; }
    std::string config() const override {
        return "infiniretri chunk=" + std::to_string(o_.chunk_tokens) + " topk=" + std::to_string(o_.top_k) +
               " window=" + std::to_string(o_.window) + " score=phrase(method 3),question_weight^2 answer=greedy" +
               (o_.layer >= 0 ? " layer=" + std::to_string(o_.layer) : "");  // the default (last) as before
    }
    void prepare(EvalContext& ctx) override { engine_ = std::make_unique<Engine>(ctx.model, ctx.backend); }
    void check_examples(const std::vector<Example>& examples, EvalContext& ctx) override {
        infiniretri::Options o = o_;
        o.max_input_tokens = ctx.model.config.n_ctx;
        infiniretri::scoring_layer(o, ctx.model.config.n_layer);  // a layer the model lacks: refused before work
        for (const Example& ex : examples) {
            try {
                infiniretri::validate(ctx.model.tokenizer, ex.context, ex.question, o);
            } catch (const Error& e) {
                fail(ex.task, "/", ex.id, ": ", e.what());
            }
        }
    }
    Answer answer(const Example& ex, EvalContext& ctx) override {
        infiniretri::Options o = o_;
        o.max_input_tokens = engine_->config().n_ctx;
        // Long documents keep their reading state beside the output, so a stopped run goes on mid-document.
        std::optional<infiniretri::ReadState> saved;
        std::string key, path;
        bool warned = false;
        if (!ctx.state_dir.empty()) {
            key = state_key(ctx, config(), ex);
            path = state_path(ctx, key);
            saved = load_state(path, key);
            if (saved) {
                std::fprintf(stderr, "\ninfiniretri %s: going on from chunk %lld (%s)\n", ex.id.c_str(),
                             (long long)saved->chunks_done, path.c_str());
                o.start = &*saved;
            }
            o.on_state = [&](const infiniretri::ReadState& st) {
                save_state(path, key, st, warned);
                if (++states_saved_ == exit_after_states_) std::_Exit(86);  // test hook (tests/scripts/ir_resume.sh)
            };
        }
        Timer since;
        const int64_t from = saved ? saved->chunks_done : 0;
        o.on_chunk = [&](int64_t done, int64_t all) {  // long documents: a line every 128 chunks on stderr
            if (all >= 512 && done % 128 == 0 && done > from)
                std::fprintf(stderr, "\ninfiniretri %s: chunk %lld/%lld, %.2f s/chunk\n", ex.id.c_str(), (long long)done,
                             (long long)all, since.seconds() / double(done - from));
        };
        const infiniretri::ReadResult r = infiniretri::read_document(*engine_, ex.context, ex.question, o);
        if (!path.empty()) {
            std::error_code ec;
            fs::remove(path, ec);
        }
        Timer t;
        Example q = slim_copy(ex);
        q.prompt_ids = infiniretri::answer_prompt_ids(engine_->model().tokenizer, o.prompt_template, r.cache_text,
                                                      ex.question);
        Answer a = answer_with_engine(*engine_, q);
        a.detail = detail_json(r, int64_t(q.prompt_ids.size()), t.seconds());
        return a;
    }

private:
    // The example without its (possibly megabytes long) context and prompt.
    static Example slim_copy(const Example& ex) {
        Example q;
        q.task = ex.task;
        q.id = ex.id;
        q.gold_position = ex.gold_position;
        q.kind = ex.kind;
        q.max_new_tokens = ex.max_new_tokens;
        q.stop_at_newline = ex.stop_at_newline;
        q.metric = ex.metric;
        q.answers = ex.answers;
        q.choices = ex.choices;
        q.choice_ids = ex.choice_ids;
        return q;
    }
    infiniretri::Options o_;
    std::unique_ptr<Engine> engine_;
    // Test hook HEADSWEEP_TEST_IR_EXIT_AFTER_STATE=k: the process ends (_Exit 86) right after saving its k-th reading
    // state, as a run killed mid-document would (tests/scripts/ir_resume.sh). Unset: never.
    int64_t exit_after_states_ = [] {
        const char* v = std::getenv("HEADSWEEP_TEST_IR_EXIT_AFTER_STATE");
        return v && *v ? std::atoll(v) : int64_t(-1);
    }();
    int64_t states_saved_ = 0;
};

}  // namespace

std::unique_ptr<Method> make_infiniretri(const MethodSettings& s) { return std::make_unique<InfiniRetri>(s); }

}  // namespace hs::eval
