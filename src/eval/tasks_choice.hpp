// eval/tasks_choice.hpp: the multiple-choice and classification tasks of RTD (issue 13), their data splits and
// their prompts. The same prompt renders the datastore entries (train split, headsweep datastore build) and the
// test questions (eval), so a test query's key is comparable with the datastore's keys.
//
//   task           train (datastore)                               test                                labels
//   arc-easy       multiple_choice/arc/ARC-Easy-Train.jsonl (AI2)  multiple_choice/arc_easy.jsonl      A-D
//   arc-challenge  multiple_choice/arc/ARC-Challenge-Train.jsonl   multiple_choice/arc_challenge.jsonl A-D
//   openbookqa     multiple_choice/openbookqa/train.jsonl          multiple_choice/openbook_qa.jsonl   A-D
//   mmlu-0shot     mmlu/dev + mmlu/val (auxiliary_train is absent; mmlu/test (subjects interleaved)    A-D
//                  subjects interleaved: a capped datastore covers all)
//   sst2           classification/sst2/stsa.binary.train           stsa.binary.test                    negative/positive
//   trec           classification/trec/train.txt                   test.txt                            6 coarse types
//   rte            classification/rte/train.jsonl                  val.jsonl (GLUE test has no labels) True/False
//   cb             classification/cb/train.jsonl                   val.jsonl (likewise)                True/False/Neither
//   user           TaskBuildOptions::user_train (llm-foundry {query, choices, gold} JSONL)  user_test    A, B, ...
//
// Multiple-choice prompt (the reference code's MMLU prompt, zero-shot):
//   "Choose the best answer of the question. Output A, B, C, etc.\nQuestion: {q}\nOptions: \nA. {o1}\n...The answer is: "
// Classification prompts follow Zhao et al. (2021) (the source of the files); see render_choice_prompt.
// Multiple-choice training items whose option count differs from the task's (ARC train has a few 3- and
// 5-option items) are skipped and counted: a datastore's labels are indices into a fixed label set.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eval/tasks.hpp"
#include "rtd/builder.hpp"
#include "rtd/datastore.hpp"

namespace hs::eval {

struct ChoiceItem {
    std::string id;
    std::string question;                // MC: the question; classification: the rendered input text
    std::vector<std::string> options;    // MC only
    int32_t gold = 0;                    // option index / label index
};

struct ChoiceData {
    std::string task;
    bool multiple_choice = true;
    std::vector<std::string> label_names;     // "A".."D" / "negative", "positive" ...
    std::vector<std::string> label_tokens;    // the text whose first token scores each label (p_LM)
    std::vector<ChoiceItem> items;
    std::string sources;                      // files read, ';'-separated
    int64_t skipped = 0;                      // items left out (other option count)
};

enum class ChoiceSplit { TRAIN, TEST };

bool is_choice_task(const std::string& name);
const std::vector<TaskSpec>& choice_task_specs();
ChoiceData load_choice_data(const std::string& task, ChoiceSplit split, const TaskBuildOptions& options);

// The prompt of item under `rotation` (MC: option i shown at position (i - rotation) mod n; classification:
// rotation must be 0); *label = the gold label's index under that rotation.
std::string render_choice_prompt(const ChoiceData& data, const ChoiceItem& item, int32_t rotation, int32_t* label);
std::string choice_prompt_template(const ChoiceData& data);   // with {question}/{options}: for the file
// The label token ids (first token of each label_tokens entry; distinct), throws naming the task otherwise.
std::vector<int32_t> choice_label_ids(const ChoiceData& data, const Tokenizer& tok);

// Test examples (item order; mmlu-0shot interleaves subjects so that --limit takes whole rounds). With
// options.choice_shots > 0, Example::context holds that many solved training prompts (a fixed shuffle of the train
// split, seed 0) for the `icl` method.
std::vector<Example> build_choice_task(const std::string& name, const Tokenizer& tok, const TaskBuildOptions& options);

// The datastore build plan of a task's train split: items in file order, each with its rotations (multiple
// choice, unless !rotations), whole items up to the cap; items whose prompt exceeds max_tokens are skipped and
// counted. info gets everything but the model fields (model_spec, model_sha256, d, n_head, head_dim).
struct ChoiceDatastorePlan {
    rtd::DatastoreInfo info;
    std::vector<rtd::BuildEntry> entries;
};
ChoiceDatastorePlan plan_choice_datastore(const ChoiceData& train, const Tokenizer& tok, int64_t cap,
                                          int64_t max_tokens, bool rotations);

}  // namespace hs::eval
