// InfiniRetri, step by step as the authors' package (see infiniretri.hpp and shared/research/infiniretri_rtd.md §A.2).
#include "infiniretri/infiniretri.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <numeric>

#include "engine/engine.hpp"
#include "tokenizer/tokenizer.hpp"
#include "util/error.hpp"
#include "util/timer.hpp"

namespace hs::infiniretri {

namespace {

bool is_py_space(unsigned char c) {  // str.strip()'s ASCII set: \t \n \v \f \r, \x1c-\x1f, space
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
}

// Characters (code points) of UTF-8 text: Python's len().
int64_t py_len(std::string_view s) {
    int64_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
}

// Length of the delimiter at s[i] under "(\n\n)|([。！？.?!])", or 0.
size_t delimiter_at(std::string_view s, size_t i) {
    if (s.compare(i, 2, "\n\n") == 0) return 2;
    const char c = s[i];
    if (c == '.' || c == '?' || c == '!') return 1;
    for (std::string_view w : {std::string_view("。"), std::string_view("！"), std::string_view("？")})
        if (s.compare(i, w.size(), w) == 0) return w.size();
    return 0;
}

bool is_delimiter_piece(std::string_view stripped) {
    static const char* const kPunct[] = {"\n\n", "。", "！", "？", ".", "?", "!"};
    for (const char* p : kPunct)
        if (stripped == p) return true;
    return false;
}

// The merge of split_sentence: pieces (re.split output without empty ones) -> sentences.
std::vector<std::string> merge_pieces(const std::vector<std::string_view>& pieces, int32_t short_merge) {
    std::vector<std::string> out;
    std::string cur;
    for (std::string_view p : pieces) {
        const std::string ps = strip(p);
        const bool join = strip(cur).empty() || ps.empty() || is_delimiter_piece(ps) ||
                          (cur.back() == '.' && py_len(ps) <= short_merge);
        if (join) {
            cur += p;
        } else {
            out.push_back(std::move(cur));
            cur = std::string(p);
        }
    }
    if (!strip(cur).empty()) out.push_back(std::move(cur));
    return out;
}

std::string replace_placeholders(const std::string& tmpl, const std::string& context, const std::string& question) {
    std::string out;
    for (size_t i = 0; i < tmpl.size();) {
        if (tmpl.compare(i, 9, "{context}") == 0) {
            out += context;
            i += 9;
        } else if (tmpl.compare(i, 10, "{question}") == 0) {
            out += question;
            i += 10;
        } else {
            out += tmpl[i++];
        }
    }
    return out;
}

TokenCount counter_of(const Tokenizer& tok) {
    return [&tok](const std::string& s, bool with_special) -> int64_t {
        return int64_t(tok.encode(s, true, with_special && tok.add_bos()).size());
    };
}

std::string join(const std::vector<std::string>& parts, size_t from = 0) {
    std::string s;
    for (size_t i = from; i < parts.size(); ++i) s += parts[i];
    return s;
}

// Chunks.split_into_chunks' last step: when the last chunk is shorter than chunk_size/2, the last two are
// re-divided from both ends (a two-pointer walk over their sentences, then words), exactly as the package does it
// (including its quirks: the length test of the right side measures new_last + s, and a leftover single sentence or
// the word at the break of the last index is dropped).
void rebalance_last_two(std::vector<std::string>& chunks, int64_t cs, bool by_words, const TokenCount& L) {
    if (!(chunks.size() > 1 && L(chunks.back(), true) < cs / 2)) return;
    const std::string last = chunks.back();
    chunks.pop_back();
    const std::string pen = chunks.back();
    chunks.pop_back();
    const std::string combined = pen + last;
    const std::vector<std::string> ns = by_words ? split_words(combined) : split_sentences(combined, kChunkShortMerge);
    std::string new_pen, new_last;
    int64_t i = 0, j = int64_t(ns.size()) - 1;
    while (i <= j && ns.size() != 1) {
        bool flag = false;
        if (L(new_pen + ns[size_t(i)], true) <= cs) {
            flag = true;
            new_pen += ns[size_t(i)];
            if (i == j) break;
            ++i;
        }
        if (L(new_last + ns[size_t(j)], true) <= cs) {
            new_last = ns[size_t(j)] + new_last;
            --j;
            flag = true;
        }
        if (!flag) break;
    }
    if (i < j) {
        std::string remaining;
        for (int64_t k = i; k <= j; ++k) remaining += ns[size_t(k)];
        std::vector<std::string> words;  // remaining_text.split(' '): keeps empty pieces
        for (size_t a = 0;;) {
            const size_t b = remaining.find(' ', a);
            words.push_back(remaining.substr(a, b == std::string::npos ? std::string::npos : b - a));
            if (b == std::string::npos) break;
            a = b + 1;
        }
        size_t end_index = words.size() - 1;
        for (size_t w = 0; w < words.size(); ++w) {
            const std::string joined = new_pen + " " + words[w];
            if (L(joined, true) <= cs) {
                new_pen = joined;
            } else {
                end_index = w;
                break;
            }
        }
        if (end_index != words.size() - 1) {
            std::string tail;
            for (size_t w = end_index; w < words.size(); ++w) tail += (w > end_index ? " " : "") + words[w];
            new_last = tail + " " + new_last;
        }
    }
    if (ns.size() == 1) {
        chunks.push_back(pen);
        chunks.push_back(last);
    } else {
        chunks.push_back(new_pen);
        chunks.push_back(new_last);
    }
}

}  // namespace

std::string strip(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && is_py_space(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && is_py_space(static_cast<unsigned char>(s[e - 1]))) --e;
    return std::string(s.substr(b, e - b));
}

std::vector<std::string> split_sentences(std::string_view text, int32_t short_merge) {
    std::vector<std::string_view> pieces;  // re.split with the capturing groups, None and "" filtered out
    size_t start = 0;
    for (size_t i = 0; i < text.size();) {
        const size_t d = delimiter_at(text, i);
        if (d == 0) {
            ++i;
            continue;
        }
        if (i > start) pieces.push_back(text.substr(start, i - start));
        pieces.push_back(text.substr(i, d));
        i += d;
        start = i;
    }
    if (start < text.size()) pieces.push_back(text.substr(start));
    return merge_pieces(pieces, short_merge);
}

std::vector<std::string> split_words(std::string_view text) {
    std::vector<std::string> out;
    for (size_t a = 0; a <= text.size();) {
        size_t b = text.find(' ', a);
        if (b == std::string_view::npos) b = text.size();
        if (b > a) out.push_back(std::string(text.substr(a, b - a)) + " ");
        a = b + 1;
    }
    if (!out.empty()) out.back() = strip(out.back());
    return out;
}

std::vector<std::string> split_into_chunks(const std::string& text, int64_t cs, bool by_words, const TokenCount& L) {
    const std::vector<std::string> sentences = by_words ? split_words(text) : split_sentences(text, kChunkShortMerge);
    std::vector<std::string> chunks;
    std::string cur;
    auto flush_long = [&](const std::string& c) {
        if (L(c, true) <= cs) chunks.push_back(c);
        else if (!by_words) {  // sentences too long for a chunk: split on spaces (a single word longer is dropped)
            for (std::string& p : split_into_chunks(c, cs, true, L)) chunks.push_back(std::move(p));
        }
    };
    for (const std::string& s : sentences) {
        const int64_t n = L(s, true);
        if (L(cur, true) + n <= cs) {
            cur += s;
        } else {
            if (!cur.empty()) flush_long(cur);
            cur = s;
        }
    }
    if (!cur.empty()) flush_long(cur);
    rebalance_last_two(chunks, cs, by_words, L);
    return chunks;
}

std::vector<std::string> pack_chunks(std::string_view doc, int64_t cs, const TokenCount& L, int64_t* total_tokens) {
    const std::vector<std::string> splits = split_sentences(doc, kChunkShortMerge);
    const int64_t sep = L("\n", false);  // the "\n" join cost: counted, never inserted (sentences join with "")
    std::vector<std::string> docs;
    std::vector<std::string> cur;
    std::vector<int64_t> cur_len;
    int64_t total = 0;
    if (total_tokens) *total_tokens = 0;
    for (const std::string& d : splits) {
        if (d.empty()) continue;
        const int64_t now = L(d, false);
        if (total_tokens) *total_tokens += now;
        if (total + now + (cur.empty() ? 0 : sep) > cs) {
            if (total > cs && cur.size() == 1) {  // one sentence longer than a chunk
                for (std::string& p : split_into_chunks(cur[0], cs, false, L)) docs.push_back(std::move(p));
                cur.clear();
                cur_len.clear();
                total = 0;
            }
            if (!cur.empty()) {
                docs.push_back(join(cur));
                cur.clear();  // chunk_overlap 0: everything is popped
                cur_len.clear();
                total = 0;
            }
        }
        cur.push_back(d);
        cur_len.push_back(now);
        total += now + (cur.size() > 1 ? sep : 0);
    }
    if (!cur.empty()) {
        if (cur.size() == 1 && cur_len[0] > cs) {
            for (std::string& p : split_into_chunks(cur[0], cs, false, L)) docs.push_back(std::move(p));
        } else {
            docs.push_back(join(cur));
        }
    }
    std::erase_if(docs, [](const std::string& s) { return strip(s).empty(); });
    return docs;
}

std::vector<double> box_filter_same(const std::vector<double>& x, int32_t k) {
    check(k >= 1, "infiniretri: the box filter width must be >= 1");
    const int64_t n = int64_t(x.size()), right = (k - 1) / 2, left = k - 1 - right;
    std::vector<double> prefix(size_t(n) + 1, 0.0);  // prefix[i] = x[0] + ... + x[i-1]
    for (int64_t i = 0; i < n; ++i) prefix[size_t(i) + 1] = prefix[size_t(i)] + x[size_t(i)];
    std::vector<double> out(static_cast<size_t>(n), 0.0);
    for (int64_t j = 0; j < n; ++j) {
        const int64_t a = std::max<int64_t>(0, j - left), b = std::min<int64_t>(n, j + right + 1);
        out[size_t(j)] = prefix[size_t(b)] - prefix[size_t(a)];
    }
    return out;
}

std::vector<double> question_weights(const float* probs, int64_t n_rows, int64_t n_keys, int64_t q_col_begin) {
    std::vector<double> w(size_t(n_rows), 0.0);
    for (int64_t r = 0; r < n_rows; ++r)
        for (int64_t c = q_col_begin; c < n_keys; ++c) w[size_t(r)] += probs[r * n_keys + c];
    return w;
}

std::vector<double> token_scores(const float* probs, int64_t n_rows, int64_t n_keys, int64_t col_begin, int64_t col_end,
                                 const std::vector<double>& q_weight, int32_t window) {
    check(int64_t(q_weight.size()) == n_rows, "infiniretri: ", q_weight.size(), " question weights for ", n_rows,
          " query rows");
    check(0 <= col_begin && col_begin <= col_end && col_end <= n_keys, "infiniretri: context columns outside the keys");
    std::vector<double> col(size_t(col_end - col_begin), 0.0);  // sum_r q_w[r]^2 * probs[r, j]
    for (int64_t r = 0; r < n_rows; ++r) {
        const double w2 = q_weight[size_t(r)] * q_weight[size_t(r)];
        const float* row = probs + r * n_keys;
        for (int64_t j = col_begin; j < col_end; ++j) col[size_t(j - col_begin)] += w2 * row[j];
    }
    return box_filter_same(col, window);
}

std::vector<int64_t> top_k(const std::vector<double>& scores, int32_t k) {
    std::vector<int64_t> idx(scores.size());
    std::iota(idx.begin(), idx.end(), 0);
    if (int64_t(idx.size()) > k) {
        auto later_is_larger = [&](int64_t a, int64_t b) {  // descending score, ties: the later index first
            return scores[size_t(a)] != scores[size_t(b)] ? scores[size_t(a)] > scores[size_t(b)] : a > b;
        };
        std::nth_element(idx.begin(), idx.begin() + k, idx.end(), later_is_larger);
        idx.resize(size_t(k));
        std::sort(idx.begin(), idx.end());
    }
    return idx;
}

std::string render_prompt(const Tokenizer& tok, const std::string& tmpl, const std::string& context,
                          const std::string& question) {
    const std::string user = replace_placeholders(tmpl, strip(context), strip(question));
    if (!tok.has_chat_template()) return user;  // base models (Gemma 3 270M's GGUF): the plain template
    return tok.apply_chat_template({{"system", ""}, {"user", user}}, true);
}

StepInput build_step_input(const Tokenizer& tok, const std::string& tmpl, const std::string& context,
                           const std::string& question) {
    StepInput in;
    const std::string rendered = render_prompt(tok, tmpl, context, question);
    if (tok.add_bos()) {  // BOS on its own, before the first sentence (what encode(add_special_tokens=True) adds)
        in.ids.push_back(tok.bos_id());
        in.sentences.push_back({0, 1});
        in.sentence_text.push_back("");
    }
    for (std::string& s : split_sentences(rendered, kRetrievalShortMerge)) {
        const std::vector<int32_t> t = tok.encode(s, true, false);
        const int64_t b = int64_t(in.ids.size());
        in.ids.insert(in.ids.end(), t.begin(), t.end());
        in.sentences.push_back({b, int64_t(in.ids.size())});
        in.sentence_text.push_back(std::move(s));
    }
    // The context: the first sentence equal (stripped) to the first sentence of context.strip() + "\n\n"; its
    // sentences must follow one for one (the package asserts the same through the decoded text).
    const std::vector<std::string> cs = split_sentences(strip(context) + "\n\n", kRetrievalShortMerge);
    check(!cs.empty(), "infiniretri: the context is empty");
    const std::string first = strip(cs[0]);
    const int64_t n_sent = int64_t(in.sentence_text.size());
    int64_t at = -1;
    for (int64_t i = 0; i < n_sent && at < 0; ++i)
        if (strip(in.sentence_text[size_t(i)]) == first) at = i;
    check(at >= 0 && at + int64_t(cs.size()) <= n_sent, "infiniretri: the context's first sentence is not a sentence of the "
          "rendered prompt (the template must separate {context} by \"\\n\\n\")");
    for (size_t k = 0; k < cs.size(); ++k)
        check(in.sentence_text[size_t(at) + k] == cs[k], "infiniretri: the context's sentence ", k,
              " splits differently inside the prompt (\"", cs[k].substr(0, 60), "\")");
    in.first_context_sentence = at;
    in.context_sentences = int64_t(cs.size());
    in.context_begin = in.sentences[size_t(at)].first;
    in.context_end = in.sentences[size_t(at) + cs.size() - 1].second;
    // The question: the first sentence outside the context equal to the question's first sentence; the query rows
    // run from there to the end of the input (the package's add_prompt: "\n\nAnswer:" and the template tail too).
    const std::vector<std::string> qs = split_sentences(strip(question) + "\n\n", kRetrievalShortMerge);
    check(!qs.empty(), "infiniretri: the question is empty");
    const std::string qfirst = strip(qs[0]);
    int64_t q = -1;
    for (int64_t i = 0; i < n_sent && q < 0; ++i)
        if ((i < at || i >= at + int64_t(cs.size())) && strip(in.sentence_text[size_t(i)]) == qfirst) q = i;
    check(q >= 0, "infiniretri: the question's first sentence is not a sentence of the rendered prompt (the template "
          "must separate {question} by \"\\n\\n\")");
    in.question_begin = in.sentences[size_t(q)].first;
    return in;
}

std::vector<int64_t> select_sentences(const std::vector<int64_t>& positions,
                                      const std::vector<std::pair<int64_t, int64_t>>& sentences) {
    std::vector<char> keep(sentences.size(), 0);
    for (int64_t p : positions) {
        // sentences are contiguous and ascending: binary search for the one containing p
        auto it = std::upper_bound(sentences.begin(), sentences.end(), p,
                                   [](int64_t v, const std::pair<int64_t, int64_t>& s) { return v < s.second; });
        check(it != sentences.end() && it->first <= p, "infiniretri: token ", p, " is in no sentence");
        keep[size_t(it - sentences.begin())] = 1;
    }
    std::vector<int64_t> out;
    for (size_t i = 0; i < keep.size(); ++i)
        if (keep[i]) out.push_back(int64_t(i));
    return out;
}

int32_t scoring_layer(const Options& o, int32_t n_layer) {
    check(o.layer >= -1 && o.layer < n_layer, "infiniretri: --ir-layer ", o.layer, " but the model has ", n_layer,
          " layers (0..", n_layer - 1, "; -1 = the last)");
    return o.layer < 0 ? n_layer - 1 : o.layer;
}

void validate(const Tokenizer& tok, const std::string& context, const std::string& question, const Options& o) {
    check(o.top_k >= 1, "infiniretri: --ir-topk must be >= 1 (got ", o.top_k, ")");
    check(o.window >= 1, "infiniretri: --ir-window must be >= 1 (got ", o.window, ")");
    check(o.chunk_tokens >= 1, "infiniretri: --ir-chunk must be >= 1 (got ", o.chunk_tokens, ")");
    check(o.layer >= -1, "infiniretri: --ir-layer must be -1 (the last) or a layer index (got ", o.layer, ")");
    check(o.prompt_template.find("{context}") != std::string::npos &&
              o.prompt_template.find("{question}") != std::string::npos,
          "infiniretri: the prompt template needs {context} and {question}");
    check(!strip(context).empty(), "infiniretri: the context is empty (the example gives no separate context)");
    check(!strip(question).empty(), "infiniretri: the question is empty (the example gives no separate question)");
    const int64_t tmpl = int64_t(tok.encode(render_prompt(tok, o.prompt_template, "", ""), true, tok.add_bos()).size());
    check(o.chunk_tokens >= tmpl, "infiniretri: --ir-chunk ", o.chunk_tokens, " is smaller than the prompt template (",
          tmpl, " tokens)");
    const int64_t qn = int64_t(tok.encode(strip(question), true, false).size());
    check(qn <= o.chunk_tokens, "infiniretri: the question (", qn, " tokens) does not fit a chunk of --ir-chunk ",
          o.chunk_tokens);
    const int64_t step = tmpl + qn + int64_t(o.chunk_tokens) + o.top_k;
    check(o.max_input_tokens <= 0 || step <= o.max_input_tokens, "infiniretri: a step reads the template, the question, "
          "a chunk and about K cached tokens (", step, " tokens) but the model reads at most ", o.max_input_tokens,
          ": lower --ir-chunk (", o.chunk_tokens, ") or --ir-topk (", o.top_k, ")");
}

ReadResult read_document(Engine& engine, const std::string& context, const std::string& question, const Options& o) {
    const Tokenizer& tok = engine.model().tokenizer;
    const ModelConfig& c = engine.config();
    validate(tok, context, question, o);
    const int32_t layer = scoring_layer(o, c.n_layer);
    Timer timer;
    ReadResult res;
    const TokenCount count = counter_of(tok);
    const std::vector<std::string> chunks = pack_chunks(context, o.chunk_tokens, count, &res.context_tokens);

    std::vector<std::string> cache;  // the selected sentences, as text
    std::vector<double> qw;          // question weights of the first chunk
    int64_t prefix = -1;             // the first chunk's context start (PREFIX_PROMPT_TOKEN_NUM)
    double seconds_before = 0;       // reading time before a resume
    size_t first = 0;                // the first chunk this call reads
    if (o.start) {
        const ReadState& s = *o.start;
        check(s.chunks_done >= 0 && s.chunks_done <= int64_t(chunks.size()), "infiniretri: a saved state after ",
              s.chunks_done, " chunks, but the document has ", chunks.size(), " (another document or --ir-chunk?)");
        check(s.chunks_done == 0 || (!s.question_weights.empty() && s.prefix >= 0),
              "infiniretri: a saved state without the first chunk's question weights");
        first = size_t(s.chunks_done);
        cache = s.cache;
        qw = s.question_weights;
        prefix = s.prefix;
        res.chunks = s.chunks_done;
        res.tokens_processed = s.tokens_processed;
        res.cache_tokens = s.cache_tokens;
        res.dropped_sentences = s.dropped_sentences;
        res.max_prob_floats = s.max_prob_floats;
        res.resumed_from_chunk = s.chunks_done;
        seconds_before = s.seconds;
    }
    for (size_t ci = first; ci < chunks.size(); ++ci) {
        const std::string& chunk = chunks[ci];
        // [prefix | cache + chunk | question | tail]; the oldest cached sentences are dropped only when the step
        // would not fit the model (a deviation the package never needs with its 32K-context models; counted).
        size_t drop = 0;
        StepInput in = build_step_input(tok, o.prompt_template, join(cache) + chunk, question);
        while (o.max_input_tokens > 0 && int64_t(in.ids.size()) > o.max_input_tokens && drop < cache.size()) {
            ++drop;
            in = build_step_input(tok, o.prompt_template, join(cache, drop) + chunk, question);
        }
        res.dropped_sentences += int64_t(drop);
        const int64_t L = int64_t(in.ids.size());
        check(o.max_input_tokens <= 0 || L <= o.max_input_tokens, "infiniretri: a chunk's input has ", L,
              " tokens, more than the model's ", o.max_input_tokens, " (lower --ir-chunk)");
        if (prefix < 0) prefix = in.context_begin;
        check(in.context_begin == prefix, "infiniretri: the template prefix changed between chunks (", prefix, " vs ",
              in.context_begin, " tokens)");

        // One forward; only the last layer's probabilities of the query rows: [1, n_head, rows, L].
        ForwardHooks hk;
        hk.logits = LogitsMode::NONE;
        hk.attn_prob_layers = {layer};
        const int64_t rows = L - in.question_begin;
        for (int64_t t = in.question_begin; t < L; ++t) hk.attn_prob_rows.push_back(int32_t(t));
        const ForwardResult fr = engine.forward(in.ids, 1, L, hk);
        StepStats st;
        for (const auto& p : fr.attn_probs)
            if (!p.empty()) {
                ++st.prob_layers;
                st.prob_floats += int64_t(p.size());
            }
        const std::vector<float>& P = fr.attn_probs[size_t(layer)];
        check(int64_t(P.size()) == int64_t(c.n_head) * rows * L, "infiniretri: unexpected probability block size");
        std::vector<float> A(size_t(rows * L), 0.0f);  // [rows, L]: summed over heads
        for (int64_t h = 0; h < c.n_head; ++h)
            for (int64_t i = 0; i < rows * L; ++i) A[size_t(i)] += P[size_t(h * rows * L + i)];

        if (qw.empty()) qw = question_weights(A.data(), rows, L, in.question_begin);
        check(int64_t(qw.size()) == rows, "infiniretri: ", rows, " query rows, but the first chunk had ", qw.size());
        const std::vector<double> score = token_scores(A.data(), rows, L, prefix, in.context_end, qw, o.window);
        std::vector<int64_t> top = top_k(score, o.top_k);
        if (o.record_kept) {  // scores near the threshold, per sentence (StepStats)
            std::vector<double> sorted = score;
            std::sort(sorted.begin(), sorted.end(), std::greater<>());
            if (int64_t(sorted.size()) > o.top_k) {
                st.kth_score = sorted[size_t(o.top_k - 1)];
                st.next_score = sorted[size_t(o.top_k)];
            }
            for (int64_t s = in.first_context_sentence; s < in.first_context_sentence + in.context_sentences; ++s) {
                const auto [b, e] = in.sentences[size_t(s)];
                double best = -1e300;
                for (int64_t t = std::max(b, prefix); t < std::min(e, in.context_end); ++t)
                    best = std::max(best, score[size_t(t - prefix)]);
                st.sentence_max_score.push_back(best);
            }
        }
        for (int64_t& t : top) t += prefix;
        cache.clear();
        for (int64_t s : select_sentences(top, in.sentences)) {
            const auto [b, e] = in.sentences[size_t(s)];
            st.kept_tokens += e - b;
            ++st.kept_sentences;
            cache.push_back(tok.decode(std::vector<int32_t>(in.ids.begin() + b, in.ids.begin() + e), true));
            if (o.record_kept) {
                st.kept_index.push_back(s - in.first_context_sentence);
                st.kept_text.push_back(cache.back());
            }
        }
        st.input_tokens = L;
        st.chunk_chars = int64_t(chunk.size());
        res.tokens_processed += L;
        res.max_prob_floats = std::max(res.max_prob_floats, st.prob_floats);
        res.cache_tokens = st.kept_tokens;
        res.steps.push_back(st);
        ++res.chunks;
        if (o.on_chunk) o.on_chunk(res.chunks, int64_t(chunks.size()));
        if (o.on_state && o.state_every > 0 && res.chunks % o.state_every == 0 && ci + 1 < chunks.size()) {
            ReadState s;
            s.chunks_done = res.chunks;
            s.cache = cache;
            s.question_weights = qw;
            s.prefix = prefix;
            s.tokens_processed = res.tokens_processed;
            s.cache_tokens = res.cache_tokens;
            s.dropped_sentences = res.dropped_sentences;
            s.max_prob_floats = res.max_prob_floats;
            s.seconds = seconds_before + timer.seconds();
            o.on_state(s);
        }
    }
    res.cache_text = join(cache);
    res.seconds = seconds_before + timer.seconds();
    return res;
}

// ---- ReadState bytes: "hs-infiniretri-state" NUL, u32 version, then little-endian fixed-width fields and
// length-prefixed strings / arrays (this machine's byte order: the file is a cache beside the output, not an exchange
// format; a state from another byte order fails the version or length checks and is read from the start).
namespace {
constexpr char kStateMagic[] = "hs-infiniretri-state";
constexpr uint32_t kStateVersion = 1;

template <class T>
void put(std::string& out, const T& v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

struct StateReader {
    std::string_view bytes;
    std::string_view where;
    size_t at = 0;
    template <class T>
    T get() {
        check(bytes.size() - at >= sizeof(T), where, ": truncated InfiniRetri state (", bytes.size(), " bytes)");
        T v;
        std::memcpy(&v, bytes.data() + at, sizeof v);
        at += sizeof v;
        return v;
    }
    size_t count(size_t item_bytes) {
        const uint64_t n = get<uint64_t>();
        check(item_bytes == 0 || n <= (bytes.size() - at) / item_bytes, where, ": damaged InfiniRetri state (a count of ",
              n, " past the end)");
        return size_t(n);
    }
    std::string str() {
        const size_t n = count(1);
        std::string s(bytes.substr(at, n));
        at += n;
        return s;
    }
};
}  // namespace

std::string encode_state(const ReadState& s) {
    std::string out(kStateMagic, sizeof kStateMagic);  // with the NUL
    put(out, kStateVersion);
    for (int64_t v : {s.chunks_done, s.prefix, s.tokens_processed, s.cache_tokens, s.dropped_sentences, s.max_prob_floats})
        put(out, v);
    put(out, s.seconds);
    put(out, uint64_t(s.question_weights.size()));
    for (double w : s.question_weights) put(out, w);
    put(out, uint64_t(s.cache.size()));
    for (const std::string& c : s.cache) {
        put(out, uint64_t(c.size()));
        out += c;
    }
    return out;
}

ReadState decode_state(std::string_view bytes, std::string_view where) {
    check(bytes.size() >= sizeof kStateMagic && bytes.substr(0, sizeof kStateMagic) ==
                                                    std::string_view(kStateMagic, sizeof kStateMagic),
          where, ": not an InfiniRetri state file");
    StateReader r{bytes, where, sizeof kStateMagic};
    const uint32_t version = r.get<uint32_t>();
    check(version == kStateVersion, where, ": InfiniRetri state version ", version, ", this build reads ", kStateVersion);
    ReadState s;
    for (int64_t* v : {&s.chunks_done, &s.prefix, &s.tokens_processed, &s.cache_tokens, &s.dropped_sentences,
                       &s.max_prob_floats})
        *v = r.get<int64_t>();
    s.seconds = r.get<double>();
    s.question_weights.resize(r.count(sizeof(double)));
    for (double& w : s.question_weights) w = r.get<double>();
    s.cache.resize(r.count(sizeof(uint64_t)));
    for (std::string& c : s.cache) c = r.str();
    check(r.at == bytes.size(), where, ": damaged InfiniRetri state (", bytes.size() - r.at, " bytes after its end)");
    check(s.chunks_done >= 0 && s.tokens_processed >= 0, where, ": damaged InfiniRetri state (negative counts)");
    return s;
}

std::vector<int32_t> answer_prompt_ids(const Tokenizer& tok, const std::string& tmpl, const std::string& cache_text,
                                       const std::string& question) {
    return tok.encode(render_prompt(tok, tmpl, cache_text, question), true, tok.add_bos());
}

}  // namespace hs::infiniretri
