// Chat templates as data (spec §2.4): parsing and validation of the JSON, rendering to ids.
#include "lwm/chat_template.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include "lwm/error.h"
#include "lwm_resources/embedded.h"

namespace lwm {
namespace {

constexpr const char* kFormatName = "lwm-chat-templates";
constexpr int kFormatVersion = 1;

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw Error(ErrorKind::file_format, where + ": " + what);
}

std::string join(const std::vector<std::string>& items, const char* separator = ", ") {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Placeholders: "{name}" is a field, "{{" and "}}" are literal braces.

bool is_field_name(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

// One piece of a text part: literal text, or the name of a field to substitute.
struct TextPiece {
  bool is_field = false;
  std::string value;
};

// Splits a text part into literal runs and fields; throws (naming `where`) on stray braces.
std::vector<TextPiece> parse_placeholders(const std::string& text, const std::string& where) {
  std::vector<TextPiece> pieces;
  std::string literal;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const bool doubled = i + 1 < text.size() && text[i + 1] == c;
    if ((c == '{' || c == '}') && doubled) {
      literal += c;
      ++i;
    } else if (c == '{') {
      const std::size_t close = text.find('}', i + 1);
      if (close == std::string::npos) fail(where, "'{' without a closing '}' in \"" + text + "\"");
      std::string name = text.substr(i + 1, close - i - 1);
      if (!is_field_name(name)) {
        fail(where, "'{" + name +
                        "}' is not a field name (letters, digits and '_'); write {{ and }}" +
                        " for literal braces");
      }
      if (!literal.empty()) pieces.push_back({false, std::move(literal)});
      literal.clear();
      pieces.push_back({true, std::move(name)});
      i = close;
    } else if (c == '}') {
      fail(where, "'}' without an opening '{' in \"" + text + "\"; write }} for a literal brace");
    } else {
      literal += c;
    }
  }
  if (!literal.empty()) pieces.push_back({false, std::move(literal)});
  return pieces;
}

// ---------------------------------------------------------------------------------------------
// JSON schema: {"format", "version", "templates": {name: {"description", "parts": [...]}}}

void check_keys(const nlohmann::json& object, const std::set<std::string>& allowed,
                const std::string& where) {
  for (const auto& [key, value] : object.items()) {
    if (allowed.count(key) == 0) {
      fail(where, "unknown key '" + key + "' (expected " +
                      join(std::vector<std::string>(allowed.begin(), allowed.end())) + ")");
    }
  }
}

const nlohmann::json& require(const nlohmann::json& object, const std::string& key,
                              const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end()) fail(where, "missing key '" + key + "'");
  return *it;
}

std::string require_string(const nlohmann::json& object, const std::string& key,
                           const std::string& where) {
  const auto& value = require(object, key, where);
  if (!value.is_string()) fail(where, "'" + key + "' must be a string");
  return value.get<std::string>();
}

TemplatePart parse_part(const nlohmann::json& json, const std::string& where) {
  if (!json.is_object() || json.size() != 1) {
    fail(where, "a part must be an object with exactly one of 'token', 'text' or 'media'");
  }
  check_keys(json, {"token", "text", "media"}, where);
  TemplatePart part;
  if (json.contains("token")) {
    const std::string token = require_string(json, "token", where);
    if (token != "bos" && token != "eos") fail(where, "token '" + token + "' is not bos or eos");
    part.kind = token == "bos" ? TemplatePart::Kind::bos : TemplatePart::Kind::eos;
  } else if (json.contains("media")) {
    part.kind = TemplatePart::Kind::media;
    part.text = require_string(json, "media", where);
    if (part.text != "video" && part.text != "image") {
      fail(where, "media '" + part.text + "' is not video or image");
    }
  } else {
    part.kind = TemplatePart::Kind::text;
    part.text = require_string(json, "text", where);
    parse_placeholders(part.text, where);  // reject malformed placeholders when loading
  }
  return part;
}

ChatTemplate parse_template(const std::string& name, const nlohmann::json& json,
                            const std::string& where) {
  if (!json.is_object()) fail(where, "a template must be an object");
  check_keys(json, {"description", "parts"}, where);
  ChatTemplate chat_template;
  chat_template.name = name;
  if (json.contains("description")) {
    chat_template.description = require_string(json, "description", where);
  }
  const auto& parts = require(json, "parts", where);
  if (!parts.is_array() || parts.empty()) fail(where, "'parts' must be a non-empty array");
  for (std::size_t i = 0; i < parts.size(); ++i) {
    chat_template.parts.push_back(
        parse_part(parts[i], where + ".parts[" + std::to_string(i) + "]"));
  }
  return chat_template;
}

void check_header(const nlohmann::json& json, const std::string& source) {
  if (!json.is_object()) fail(source, "chat templates must be a JSON object");
  check_keys(json, {"format", "version", "templates"}, source);
  const auto& format = require(json, "format", source);
  if (!format.is_string() || format.get<std::string>() != kFormatName) {
    fail(source, "'format' is " + format.dump() + ", expected \"" + kFormatName + "\"");
  }
  const auto& version = require(json, "version", source);
  if (!version.is_number_integer() || version.get<std::int64_t>() != kFormatVersion) {
    fail(source, "'version' is " + version.dump() + "; this program reads version " +
                     std::to_string(kFormatVersion));
  }
}

std::string template_where(const ChatTemplate& chat_template) {
  return "chat template '" + chat_template.name + "'";
}

// Every placeholder must be given and every given field used: a misspelt field would otherwise
// vanish from the prompt without a word.
void check_fields(const ChatTemplate& chat_template,
                  const std::map<std::string, std::string>& fields) {
  const std::vector<std::string> wanted = chat_template.fields();
  std::vector<std::string> missing;
  std::vector<std::string> unknown;
  for (const auto& name : wanted) {
    if (fields.count(name) == 0) missing.push_back(name);
  }
  for (const auto& [name, value] : fields) {
    if (std::find(wanted.begin(), wanted.end(), name) == wanted.end()) unknown.push_back(name);
  }
  if (missing.empty() && unknown.empty()) return;
  std::string message = template_where(chat_template) + ":";
  if (!missing.empty()) message += " missing field(s) " + join(missing) + ";";
  if (!unknown.empty()) message += " unknown field(s) " + join(unknown) + ";";
  message += " it takes " + (wanted.empty() ? std::string("no fields") : join(wanted));
  throw Error(ErrorKind::invalid_argument, message);
}

// A text part is substituted and encoded whole, on its own, dummy prefix included (spec §1.7,
// §2.4); the pieces' byte offsets then say which tokens overlap which field's value.
void append_text_part(Prompt& prompt, const TemplatePart& part, const ChatTemplate& chat_template,
                      const Tokenizer& tokenizer, const std::map<std::string, std::string>& fields) {
  std::string text;
  struct Placed {
    std::string field;
    std::size_t begin, end;
  };
  std::vector<Placed> placed;
  for (const auto& piece : parse_placeholders(part.text, template_where(chat_template))) {
    if (!piece.is_field) {
      text += piece.value;
      continue;
    }
    const std::string& value = fields.at(piece.value);
    placed.push_back({piece.value, text.size(), text.size() + value.size()});
    text += value;
  }
  const EncodedText segment = tokenizer.encode_with_offsets(text);
  std::vector<FieldTokens> located;
  for (const auto& field : placed) {
    FieldTokens tokens{field.field, 0, {}, field.end - field.begin};
    for (std::size_t i = 0; i < segment.ids.size(); ++i) {
      const std::size_t begin = segment.begins[i], end = segment.ends[i];
      const bool overlaps = begin < field.end && (end > field.begin || begin >= field.begin);
      if (!overlaps) continue;
      if (tokens.value_begins.empty()) tokens.first_token = static_cast<std::int64_t>(i);
      tokens.value_begins.push_back(std::max(begin, field.begin) - field.begin);
    }
    located.push_back(std::move(tokens));
  }
  prompt.append_text(segment.ids, std::move(located));
}

}  // namespace

std::vector<std::string> ChatTemplate::fields() const {
  std::vector<std::string> names;
  for (const auto& part : parts) {
    if (part.kind != TemplatePart::Kind::text) continue;
    for (const auto& piece : parse_placeholders(part.text, template_where(*this))) {
      if (piece.is_field && std::find(names.begin(), names.end(), piece.value) == names.end()) {
        names.push_back(piece.value);
      }
    }
  }
  return names;
}

const ChatTemplates& ChatTemplates::builtin() {
  static const ChatTemplates templates = [] {
    const std::string source = "built-in chat templates (resources/templates/chat_templates.json)";
    const auto json = nlohmann::json::parse(resources::chat_templates_json(), nullptr, false);
    if (json.is_discarded()) fail(source, "not valid JSON");
    return from_json(json, source);
  }();
  return templates;
}

ChatTemplates ChatTemplates::from_json(const nlohmann::json& json, const std::string& source) {
  check_header(json, source);
  const auto& templates = require(json, "templates", source);
  if (!templates.is_object() || templates.empty()) {
    fail(source, "'templates' must be a non-empty object");
  }
  ChatTemplates result;
  for (const auto& [name, value] : templates.items()) {
    result.templates_[name] = parse_template(name, value, source + ": templates." + name);
  }
  return result;
}

ChatTemplates ChatTemplates::load(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(ErrorKind::io, "cannot open chat templates '" + file.string() + "'");
  std::ostringstream contents;
  contents << in.rdbuf();
  // Appended piecewise: GCC 12 at -O3 warns (-Wrestrict) on "'" + string + "'" here.
  std::string source = file.string();
  source.insert(0, 1, '\'');
  source.push_back('\'');
  const auto json = nlohmann::json::parse(contents.str(), nullptr, false);
  if (json.is_discarded()) fail(source, "not valid JSON");
  return from_json(json, source);
}

const ChatTemplate& ChatTemplates::get(const std::string& name) const {
  const auto it = templates_.find(name);
  if (it == templates_.end()) {
    throw Error(ErrorKind::invalid_argument,
                "no chat template named '" + name + "'; known templates: " + join(names()));
  }
  return it->second;
}

std::vector<std::string> ChatTemplates::names() const {
  std::vector<std::string> result;
  for (const auto& [name, chat_template] : templates_) result.push_back(name);
  return result;
}

Prompt render_prompt(const ChatTemplate& chat_template, const Tokenizer& tokenizer,
                     const std::map<std::string, std::string>& fields, const VideoCodes* video) {
  check_fields(chat_template, fields);
  const bool has_media_slot =
      std::any_of(chat_template.parts.begin(), chat_template.parts.end(),
                  [](const TemplatePart& part) { return part.kind == TemplatePart::Kind::media; });
  if (video != nullptr && !has_media_slot) {
    throw Error(ErrorKind::invalid_argument,
                template_where(chat_template) + " has no media slot; choose a video template");
  }
  Prompt prompt;
  for (const auto& part : chat_template.parts) {
    switch (part.kind) {
      case TemplatePart::Kind::bos:
      case TemplatePart::Kind::eos: {
        const std::int32_t id =
            part.kind == TemplatePart::Kind::bos ? tokenizer.bos_id() : tokenizer.eos_id();
        prompt.append_text(std::span(&id, 1));
        break;
      }
      case TemplatePart::Kind::media:
        if (video == nullptr) {
          throw Error(ErrorKind::unsupported, template_where(chat_template) + " has a " + part.text +
                                                  " slot but no video was given; choose a text "
                                                  "template or give the video");
        }
        prompt.append_video(*video, tokenizer);
        break;
      case TemplatePart::Kind::text:
        append_text_part(prompt, part, chat_template, tokenizer, fields);
        break;
    }
  }
  return prompt;
}

std::vector<std::int32_t> render_prompt(const ChatTemplate& chat_template,
                                        const Tokenizer& tokenizer,
                                        const std::map<std::string, std::string>& fields) {
  const Prompt prompt = render_prompt(chat_template, tokenizer, fields, nullptr);
  return {prompt.tokens().begin(), prompt.tokens().end()};
}

}  // namespace lwm
