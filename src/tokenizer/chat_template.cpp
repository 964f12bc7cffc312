// tokenizer/chat_template.cpp: recognising and rendering the chat templates we know (see chat_template.hpp).
#include "tokenizer/chat_template.hpp"

#include <string_view>

#include "tokenizer/tokenizer.hpp"
#include "util/error.hpp"

namespace hs::chat {
namespace {

// ---------------------------------------------------------------- ChatML (SmolLM2-Instruct)

// SmolLM2-Instruct's ChatML template, around its default system prompt. Templates of exactly this shape (any
// default prompt) and plain ChatML are rendered.
constexpr std::string_view kSmolTemplateHead =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n";
constexpr std::string_view kSmolTemplateTail =
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
constexpr std::string_view kPlainChatmlTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

bool recognise_chatml(const std::string& tmpl, Template& t) {
    if (tmpl == kPlainChatmlTemplate) {
        t.style = Style::CHATML;
        return true;
    }
    if (tmpl.size() > kSmolTemplateHead.size() + kSmolTemplateTail.size() && tmpl.starts_with(kSmolTemplateHead) &&
        tmpl.ends_with(kSmolTemplateTail)) {
        std::string prompt = tmpl.substr(kSmolTemplateHead.size(),
                                         tmpl.size() - kSmolTemplateHead.size() - kSmolTemplateTail.size());
        // The prompt sits inside a Jinja '...' literal: a quote or backslash would need unescaping we do not do.
        if (prompt.find_first_of("'\\{}") != std::string::npos) return false;
        t.style = Style::CHATML;
        t.default_system = std::move(prompt);
        return true;
    }
    return false;
}

std::string render_chatml(const Template& t, const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
    std::string out;
    for (size_t i = 0; i < messages.size(); ++i) {
        // SmolLM2: `loop.first and messages[0]['role'] != 'system'` adds the default system turn once, up front.
        if (i == 0 && !t.default_system.empty() && messages[0].role != "system")
            out += "<|im_start|>system\n" + t.default_system + "<|im_end|>\n";
        out += "<|im_start|>" + messages[i].role + "\n" + messages[i].content + "<|im_end|>\n";
    }
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
    return out;
}

// ---------------------------------------------------------------- Gemma 3

// Gemma 3's template (tokenizer_config.json of the gemma-3 instruction-tuned models), with @SEP@ standing for the
// Jinja literal that separates a system message from the first user turn: '\n\n' in current releases, '\n' in
// some earlier GGUF conversions. Every tag trims the whitespace next to it ({%- -%}), so the template's own line
// breaks and indentation never reach the output, and texts are compared with whitespace runs collapsed.
constexpr std::string_view kGemmaTemplate = R"JINJA({{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '@SEP@' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '@SEP@' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
)JINJA";

// Whitespace runs as one space, none at either end.
std::string collapse_whitespace(std::string_view s) {
    std::string out;
    bool space = false;
    for (char c : s) {
        if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
            space = !out.empty();
            continue;
        }
        if (space) out += ' ';
        space = false;
        out += c;
    }
    return out;
}

std::string gemma_template_with(std::string_view sep) {
    std::string t(kGemmaTemplate);
    for (size_t at; (at = t.find("@SEP@")) != std::string::npos;) t.replace(at, 5, sep);
    return t;
}

bool recognise_gemma(const std::string& tmpl, Template& t) {
    const std::string have = collapse_whitespace(tmpl);
    // The Jinja escape in the file, and the text it stands for.
    for (auto [escaped, text] : {std::pair{"\\n\\n", "\n\n"}, {"\\n", "\n"}}) {
        if (have == collapse_whitespace(gemma_template_with(escaped))) {
            t.style = Style::GEMMA;
            t.system_sep = text;
            return true;
        }
    }
    return false;
}

// Jinja's `trim` is Python's str.strip(): it removes the code points Python calls whitespace at both ends.
bool python_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

// The code point encoded at s[i..i+n) when it is valid UTF-8, else UINT32_MAX (never whitespace).
uint32_t decode_at(std::string_view s, size_t i, size_t n) {
    if (i + n > s.size()) return UINT32_MAX;
    const auto lead = static_cast<uint8_t>(s[i]);
    uint32_t cp = n == 1 ? lead : lead & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
        const auto c = static_cast<uint8_t>(s[i + k]);
        if ((c & 0xC0) != 0x80) return UINT32_MAX;
        cp = (cp << 6) | (c & 0x3F);
    }
    return cp;
}

std::string python_strip(std::string_view s) {
    // Leading: walk forward code point by code point.
    size_t b = 0;
    while (b < s.size()) {
        const auto lead = static_cast<uint8_t>(s[b]);
        const size_t n = lead < 0x80 ? 1 : (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : 4;
        if (!python_space(decode_at(s, b, n))) break;
        b += n;
    }
    // Trailing: step back over continuation bytes to each code point's lead byte.
    size_t e = s.size();
    while (e > b) {
        size_t start = e - 1;
        while (start > b && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80 && e - start < 4) --start;
        if (!python_space(decode_at(s, start, e - start))) break;
        e = start;
    }
    return std::string(s.substr(b, e - b));
}

std::string render_gemma(const Template& t, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                         const std::string& source) {
    std::string out;
    // A system message is not a turn of its own: its text (untrimmed) opens the first remaining turn.
    const bool has_system = !messages.empty() && messages[0].role == "system";
    const std::string first_prefix = has_system ? messages[0].content + t.system_sep : std::string();
    for (size_t k = has_system ? 1 : 0, i = 0; k < messages.size(); ++k, ++i) {
        const ChatMessage& m = messages[k];
        check((m.role == "user") == (i % 2 == 0), source,
              ": chat template: Conversation roles must alternate user/assistant/user/assistant/... (message ", k,
              " has role \"", m.role, "\")");
        const std::string& role = m.role == "assistant" ? std::string("model") : m.role;
        out += "<start_of_turn>" + role + "\n" + (i == 0 ? first_prefix : std::string()) + python_strip(m.content) +
               "<end_of_turn>\n";
    }
    if (add_generation_prompt) out += "<start_of_turn>model\n";
    return out;
}

}  // namespace

Template recognise(const std::string& jinja) {
    Template t;
    if (!recognise_chatml(jinja, t)) recognise_gemma(jinja, t);
    return t;
}

std::string render(const Template& t, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                   const std::string& source) {
    switch (t.style) {
        case Style::CHATML: return render_chatml(t, messages, add_generation_prompt);
        case Style::GEMMA: return render_gemma(t, messages, add_generation_prompt, source);
        case Style::UNKNOWN: break;
    }
    fail(source, ": unsupported chat template (rendered: SmolLM2-style ChatML and Gemma 3)");
}

}  // namespace hs::chat
