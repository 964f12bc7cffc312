// The `infiniretri` method (methods.md §2): reads ex.context in chunks through the model's own last-layer attention
// (infiniretri/infiniretri.hpp), then answers greedily from the kept sentences alone. It reads the model only
// through the EvalContext, so `pear+infiniretri` runs it on PEAR's folded copy with no special case.
//
// Answers are greedy, not the package's model.generate(temperature=0.5): records must not depend on sampling or
// on the number of MPI ranks (methods.hpp), and the NIH harness the authors used decodes greedily too.
#include "eval/method_infiniretri.hpp"

#include <cstdio>

#include "engine/engine.hpp"
#include "infiniretri/infiniretri.hpp"
#include "model/model.hpp"
#include "util/error.hpp"
#include "util/json.hpp"
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
    return std::string(buf) + "\"cache\":\"" + json::escape(r.cache_text) + "\"}";
}

class InfiniRetri : public Method {
public:
    explicit InfiniRetri(const MethodSettings& s) {
        o_.chunk_tokens = s.ir_chunk;
        o_.top_k = s.ir_topk;
        o_.window = s.ir_window;
        check(o_.top_k >= 1, "infiniretri: --ir-topk must be >= 1 (got ", o_.top_k, ")");
        check(o_.window >= 1, "infiniretri: --ir-window must be >= 1 (got ", o_.window, ")");
        check(o_.chunk_tokens >= 1, "infiniretri: --ir-chunk must be >= 1 (got ", o_.chunk_tokens, ")");
    }
    std::string name() const override { return "infiniretri"; }
    std::string config() const override {
        return "infiniretri chunk=" + std::to_string(o_.chunk_tokens) + " topk=" + std::to_string(o_.top_k) +
               " window=" + std::to_string(o_.window) + " score=phrase(method 3),question_weight^2 answer=greedy";
    }
    void prepare(EvalContext& ctx) override { engine_ = std::make_unique<Engine>(ctx.model, ctx.backend); }
    void check_examples(const std::vector<Example>& examples, EvalContext& ctx) override {
        infiniretri::Options o = o_;
        o.max_input_tokens = ctx.model.config.n_ctx;
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
        Timer since;
        o.on_chunk = [&](int64_t done, int64_t all) {  // long documents: a line every 128 chunks on stderr
            if (all >= 512 && done % 128 == 0)
                std::fprintf(stderr, "\ninfiniretri %s: chunk %lld/%lld, %.2f s/chunk\n", ex.id.c_str(), (long long)done,
                             (long long)all, since.seconds() / double(done));
        };
        const infiniretri::ReadResult r = infiniretri::read_document(*engine_, ex.context, ex.question, o);
        Timer t;
        Example q = slim_copy(ex);
        q.prompt_ids = infiniretri::answer_prompt_ids(engine_->model().tokenizer, o.prompt_template, r.cache_text,
                                                      ex.question);
        Answer a = answer_with_engine(*engine_, q, ctx);
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
};

}  // namespace

std::unique_ptr<Method> make_infiniretri(const MethodSettings& s) { return std::make_unique<InfiniRetri>(s); }

}  // namespace hs::eval
