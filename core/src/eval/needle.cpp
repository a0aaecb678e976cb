// The needle texts of spec §6.1/§6.2 (see needle.h).
#include "lwm/needle.h"

#include <array>

namespace lwm::needle {

namespace {

// World cities, one token-cheap name each; the list is data, its order fixed so a seed replays.
constexpr std::array<std::string_view, 100> kCities = {
    "Chicago",      "Yangon",       "Antananarivo", "Colombo",     "Almaty",
    "Sydney",       "Mexico City",  "Seattle",      "Lagos",       "Amsterdam",
    "Belgrade",     "Cairo",        "Baghdad",      "Damascus",    "Kigali",
    "Dakar",        "Sofia",        "Victoria",     "Tashkent",    "Mumbai",
    "Barcelona",    "Amman",        "Toronto",      "Bratislava",  "Johannesburg",
    "Thimphu",      "Bangkok",      "Santiago",     "San Francisco", "Paris",
    "Rabat",        "Copenhagen",   "Madrid",       "Hanoi",       "Sarajevo",
    "Delhi",        "Istanbul",     "Khartoum",     "Helsinki",    "Doha",
    "Kuala Lumpur", "Budapest",     "Shanghai",     "Moscow",      "Los Angeles",
    "Oslo",         "Berlin",       "Bangalore",    "Tokyo",       "Melbourne",
    "Port Louis",   "Lisbon",       "Nairobi",      "Kampala",     "Lima",
    "Maputo",       "Vancouver",    "Dubai",        "Jakarta",     "Yerevan",
    "Beirut",       "Athens",       "Bucharest",    "Brussels",    "Tunis",
    "Astana",       "Seoul",        "Buenos Aires", "Vienna",      "Dublin",
    "Warsaw",       "Prague",       "Stockholm",    "Reykjavik",   "Zurich",
    "Montreal",     "Havana",       "Bogota",       "Quito",       "Caracas",
    "Montevideo",   "La Paz",       "Accra",        "Addis Ababa", "Lusaka",
    "Harare",       "Windhoek",     "Tbilisi",      "Baku",        "Kabul",
    "Karachi",      "Dhaka",        "Kathmandu",    "Manila",      "Singapore",
    "Taipei",       "Osaka",        "Auckland",     "Wellington",  "Honolulu",
};

}  // namespace

std::span<const std::string_view> cities() { return kCities; }

std::string random_number(std::mt19937_64& rng) {
  // Drawn from raw 64-bit output (not std::uniform_int_distribution, whose algorithm differs
  // between standard libraries) so a seed gives the same needles everywhere.
  constexpr std::uint64_t kSpan = 9000000;
  const std::uint64_t limit = rng.max() - rng.max() % kSpan;
  std::uint64_t x = rng();
  while (x >= limit) x = rng();
  return std::to_string(1000000 + x % kSpan);
}

std::string random_city(std::mt19937_64& rng) {
  const std::uint64_t n = kCities.size();
  const std::uint64_t limit = rng.max() - rng.max() % n;
  std::uint64_t x = rng();
  while (x >= limit) x = rng();
  return std::string(kCities[x % n]);
}

std::string sentence(std::string_view city, std::string_view number) {
  return "\nThe special magic " + std::string(city) + " number is: " + std::string(number) + "\n";
}

std::string question(std::string_view city) {
  return "What is the special magic " + std::string(city) + " number?";
}

std::string multi_question(std::span<const std::string> asked_cities) {
  const std::size_t n = asked_cities.size();
  if (n == 1) return "What is the special magic number for " + asked_cities[0] + "?";
  std::string q = "What are the special magic numbers for ";
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0) q += n == 2 ? " and " : (i + 1 == n ? ", and " : ", ");
    q += asked_cities[i];
  }
  return q + "?";
}

bool is_correct(std::string_view answer, std::string_view number) {
  return !number.empty() && answer.find(number) != std::string_view::npos;
}

std::string video_caption(std::string_view number) {
  return "The secret number is " + std::string(number);
}

std::string video_question() { return "What is the secret number shown in the video?"; }

}  // namespace lwm::needle
