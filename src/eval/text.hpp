// eval/text.hpp: the scoring and prompt-building primitives of the evaluation tasks (pure functions, unit-tested
// against hand-computed cases in tests/test_eval_text.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hs::eval {

// Answer normalisation of lost-in-the-middle / SQuAD (shared/data/MANIFEST.md), in the same order as the Python:
// lowercase -> remove ASCII punctuation (Python's string.punctuation) -> replace the words a/an/the by a space
// (regex \b(a|an|the)\b) -> collapse whitespace (" ".join(s.split())).
// Lowercasing covers ASCII and Latin-1 letters (U+00C0..U+00DE); other scripts are left as they are (Python's
// str.lower would also fold e.g. Greek/Cyrillic capitals). Word characters for \b are ASCII letters, digits, '_'
// and every non-ASCII byte (Python's Unicode \w, approximated).
std::string normalize_answer(std::string_view s);

// 1 if any normalised gold answer is a substring of the normalised prediction, else 0 (an empty normalised
// answer matches everything, as in the Python).
double best_subspan_em(std::string_view prediction, const std::vector<std::string>& answers);

// KV retrieval: 1 if the gold value is a case-insensitive (ASCII) substring of the output.
double kv_substring_match(std::string_view prediction, std::string_view value);

// LongBench's middle truncation: when ids has more than max_tokens, keep the first floor(max_tokens/2) and the
// last floor(max_tokens/2) ids (so an odd limit keeps max_tokens - 1). Returns whether it truncated.
bool middle_truncate(std::vector<int32_t>& ids, int64_t max_tokens);

// Moves the element at `from` to index `to` (0-based), keeping the others in order: how the gold document / KV
// pair is placed at the position under test.
template <class T>
std::vector<T> move_to(std::vector<T> items, size_t from, size_t to) {
    T x = items.at(from);
    items.erase(items.begin() + std::ptrdiff_t(from));
    items.insert(items.begin() + std::ptrdiff_t(to), std::move(x));
    return items;
}

// One headerless CSV line (RFC 4180 quoting: "a,b" and "" for a quote). Quoted fields may span lines: pass the
// whole file to split_csv_records first.
std::vector<std::string> parse_csv_record(std::string_view line);
std::vector<std::string> split_csv_records(std::string_view text);  // records, honouring quoted newlines

// The first line of s (up to the first '\n'), with surrounding whitespace removed.
std::string first_line(std::string_view s);

}  // namespace hs::eval
