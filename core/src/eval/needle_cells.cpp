// The cell loop and needle drawing shared by the text and video needle evaluations.
#include "eval/needle_cells.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "lwm/error.h"
#include "lwm/needle.h"

namespace lwm::needle_detail {

void check_needle_counts(const NeedleGrid& grid, std::int32_t needles, std::int32_t ask) {
  if (grid.context_lengths.empty() || grid.depths.empty() || grid.rounds < 1) {
    throw Error(ErrorKind::invalid_argument, "the needle grid is empty");
  }
  if (needles < 1 || ask < 1 || ask > needles) {
    throw Error(ErrorKind::invalid_argument,
                "ask about 1 to N of N >= 1 needles (got --needles " + std::to_string(needles) +
                    " --ask " + std::to_string(ask) + ")");
  }
  if (static_cast<std::size_t>(needles) > grid.depths.size()) {
    throw Error(ErrorKind::invalid_argument,
                std::to_string(needles) + " needles need as many distinct depths, but the grid "
                "has " + std::to_string(grid.depths.size()) + "; use more --depths");
  }
  if (static_cast<std::size_t>(needles) > needle::cities().size()) {
    throw Error(ErrorKind::invalid_argument, "at most " + std::to_string(needle::cities().size()) +
                                                 " needles (one per city)");
  }
}

NeedleDraw draw_needles(std::mt19937_64& rng, const NeedleGrid& grid, std::int32_t depth,
                        std::int32_t needles) {
  NeedleDraw draw;
  while (draw.cities.size() < static_cast<std::size_t>(needles)) {
    std::string city = needle::random_city(rng);
    if (std::find(draw.cities.begin(), draw.cities.end(), city) == draw.cities.end()) {
      draw.cities.push_back(std::move(city));
    }
  }
  for (std::int32_t i = 0; i < needles; ++i) draw.numbers.push_back(needle::random_number(rng));
  // Needle 0 at the cell's depth, the others at distinct other depths of the grid.
  std::vector<std::int32_t> others;
  for (const auto d : grid.depths) {
    if (d != depth) others.push_back(d);
  }
  draw.depths.push_back(depth);
  for (std::int32_t i = 1; i < needles; ++i) {
    const auto pick = static_cast<std::size_t>(rng() % others.size());
    draw.depths.push_back(others[pick]);
    others.erase(others.begin() + static_cast<std::ptrdiff_t>(pick));
  }
  return draw;
}

void run_cells(const NeedleGrid& grid, NeedleResultsFile& results, const CellBody& body,
               const ProgressCallback& progress, const NeedleCellCallback& on_cell) {
  std::vector<NeedleCellKey> pending;
  for (std::int32_t r = 0; r < grid.rounds; ++r) {
    for (const auto length : grid.context_lengths) {
      for (auto d = grid.depths.rbegin(); d != grid.depths.rend(); ++d) {
        const NeedleCellKey key{length, *d, r};
        if (!results.has(key)) pending.push_back(key);
      }
    }
  }
  const std::int64_t total = std::accumulate(
      pending.begin(), pending.end(), std::int64_t{0},
      [](std::int64_t sum, const NeedleCellKey& key) { return sum + key.context_length; });
  const auto start = std::chrono::steady_clock::now();
  std::int64_t done = 0;
  const auto report = [&](double extra) {
    if (!progress) return true;
    Progress p;
    p.done = done + static_cast<std::int64_t>(extra);
    p.total = total;
    p.elapsed_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return progress(p);
  };
  std::size_t finished = 0;
  const auto cancelled = [&] {
    return Error(ErrorKind::cancelled,
                 "the needle evaluation was cancelled after " + std::to_string(finished) + " of " +
                     std::to_string(pending.size()) + " cells; the finished cells are saved in '" +
                     results.path().string() + "', run the same command again to resume");
  };
  if (!report(0.0)) throw cancelled();
  for (const auto& key : pending) {
    NeedleCellResult result;
    try {
      result = body(key, [&](double fraction) {
        return report(std::clamp(fraction, 0.0, 1.0) * static_cast<double>(key.context_length));
      });
    } catch (const Error& error) {
      if (error.kind() == ErrorKind::cancelled) throw cancelled();
      throw;
    }
    results.append(result);
    ++finished;
    done += key.context_length;
    if (on_cell) on_cell(result);
    // A cancel that comes with the last cell changes nothing: the run is complete.
    if (!report(0.0) && finished < pending.size()) throw cancelled();
  }
}

}  // namespace lwm::needle_detail
