#include "eval/tasks.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "eval/tasks_choice.hpp"
#include "eval/tasks_niah.hpp"
#include "eval/text.hpp"
#include "tokenizer/tokenizer.hpp"
#include "util/error.hpp"
#include "util/json.hpp"

namespace hs::eval {

namespace fs = std::filesystem;

namespace {

const char* kMdqaInstruction =
    "Write a high-quality answer for the given question using only the provided search results (some of which "
    "might be irrelevant).";
const char* kClosedbookInstruction = "Write a high-quality answer for the given question.";
const char* kKvInstruction = "Extract the value corresponding to the specified key in the JSON object below.";

struct LongBenchTask {
    const char* name;
    const char* subset;
    int32_t max_new_tokens;
};
const LongBenchTask kLongBench[] = {{"longbench-2wikimqa", "2wikimqa", 32},
                                    {"longbench-musique", "musique", 32},
                                    {"longbench-qasper", "qasper", 128},
                                    {"longbench-hotpotqa", "hotpotqa", 32}};

std::string data_path(const TaskBuildOptions& o, const std::string& rel) {
    const fs::path p = fs::path(o.data_dir) / rel;
    check(fs::exists(p), p.string(), ": missing (data folder: --data-dir or HEADSWEEP_DATA; see shared/data/MANIFEST.md)");
    return p.string();
}

int32_t new_tokens(const TaskBuildOptions& o, int32_t task_setting) {
    return o.max_new_tokens_cap > 0 ? std::min(task_setting, o.max_new_tokens_cap) : task_setting;
}

// Renders the template (when the task uses one and the model has one), tokenises and middle-truncates.
void finish(Example& ex, const std::string& user_text, const Tokenizer& tok, const TaskBuildOptions& o) {
    if (ex.chat && tok.has_chat_template()) {
        ex.prompt_text = tok.apply_chat_template({{"user", user_text}}, true);
        ex.prompt_ids = tok.encode(ex.prompt_text, true, tok.add_bos());
    } else {
        ex.chat = false;  // a model without a chat template (random test models) gets the raw prompt
        ex.prompt_text = user_text;
        ex.prompt_ids = tok.encode(ex.prompt_text, false, tok.add_bos());
    }
    ex.original_tokens = int32_t(ex.prompt_ids.size());
    const int64_t reserve = ex.kind == AnswerKind::GENERATE ? ex.max_new_tokens : 0;
    int64_t limit = o.max_prompt_tokens > 0 ? o.max_prompt_tokens : o.n_ctx - reserve;
    if (o.n_ctx > 0) limit = std::min(limit, o.n_ctx - reserve);
    ex.truncated = middle_truncate(ex.prompt_ids, limit);
}

const json::Value& gold_ctx(const json::Value& item, const std::string& where, size_t* index) {
    const json::Value& ctxs = item.at("ctxs", where);
    int found = -1;
    for (size_t i = 0; i < ctxs.arr.size(); ++i)
        if (ctxs.arr[i].has("isgold") && ctxs.arr[i].at("isgold").b) {
            check(found < 0, where, ": more than one gold passage");
            found = int(i);
        }
    check(found >= 0, where, ": no gold passage (isgold)");
    if (index) *index = size_t(found);
    return ctxs.arr[size_t(found)];
}

Document doc_of(const json::Value& c, const std::string& where) {
    return Document{c.at("title", where).as_string(where), c.at("text", where).as_string(where)};
}

size_t n_items(const TaskBuildOptions& o, size_t available) {
    return o.limit >= 0 ? std::min(available, size_t(o.limit)) : available;
}

Example base(const std::string& task, const std::string& id, int32_t pos) {
    Example ex;
    ex.task = task;
    ex.id = id;
    ex.gold_position = pos;
    return ex;
}

std::vector<Example> build_mdqa(const std::string& name, const Tokenizer& tok, const TaskBuildOptions& o) {
    const TaskSpec& spec = find_task(name);
    const std::string path = data_path(o, "lost_in_the_middle/nq-open-3docs.jsonl");
    const std::vector<json::Value> items = json::read_jsonl(path);
    const bool ten = name == "mdqa-10docs";
    std::vector<Example> out;
    for (size_t i = 0; i < n_items(o, items.size()); ++i) {
        const std::string where = path + ":" + std::to_string(i + 1);
        const json::Value& it = items[i];
        const std::string question = it.at("question", where).as_string(where);
        const std::vector<std::string> answers = it.at("answers", where).as_strings(where);
        size_t gi = 0;
        const Document gold = doc_of(gold_ctx(it, where, &gi), where);
        std::vector<Document> distractors;
        const json::Value& ctxs = it.at("ctxs", where);
        for (size_t k = 0; k < ctxs.arr.size(); ++k)
            if (k != gi) distractors.push_back(doc_of(ctxs.arr[k], where));
        if (ten) {
            // Our construction: gold passages of the following questions (in file order, wrapping around) as extra
            // distractors, skipping any passage that contains one of this question's answers.
            for (size_t step = 1; step < items.size() && int32_t(distractors.size()) < 2 + o.mdqa10_extra; ++step) {
                const size_t j = (i + step) % items.size();
                const std::string wj = path + ":" + std::to_string(j + 1);
                const Document d = doc_of(gold_ctx(items[j], wj, nullptr), wj);
                if (best_subspan_em(d.title + " " + d.text, answers) > 0) continue;
                distractors.push_back(d);
            }
        }
        for (int32_t pos : spec.positions) {
            check(size_t(pos) <= distractors.size() + 1, where, ": gold position ", pos, " but only ",
                  distractors.size() + 1, " documents");
            std::vector<Document> docs = distractors;
            docs.insert(docs.begin() + (pos - 1), gold);
            Example ex = base(name, "nq-" + std::to_string(i), pos);
            ex.chat = true;
            ex.instruction = kMdqaInstruction;
            ex.question = question;
            for (size_t k = 0; k < docs.size(); ++k)
                ex.context += (k ? "\n" : "") + std::string("Document [") + std::to_string(k + 1) + "](Title: " +
                              docs[k].title + ") " + docs[k].text;
            ex.max_new_tokens = new_tokens(o, 128);
            ex.stop_at_newline = true;
            ex.metric = Metric::BEST_SUBSPAN_EM;
            ex.answers = answers;
            finish(ex, render_mdqa_prompt(docs, question), tok, o);
            out.push_back(std::move(ex));
        }
    }
    return out;
}

std::vector<Example> build_nq_single(const std::string& name, const Tokenizer& tok, const TaskBuildOptions& o) {
    const std::string path = data_path(o, "lost_in_the_middle/nq-open-oracle.jsonl");
    const std::vector<json::Value> items = json::read_jsonl(path);
    const bool oracle = name == "nq-oracle";
    std::vector<Example> out;
    for (size_t i = 0; i < n_items(o, items.size()); ++i) {
        const std::string where = path + ":" + std::to_string(i + 1);
        const json::Value& it = items[i];
        Example ex = base(name, "nq-" + std::to_string(i), -1);
        ex.chat = true;
        ex.question = it.at("question", where).as_string(where);
        ex.answers = it.at("answers", where).as_strings(where);
        ex.max_new_tokens = new_tokens(o, 128);
        ex.stop_at_newline = true;
        ex.metric = Metric::BEST_SUBSPAN_EM;
        std::string prompt;
        if (oracle) {
            const Document gold = doc_of(gold_ctx(it, where, nullptr), where);
            ex.instruction = kMdqaInstruction;
            ex.context = "Document [1](Title: " + gold.title + ") " + gold.text;
            prompt = render_mdqa_prompt({gold}, ex.question);
        } else {
            ex.instruction = kClosedbookInstruction;
            prompt = render_closedbook_prompt(ex.question);
        }
        finish(ex, prompt, tok, o);
        out.push_back(std::move(ex));
    }
    return out;
}

std::vector<Example> build_kv(const std::string& name, const Tokenizer& tok, const TaskBuildOptions& o) {
    const TaskSpec& spec = find_task(name);
    const std::string path = data_path(o, name == "kv-75" ? "lost_in_the_middle/kv-retrieval-75_keys.jsonl"
                                                          : "lost_in_the_middle/kv-retrieval-140_keys.jsonl");
    const std::vector<json::Value> items = json::read_jsonl(path);
    std::vector<Example> out;
    for (size_t i = 0; i < n_items(o, items.size()); ++i) {
        const std::string where = path + ":" + std::to_string(i + 1);
        const json::Value& it = items[i];
        const std::string key = it.at("key", where).as_string(where);
        const std::string value = it.at("value", where).as_string(where);
        std::vector<std::pair<std::string, std::string>> recs;
        size_t gi = size_t(-1);
        for (const json::Value& r : it.at("ordered_kv_records", where).arr) {
            check(r.kind == json::Value::ARRAY && r.arr.size() == 2, where, ": a KV record is not [key, value]");
            recs.emplace_back(r.arr[0].as_string(where), r.arr[1].as_string(where));
            if (recs.back().first == key) gi = recs.size() - 1;
        }
        check(gi != size_t(-1), where, ": the key is not among ordered_kv_records");
        check(recs[gi].second == value, where, ": the gold pair's value differs from \"value\"");
        for (int32_t pos : spec.positions) {
            check(size_t(pos) < recs.size(), where, ": gold index ", pos, " but only ", recs.size(), " pairs");
            const auto placed = move_to(recs, gi, size_t(pos));
            Example ex = base(name, "kv-" + std::to_string(i), pos);
            ex.chat = true;
            ex.instruction = kKvInstruction;
            ex.question = key;
            ex.max_new_tokens = new_tokens(o, 100);
            ex.stop_at_newline = true;
            ex.metric = Metric::KV_SUBSTRING;
            ex.answers = {value};
            const std::string prompt = render_kv_prompt(placed, key);
            ex.context = prompt;  // the JSON block is the context; see render_kv_prompt
            finish(ex, prompt, tok, o);
            out.push_back(std::move(ex));
        }
    }
    return out;
}

// The parts of LongBench's QA prompt ("{instr}\n\nThe following are given passages.\n{context}\n\n{instr}\n\n
// Question: {question}\nAnswer:") for methods that build their own prompt (InfiniRetri); left empty when the prompt
// has another shape.
void split_longbench_prompt(const std::string& p, Example& ex) {
    const std::string head = "The following are given passages.\n", q = "\n\nQuestion: ", tail = "\nAnswer:";
    const size_t h = p.find(head), qa = p.rfind(q);
    if (h == std::string::npos || qa == std::string::npos || qa < h || !p.ends_with(tail)) return;
    const size_t instr2 = p.rfind("\n\n", qa - 1);  // the repeated instruction before the question
    if (instr2 == std::string::npos || instr2 < h + head.size()) return;
    ex.instruction = p.substr(0, p.find("\n\n"));
    ex.context = p.substr(h + head.size(), instr2 - (h + head.size()));
    ex.question = p.substr(qa + q.size(), p.size() - tail.size() - (qa + q.size()));
}

std::vector<Example> build_longbench(const LongBenchTask& t, const Tokenizer& tok, const TaskBuildOptions& o) {
    const std::string path = data_path(o, "longbench/minilongbench_237.jsonl");
    std::vector<Example> out;
    int64_t line = 0;
    for (const json::Value& it : json::read_jsonl(path)) {
        ++line;
        const std::string where = path + ":" + std::to_string(line);
        if (it.at("task", where).as_string(where) != t.subset) continue;
        if (o.limit >= 0 && int64_t(out.size()) >= o.limit) break;
        const json::Value& idx = it.at("idx", where);
        Example ex = base(t.name, "lb-" + (idx.kind == json::Value::STRING ? idx.str : idx.str), -1);
        ex.chat = false;  // LongBench's own prompt, no chat template (methods.md 1.5)
        ex.max_new_tokens = new_tokens(o, t.max_new_tokens);
        ex.stop_at_newline = false;
        ex.metric = Metric::BEST_SUBSPAN_EM;
        ex.answers = it.at("answers", where).as_strings(where);
        split_longbench_prompt(it.at("prompt", where).as_string(where), ex);
        finish(ex, it.at("prompt", where).as_string(where), tok, o);
        out.push_back(std::move(ex));
    }
    return out;
}

std::vector<std::vector<std::string>> read_csv(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    check(bool(in), path, ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    std::vector<std::vector<std::string>> rows;
    for (const std::string& rec : split_csv_records(ss.str())) {
        rows.push_back(parse_csv_record(rec));
        check(rows.back().size() == 6, path, ": record ", rows.size(), " has ", rows.back().size(),
              " fields, expected question,A,B,C,D,answer");
    }
    return rows;
}

std::string mmlu_block(const std::vector<std::string>& r, bool with_answer) {
    std::string s = r[0] + "\nA. " + r[1] + "\nB. " + r[2] + "\nC. " + r[3] + "\nD. " + r[4] + "\nAnswer:";
    if (with_answer) s += " " + r[5] + "\n\n";
    return s;
}

std::vector<Example> build_mmlu(const Tokenizer& tok, const TaskBuildOptions& o) {
    const fs::path test_dir = data_path(o, "mmlu/test"), dev_dir = data_path(o, "mmlu/dev");
    std::vector<std::string> subjects;
    for (const auto& e : fs::directory_iterator(test_dir)) {
        const std::string f = e.path().filename().string();
        if (f.size() > 9 && f.ends_with("_test.csv")) subjects.push_back(f.substr(0, f.size() - 9));
    }
    std::sort(subjects.begin(), subjects.end());
    check(!subjects.empty(), test_dir.string(), ": no *_test.csv files");
    // The label tokens: " A".." D" when each is one token (GPT-2-style BPE), else the bare letters.
    std::vector<int32_t> ids;
    for (const char* l : {" A", " B", " C", " D"}) {
        std::vector<int32_t> t = tok.encode(l, false, false);
        if (t.size() != 1) t = tok.encode(std::string(1, l[1]), false, false);
        check(t.size() == 1, "mmlu: the label ", l, " is not one token for this tokenizer");
        ids.push_back(t[0]);
    }
    // Fixed subset: question k of every subject (alphabetical), k = 0..per_subject-1, interleaved so that a
    // --limit takes whole rounds over the subjects.
    std::map<std::string, std::vector<std::vector<std::string>>> tests, devs;
    for (const std::string& s : subjects) {
        tests[s] = read_csv((test_dir / (s + "_test.csv")).string());
        if (o.mmlu_shots > 0) devs[s] = read_csv((dev_dir / (s + "_dev.csv")).string());
    }
    std::vector<Example> out;
    for (int32_t k = 0; k < o.mmlu_per_subject; ++k)
        for (const std::string& s : subjects) {
            if (o.limit >= 0 && int64_t(out.size()) >= o.limit) return out;
            if (size_t(k) >= tests[s].size()) continue;
            const auto& r = tests[s][size_t(k)];
            std::string subject = s;
            std::replace(subject.begin(), subject.end(), '_', ' ');
            std::string prompt = "The following are multiple choice questions (with answers) about " + subject + ".\n\n";
            for (int32_t j = 0; j < o.mmlu_shots && size_t(j) < devs[s].size(); ++j) prompt += mmlu_block(devs[s][size_t(j)], true);
            prompt += mmlu_block(r, false);
            Example ex = base("mmlu", "mmlu-" + s + "-" + std::to_string(k), -1);
            ex.kind = AnswerKind::CHOICE;
            ex.chat = false;
            ex.question = r[0];
            ex.metric = Metric::CHOICE_ACCURACY;
            ex.answers = {r[5]};
            ex.choices = {"A", "B", "C", "D"};
            ex.choice_ids = ids;
            check(r[5] == "A" || r[5] == "B" || r[5] == "C" || r[5] == "D", s, "_test.csv: answer \"", r[5],
                  "\" is not A-D");
            finish(ex, prompt, tok, o);
            out.push_back(std::move(ex));
        }
    return out;
}

}  // namespace

const char* metric_name(Metric m) {
    switch (m) {
        case Metric::BEST_SUBSPAN_EM: return "best_subspan_em";
        case Metric::KV_SUBSTRING: return "kv_substring";
        case Metric::CHOICE_ACCURACY: return "accuracy";
        case Metric::NIAH_WORDS: return "niah_words";
    }
    return "?";
}

const std::vector<TaskSpec>& task_registry() {
    static const std::vector<TaskSpec> tasks = {
        {"mdqa-3docs", "NQ-open, gold + 2 real retrieved distractors (lost-in-the-middle prompt, chat template)", {1, 2, 3}},
        {"mdqa-10docs", "NQ-open, 10 documents: gold + 2 retrieved + 7 gold passages of other questions (our construction)",
         {1, 3, 5, 7, 10}},
        {"kv-75", "key-value retrieval, 75 keys (lost-in-the-middle)", {0, 24, 49, 74}},
        {"kv-140", "key-value retrieval, 140 keys (lost-in-the-middle)", {0, 34, 69, 104, 139}},
        {"nq-closedbook", "NQ-open without documents (what the model knows)", {-1}},
        {"nq-oracle", "NQ-open with only the gold document", {-1}},
        {"longbench-2wikimqa", "LongBench 2wikimqa items of MiniLongBench (13; LongBench prompt, 32 new tokens)", {-1}},
        {"longbench-musique", "LongBench musique items of MiniLongBench (7; LongBench prompt, 32 new tokens)", {-1}},
        {"longbench-qasper", "LongBench qasper items of MiniLongBench (9; LongBench prompt, 128 new tokens)", {-1}},
        {"longbench-hotpotqa", "LongBench hotpotqa items of MiniLongBench (13; LongBench prompt, 32 new tokens)", {-1}},
        {"mmlu", "MMLU fixed subset (first k test questions per subject), 5-shot, next-token logits of A/B/C/D", {-1}},
        {"niah", "needle in a haystack (KVCache-Factory harness; --niah-lengths, --niah-depths, own haystack/needle)",
         {0, 25, 50, 75, 100}},
    };
    static const std::vector<TaskSpec> all = [] {
        std::vector<TaskSpec> v = tasks;
        for (const TaskSpec& t : choice_task_specs()) v.push_back(t);  // RTD's tasks (eval/tasks_choice.cpp)
        return v;
    }();
    return all;
}

const TaskSpec& find_task(const std::string& name) {
    std::string known;
    for (const TaskSpec& t : task_registry()) {
        if (t.name == name) return t;
        known += (known.empty() ? "" : ", ") + t.name;
    }
    fail("unknown task \"", name, "\" (known: ", known, "; groups: mdqa, kv, nq, longbench, rtd, all)");
}

std::vector<std::string> expand_task_names(const std::vector<std::string>& names) {
    std::vector<std::string> out;
    auto add = [&](const std::string& n) {
        if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
    };
    for (const std::string& n : names) {
        if (n == "all") {  // every task but niah (its grid reads up to 1M-token documents: ask for it by name) and
                           // RTD's choice tasks (the group "rtd")
            for (const TaskSpec& t : task_registry())
                if (t.name != "niah" && !is_choice_task(t.name)) add(t.name);
        } else if (n == "rtd") {
            for (const TaskSpec& t : choice_task_specs())
                if (t.name != "user") add(t.name);
        } else if (n == "mdqa" || n == "kv" || n == "longbench" || n == "nq") {
            for (const TaskSpec& t : task_registry())
                if (t.name.rfind(n + "-", 0) == 0) add(t.name);
        } else {
            add(find_task(n).name);
        }
    }
    return out;
}

bool task_reads_data_dir(const std::string& name, const TaskBuildOptions& o) {
    if (name == "niah") return o.niah.haystack.empty();
    return name != "user";
}

std::vector<Example> build_task(const std::string& name, const Tokenizer& tok, const TaskBuildOptions& o) {
    find_task(name);
    if (name == "mdqa-3docs" || name == "mdqa-10docs") return build_mdqa(name, tok, o);
    if (name == "nq-closedbook" || name == "nq-oracle") return build_nq_single(name, tok, o);
    if (name == "kv-75" || name == "kv-140") return build_kv(name, tok, o);
    if (name == "mmlu") return build_mmlu(tok, o);
    if (is_choice_task(name)) return build_choice_task(name, tok, o);
    if (name == "niah") return build_niah(tok, o);
    for (const LongBenchTask& t : kLongBench)
        if (name == t.name) return build_longbench(t, tok, o);
    fail("task ", name, " has no builder");
}

double score_output(const Example& ex, const std::string& output) {
    switch (ex.metric) {
        case Metric::BEST_SUBSPAN_EM: return best_subspan_em(output, ex.answers);
        case Metric::KV_SUBSTRING: return kv_substring_match(output, ex.answers.at(0));
        case Metric::CHOICE_ACCURACY: return output == ex.answers.at(0) ? 1.0 : 0.0;
        case Metric::NIAH_WORDS: return niah_word_score(output, ex.answers.at(0));
    }
    return 0.0;
}

std::string task_detail(const Example& ex, const std::string& output) {
    if (ex.metric == Metric::NIAH_WORDS)
        return std::string("\"strict\":") + (niah_word_score(output, ex.answers.at(0)) == 1.0 ? "1" : "0");
    return "";
}

std::string render_mdqa_prompt(const std::vector<Document>& docs, const std::string& question) {
    std::string s = std::string(kMdqaInstruction) + "\n\n";
    for (size_t k = 0; k < docs.size(); ++k)
        s += (k ? "\n" : "") + std::string("Document [") + std::to_string(k + 1) + "](Title: " + docs[k].title + ") " +
             docs[k].text;
    return s + "\n\nQuestion: " + question + "\nAnswer:";
}

std::string render_closedbook_prompt(const std::string& question) {
    return std::string(kClosedbookInstruction) + "\n\nQuestion: " + question + "\nAnswer:";
}

std::string render_kv_prompt(const std::vector<std::pair<std::string, std::string>>& records, const std::string& key) {
    // lost-in-the-middle's formatting: {"k1": "v1",\n "k2": "v2",\n ... "kn": "vn"}
    std::string kv;
    for (size_t i = 0; i < records.size(); ++i)
        kv += std::string(i == 0 ? "{" : " ") + "\"" + records[i].first + "\": \"" + records[i].second + "\"" +
              (i + 1 < records.size() ? ",\n" : "}");
    return std::string(kKvInstruction) + "\n\nJSON data:\n" + kv + "\n\nKey: \"" + key + "\"\nCorresponding value:";
}

}  // namespace hs::eval
