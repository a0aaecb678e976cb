// Internal helper shared by the configuration handshakes of communicator.cpp and
// ring_attention.cpp.
#pragma once

#include <string>
#include <vector>

namespace lwm {

// "" when every rank's description is the same; otherwise the ranks grouped by description, in
// order of their lowest rank: "ranks 0, 1 [f32 KV]; rank 2 [bf16 KV]".
std::string describe_disagreement(const std::vector<std::string>& descriptions);

}  // namespace lwm
