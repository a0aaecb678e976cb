// Prompt layout (spec §2.3 training layout, §8.3) and templates with a video slot (§2.4).
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "lwm/chat_template.h"
#include "lwm/error.h"
#include "lwm/prompt.h"
#include "test_support.h"
#include "text_test_tokenizer.h"

namespace lwm {
namespace {

using test::capture_error;
using test::test_tokenizer;

VideoCodes random_video(std::int64_t frames, std::int64_t per_frame, std::int32_t codebook,
                        std::mt19937_64& rng) {
  VideoCodes video;
  video.codes_per_frame = per_frame;
  video.vocabulary.codebook_size = codebook;
  std::uniform_int_distribution<std::int32_t> code(0, codebook - 1);
  for (std::int64_t i = 0; i < frames * per_frame; ++i) video.codes.push_back(code(rng));
  return video;
}

void append(std::vector<std::int32_t>& ids, std::vector<std::uint8_t>& mask,
            const std::vector<std::int32_t>& more, bool vision) {
  ids.insert(ids.end(), more.begin(), more.end());
  mask.insert(mask.end(), more.size(), vision ? 1 : 0);
}

TEST(Prompt, VideoFollowsTheTrainingLayout) {
  std::mt19937_64 rng(test::test_seed());
  for (const std::int64_t frames : {1, 2, 5}) {
    for (const std::int64_t per_frame : {1, 4, 256}) {
      SCOPED_TRACE(std::to_string(frames) + " frames of " + std::to_string(per_frame));
      const VideoCodes video = random_video(frames, per_frame, 8192, rng);
      Prompt prompt;
      const std::vector<std::int32_t> lead = {1, 17, 23};
      prompt.append_text(lead);
      prompt.append_video(video, test_tokenizer());

      // Built by hand from spec §2.3: <vision> f0 8192 f1 8192 … f(n−1) 8193 </vision>.
      std::vector<std::int32_t> ids;
      std::vector<std::uint8_t> mask;
      append(ids, mask, lead, false);
      append(ids, mask, test_tokenizer().encode("<vision>"), false);
      for (std::int64_t f = 0; f < frames; ++f) {
        std::vector<std::int32_t> frame(video.codes.begin() + f * per_frame,
                                        video.codes.begin() + (f + 1) * per_frame);
        frame.push_back(f + 1 < frames ? 8192 : 8193);
        append(ids, mask, frame, true);
      }
      append(ids, mask, test_tokenizer().encode("</vision>"), false);

      EXPECT_EQ(std::vector<std::int32_t>(prompt.tokens().begin(), prompt.tokens().end()), ids);
      EXPECT_EQ(std::vector<std::uint8_t>(prompt.vision_mask().begin(), prompt.vision_mask().end()),
                mask);
      ASSERT_EQ(static_cast<std::int64_t>(prompt.frames().size()), frames);
      for (std::int64_t f = 0; f < frames; ++f) {
        const TokenRange range = prompt.frames()[static_cast<std::size_t>(f)];
        EXPECT_EQ(range.size(), per_frame + 1);
        EXPECT_EQ(range.begin, static_cast<std::int64_t>(
                                   lead.size() + test_tokenizer().encode("<vision>").size()) +
                                   f * (per_frame + 1));
      }
    }
  }
}

TEST(Prompt, TextOnlyPromptsHaveNoMask) {
  Prompt prompt;
  prompt.append_text(std::vector<std::int32_t>{1, 2, 3});
  EXPECT_TRUE(prompt.vision_mask().empty());
  EXPECT_EQ(prompt.size(), 3);
}

TEST(Prompt, BadVideosAreRefused) {
  std::mt19937_64 rng(test::test_seed());
  Prompt prompt;
  VideoCodes ragged = random_video(2, 4, 16, rng);
  ragged.codes.pop_back();
  EXPECT_EQ(capture_error([&] { prompt.append_video(ragged, test_tokenizer()); }).kind(),
            ErrorKind::invalid_argument);
  EXPECT_EQ(capture_error([&] { prompt.append_video(VideoCodes{}, test_tokenizer()); }).kind(),
            ErrorKind::invalid_argument);
  VideoCodes outside = random_video(2, 4, 16, rng);
  outside.codes[5] = 16;  // the end-of-frame id is not a code
  const Error error = capture_error([&] { prompt.append_video(outside, test_tokenizer()); });
  EXPECT_NE(std::string(error.what()).find("frame 1"), std::string::npos) << error.what();
  EXPECT_EQ(prompt.size(), 0) << "a refused video must leave the prompt as it was";
}

TEST(Prompt, VideoTemplatesPutTheVideoWhereTheyDeclareIt) {
  std::mt19937_64 rng(test::test_seed());
  const VideoCodes video = random_video(3, 4, 8192, rng);
  const std::map<std::string, std::string> fields = {{"question", "What colour is the boat?"}};
  for (const std::string name : {"video-chat", "video-chat-media-first"}) {
    const ChatTemplate& chat_template = ChatTemplates::builtin().get(name);
    const Prompt prompt = render_prompt(chat_template, test_tokenizer(), fields, &video);
    Prompt expected;
    for (const TemplatePart& part : chat_template.parts) {
      if (part.kind == TemplatePart::Kind::bos) {
        expected.append_text(std::vector<std::int32_t>{test_tokenizer().bos_id()});
      } else if (part.kind == TemplatePart::Kind::media) {
        expected.append_video(video, test_tokenizer());
      } else {
        std::string text = part.text;
        const auto at = text.find("{question}");
        if (at != std::string::npos) text.replace(at, 10, fields.at("question"));
        expected.append_text(test_tokenizer().encode(text));
      }
    }
    EXPECT_TRUE(std::equal(prompt.tokens().begin(), prompt.tokens().end(),
                           expected.tokens().begin(), expected.tokens().end()))
        << name;
    EXPECT_EQ(prompt.frames().size(), 3u);
    EXPECT_EQ(prompt.tokens()[0], test_tokenizer().bos_id());
  }
  // The question-first template (spec §2.4) puts the question's tokens before the video.
  const Prompt question_first =
      render_prompt(ChatTemplates::builtin().get("video-chat"), test_tokenizer(), fields, &video);
  const Prompt media_first = render_prompt(ChatTemplates::builtin().get("video-chat-media-first"),
                                           test_tokenizer(), fields, &video);
  EXPECT_GT(question_first.frames()[0].begin, media_first.frames()[0].begin);
}

TEST(Prompt, TemplateAndVideoMustAgree) {
  std::mt19937_64 rng(test::test_seed());
  const VideoCodes video = random_video(1, 4, 8192, rng);
  const std::map<std::string, std::string> fields = {{"question", "q"}};
  const Error no_slot = capture_error([&] {
    render_prompt(ChatTemplates::builtin().get("text-chat"), test_tokenizer(), fields, &video);
  });
  EXPECT_NE(std::string(no_slot.what()).find("no media slot"), std::string::npos);
  const Error no_video = capture_error([&] {
    render_prompt(ChatTemplates::builtin().get("video-chat"), test_tokenizer(), fields, nullptr);
  });
  EXPECT_EQ(no_video.kind(), ErrorKind::unsupported);
  EXPECT_NE(std::string(no_video.what()).find("video-chat"), std::string::npos);
}

}  // namespace
}  // namespace lwm
