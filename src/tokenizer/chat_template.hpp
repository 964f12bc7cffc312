// tokenizer/chat_template.hpp (private to src/tokenizer): the chat templates we render, recognised from the Jinja
// text of the file's tokenizer.chat_template. We do not run Jinja: a template is rendered only when its text is one
// we know, and anything else is refused rather than rendered wrongly.
//
// Known: SmolLM2-Instruct's ChatML (with its default system prompt) and plain ChatML; Gemma 3's
// <start_of_turn>/<end_of_turn> template (the system message folded into the first user turn).
#pragma once

#include <string>
#include <vector>

namespace hs {

struct ChatMessage;

namespace chat {

enum class Style { UNKNOWN, CHATML, GEMMA };

struct Template {
    Style style = Style::UNKNOWN;
    std::string default_system;  // CHATML: the system turn added when the conversation has none ("" = none)
    std::string system_sep;      // GEMMA: what follows the system text at the head of the first user turn
};

Template recognise(const std::string& jinja);

// The rendered conversation, as transformers' apply_chat_template(tokenize=False) renders it, except that a leading
// {{ bos_token }} of the template is left out: the caller's encode(text, parse_special, add_bos) adds BOS, as HF
// does when it tokenizes the rendering. `source` names the file in errors (a conversation the template refuses).
std::string render(const Template& t, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                   const std::string& source);

}  // namespace chat
}  // namespace hs
