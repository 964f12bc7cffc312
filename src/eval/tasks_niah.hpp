// eval/tasks_niah.hpp: needle in a haystack (`niah`), as the harness the InfiniRetri authors used
// (KVCache-Factory's run_needle_in_haystack.py; shared/research/infiniretri_rtd.md §A.3):
//   haystack  the essays (*.txt of the folder, sorted by name) concatenated, tokenised ONCE, and the token ids
//             repeated to the longest length (a repeat joins ids, so the text at an essay-file border can tokenise
//             a little differently from the harness, which re-tokenises the repeated text)
//   context   the first (length - buffer - needle) haystack tokens; the needle's tokens inserted at depth d% of
//             them, moved back until the token before is a period token ("."); depth 100 appends; decoded to text
//   prompt    InfiniRetri's template ("Read the book and answer the question. ...") with the question, inside the
//             chat template with an empty system message (the plain template for models without one): vanilla reads
//             it middle-truncated to the context; infiniretri reads ex.context in chunks with the same template
//   score     the harness's visualize.py: the fraction of the expected answer's words (lower-cased, split on
//             whitespace) found as substrings of the lower-cased response; strict accuracy (all words) is the
//             record's detail "strict"
// One Example per (length, depth): id "niah-<length>-d<depth>", gold_position = depth.
#pragma once

#include <string>
#include <vector>

#include "eval/tasks.hpp"

namespace hs::eval {

std::vector<Example> build_niah(const Tokenizer& tok, const TaskBuildOptions& o);
double niah_word_score(const std::string& response, const std::string& answer);
// The haystack's text: a folder's *.txt (sorted) concatenated, or one file. Throws naming the path when empty.
std::string read_haystack(const std::string& path);

}  // namespace hs::eval
