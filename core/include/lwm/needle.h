// The needle-in-a-haystack texts, in one place (spec §6.1, §6.2): the city list, the needle
// sentence, the questions, the chat templates they go into, and the scoring rule. The evaluation
// (needle_eval.h) and the demo model's training-data generator both use these, so a model trained
// on them is asked exactly what it was taught. Change nothing here without changing both.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lwm::needle {

// A fixed list of city names to draw needles from (§6.1: "a fixed list of ~100 names").
std::span<const std::string_view> cities();

// The chat templates (resources/templates/chat_templates.json) the questions go into, with the
// haystack as {context} and the question as {question} (spec §2.4).
inline constexpr const char* kSingleTemplate = "document-qa";
inline constexpr const char* kMultiTemplate = "document-qa-multi-needle";
// The video variant asks before the video, as LWM's vision chat does (spec §2.4).
inline constexpr const char* kVideoTemplate = "video-chat";

// A needle's secret: a uniform 7-digit integer, 1000000…9999999, kept as its decimal string.
std::string random_number(std::mt19937_64& rng);
// A city drawn uniformly from cities().
std::string random_city(std::mt19937_64& rng);

// "\nThe special magic {city} number is: {number}\n" (§6.1).
std::string sentence(std::string_view city, std::string_view number);

// "What is the special magic {city} number?" (§6.1, single needle).
std::string question(std::string_view city);

// Multi-needle question (§6.2): one city → "What is the special magic number for A?"; more →
// "What are the special magic numbers for A, B, and C?" (two: "A and B" [ours]).
std::string multi_question(std::span<const std::string> asked_cities);

// Correct iff the needle's digits occur in the answer (§6.1).
bool is_correct(std::string_view answer, std::string_view number);

// The video variant [ours]: the text drawn into one frame of a generated video, and the question
// asked about it. "The secret number is {number}" / "What is the secret number shown in the video?"
std::string video_caption(std::string_view number);
std::string video_question();

}  // namespace lwm::needle
