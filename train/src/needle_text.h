// The single-needle texts of LWM's needle evaluation (spec §6.1), for the training-data generator.
// Kept in one place so they can follow the evaluation's own definitions when those land in core.
#pragma once
#include <array>
#include <string>
#include <string_view>

namespace lwm::train::needle_text {

inline constexpr std::array<std::string_view, 40> kCities = {
    "Chicago",   "Yangon",    "Antananarivo", "Colombo", "Almaty",    "Sydney",   "Mexico City",
    "Seattle",   "Lagos",     "Amsterdam",    "Belgrade", "Cairo",    "Baghdad",  "Damascus",
    "Kigali",    "Dakar",     "Sofia",        "Victoria", "Tashkent", "Mumbai",   "Barcelona",
    "Riyadh",    "Bangkok",   "Lima",         "Berlin",   "Oslo",     "Helsinki", "Nairobi",
    "Toronto",   "Santiago",  "Havana",       "Kyiv",     "Manila",   "Hanoi",    "Montevideo",
    "Reykjavik", "Wellington", "Quito",       "Tbilisi",  "Zagreb"};

inline std::string needle(std::string_view city, std::string_view number) {
  return "\nThe special magic " + std::string(city) + " number is: " + std::string(number) + "\n";
}

inline std::string question(std::string_view city) {
  return "What is the special magic " + std::string(city) + " number?";
}

// What the model is taught to answer: the needle's sentence, so the digits follow the same words
// as in the document.
inline std::string answer(std::string_view city, std::string_view number) {
  return "The special magic " + std::string(city) + " number is: " + std::string(number) + ".";
}

}  // namespace lwm::train::needle_text
