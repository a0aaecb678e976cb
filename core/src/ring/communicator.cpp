// The configuration handshake shared by every transport (communicator.h).
#include "lwm/communicator.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "lwm/error.h"
#include "ring/configuration.h"

namespace lwm {

std::string describe_disagreement(const std::vector<std::string>& descriptions) {
  // Groups in order of their lowest rank: "ranks 0, 1 [a]; rank 2 [b]".
  std::vector<std::pair<std::string, std::string>> groups;  // description, rank list
  for (std::size_t r = 0; r < descriptions.size(); ++r) {
    auto group = std::find_if(groups.begin(), groups.end(),
                              [&](const auto& g) { return g.first == descriptions[r]; });
    if (group == groups.end()) {
      groups.emplace_back(descriptions[r], std::to_string(r));
    } else {
      group->second += ", " + std::to_string(r);
    }
  }
  if (groups.size() <= 1) return {};
  std::string text;
  for (const auto& [description, list] : groups) {
    if (!text.empty()) text += "; ";
    text += (list.find(',') == std::string::npos ? "rank " : "ranks ") + list + " [" + description +
            "]";
  }
  return text;
}

void check_same_configuration(Communicator& communicator, const std::string& description) {
  const int world = communicator.world_size();
  const auto ranks = static_cast<std::size_t>(world);
  // Lengths first, so that every rank sends the same number of bytes in the second gather.
  const std::uint64_t length = description.size();
  std::vector<std::uint64_t> lengths(ranks);
  communicator.all_gather(std::as_bytes(std::span(&length, 1)),
                          std::as_writable_bytes(std::span(lengths)), "configuration lengths");
  std::uint64_t longest = 0;
  for (const std::uint64_t l : lengths) longest = std::max(longest, l);
  std::vector<char> padded(static_cast<std::size_t>(longest), '\0');
  std::memcpy(padded.data(), description.data(), description.size());
  std::vector<char> all(static_cast<std::size_t>(longest) * ranks);
  communicator.all_gather(std::as_bytes(std::span(padded)), std::as_writable_bytes(std::span(all)),
                          "configuration");

  std::vector<std::string> descriptions;
  for (std::size_t r = 0; r < ranks; ++r) {
    descriptions.emplace_back(all.data() + r * longest, static_cast<std::size_t>(lengths[r]));
  }
  const std::string disagreement = describe_disagreement(descriptions);
  if (!disagreement.empty()) {
    throw Error(ErrorKind::communication,
                communicator.name() + ": the ranks disagree on the configuration: " + disagreement);
  }
}

}  // namespace lwm
