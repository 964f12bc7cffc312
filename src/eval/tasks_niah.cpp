// Needle in a haystack (see eval/tasks_niah.hpp).
#include "eval/tasks_niah.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "eval/niah_options.hpp"
#include "eval/text.hpp"
#include "infiniretri/infiniretri.hpp"
#include "tokenizer/tokenizer.hpp"
#include "util/error.hpp"

namespace hs::eval {

namespace fs = std::filesystem;

namespace {

std::string lower_ascii(std::string s) {
    for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string p;
    while (std::getline(ss, p, ','))
        if (!p.empty()) out.push_back(p);
    return out;
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    check(bool(in), p.string(), ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void validate(const NiahOptions& n) {
    check(!n.lengths.empty(), "niah: no lengths (--niah-lengths)");
    check(!n.depths.empty(), "niah: no depths (--niah-depths)");
    for (int64_t L : n.lengths) check(L > 0, "niah: length ", L, " must be positive (--niah-lengths)");
    for (int32_t d : n.depths) check(d >= 0 && d <= 100, "niah: depth ", d, " is outside 0..100 (--niah-depths)");
    check(!infiniretri::strip(n.needle).empty(), "niah: the needle is empty (--niah-needle)");
    check(!infiniretri::strip(n.question).empty(), "niah: the question is empty (--niah-question)");
    check(!infiniretri::strip(n.answer).empty(), "niah: the expected answer is empty (--niah-answer)");
    check(n.buffer >= 0, "niah: the buffer must be >= 0");
    check(n.max_new_tokens >= 1, "niah: max new tokens must be >= 1");
}

// Token ids of the haystack repeated to at least `n` tokens.
std::vector<int32_t> repeat_to(const std::vector<int32_t>& once, int64_t n) {
    std::vector<int32_t> out;
    out.reserve(size_t(n));
    while (int64_t(out.size()) < n)
        out.insert(out.end(), once.begin(), once.begin() + std::min<int64_t>(int64_t(once.size()), n - int64_t(out.size())));
    return out;
}

// The harness's insert_needle on token ids: at int(n * depth / 100), moved back until the previous token is a
// period token; depth 100 appends.
std::vector<int32_t> insert_needle(const std::vector<int32_t>& ctx, const std::vector<int32_t>& needle, int32_t depth,
                                   const std::vector<int32_t>& period) {
    std::vector<int32_t> out;
    size_t at = ctx.size();
    if (depth < 100) {
        at = size_t(double(ctx.size()) * (double(depth) / 100.0));
        while (at > 0 && std::find(period.begin(), period.end(), ctx[at - 1]) == period.end()) --at;
    }
    out.reserve(ctx.size() + needle.size());
    out.insert(out.end(), ctx.begin(), ctx.begin() + std::ptrdiff_t(at));
    out.insert(out.end(), needle.begin(), needle.end());
    out.insert(out.end(), ctx.begin() + std::ptrdiff_t(at), ctx.end());
    return out;
}

}  // namespace

std::string NiahOptions::settings() const {
    std::ostringstream os;
    // Lengths and depths are left out: the record ids name them, so a later run may add cells to the same file.
    os << "haystack=" << haystack << " buffer=" << buffer << " max_new_tokens=" << max_new_tokens;
    auto q = [](const std::string& s) {  // newlines as \n so that the settings stay one line
        std::string o;
        for (char c : s) o += c == '\n' ? std::string("\\n") : std::string(1, c);
        return "\"" + o + "\"";
    };
    os << " needle=" << q(needle) << " question=" << q(question) << " answer=" << q(answer);
    return os.str();
}

std::vector<int64_t> parse_niah_lengths(const std::string& s, const std::string& what) {
    std::vector<int64_t> out;
    for (std::string p : split_list(s)) {
        int64_t mult = 1;
        const char last = char(std::tolower(static_cast<unsigned char>(p.back())));
        if (last == 'k') mult = 1024;
        if (last == 'm') mult = 1024 * 1024;
        if (mult != 1) p.pop_back();
        size_t used = 0;
        long long v = 0;
        try {
            v = std::stoll(p, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        check(used == p.size() && !p.empty() && v > 0, what, ": \"", s, "\" is not a list of positive lengths (4096, 4k, 1m)");
        out.push_back(int64_t(v) * mult);
    }
    check(!out.empty(), what, ": no lengths given");
    return out;
}

std::vector<int32_t> parse_niah_depths(const std::string& s, const std::string& what) {
    std::vector<int32_t> out;
    for (const std::string& p : split_list(s)) {
        size_t used = 0;
        int v = -1;
        try {
            v = std::stoi(p, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        check(used == p.size() && v >= 0 && v <= 100, what, ": \"", p, "\" is not a depth in 0..100 (percent)");
        out.push_back(int32_t(v));
    }
    check(!out.empty(), what, ": no depths given");
    return out;
}

std::string read_haystack(const std::string& path) {
    check(fs::exists(path), path, ": no such haystack folder or file (--niah-haystack)");
    std::string text;
    if (fs::is_directory(path)) {
        std::vector<fs::path> files;
        for (const auto& e : fs::directory_iterator(path))
            if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path());
        std::sort(files.begin(), files.end());
        check(!files.empty(), path, ": the haystack folder has no .txt files (--niah-haystack)");
        for (const fs::path& f : files) text += read_file(f);
    } else {
        text = read_file(path);
    }
    check(!infiniretri::strip(text).empty(), path, ": the haystack is empty (--niah-haystack)");
    return text;
}

double niah_word_score(const std::string& response, const std::string& answer) {
    const std::string r = lower_ascii(response);
    std::istringstream words(lower_ascii(answer));
    int64_t n = 0, found = 0;
    for (std::string w; words >> w; ++n) found += r.find(w) != std::string::npos;
    return n > 0 ? double(found) / double(n) : 0.0;
}

std::vector<Example> build_niah(const Tokenizer& tok, const TaskBuildOptions& o) {
    const NiahOptions& n = o.niah;
    validate(n);
    const std::string path = n.haystack.empty() ? (fs::path(o.data_dir) / "niah" / "PaulGrahamEssays").string() : n.haystack;
    const std::vector<int32_t> needle = tok.encode(n.needle, false, false);
    for (int64_t L : n.lengths)
        check(int64_t(needle.size()) + n.buffer < L, "niah: the needle (", needle.size(), " tokens) and the buffer (",
              n.buffer, ") do not fit the length ", L, " (--niah-lengths / --niah-needle)");
    const std::vector<int32_t> once = tok.encode(read_haystack(path), false, false);  // tokenised once
    const std::vector<int32_t> period = tok.encode(".", false, false);
    const int64_t longest = *std::max_element(n.lengths.begin(), n.lengths.end());
    const std::vector<int32_t> hay = repeat_to(once, longest - n.buffer - int64_t(needle.size()));
    const int32_t max_new = o.max_new_tokens_cap > 0 ? std::min(n.max_new_tokens, o.max_new_tokens_cap) : n.max_new_tokens;

    std::vector<Example> out;
    for (int64_t L : n.lengths) {
        const std::vector<int32_t> ctx(hay.begin(), hay.begin() + (L - n.buffer - int64_t(needle.size())));
        for (int32_t d : n.depths) {
            Example ex;
            ex.task = "niah";
            ex.id = "niah-" + std::to_string(L) + "-d" + std::to_string(d);
            ex.gold_position = d;
            ex.context = tok.decode(insert_needle(ctx, needle, d, period), false);
            ex.question = n.question;
            ex.instruction = "";
            ex.chat = tok.has_chat_template();
            ex.kind = AnswerKind::GENERATE;
            ex.max_new_tokens = max_new;
            ex.stop_at_newline = false;
            ex.metric = Metric::NIAH_WORDS;
            ex.answers = {n.answer};
            // Vanilla's prompt: the same template, the whole context; middle-truncated to the model's context.
            ex.prompt_ids = tok.encode(infiniretri::render_prompt(tok, infiniretri::kDefaultTemplate, ex.context, n.question),
                                       true, tok.add_bos());
            ex.original_tokens = int32_t(ex.prompt_ids.size());
            int64_t limit = o.max_prompt_tokens > 0 ? o.max_prompt_tokens : o.n_ctx - max_new;
            if (o.n_ctx > 0) limit = std::min(limit, o.n_ctx - max_new);
            ex.truncated = middle_truncate(ex.prompt_ids, limit);
            out.push_back(std::move(ex));
        }
    }
    return out;
}

}  // namespace hs::eval
