// The cell loop shared by the text and video needle evaluations: which cells are still to run,
// in what order, with progress (weighted by each cell's context length), cancellation and saving.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "lwm/needle_eval.h"

namespace lwm::needle_detail {

// What a cell's body gets: its key, and a progress callback for its inner steps (`fraction` of the
// cell done, 0…1) that returns false when the run is cancelled.
using CellProgress = std::function<bool(double fraction)>;
using CellBody = std::function<NeedleCellResult(const NeedleCellKey& key, const CellProgress&)>;

// Runs `body` for every cell of `grid` not in `results`: rounds in order, lengths in order, depths
// from 100 down (so a text prompt shares the longest prefix with the one before it). Saves every
// result, calls `on_cell`, reports progress in context units, and turns a cancellation into
// Error(cancelled) that says how many cells are saved and how to resume.
void run_cells(const NeedleGrid& grid, NeedleResultsFile& results, const CellBody& body,
               const ProgressCallback& progress, const NeedleCellCallback& on_cell);

// Draws the needles of a cell (§6.2 [ours], see run_needle_eval): `needles` distinct cities and
// numbers, needle 0 at the cell's depth and the others at distinct other grid depths in random
// order, so asking about the first R needles asks about needle 0 and a uniform choice of others.
struct NeedleDraw {
  std::vector<std::string> cities;
  std::vector<std::string> numbers;
  std::vector<std::int32_t> depths;
};
NeedleDraw draw_needles(std::mt19937_64& rng, const NeedleGrid& grid, std::int32_t depth,
                        std::int32_t needles);

// Checks the options shared by both variants; throws Error(invalid_argument).
void check_needle_counts(const NeedleGrid& grid, std::int32_t needles, std::int32_t ask);

}  // namespace lwm::needle_detail
