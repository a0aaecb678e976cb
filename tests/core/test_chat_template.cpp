// Chat templates as data (spec §2.4): the built-in file, rendering, and rejection of bad files.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "lwm/chat_template.h"
#include "lwm/error.h"
#include "test_support.h"
#include "text_test_tokenizer.h"

namespace lwm {
namespace {

using nlohmann::json;
using test::test_tokenizer;

using test::capture_error;

bool has_media(const ChatTemplate& chat_template) {
  for (const auto& part : chat_template.parts) {
    if (part.kind == TemplatePart::Kind::media) return true;
  }
  return false;
}

// The expected rendering, built by hand: substitute with plain string replacement and encode
// every text part on its own.
std::vector<std::int32_t> render_by_hand(const ChatTemplate& chat_template,
                                         const std::map<std::string, std::string>& fields) {
  const Tokenizer& tokenizer = test_tokenizer();
  std::vector<std::int32_t> ids;
  for (const auto& part : chat_template.parts) {
    if (part.kind == TemplatePart::Kind::bos) ids.push_back(1);
    if (part.kind == TemplatePart::Kind::eos) ids.push_back(2);
    if (part.kind != TemplatePart::Kind::text) continue;
    std::string text = part.text;
    for (const auto& [name, value] : fields) {
      const std::string placeholder = "{" + name + "}";
      for (auto at = text.find(placeholder); at != std::string::npos;
           at = text.find(placeholder, at + value.size())) {
        text.replace(at, placeholder.size(), value);
      }
    }
    const auto segment = tokenizer.encode(text);
    ids.insert(ids.end(), segment.begin(), segment.end());
  }
  return ids;
}

TEST(ChatTemplates, BuiltinParsesWithTheExpectedTemplates) {
  const ChatTemplates& templates = ChatTemplates::builtin();
  const auto names = templates.names();
  for (const char* name : {"text-chat", "text-chat-next-turn", "document-qa",
                           "document-qa-multi-needle", "video-chat", "video-chat-media-first"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  }
  for (const auto& name : names) {
    const ChatTemplate& chat_template = templates.get(name);
    EXPECT_EQ(chat_template.name, name);
    EXPECT_FALSE(chat_template.description.empty()) << name;
    ASSERT_FALSE(chat_template.parts.empty()) << name;
    // A conversation starts with BOS; a follow-up turn closes the previous answer with EOS.
    const bool follow_up = name.ends_with("-next-turn");
    EXPECT_EQ(chat_template.parts.front().kind,
              follow_up ? TemplatePart::Kind::eos : TemplatePart::Kind::bos)
        << name;
  }
}

TEST(ChatTemplates, FieldsAreListedInOrderOfFirstUse) {
  const ChatTemplates& templates = ChatTemplates::builtin();
  EXPECT_EQ(templates.get("text-chat").fields(), std::vector<std::string>{"question"});
  EXPECT_EQ(templates.get("document-qa").fields(),
            (std::vector<std::string>{"context", "question"}));
  EXPECT_EQ(templates.get("video-chat").fields(), std::vector<std::string>{"question"});
}

TEST(ChatTemplates, EveryTextTemplateRendersAsSeparatelyEncodedSegments) {
  const ChatTemplates& templates = ChatTemplates::builtin();
  for (const auto& name : templates.names()) {
    const ChatTemplate& chat_template = templates.get(name);
    std::map<std::string, std::string> fields;
    for (const auto& field : chat_template.fields()) {
      fields[field] = "what did the keeper see from " + field + " 灯台 🙂?";
    }
    if (has_media(chat_template)) {
      const Error error =
          capture_error([&] { render_prompt(chat_template, test_tokenizer(), fields); });
      EXPECT_EQ(error.kind(), ErrorKind::unsupported) << name;
      EXPECT_NE(std::string(error.what()).find(name), std::string::npos) << error.what();
      continue;
    }
    EXPECT_EQ(render_prompt(chat_template, test_tokenizer(), fields),
              render_by_hand(chat_template, fields))
        << name;
  }
}

TEST(ChatTemplates, TextChatMatchesTheLwmPrompt) {
  // spec §2.4: BOS "You are a helpful assistant. USER: {q} ASSISTANT:"
  const auto ids = render_prompt(ChatTemplates::builtin().get("text-chat"), test_tokenizer(),
                                 {{"question", "Where is the lighthouse?"}});
  std::vector<std::int32_t> expected = {1};
  const auto text = test_tokenizer().encode(
      "You are a helpful assistant. USER: Where is the lighthouse? ASSISTANT:");
  expected.insert(expected.end(), text.begin(), text.end());
  EXPECT_EQ(ids, expected);
}

ChatTemplates templates_from(const std::string& text) {
  return ChatTemplates::from_json(json::parse(text), "test.json");
}

TEST(ChatTemplates, SegmentsAreEncodedSeparatelyNotConcatenated) {
  const auto templates = templates_from(R"({"format": "lwm-chat-templates", "version": 1,
      "templates": {"two": {"description": "d", "parts": [
        {"token": "bos"}, {"text": "USER: {q}"}, {"token": "eos"}, {"text": " ASSISTANT:"}]}}})");
  const Tokenizer& tokenizer = test_tokenizer();
  const auto ids = render_prompt(templates.get("two"), tokenizer, {{"q", "hello"}});
  std::vector<std::int32_t> expected = {1};
  for (const auto& id : tokenizer.encode("USER: hello")) expected.push_back(id);
  expected.push_back(2);
  for (const auto& id : tokenizer.encode(" ASSISTANT:")) expected.push_back(id);
  EXPECT_EQ(ids, expected);
  // The second segment got its own dummy-prefix marker, which one encode() of the joined text
  // would not have produced.
  auto joined = tokenizer.encode("USER: hello ASSISTANT:");
  joined.insert(joined.begin(), 1);
  EXPECT_NE(ids, joined);
}

TEST(ChatTemplates, DoubledBracesAreLiteral) {
  const auto templates = templates_from(R"({"format": "lwm-chat-templates", "version": 1,
      "templates": {"braces": {"parts": [{"text": "{{json}} {x} }}{{"}]}}})");
  const auto& chat_template = templates.get("braces");
  EXPECT_EQ(chat_template.fields(), std::vector<std::string>{"x"});
  const auto ids = render_prompt(chat_template, test_tokenizer(), {{"x", "value"}});
  EXPECT_EQ(test_tokenizer().decode(ids), "{json} value }{");
}

TEST(ChatTemplates, MissingAndUnknownFieldsAreListed) {
  const ChatTemplate& chat_template = ChatTemplates::builtin().get("document-qa");
  Error error = capture_error([&] {
    render_prompt(chat_template, test_tokenizer(), {{"question", "q"}});
  });
  EXPECT_EQ(error.kind(), ErrorKind::invalid_argument);
  EXPECT_NE(std::string(error.what()).find("context"), std::string::npos) << error.what();

  error = capture_error([&] {
    render_prompt(chat_template, test_tokenizer(),
                  {{"question", "q"}, {"context", "c"}, {"qeustion", "typo"}});
  });
  EXPECT_EQ(error.kind(), ErrorKind::invalid_argument);
  EXPECT_NE(std::string(error.what()).find("qeustion"), std::string::npos) << error.what();
}

TEST(ChatTemplates, UnknownTemplateNameListsKnownOnes) {
  const Error error = capture_error([] { ChatTemplates::builtin().get("no-such-template"); });
  EXPECT_EQ(error.kind(), ErrorKind::invalid_argument);
  EXPECT_NE(std::string(error.what()).find("text-chat"), std::string::npos) << error.what();
}

TEST(ChatTemplates, RejectsMalformedFilesNamingTheSource) {
  const json good = json::parse(R"({"format": "lwm-chat-templates", "version": 1,
      "templates": {"t": {"description": "d", "parts": [{"token": "bos"}, {"text": "{q}"}]}}})");
  EXPECT_NO_THROW(ChatTemplates::from_json(good, "good.json"));

  const auto with = [&](const std::string& pointer, const json& value) {
    json changed = good;
    changed[json::json_pointer(pointer)] = value;
    return changed;
  };
  json without_parts = good;
  without_parts["templates"]["t"].erase("parts");
  json without_format = good;
  without_format.erase("format");

  const std::vector<std::pair<std::string, json>> cases = {
      {"not an object", json::array()},
      {"wrong format", with("/format", "something-else")},
      {"missing format", without_format},
      {"newer version", with("/version", 2)},
      {"version as string", with("/version", "1")},
      {"unknown top-level key", with("/extra", true)},
      {"templates not an object", with("/templates", json::array())},
      {"no templates", with("/templates", json::object())},
      {"template not an object", with("/templates/t", "text")},
      {"unknown template key", with("/templates/t/prompt", "x")},
      {"missing parts", without_parts},
      {"empty parts", with("/templates/t/parts", json::array())},
      {"description not a string", with("/templates/t/description", 3)},
      {"unknown token", with("/templates/t/parts/0", {{"token", "pad"}})},
      {"unknown media", with("/templates/t/parts/0", {{"media", "audio"}})},
      {"unknown part key", with("/templates/t/parts/0", {{"image", "x"}})},
      {"two keys in a part", with("/templates/t/parts/0", {{"token", "bos"}, {"text", "x"}})},
      {"text not a string", with("/templates/t/parts/1", {{"text", 5}})},
      {"unclosed brace", with("/templates/t/parts/1", {{"text", "USER: {question"}})},
      {"stray closing brace", with("/templates/t/parts/1", {{"text", "USER: question}"}})},
      {"bad field name", with("/templates/t/parts/1", {{"text", "USER: {1st}"}})},
      {"empty field name", with("/templates/t/parts/1", {{"text", "USER: {}"}})},
  };
  for (const auto& [what, document] : cases) {
    const Error error = capture_error([&] { ChatTemplates::from_json(document, "bad.json"); });
    EXPECT_EQ(error.kind(), ErrorKind::file_format) << what;
    EXPECT_NE(std::string(error.what()).find("bad.json"), std::string::npos)
        << what << ": " << error.what();
  }
}

TEST(ChatTemplates, LoadsFromFile) {
  test::TempDir dir;
  const auto path = dir / "templates.json";
  std::ofstream(path) << R"({"format": "lwm-chat-templates", "version": 1,
      "templates": {"plain": {"description": "d", "parts": [{"text": "{q}"}]}}})";
  EXPECT_EQ(ChatTemplates::load(path).names(), std::vector<std::string>{"plain"});

  const Error missing = capture_error([&] { ChatTemplates::load(dir / "absent.json"); });
  EXPECT_EQ(missing.kind(), ErrorKind::io);
  EXPECT_NE(std::string(missing.what()).find("absent.json"), std::string::npos);

  std::ofstream(dir / "broken.json") << R"({"format": "lwm-chat-templates", "version": )";
  const Error broken = capture_error([&] { ChatTemplates::load(dir / "broken.json"); });
  EXPECT_EQ(broken.kind(), ErrorKind::file_format);
  EXPECT_NE(std::string(broken.what()).find("broken.json"), std::string::npos);
}

}  // namespace
}  // namespace lwm
