// infiniretri/infiniretri.hpp: InfiniRetri (Ye, Wang, Wang 2025; shared/docs/methods.md §2), as the authors'
// `infini-retri` package computes it (shared/research/infiniretri_rtd.md §A.2): the document is read in chunks of
// whole sentences; for each chunk one forward pass over [template prefix | cached sentences + chunk | question |
// template tail] gives the LAST layer's attention probabilities of the question-and-after rows, summed over heads;
// a width-k box filter along the keys, question weights squared (from the first chunk), top-K tokens -> the whole
// sentences that hold them become the text cache for the next chunk. The answer is generated from the cache alone.
//
// Memory per step is bounded by the chunk: only [query rows x keys] probabilities of the last layer are formed
// (ForwardHooks::attn_prob_layers/rows), never keys x keys and never another layer's. No KV is carried across chunks.
//
// The pure steps (split, pack, filter, score, select) are exposed for the tests; read_document() is the loop.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace hs {
class Engine;
class Tokenizer;
}  // namespace hs

namespace hs::infiniretri {

// The authors' default prompt (main.py). {context} and {question} are replaced (stripped); both must be separated
// from the rest of the template by "\n\n" (the package locates them by sentence matching).
inline constexpr const char* kDefaultTemplate =
    "Read the book and answer the question. Be very concise in your answer.\n\n{context}\n\nQuestion:\n\n{question}"
    "\n\nAnswer:";

struct ReadState;

struct Options {
    int32_t chunk_tokens = 1024;   // window_length -> chunk_size: context tokens packed per chunk
    int32_t top_k = 300;           // tokens selected per chunk
    int32_t window = 8;            // answer_length -> phrase_token_num: box-filter width along the keys
    // The layer whose attention scores the tokens: -1 = the last (the method as published); 0..n_layer-1 another
    // (an extension, for models whose last layer attends mostly to a few sink tokens). The layers above it are
    // never computed: a step needs no logits.
    int32_t layer = -1;
    std::string prompt_template = kDefaultTemplate;
    int64_t max_input_tokens = 0;  // > 0: a step's input may not exceed this (the model's context); see read_document
    // Called after every chunk with (chunks read, chunks in all); empty: none (progress reports of long documents).
    std::function<void(int64_t, int64_t)> on_chunk;
    // true: every StepStats also holds the kept sentences (index in the step's input and decoded text), for
    // step-by-step comparison with the authors' package (bench/headsweep_bench_infiniretri --trace).
    bool record_kept = false;
    // Resumable reading (a 1M-token document is ~1,100 chunks, over an hour on one core): `on_state` gets the loop's
    // state after every `state_every`-th chunk (never after the last); `start`, when set, continues from such a state
    // instead of the first chunk, with results identical to an uninterrupted read. A state belongs to one
    // (document, question, options, model); keying it is the caller's job (eval/method_infiniretri.cpp).
    std::function<void(const ReadState&)> on_state;
    int32_t state_every = 32;
    const ReadState* start = nullptr;
};

// ---- Step 1: sentences. re.split("(\n\n)|([。！？.?!])") keeping the delimiters, then merged left to right: a
// piece joins the current sentence when the sentence is blank, the piece is blank or a delimiter, or the sentence
// ends in '.' and the stripped piece has at most `short_merge` bytes ("Mr. X"). chunks.py uses 10, retrieval.py 8.
inline constexpr int32_t kChunkShortMerge = 10;
inline constexpr int32_t kRetrievalShortMerge = 8;
std::vector<std::string> split_sentences(std::string_view text, int32_t short_merge);
// split_sentence(text, ' '): re.split(' ') without empty pieces, each + ' ', the last one stripped.
std::vector<std::string> split_words(std::string_view text);
std::string strip(std::string_view s);  // Python str.strip() on ASCII whitespace

// ---- Step 2: chunks (Chunks.chunk_docs with chunk_overlap 0, split_into_chunks for over-long sentences).
// count(text, with_special): tokens of text; with_special adds what encode(add_special_tokens=True) adds (BOS).
using TokenCount = std::function<int64_t(const std::string& text, bool with_special)>;
// total_tokens (optional): the document's tokens, sum over its sentences (what the packing counted).
std::vector<std::string> pack_chunks(std::string_view doc, int64_t chunk_tokens, const TokenCount& count,
                                     int64_t* total_tokens = nullptr);
std::vector<std::string> split_into_chunks(const std::string& text, int64_t chunk_tokens, bool by_words,
                                           const TokenCount& count);

// ---- Step 4-5: scores. probs [n_rows, n_keys]: the last layer's probabilities of the query rows summed over heads.
// scipy convolve2d(x, ones((1, k)), mode="same", zero fill) on one row: out[j] = sum x[j-left .. j+right] with
// right = (k-1)/2, left = k-1-right (k = 8: j-4 .. j+3).
std::vector<double> box_filter_same(const std::vector<double>& x, int32_t k);
// q_w[r] = sum over columns [q_col_begin, n_keys) of probs[r, :] (each query row's mass on the question-and-after span).
std::vector<double> question_weights(const float* probs, int64_t n_rows, int64_t n_keys, int64_t q_col_begin);
// score[j - col_begin] = sum_r q_w[r]^2 * box(probs[r, col_begin:col_end])[j]: computed as one box filter of the
// q_w^2-weighted column sums (the filter is linear).
std::vector<double> token_scores(const float* probs, int64_t n_rows, int64_t n_keys, int64_t col_begin, int64_t col_end,
                                 const std::vector<double>& q_weight, int32_t window);
// The K largest scores' indices (all when n <= K), ascending; ties go to the later index (numpy argsort()[-K:]).
std::vector<int64_t> top_k(const std::vector<double>& scores, int32_t k);

// ---- Step 3: one step's input. Rendered text = chat(template(context.strip(), question.strip())) with an empty
// system message and the generation prompt (models with a chat template), else the template text; split into
// sentences (retrieval's rule) and each sentence tokenised on its own; BOS first when the model adds one.
struct StepInput {
    std::vector<int32_t> ids;
    std::vector<std::pair<int64_t, int64_t>> sentences;  // token range [begin, end) of every sentence
    std::vector<std::string> sentence_text;
    int64_t context_begin = 0, context_end = 0;          // token range of the context
    int64_t first_context_sentence = 0, context_sentences = 0;
    int64_t question_begin = 0;                          // query rows: [question_begin, ids.size())
};
std::string render_prompt(const Tokenizer& tok, const std::string& prompt_template, const std::string& context,
                          const std::string& question);
StepInput build_step_input(const Tokenizer& tok, const std::string& prompt_template, const std::string& context,
                           const std::string& question);
// Indices of the sentences holding at least one of the token positions, in order.
std::vector<int64_t> select_sentences(const std::vector<int64_t>& positions,
                                      const std::vector<std::pair<int64_t, int64_t>>& sentences);

// ---- The reading loop.
struct StepStats {
    int64_t input_tokens = 0, cache_tokens_in = 0, chunk_chars = 0, kept_sentences = 0, kept_tokens = 0;
    int64_t prob_floats = 0;       // floats of attention probabilities the forward returned (rows x keys x heads)
    int64_t prob_layers = 0;       // layers whose probabilities were returned (always 1)
    // Only with Options::record_kept: the kept sentences' indices among the step's context sentences (0 = the first
    // sentence of cache + chunk) and their decoded text, in order.
    std::vector<int64_t> kept_index;
    std::vector<std::string> kept_text;
    // Also only with record_kept (to explain a different selection): every context sentence's highest token score,
    // in sentence order, and the K-th and (K+1)-th largest token scores (the top-K threshold and the first one out;
    // 0 when the step has <= K context tokens).
    std::vector<double> sentence_max_score;
    double kth_score = 0, next_score = 0;
};
// What the loop carries from one chunk to the next: enough to go on reading later exactly where it stopped.
struct ReadState {
    int64_t chunks_done = 0;               // chunks read so far
    std::vector<std::string> cache;        // the sentences selected by the last chunk read, in order
    std::vector<double> question_weights;  // from the first chunk
    int64_t prefix = -1;                   // the first chunk's context start (token index)
    int64_t tokens_processed = 0, cache_tokens = 0, dropped_sentences = 0, max_prob_floats = 0;
    double seconds = 0;                    // reading time spent so far
};
// A state as bytes and back, exact (doubles bit for bit). decode_state throws hs::Error naming `where` on a
// truncated, damaged or other-version state.
std::string encode_state(const ReadState& s);
ReadState decode_state(std::string_view bytes, std::string_view where);

struct ReadResult {
    std::string cache_text;        // the selected sentences after the last chunk: the answer's context
    int64_t chunks = 0;
    int64_t context_tokens = 0;    // the document's tokens (sum over its sentences, tokenised one by one)
    int64_t tokens_processed = 0;  // sum of every step's input length
    int64_t cache_tokens = 0;      // tokens of the final cache (as selected)
    int64_t dropped_sentences = 0; // cache sentences dropped (oldest first) so that a step fits max_input_tokens
    int64_t max_prob_floats = 0;   // the largest probability block formed in any step
    double seconds = 0;            // reading time, including the time before a resume (Options::start)
    int64_t resumed_from_chunk = 0;  // > 0: this call went on from a saved state after that many chunks
    std::vector<StepStats> steps;  // the steps read by this call (after a resume: from the resumed chunk on)
};
// Reads `context` chunk by chunk for `question`. Throws hs::Error naming the option on bad input (empty context
// or question, K < 1, window < 1, chunk smaller than the template, a question that does not fit a chunk).
ReadResult read_document(Engine& engine, const std::string& context, const std::string& question, const Options& o);
// The layer that scores the tokens (Options::layer resolved: -1 -> n_layer - 1); throws naming --ir-layer when the
// model has no such layer.
int32_t scoring_layer(const Options& o, int32_t n_layer);
// The same checks without reading (what a caller runs before any work).
void validate(const Tokenizer& tok, const std::string& context, const std::string& question, const Options& o);

// The answer prompt: the cache as context, rendered as every step (whole-string tokenisation, BOS when the model
// adds one), as the package's final model.generate input.
std::vector<int32_t> answer_prompt_ids(const Tokenizer& tok, const std::string& prompt_template,
                                       const std::string& cache_text, const std::string& question);

}  // namespace hs::infiniretri
