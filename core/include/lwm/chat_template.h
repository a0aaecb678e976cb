// Prompt templates kept as data (resources/templates/chat_templates.json, spec §2.4). A template
// is a list of parts: a BOS or EOS token, a text segment with {field} placeholders, or a media
// slot. Each text part is tokenized on its own, as LWM builds its prompts from separately encoded
// segments.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "lwm/prompt.h"
#include "lwm/tokenizer.h"

namespace lwm {

struct TemplatePart {
  enum class Kind { bos, eos, text, media };
  Kind kind = Kind::text;
  std::string text;  // text with {field} placeholders, or the media kind ("video", "image")
};

struct ChatTemplate {
  std::string name;
  std::string description;
  std::vector<TemplatePart> parts;

  // Placeholder names used by the text parts, e.g. {"question", "context"}.
  std::vector<std::string> fields() const;
};

class ChatTemplates {
 public:
  // The templates compiled into the library from resources/templates/chat_templates.json.
  static const ChatTemplates& builtin();
  static ChatTemplates from_json(const nlohmann::json& json, const std::string& source);
  static ChatTemplates load(const std::filesystem::path& file);

  const ChatTemplate& get(const std::string& name) const;  // throws Error listing known names
  std::vector<std::string> names() const;

 private:
  std::map<std::string, ChatTemplate> templates_;
};

// Renders a template: substitutes every {field} (a missing field is an error), tokenizes each
// text part on its own (recording where each field's value landed, Prompt::fields), and lays
// `video` out in the media slot (spec §2.3). A template with a
// media slot needs a video, and a video needs a template with a media slot.
Prompt render_prompt(const ChatTemplate& chat_template, const Tokenizer& tokenizer,
                     const std::map<std::string, std::string>& fields, const VideoCodes* video);

// The text-only form: the ids of a template without a media slot.
std::vector<std::int32_t> render_prompt(const ChatTemplate& chat_template, const Tokenizer& tokenizer,
                                        const std::map<std::string, std::string>& fields);

}  // namespace lwm
