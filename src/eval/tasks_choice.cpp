#include "eval/tasks_choice.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "eval/text.hpp"
#include "tokenizer/tokenizer.hpp"
#include "util/error.hpp"
#include "util/json.hpp"

namespace hs::eval {

namespace fs = std::filesystem;

namespace {

const char* kMcInstruction = "Choose the best answer of the question. Output A, B, C, etc.";

struct Cls {
    const char* task;
    std::vector<std::string> names;    // label names, in label-index order
    std::vector<std::string> tokens;   // label words as scored (leading space: BPE word tokens)
};
const std::vector<Cls>& cls_specs() {
    static const std::vector<Cls> v = {
        {"sst2", {"negative", "positive"}, {" negative", " positive"}},
        {"trec", {"ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"},
         {" Abbreviation", " Entity", " Description", " Person", " Location", " Number"}},
        {"rte", {"entailment", "not_entailment"}, {" True", " False"}},
        {"cb", {"entailment", "contradiction", "neutral"}, {" True", " False", " Neither"}},
    };
    return v;
}
const Cls* find_cls(const std::string& task) {
    for (const Cls& c : cls_specs())
        if (task == c.task) return &c;
    return nullptr;
}

std::string path_in(const TaskBuildOptions& o, const std::string& rel) {
    const fs::path p = fs::path(o.data_dir) / rel;
    check(fs::exists(p), p.string(), ": missing (data folder: --data-dir or HEADSWEEP_DATA; see shared/data/MANIFEST.md)");
    return p.string();
}

std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    check(bool(in), path, ": cannot open");
    std::vector<std::string> out;
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!line.empty()) out.push_back(line);
    }
    return out;
}

int32_t label_index(const Cls& c, const std::string& name, const std::string& where) {
    for (size_t i = 0; i < c.names.size(); ++i)
        if (c.names[i] == name) return int32_t(i);
    fail(where, ": label \"", name, "\" is not one of the task's labels");
}

// ---- multiple choice readers: AI2 ({question:{stem, choices:[{text,label}]}, answerKey}) and llm-foundry
// ({query, choices, gold}). Items with another option count than n_options are skipped (counted).
void read_ai2(const std::string& path, int32_t n_options, ChoiceData& d) {
    const std::vector<json::Value> rows = json::read_jsonl(path);
    for (size_t i = 0; i < rows.size(); ++i) {
        const std::string where = path + ":" + std::to_string(i + 1);
        const json::Value& q = rows[i].at("question", where);
        const json::Value& ch = q.at("choices", where);
        if (int32_t(ch.arr.size()) != n_options) {
            ++d.skipped;
            continue;
        }
        ChoiceItem it;
        it.id = rows[i].has("id") ? rows[i].at("id").as_string(where) : std::to_string(i);
        it.question = q.at("stem", where).as_string(where);
        const std::string key = rows[i].at("answerKey", where).as_string(where);
        it.gold = -1;
        for (size_t j = 0; j < ch.arr.size(); ++j) {
            it.options.push_back(ch.arr[j].at("text", where).as_string(where));
            if (ch.arr[j].at("label", where).as_string(where) == key) it.gold = int32_t(j);
        }
        check(it.gold >= 0, where, ": answerKey \"", key, "\" is not one of the choice labels");
        d.items.push_back(std::move(it));
    }
}

void read_foundry(const std::string& path, int32_t n_options, bool strip_question_prefix, ChoiceData& d) {
    const std::vector<json::Value> rows = json::read_jsonl(path);
    for (size_t i = 0; i < rows.size(); ++i) {
        const std::string where = path + ":" + std::to_string(i + 1);
        ChoiceItem it;
        it.id = std::to_string(i);
        it.question = rows[i].at("query", where).as_string(where);
        if (strip_question_prefix && it.question.rfind("Question: ", 0) == 0) it.question = it.question.substr(10);
        it.options = rows[i].at("choices", where).as_strings(where);
        const json::Value& g = rows[i].at("gold", where);
        check(g.kind == json::Value::NUMBER, where, ": gold is not a number");
        it.gold = int32_t(g.num);
        check(it.gold >= 0 && size_t(it.gold) < it.options.size(), where, ": gold = ", g.str, " is outside the ",
              it.options.size(), " choices");
        check(it.options.size() >= 2 && it.options.size() <= 26, where, ": ", it.options.size(),
              " choices (2..26 supported)");
        if (n_options > 0 && int32_t(it.options.size()) != n_options) {
            ++d.skipped;
            continue;
        }
        d.items.push_back(std::move(it));
    }
}

// CSV as Python's csv module reads it (the MMLU files were written by it): a quote opens a quoted field only at
// the start of a field ("" inside is a quote; newlines are kept); elsewhere it is a plain character (MMLU val has
// such fields, e.g. `...Will to Truth?",`, which a quote-toggling reader mis-splits).
std::vector<std::vector<std::string>> parse_csv_python(std::string_view text) {
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> row;
    std::string field;
    bool quoted = false, at_start = true, any = false;
    auto end_field = [&] {
        row.push_back(field);
        field.clear();
        at_start = true;
    };
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (quoted) {
            if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
                field += '"';
                ++i;
            } else if (c == '"') {
                quoted = false;
            } else {
                field += c;
            }
            continue;
        }
        if (c == '"' && at_start) {
            quoted = true;
            at_start = false;
            any = true;
        } else if (c == ',') {
            end_field();
            any = true;
        } else if (c == '\n' || c == '\r') {
            if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
            if (any || !field.empty()) {
                end_field();
                rows.push_back(std::move(row));
                row.clear();
            }
            any = false;
        } else {
            field += c;
            at_start = false;
            any = true;
        }
    }
    if (any || !field.empty()) {
        end_field();
        rows.push_back(std::move(row));
    }
    return rows;
}

std::vector<std::vector<std::string>> read_mmlu_csv(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    check(bool(in), path, ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    std::vector<std::vector<std::string>> rows = parse_csv_python(ss.str());
    for (size_t i = 0; i < rows.size(); ++i)
        check(rows[i].size() == 6, path, ": record ", i + 1, " has ", rows[i].size(),
              " fields, expected question,A,B,C,D,answer");
    return rows;
}

ChoiceItem mmlu_item(const std::vector<std::string>& r, const std::string& id, const std::string& where) {
    ChoiceItem it;
    it.id = id;
    it.question = r[0];
    it.options = {r[1], r[2], r[3], r[4]};
    check(r[5].size() == 1 && r[5][0] >= 'A' && r[5][0] <= 'D', where, ": answer \"", r[5], "\" is not A-D");
    it.gold = r[5][0] - 'A';
    return it;
}

std::vector<std::string> mmlu_subjects(const std::string& dir, const std::string& suffix) {
    std::vector<std::string> s;
    for (const auto& e : fs::directory_iterator(dir)) {
        const std::string f = e.path().filename().string();
        if (f.size() > suffix.size() && f.ends_with(suffix)) s.push_back(f.substr(0, f.size() - suffix.size()));
    }
    std::sort(s.begin(), s.end());
    check(!s.empty(), dir, ": no *", suffix, " files");
    return s;
}

void load_mmlu(ChoiceSplit split, const TaskBuildOptions& o, ChoiceData& d) {
    if (split == ChoiceSplit::TRAIN) {  // dev + val (auxiliary_train is not in shared/data)
        // Per subject: its dev questions, then its val questions; subjects interleaved (question k of every
        // subject, k = 0, 1, ...) so that a capped datastore covers every subject.
        std::map<std::string, std::vector<ChoiceItem>> by_subject;
        for (const char* part : {"dev", "val"}) {
            const std::string dir = path_in(o, std::string("mmlu/") + part), suffix = std::string("_") + part + ".csv";
            for (const std::string& s : mmlu_subjects(dir, suffix)) {
                const std::string f = (fs::path(dir) / (s + suffix)).string();
                const auto rows = read_mmlu_csv(f);
                for (size_t i = 0; i < rows.size(); ++i)
                    by_subject[s].push_back(mmlu_item(rows[i], s + "-" + part + "-" + std::to_string(i), f));
            }
            d.sources += std::string(d.sources.empty() ? "" : ";") + dir;
        }
        size_t longest = 0;
        for (const auto& [s, v] : by_subject) longest = std::max(longest, v.size());
        for (size_t k = 0; k < longest; ++k)
            for (const auto& [s, v] : by_subject)
                if (k < v.size()) d.items.push_back(v[k]);
        return;
    }
    const std::string dir = path_in(o, "mmlu/test");
    d.sources = dir;
    std::map<std::string, std::vector<std::vector<std::string>>> tests;
    const std::vector<std::string> subjects = mmlu_subjects(dir, "_test.csv");
    size_t longest = 0;
    for (const std::string& s : subjects) {
        tests[s] = read_mmlu_csv((fs::path(dir) / (s + "_test.csv")).string());
        longest = std::max(longest, tests[s].size());
    }
    for (size_t k = 0; k < longest; ++k)  // interleaved: a --limit takes whole rounds over the subjects
        for (const std::string& s : subjects)
            if (k < tests[s].size()) d.items.push_back(mmlu_item(tests[s][k], s + "-" + std::to_string(k), s + "_test.csv"));
}

void load_cls(const Cls& c, ChoiceSplit split, const TaskBuildOptions& o, ChoiceData& d) {
    const std::string task = c.task;
    const bool train = split == ChoiceSplit::TRAIN;
    if (task == "sst2") {
        const std::string f = path_in(o, train ? "classification/sst2/stsa.binary.train" : "classification/sst2/stsa.binary.test");
        d.sources = f;
        const auto lines = read_lines(f);
        for (size_t i = 0; i < lines.size(); ++i) {
            const std::string& l = lines[i];
            check(l.size() > 2 && (l[0] == '0' || l[0] == '1') && l[1] == ' ', f, ":", i + 1, ": not \"0|1 text\"");
            d.items.push_back({std::to_string(i), "Review: " + l.substr(2) + "\nSentiment:", {}, l[0] - '0'});
        }
    } else if (task == "trec") {
        const std::string f = path_in(o, train ? "classification/trec/train.txt" : "classification/trec/test.txt");
        d.sources = f;
        const auto lines = read_lines(f);
        for (size_t i = 0; i < lines.size(); ++i) {
            const std::string& l = lines[i];
            const size_t colon = l.find(':'), space = l.find(' ');
            check(colon != std::string::npos && space != std::string::npos && colon < space, f, ":", i + 1,
                  ": not \"TYPE:fine question\"");
            const int32_t y = label_index(c, l.substr(0, colon), f + ":" + std::to_string(i + 1));
            d.items.push_back({std::to_string(i),
                               "Classify the questions based on whether their answer type is a Number, Location, "
                               "Person, Description, Entity, or Abbreviation.\n\nQuestion: " +
                                   l.substr(space + 1) + "\nAnswer Type:",
                               {},
                               y});
        }
    } else {  // rte, cb: {premise, hypothesis, label}
        const std::string f = path_in(o, "classification/" + task + (train ? "/train.jsonl" : "/val.jsonl"));
        d.sources = f;
        const std::vector<json::Value> rows = json::read_jsonl(f);
        for (size_t i = 0; i < rows.size(); ++i) {
            const std::string where = f + ":" + std::to_string(i + 1);
            const std::string p = rows[i].at("premise", where).as_string(where);
            const std::string h = rows[i].at("hypothesis", where).as_string(where);
            const int32_t y = label_index(c, rows[i].at("label", where).as_string(where), where);
            const std::string q = task == "rte" ? " True or False?" : " True, False, or Neither?";
            d.items.push_back({std::to_string(i), p + "\nquestion: " + h + q + "\nanswer:", {}, y});
        }
    }
}

std::string letters(size_t n) {
    std::string s;
    for (size_t i = 0; i < n; ++i) s += std::string(i ? ", " : "") + char('A' + i);
    return s;
}

}  // namespace

bool is_choice_task(const std::string& name) {
    for (const TaskSpec& t : choice_task_specs())
        if (t.name == name) return true;
    return false;
}

const std::vector<TaskSpec>& choice_task_specs() {
    static const std::vector<TaskSpec> v = {
        {"arc-easy", "ARC-Easy test (2,376; datastore: ARC-Easy-Train), RTD's MMLU-style prompt, logits of A-D", {-1}},
        {"arc-challenge", "ARC-Challenge test (1,172; datastore: ARC-Challenge-Train), RTD prompt, A-D", {-1}},
        {"openbookqa", "OpenBookQA test (500; datastore: train 4,957), RTD prompt, A-D", {-1}},
        {"mmlu-0shot", "MMLU full test (14,042, subjects interleaved), zero-shot RTD prompt (datastore: dev+val)", {-1}},
        {"sst2", "SST-2 test (1,821; datastore: train 6,920), negative/positive", {-1}},
        {"trec", "TREC test (499; datastore: train 5,451), 6 coarse answer types", {-1}},
        {"rte", "RTE validation (277; the GLUE test has no labels; datastore: train 2,490), True/False", {-1}},
        {"cb", "CommitmentBank validation (56; datastore: train 250), True/False/Neither", {-1}},
        {"user", "user multiple choice: --user-train / --user-test llm-foundry {query, choices, gold} JSONL", {-1}},
    };
    return v;
}

ChoiceData load_choice_data(const std::string& task, ChoiceSplit split, const TaskBuildOptions& o) {
    ChoiceData d;
    d.task = task;
    const bool train = split == ChoiceSplit::TRAIN;
    if (const Cls* c = find_cls(task)) {
        d.multiple_choice = false;
        d.label_names = c->names;
        d.label_tokens = c->tokens;
        load_cls(*c, split, o, d);
    } else {
        int32_t n_options = 4;
        if (task == "arc-easy" || task == "arc-challenge") {
            const std::string cap = task == "arc-easy" ? "Easy" : "Challenge";
            const std::string f = train ? path_in(o, "multiple_choice/arc/ARC-" + cap + "-Train.jsonl")
                                        : path_in(o, "multiple_choice/arc_" + task.substr(4) + ".jsonl");
            d.sources = f;
            train ? read_ai2(f, n_options, d) : read_foundry(f, n_options, true, d);
        } else if (task == "openbookqa") {
            const std::string f = train ? path_in(o, "multiple_choice/openbookqa/train.jsonl")
                                        : path_in(o, "multiple_choice/openbook_qa.jsonl");
            d.sources = f;
            train ? read_ai2(f, n_options, d) : read_foundry(f, n_options, false, d);
        } else if (task == "mmlu-0shot") {
            load_mmlu(split, o, d);
        } else if (task == "user") {
            const std::string f = train ? o.user_train : o.user_test;
            check(!f.empty(), "task user: give ", train ? "--user-train" : "--user-test",
                  " (llm-foundry {query, choices, gold} JSONL)");
            check(fs::exists(f), f, ": no such file (task user)");
            d.sources = f;
            read_foundry(f, 0, false, d);
            check(!d.items.empty(), f, ": no items (task user)");
            n_options = int32_t(d.items[0].options.size());
            for (size_t i = 0; i < d.items.size(); ++i)
                check(int32_t(d.items[i].options.size()) == n_options, f, ":", i + 1, ": ", d.items[i].options.size(),
                      " choices but the first item has ", n_options, " (a datastore needs one label set)");
        } else {
            fail("task ", task, " is not an RTD choice task");
        }
        for (int32_t i = 0; i < n_options; ++i) {
            d.label_names.push_back(std::string(1, char('A' + i)));
            d.label_tokens.push_back(std::string(1, char('A' + i)));  // after "The answer is: " (trailing space)
        }
    }
    check(!d.items.empty(), task, ": no items in ", d.sources);
    return d;
}

std::string render_choice_prompt(const ChoiceData& d, const ChoiceItem& it, int32_t rotation, int32_t* label) {
    if (!d.multiple_choice) {
        check(rotation == 0, d.task, ": classification prompts have no rotations");
        if (label) *label = it.gold;
        return it.question;
    }
    const int32_t n = int32_t(it.options.size());
    check(n == int32_t(d.label_names.size()), d.task, "/", it.id, ": ", n, " choices, the task has ",
          d.label_names.size(), " labels");
    // Rotation r shows option (j + r) mod n at position j; the gold option moves to (gold - r) mod n.
    std::string s = std::string(kMcInstruction) + "\nQuestion: " + it.question + "\nOptions: \n";
    for (int32_t j = 0; j < n; ++j) s += std::string(1, char('A' + j)) + ". " + it.options[size_t((j + rotation) % n)] + "\n";
    s += "The answer is: ";
    if (label) *label = ((it.gold - rotation) % n + n) % n;
    return s;
}

std::string choice_prompt_template(const ChoiceData& d) {
    if (!d.multiple_choice) {
        if (d.task == "sst2") return "Review: {sentence}\nSentiment:";
        if (d.task == "trec")
            return "Classify the questions based on whether their answer type is a Number, Location, Person, "
                   "Description, Entity, or Abbreviation.\n\nQuestion: {question}\nAnswer Type:";
        return std::string("{premise}\nquestion: {hypothesis}") +
               (d.task == "rte" ? " True or False?" : " True, False, or Neither?") + "\nanswer:";
    }
    return std::string(kMcInstruction) + "\nQuestion: {question}\nOptions: \n{letter}. {option}\n... (" +
           letters(d.label_names.size()) + ")\nThe answer is: ";
}

std::vector<int32_t> choice_label_ids(const ChoiceData& d, const Tokenizer& tok) {
    std::vector<int32_t> ids;
    for (const std::string& t : d.label_tokens) {
        const std::vector<int32_t> e = tok.encode(t, false, false);
        check(!e.empty(), d.task, ": label text \"", t, "\" has no tokens");
        check(std::find(ids.begin(), ids.end(), e[0]) == ids.end(), d.task, ": labels share their first token (\"", t,
              "\")");
        ids.push_back(e[0]);
    }
    return ids;
}

std::vector<Example> build_choice_task(const std::string& name, const Tokenizer& tok, const TaskBuildOptions& o) {
    const ChoiceData test = load_choice_data(name, ChoiceSplit::TEST, o);
    const std::vector<int32_t> ids = choice_label_ids(test, tok);
    std::string shots;
    if (o.choice_shots > 0) {
        const ChoiceData train = load_choice_data(name, ChoiceSplit::TRAIN, o);
        std::vector<size_t> order(train.items.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::mt19937_64 rng(0);  // Fisher-Yates with our own draw: the same order on every platform
        for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[size_t(rng() % i)]);
        for (int32_t s = 0; s < o.choice_shots && size_t(s) < order.size(); ++s) {
            int32_t y = 0;
            const ChoiceItem& it = train.items[order[size_t(s)]];
            shots += render_choice_prompt(train, it, 0, &y) + (test.multiple_choice ? "" : " ") + 
                     (test.multiple_choice ? train.label_names[size_t(y)] : train.label_tokens[size_t(y)].substr(1)) +
                     "\n\n";
        }
    }
    std::vector<Example> out;
    const size_t n = o.limit >= 0 ? std::min(test.items.size(), size_t(o.limit)) : test.items.size();
    for (size_t i = 0; i < n; ++i) {
        const ChoiceItem& it = test.items[i];
        Example ex;
        ex.task = name;
        ex.id = name + "-" + it.id;
        ex.kind = AnswerKind::CHOICE;
        ex.metric = Metric::CHOICE_ACCURACY;
        ex.chat = false;
        ex.question = it.question;
        ex.context = shots;
        int32_t y = 0;
        ex.prompt_text = render_choice_prompt(test, it, 0, &y);
        ex.prompt_ids = tok.encode(ex.prompt_text, false, tok.add_bos());
        ex.original_tokens = int32_t(ex.prompt_ids.size());
        ex.choices = test.label_names;
        ex.choice_ids = ids;
        ex.answers = {test.label_names[size_t(y)]};
        out.push_back(std::move(ex));
    }
    return out;
}

ChoiceDatastorePlan plan_choice_datastore(const ChoiceData& data, const Tokenizer& tok, int64_t cap,
                                          int64_t max_tokens, bool rotations) {
    ChoiceDatastorePlan p;
    rtd::DatastoreInfo& info = p.info;
    info.task = data.task;
    info.sources = data.sources;
    info.prompt_template = choice_prompt_template(data);
    info.n_labels = int32_t(data.label_names.size());
    info.label_names = data.label_names;
    info.cap = cap;
    info.rotations = data.multiple_choice && rotations;
    for (size_t i = 0; i < data.items.size(); ++i) {
        const ChoiceItem& it = data.items[i];
        const int32_t R = info.rotations ? int32_t(it.options.size()) : 1;
        if (int64_t(p.entries.size()) + R > cap) break;
        std::vector<rtd::BuildEntry> entries;
        bool too_long = false;
        for (int32_t r = 0; r < R; ++r) {
            rtd::BuildEntry e;
            e.item = int32_t(i);
            e.ids = tok.encode(render_choice_prompt(data, it, r, &e.label), false, tok.add_bos());
            too_long |= int64_t(e.ids.size()) > max_tokens;
            entries.push_back(std::move(e));
        }
        if (too_long) {
            ++info.items_skipped;
            continue;
        }
        ++info.items_used;
        for (auto& e : entries) p.entries.push_back(std::move(e));
    }
    info.items_skipped += data.skipped;
    info.planned = int64_t(p.entries.size());
    return p;
}

}  // namespace hs::eval
