#include "lwm/prompt.h"

#include <algorithm>
#include <string>

#include "lwm/error.h"

namespace lwm {

void Prompt::append(std::span<const std::int32_t> ids, bool vision) {
  // The mask is only materialised once the prompt holds a vision id, so text prompts stay plain.
  if (vision && vision_mask_.empty()) vision_mask_.assign(tokens_.size(), 0);
  tokens_.insert(tokens_.end(), ids.begin(), ids.end());
  if (!vision_mask_.empty()) vision_mask_.insert(vision_mask_.end(), ids.size(), vision ? 1 : 0);
}

std::int64_t Prompt::common_prefix(std::span<const std::int32_t> ids,
                                   std::span<const std::uint8_t> mask) const noexcept {
  const auto kind = [](std::span<const std::uint8_t> m, std::size_t i) {
    return !m.empty() && m[i] != 0;
  };
  std::size_t n = 0;
  while (n < tokens_.size() && n < ids.size() && tokens_[n] == ids[n] &&
         kind(vision_mask_, n) == kind(mask, n)) {
    ++n;
  }
  return static_cast<std::int64_t>(n);
}

Prompt Prompt::prefix(std::int64_t n) const {
  return slice(0, std::clamp<std::int64_t>(n, 0, size()));
}

Prompt Prompt::suffix(std::int64_t n) const {
  return slice(std::clamp<std::int64_t>(n, 0, size()), size());
}

Prompt Prompt::slice(std::int64_t begin, std::int64_t end) const {
  Prompt out;
  out.tokens_.assign(tokens_.begin() + begin, tokens_.begin() + end);
  if (!vision_mask_.empty()) {
    out.vision_mask_.assign(vision_mask_.begin() + begin, vision_mask_.begin() + end);
  }
  for (const FieldTokens& field : fields_) {
    const auto count = static_cast<std::int64_t>(field.value_begins.size());
    const std::int64_t first = std::max(field.first_token, begin);
    const std::int64_t last = std::min(field.first_token + count, end);
    if (last <= first) continue;
    FieldTokens clipped{field.field, first - begin, {}, field.value_bytes};
    clipped.value_begins.assign(field.value_begins.begin() + (first - field.first_token),
                                field.value_begins.begin() + (last - field.first_token));
    out.fields_.push_back(std::move(clipped));
  }
  for (const TokenRange& frame : frames_) {
    const TokenRange clipped{std::max(frame.begin, begin) - begin,
                             std::min(frame.end, end) - begin};
    if (clipped.size() > 0) out.frames_.push_back(clipped);
  }
  return out;
}

void Prompt::append_text(std::span<const std::int32_t> ids) {
  append(ids, false);
}

void Prompt::append_text(std::span<const std::int32_t> ids, std::vector<FieldTokens> fields) {
  for (FieldTokens& field : fields) {
    field.first_token += size();
    fields_.push_back(std::move(field));
  }
  append(ids, false);
}

void Prompt::append_video(const VideoCodes& video, const Tokenizer& tokenizer) {
  const std::int64_t per_frame = video.codes_per_frame;
  const auto total = static_cast<std::int64_t>(video.codes.size());
  if (per_frame <= 0 || total == 0 || total % per_frame != 0) {
    throw Error(ErrorKind::invalid_argument, "video of " + std::to_string(total) +
                                                 " codes is not a whole, non-zero number of " +
                                                 std::to_string(per_frame) + "-code frames");
  }
  const std::int32_t codebook = video.vocabulary.codebook_size;
  for (std::int64_t i = 0; i < total; ++i) {
    const std::int32_t code = video.codes[static_cast<std::size_t>(i)];
    if (code < 0 || code >= codebook) {
      throw Error(ErrorKind::invalid_argument, "video code " + std::to_string(code) + " of frame " +
                                                   std::to_string(i / per_frame) +
                                                   " is outside the codebook of " +
                                                   std::to_string(codebook));
    }
  }
  // <vision> and </vision> are text, encoded as their own segments (spec §2.3, §1.7).
  append_text(tokenizer.encode("<vision>"));
  const std::int64_t frames = total / per_frame;
  for (std::int64_t f = 0; f < frames; ++f) {
    const std::int64_t begin = size();
    append(
        std::span(video.codes)
            .subspan(static_cast<std::size_t>(f * per_frame), static_cast<std::size_t>(per_frame)),
        true);
    const std::int32_t delimiter =
        f + 1 < frames ? video.vocabulary.end_of_frame() : video.vocabulary.end_of_vision();
    append(std::span(&delimiter, 1), true);
    frames_.push_back({begin, size()});
  }
  append_text(tokenizer.encode("</vision>"));
}

}  // namespace lwm
