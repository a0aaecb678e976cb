// A prompt as the model reads it: token ids and, for vision-language models, which of them are
// vision ids (spec §2.2), with the layout of video frames between text segments (spec §2.3).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "lwm/tokenizer.h"

namespace lwm {

// The vision vocabulary around a VQGAN codebook (spec §2.1): codes 0 … codebook_size−1, then
// end-of-frame and end-of-vision. LWM: codebook 8192, so 8192 and 8193.
struct VisionVocabulary {
  std::int32_t codebook_size = 8192;
  std::int32_t end_of_frame() const noexcept { return codebook_size; }
  std::int32_t end_of_vision() const noexcept { return codebook_size + 1; }
};

// A video (or one image) as VQGAN codes: frames × codes_per_frame ids, each frame's grid
// flattened row-major (spec §2.3).
struct VideoCodes {
  std::vector<std::int32_t> codes;
  std::int64_t codes_per_frame = 256;
  VisionVocabulary vocabulary;
  std::int64_t frames() const noexcept {
    return codes_per_frame > 0 ? static_cast<std::int64_t>(codes.size()) / codes_per_frame : 0;
  }
};

// Positions [begin, end) of a prompt.
struct TokenRange {
  std::int64_t begin = 0;
  std::int64_t end = 0;
  std::int64_t size() const noexcept { return end - begin; }
};

// Where a template field's value landed in a rendered prompt, so a SourceMap can map those
// tokens back to the value's source (a book's text, say): tokens [first_token, first_token +
// value_begins.size()) overlap the value's bytes, and token i starts at byte value_begins[i] of
// the value (0 for a token that starts in the template text just before it, such as "▁The" over
// " {context}").
struct FieldTokens {
  std::string field;
  std::int64_t first_token = 0;
  std::vector<std::size_t> value_begins;
  std::size_t value_bytes = 0;
};

class Prompt {
 public:
  std::span<const std::int32_t> tokens() const noexcept { return tokens_; }
  // One entry per token, non-zero for vision ids; empty while the prompt is all text.
  std::span<const std::uint8_t> vision_mask() const noexcept { return vision_mask_; }
  std::int64_t size() const noexcept { return static_cast<std::int64_t>(tokens_.size()); }
  // The token range of every frame appended so far: its codes and the delimiter after them.
  const std::vector<TokenRange>& frames() const noexcept { return frames_; }
  // Where each template field's value landed (render_prompt fills them), in prompt order.
  const std::vector<FieldTokens>& fields() const noexcept { return fields_; }

  // Number of leading tokens equal to `ids` (and of the same kind, text or vision, by `mask`;
  // an empty mask is all text).
  std::int64_t common_prefix(std::span<const std::int32_t> ids,
                             std::span<const std::uint8_t> mask) const noexcept;
  // The first `n` tokens, or all tokens from position `n` on, with their frames and fields
  // (clipped).
  Prompt prefix(std::int64_t n) const;
  Prompt suffix(std::int64_t n) const;

  void append_text(std::span<const std::int32_t> ids);
  // Appends text ids of which `fields` (positions relative to `ids`) hold template fields.
  void append_text(std::span<const std::int32_t> ids, std::vector<FieldTokens> fields);
  // Appends the `<vision>` text, every frame's codes followed by end-of-frame, except the last
  // frame which ends with end-of-vision, then the `</vision>` text: the training layout of
  // spec §2.3 (not the chat code's every-frame end-of-vision, §8.3). Throws for an empty video,
  // a code count that is not a whole number of frames, or codes outside the codebook.
  void append_video(const VideoCodes& video, const Tokenizer& tokenizer);

 private:
  void append(std::span<const std::int32_t> ids, bool vision);
  Prompt slice(std::int64_t begin, std::int64_t end) const;

  std::vector<std::int32_t> tokens_;
  std::vector<std::uint8_t> vision_mask_;
  std::vector<TokenRange> frames_;
  std::vector<FieldTokens> fields_;
};

// What prefill and generation read: a plain token list (all text) or a Prompt. The conversions
// are implicit on purpose, so callers pass either without ceremony.
struct PromptView {
  std::span<const std::int32_t> tokens;
  std::span<const std::uint8_t> vision_mask;  // empty → all text

  PromptView() = default;
  PromptView(std::span<const std::int32_t> text_tokens) : tokens(text_tokens) {}
  PromptView(const std::vector<std::int32_t>& text_tokens) : tokens(text_tokens) {}
  PromptView(std::span<const std::int32_t> ids, std::span<const std::uint8_t> mask)
      : tokens(ids), vision_mask(mask) {}
  PromptView(const Prompt& prompt) : tokens(prompt.tokens()), vision_mask(prompt.vision_mask()) {}
};

}  // namespace lwm
