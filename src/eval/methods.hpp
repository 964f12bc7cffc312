// eval/methods.hpp: how a method answers an evaluation Example. The tasks never know which method runs.
//
// Adding a method (e.g. InfiniRetri, RTD):
//   1. Derive from Method: name() (the record's `method` column), config() (a canonical one-line description of
//      every setting that changes answers; stored in the output file, and a resumed run must give the same),
//      prepare() (once per rank: load or build what it needs -- a modified model copy, a datastore -- from the
//      EvalContext) and answer() (one Example -> Answer). Use ex.prompt_ids for the task's own prompt, or the
//      structured parts (ex.instruction, ex.context, ex.question) to build another one; respect ex.kind
//      (GENERATE: greedy text, CHOICE: one of ex.choices), ex.max_new_tokens and ex.stop_at_newline. The helper
//      answer_with_engine() does all of that for methods that are "some model + the unmodified engine".
//   2. Add one entry to method_registry() in eval/methods.cpp (name, one-line help, factory).
// Composition: "a+b" (e.g. pear+infiniretri, pear+rtd) runs method b on the model that method a answers with.
// Method a must offer one through composable_model() (PEAR in fold mode: its folded copy); b is prepared with an
// EvalContext whose model is that one and whose model_spec names both ("<spec>|pear mode=fold heads=..."), so a
// method that caches work per model (RTD's datastore) keys it correctly. A method that reads the model only
// through ctx composes with no further work.
// Answers must be deterministic (greedy) so that records do not depend on the number of MPI ranks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "eval/tasks.hpp"

namespace hs {
struct Model;
class Backend;
class Engine;
}  // namespace hs

namespace hs::eval {

// What every method on a rank shares: the base model (unmodified) and where it came from, the backend.
struct EvalContext {
    const Model& model;
    std::string model_spec;              // GGUF path or random:<shape>, for methods that load their own copy
    Backend& backend;
    // A folder where a method may keep the state of a long answer between runs (InfiniRetri's reading of a 1M-token
    // document), so that a run stopped in the middle of one answer goes on from there with --resume; empty: none.
    // Each state names what it belongs to (model, method config, example) and a state that does not match is ignored.
    std::string state_dir;
    EvalContext(const Model& m, std::string spec, Backend& b);
};

// The answer of a stop_at_newline task: its first non-empty line. The text up to the first newline that follows a
// character other than whitespace (leading whitespace and blank lines stay: the scorers normalise whitespace); a
// text that is whitespace only is returned whole. A model that starts its answer with a newline (Gemma 3 after some
// prompts) is not cut to nothing.
std::string first_nonempty_line(const std::string& text);

struct Answer {
    std::string text;                    // GENERATE: the decoded new tokens (stop tokens removed); CHOICE: label
    int32_t prompt_tokens = 0;           // tokens the model read
    int32_t new_tokens = 0;              // tokens generated (0 for CHOICE)
    std::string detail;                  // method-specific facts of this answer, one JSON object ("" if none);
                                         // stored in the record's detail column
};

class Method {
public:
    virtual ~Method() = default;
    virtual std::string name() const = 0;
    virtual std::string config() const = 0;
    virtual void prepare(EvalContext& ctx) = 0;
    virtual Answer answer(const Example& ex, EvalContext& ctx) = 0;
    // Once per model after prepare(), with every example of the run, before any answer: load per-task state (RTD's
    // datastores) and refuse input the method cannot answer (InfiniRetri: a question that does not fit a chunk)
    // with an hs::Error naming the option, file or example, before any work. Default: nothing.
    virtual void check_examples(const std::vector<Example>& examples, EvalContext& ctx) {}
    // After prepare(): the model this method answers with, for "this+other" compositions; nullptr: it cannot be
    // composed on the left of '+'.
    virtual const Model* composable_model() const { return nullptr; }
};

// The standard answer of a model under the engine: GENERATE = greedy decoding of ex.prompt_ids up to
// ex.max_new_tokens, stopping at end-of-generation ids (and, when ex.stop_at_newline, once the first non-empty line
// has ended: first_nonempty_line); CHOICE = the label whose token (ex.choice_ids) has the largest next-token logit
// after the prompt. head_scale: runtime per-head scaling (empty: none).
Answer answer_with_engine(Engine& engine, const Example& ex, const std::vector<float>& head_scale = {});

// Settings of the built-in methods (from the command line).
struct MethodSettings {
    std::string pear_heads;              // "l:h=tau,l:h=tau" (also "L24H4=0.5")
    std::string pear_train;              // or: the heads and tau of a `headsweep train` output file
    std::string pear_mode = "fold";      // fold: tau folded into a copy of W_O; runtime: engine head_scale
    std::string pear_name = "pear";      // the record's method name (e.g. pear-placeholder)
    // RTD (eval/method_rtd.cpp; shared/docs/methods.md §3)
    std::string rtd_datastore = "results/rtd/ds/{task}.h5";  // datastore path; {task} = the example's task
    int32_t rtd_k = 32;                  // neighbours
    double rtd_T = 0;                    // temperature; 0: the datastore's tuned T (headsweep datastore tune)
    double rtd_lambda = 1;               // lambda * r + (1 - lambda) * p_LM over the label tokens
    std::string rtd_index = "flat";      // flat | naive | hnsw | ivf | blas | device (rtd/search.hpp)
    int32_t ir_chunk = 1024;             // InfiniRetri: context tokens per chunk (--ir-chunk)
    int32_t ir_topk = 300;               // InfiniRetri: tokens selected per chunk (--ir-topk)
    int32_t ir_window = 8;               // InfiniRetri: box-filter width k along the keys (--ir-window)
    int32_t ir_layer = -1;               // InfiniRetri: the layer whose attention scores tokens; -1 the last (--ir-layer)
};

struct HeadTau {
    int32_t layer = 0, head = 0;
    float tau = 1;
};
std::vector<HeadTau> parse_head_taus(const std::string& spec);  // sorted by (layer, head); throws on bad input
std::string format_head_taus(const std::vector<HeadTau>& h);      // "L11H5=0.5,L16H0=0.5" (canonical)

// W_O[:, h*d_head:(h+1)*d_head] *= tau for every entry (the PEAR fold, methods.md 1.4; no bias is scaled).
void fold_head_taus(Model& model, const std::vector<HeadTau>& h);

struct MethodInfo {
    std::string name, help;
    std::function<std::unique_ptr<Method>(const MethodSettings&)> make;
};
const std::vector<MethodInfo>& method_registry();
// A registry name, or a composition "a+b" of registry names (see above); throws hs::Error naming the unknown part.
std::unique_ptr<Method> make_method(const std::string& name, const MethodSettings& s);

}  // namespace hs::eval
