// eval/tasks.hpp: the evaluation tasks. Each task is one entry of task_registry() with, in one place, its data
// file, its prompt, its decoding settings and its metric; build_task() turns it into Examples, already tokenised
// for the model under test. Methods (eval/methods.hpp) answer Examples without knowing which task they came from.
//
//   task            data (under --data-dir)                        positions          prompt           new tok  metric
//   mdqa-3docs      lost_in_the_middle/nq-open-3docs.jsonl         gold doc 1,2,3     chat, LiM qa     128, \n  best_subspan_em
//   mdqa-10docs     same + gold passages of other questions (ours) gold doc 1,3,5,7,10 chat, LiM qa    128, \n  best_subspan_em
//   kv-75           lost_in_the_middle/kv-retrieval-75_keys.jsonl  index 0,24,49,74   chat, LiM kv     100, \n  kv substring
//   kv-140          lost_in_the_middle/kv-retrieval-140_keys.jsonl index 0,34,69,104,139 chat          100, \n  kv substring
//   nq-closedbook   lost_in_the_middle/nq-open-oracle.jsonl (no docs)  -              chat, LiM cb     128, \n  best_subspan_em
//   nq-oracle       lost_in_the_middle/nq-open-oracle.jsonl (gold doc) -              chat, LiM qa     128, \n  best_subspan_em
//   longbench-2wikimqa / -musique / -qasper / -hotpotqa                -              LongBench, raw   32/32/128/32  best_subspan_em
//                   longbench/minilongbench_237.jsonl
//   mmlu            mmlu/dev (shots), mmlu/test (questions)        -                  raw, 5-shot      logits   accuracy
//   niah            niah/PaulGrahamEssays (or --niah-haystack)     depth % 0..100     chat, IR tmpl    48       answer words found
// Positions: mdqa = 1-based document number of the gold document (as the paper's plots); kv = 0-based index of
// the gold pair (the paper's indices); -1 = the task has no gold position.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eval/niah_options.hpp"

namespace hs {
class Tokenizer;
}

namespace hs::eval {

enum class Metric { BEST_SUBSPAN_EM, KV_SUBSTRING, CHOICE_ACCURACY, NIAH_WORDS };
enum class AnswerKind { GENERATE, CHOICE };
const char* metric_name(Metric m);

struct Example {
    std::string task;               // task name (registry key)
    std::string id;                 // stable item id within the task, e.g. "nq-17", "kv-3", "mmlu-anatomy-2"
    int32_t gold_position = -1;     // see the table above; -1: none
    // The parts a method may use to build its own prompt (e.g. InfiniRetri reads `context` in chunks and asks
    // `question` with its own template). For LongBench the prompt is LongBench's own; context and question are its
    // passages and question, cut out of it (empty when the prompt has another shape).
    std::string instruction, context, question;
    bool chat = false;              // prompt_text is wrapped in the model's chat template
    std::string prompt_text;        // the rendered prompt (template applied)
    std::vector<int32_t> prompt_ids;  // tokenised, middle-truncated when longer than the limit
    int32_t original_tokens = 0;    // before truncation
    bool truncated = false;
    // Decoding and scoring.
    AnswerKind kind = AnswerKind::GENERATE;
    int32_t max_new_tokens = 0;     // GENERATE: greedy, at most this many new tokens
    bool stop_at_newline = false;   // GENERATE: stop at the first token that contains '\n'
    Metric metric = Metric::BEST_SUBSPAN_EM;
    std::vector<std::string> answers;   // gold answers (KV: the value; CHOICE: the gold label)
    std::vector<std::string> choices;   // CHOICE: option labels ("A".."D")
    std::vector<int32_t> choice_ids;    // CHOICE: the token id whose next-token logit scores each label
};

struct TaskSpec {
    std::string name;
    std::string description;              // one line, for --list-tasks and the output file
    std::vector<int32_t> positions;       // gold positions evaluated ({-1} when none)
};

struct TaskBuildOptions {
    std::string data_dir;                 // the shared/data folder
    int64_t limit = -1;                   // items per (task, gold position): the first `limit` items; -1 all
    int32_t max_new_tokens_cap = 0;       // > 0: min(task setting, cap) -- for small runs; recorded in the file
    int64_t max_prompt_tokens = 0;        // prompts longer are middle-truncated; 0: n_ctx - max_new_tokens
    int64_t n_ctx = 0;                    // the model's context length
    int32_t mmlu_shots = 5;               // 0..5 examples from mmlu/dev of the same subject
    int32_t mmlu_per_subject = 5;         // the fixed subset: the first k test questions of every subject
    int32_t mdqa10_extra = 7;             // mdqa-10docs: gold passages of other questions added as distractors
    // RTD's choice tasks (eval/tasks_choice.hpp)
    int32_t choice_shots = 0;             // > 0: Example::context holds this many solved train prompts (icl method)
    std::string user_train, user_test;    // task "user": llm-foundry {query, choices, gold} JSONL files
    NiahOptions niah;                     // niah: haystack, needle, lengths, depths (eval/tasks_niah.hpp)
};

const std::vector<TaskSpec>& task_registry();
const TaskSpec& find_task(const std::string& name);  // throws hs::Error listing the known names
// Expands "mdqa" -> mdqa-3docs,mdqa-10docs; "kv" -> kv-75,kv-140; "longbench" -> the four; "all" -> everything.
std::vector<std::string> expand_task_names(const std::vector<std::string>& names);

// Whether the task reads files under options.data_dir: every task but niah with its own --niah-haystack and the
// user task (its --user-train / --user-test files), so a user who brings their own data needs no data folder.
bool task_reads_data_dir(const std::string& name, const TaskBuildOptions& options);

// The examples of one task: items in file order x positions (item-major), tokenised with `tok`.
std::vector<Example> build_task(const std::string& name, const Tokenizer& tok, const TaskBuildOptions& options);

// The task's metric on one output (GENERATE: the decoded new text; CHOICE: the chosen label).
double score_output(const Example& ex, const std::string& output);
// Task facts of one output for the record's detail (a JSON member list without braces, e.g. "\"strict\":1"; "" none).
std::string task_detail(const Example& ex, const std::string& output);

// Exposed for tests: prompt renderers, exactly as the tasks use them.
struct Document {
    std::string title, text;
};
std::string render_mdqa_prompt(const std::vector<Document>& docs, const std::string& question);
std::string render_closedbook_prompt(const std::string& question);
std::string render_kv_prompt(const std::vector<std::pair<std::string, std::string>>& records, const std::string& key);

}  // namespace hs::eval
