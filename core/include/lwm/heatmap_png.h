// A small heatmap image as a PNG (libpng): one coloured cell per value on a red → yellow → green
// scale (0 → 1), grey for a missing value, row labels on the left, column labels below, a colour
// scale on the right. Labels are drawn with a built-in 3×5 pixel font (digits, "%", ".", "-",
// "k", "M" and a few capitals), so no font files are needed. The needle evaluation draws its
// accuracy over context length × depth with it (needle_eval.h: write_needle_heatmap).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

namespace lwm {

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb&) const = default;
};

// The colour of `value` in [0, 1] (clamped); NaN → the grey of a missing cell.
Rgb heatmap_colour(double value) noexcept;

// Where everything lies in an image of rows × columns cells.
struct HeatmapLayout {
  int width = 0, height = 0;
  int grid_left = 0, grid_top = 0;  // top-left pixel of cell (0, 0)
  int cell_width = 0, cell_height = 0;
  int gap = 1;         // background pixels between cells
  int label_step = 1;  // every label_step-th column is labelled, so labels never touch
  int legend_left = 0, legend_width = 0;  // the colour scale, as tall as the grid
  int cell_x(int column) const noexcept { return grid_left + column * (cell_width + gap); }
  int cell_y(int row) const noexcept { return grid_top + row * (cell_height + gap); }
};
HeatmapLayout heatmap_layout(std::span<const std::string> row_labels,
                             std::span<const std::string> column_labels, const std::string& title);

// Writes the heatmap of `values` (row-major, rows × columns, NaN for missing) to `path`
// atomically. `title` is drawn above (only characters of the built-in font; others become
// spaces). Throws Error(invalid_argument) for mismatched sizes, Error(io) when it cannot write.
void write_heatmap_png(const std::filesystem::path& path, std::span<const double> values,
                       std::span<const std::string> row_labels,
                       std::span<const std::string> column_labels, const std::string& title = {});

}  // namespace lwm
