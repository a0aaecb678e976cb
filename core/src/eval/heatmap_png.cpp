// Heatmap PNGs (heatmap_png.h): an RGB raster drawn here, encoded by libpng into memory and
// written atomically.
#include "lwm/heatmap_png.h"

#include <png.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <csetjmp>
#include <string>
#include <vector>

#include "atomic_file.h"
#include "lwm/error.h"

namespace lwm {

namespace {

constexpr Rgb kBackground{255, 255, 255};
constexpr Rgb kInk{40, 40, 40};
constexpr Rgb kMissing{200, 200, 200};
constexpr int kScale = 2;  // font pixels per glyph pixel
constexpr int kGlyphWidth = 3 * kScale;
constexpr int kGlyphHeight = 5 * kScale;
constexpr int kAdvance = 4 * kScale;

// A 3×5 glyph: five rows of three bits, the high bit on the left.
struct Glyph {
  char c;
  std::array<std::uint8_t, 5> rows;
};

constexpr Glyph kFont[] = {
    {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}},
    {'3', {7, 1, 7, 1, 7}}, {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}},
    {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 2, 2}}, {'8', {7, 5, 7, 5, 7}},
    {'9', {7, 5, 7, 1, 7}}, {'%', {5, 1, 2, 4, 5}}, {'.', {0, 0, 0, 0, 2}},
    {'-', {0, 0, 7, 0, 0}}, {':', {0, 2, 0, 2, 0}}, {'/', {1, 1, 2, 4, 4}},
    {'(', {1, 2, 2, 2, 1}}, {')', {4, 2, 2, 2, 4}}, {',', {0, 0, 0, 2, 4}},
    {'A', {2, 5, 7, 5, 5}}, {'B', {6, 5, 6, 5, 6}}, {'C', {3, 4, 4, 4, 3}},
    {'D', {6, 5, 5, 5, 6}}, {'E', {7, 4, 6, 4, 7}}, {'F', {7, 4, 6, 4, 4}},
    {'G', {3, 4, 5, 5, 3}}, {'H', {5, 5, 7, 5, 5}}, {'I', {7, 2, 2, 2, 7}},
    {'J', {1, 1, 1, 5, 2}}, {'K', {5, 5, 6, 5, 5}}, {'L', {4, 4, 4, 4, 7}},
    {'M', {5, 7, 7, 5, 5}}, {'N', {6, 5, 5, 5, 5}}, {'O', {2, 5, 5, 5, 2}},
    {'P', {6, 5, 6, 4, 4}}, {'Q', {2, 5, 5, 6, 3}}, {'R', {6, 5, 6, 5, 5}},
    {'S', {3, 4, 2, 1, 6}}, {'T', {7, 2, 2, 2, 2}}, {'U', {5, 5, 5, 5, 7}},
    {'V', {5, 5, 5, 5, 2}}, {'W', {5, 5, 7, 7, 5}}, {'X', {5, 5, 2, 5, 5}},
    {'Y', {5, 5, 2, 2, 2}}, {'Z', {7, 1, 2, 4, 7}},
};

const Glyph* find_glyph(char c) {
  const char upper = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const auto& glyph : kFont) {
    if (glyph.c == upper) return &glyph;
  }
  return nullptr;  // drawn as a space
}

int text_width(const std::string& text) {
  return text.empty() ? 0 : static_cast<int>(text.size()) * kAdvance - (kAdvance - kGlyphWidth);
}

class Canvas {
 public:
  Canvas(int width, int height)
      : width_(width), height_(height),
        pixels_(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3, 255) {}
  void fill(int x0, int y0, int w, int h, Rgb colour) {
    for (int y = std::max(y0, 0); y < std::min(y0 + h, height_); ++y) {
      for (int x = std::max(x0, 0); x < std::min(x0 + w, width_); ++x) {
        std::uint8_t* p = &pixels_[(static_cast<std::size_t>(y) * width_ + x) * 3];
        p[0] = colour.r;
        p[1] = colour.g;
        p[2] = colour.b;
      }
    }
  }
  void text(int x, int y, const std::string& s, Rgb colour) {
    for (const char c : s) {
      if (const Glyph* glyph = find_glyph(c)) {
        for (int row = 0; row < 5; ++row) {
          for (int col = 0; col < 3; ++col) {
            if ((glyph->rows[static_cast<std::size_t>(row)] >> (2 - col)) & 1) {
              fill(x + col * kScale, y + row * kScale, kScale, kScale, colour);
            }
          }
        }
      }
      x += kAdvance;
    }
  }
  int width() const { return width_; }
  int height() const { return height_; }
  const std::uint8_t* row(int y) const { return &pixels_[static_cast<std::size_t>(y) * width_ * 3]; }

 private:
  int width_, height_;
  std::vector<std::uint8_t> pixels_;
};

void append_bytes(png_structp png, png_bytep data, png_size_t size) {
  auto* out = static_cast<std::string*>(png_get_io_ptr(png));
  out->append(reinterpret_cast<const char*>(data), size);
}

void flush_nothing(png_structp) {}

// The libpng calls, alone in a function with only trivially destructible locals, since libpng
// reports errors by longjmp. `rows` points to height row pointers. Returns false on failure.
bool encode_png(png_bytepp rows, int width, int height, std::string* out) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (png == nullptr) return false;
  png_infop info = png_create_info_struct(png);
  if (info == nullptr || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_set_write_fn(png, out, append_bytes, flush_nothing);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

std::uint8_t mix(std::uint8_t a, std::uint8_t b, double t) {
  return static_cast<std::uint8_t>(std::lround(a + (b - a) * t));
}

}  // namespace

Rgb heatmap_colour(double value) noexcept {
  if (std::isnan(value)) return kMissing;
  // Red (nothing found) → yellow (half) → green (all found), as needle heatmaps are usually drawn.
  constexpr Rgb red{215, 48, 39}, yellow{254, 224, 139}, green{26, 152, 80};
  const double v = std::clamp(value, 0.0, 1.0);
  const Rgb& a = v < 0.5 ? red : yellow;
  const Rgb& b = v < 0.5 ? yellow : green;
  const double t = v < 0.5 ? v * 2.0 : (v - 0.5) * 2.0;
  return {mix(a.r, b.r, t), mix(a.g, b.g, t), mix(a.b, b.b, t)};
}

HeatmapLayout heatmap_layout(std::span<const std::string> row_labels,
                             std::span<const std::string> column_labels, const std::string& title) {
  HeatmapLayout layout;
  const int rows = static_cast<int>(std::max<std::size_t>(row_labels.size(), 1));
  const int columns = static_cast<int>(std::max<std::size_t>(column_labels.size(), 1));
  layout.cell_width = std::clamp(560 / columns, 12, 48);
  layout.cell_height = std::clamp(360 / rows, 12, 32);
  layout.gap = 1;
  int row_label_width = 0;
  for (const auto& label : row_labels) row_label_width = std::max(row_label_width, text_width(label));
  int column_label_width = 0;
  for (const auto& label : column_labels) {
    column_label_width = std::max(column_label_width, text_width(label));
  }
  const int pitch_x = layout.cell_width + layout.gap;
  const int pitch_y = layout.cell_height + layout.gap;
  layout.label_step = std::max(1, (column_label_width + kAdvance + pitch_x - 1) / pitch_x);
  layout.grid_left = 8 + row_label_width + 6;
  layout.grid_top = title.empty() ? 8 : 8 + kGlyphHeight + 8;
  const int grid_width = columns * pitch_x - layout.gap;
  const int grid_height = rows * pitch_y - layout.gap;
  layout.legend_left = layout.grid_left + grid_width + 12;
  layout.legend_width = 12;
  layout.width = std::max(layout.legend_left + layout.legend_width + 6 + text_width("100%") + 8,
                          8 + text_width(title) + 8);
  layout.height = layout.grid_top + grid_height + 6 + kGlyphHeight + 8;
  return layout;
}

void write_heatmap_png(const std::filesystem::path& path, std::span<const double> values,
                       std::span<const std::string> row_labels,
                       std::span<const std::string> column_labels, const std::string& title) {
  const std::size_t rows = row_labels.size();
  const std::size_t columns = column_labels.size();
  if (rows == 0 || columns == 0 || values.size() != rows * columns) {
    throw Error(ErrorKind::invalid_argument,
                "a heatmap of " + std::to_string(rows) + " x " + std::to_string(columns) +
                    " labels needs as many values, not " + std::to_string(values.size()));
  }
  const HeatmapLayout layout = heatmap_layout(row_labels, column_labels, title);
  const int grid_height = static_cast<int>(rows) * (layout.cell_height + layout.gap) - layout.gap;
  const int legend_left = layout.legend_left;
  const int legend_width = layout.legend_width;
  Canvas canvas(layout.width, layout.height);
  canvas.fill(0, 0, layout.width, layout.height, kBackground);
  if (!title.empty()) canvas.text(8, 8, title, kInk);
  for (std::size_t r = 0; r < rows; ++r) {
    const int y = layout.cell_y(static_cast<int>(r));
    for (std::size_t c = 0; c < columns; ++c) {
      canvas.fill(layout.cell_x(static_cast<int>(c)), y, layout.cell_width, layout.cell_height,
                  heatmap_colour(values[r * columns + c]));
    }
    canvas.text(layout.grid_left - 6 - text_width(row_labels[r]),
                y + (layout.cell_height - kGlyphHeight) / 2, row_labels[r], kInk);
  }
  const int label_y = layout.grid_top + grid_height + 6;
  for (std::size_t c = 0; c < columns; c += static_cast<std::size_t>(layout.label_step)) {
    const int centre = layout.cell_x(static_cast<int>(c)) + layout.cell_width / 2;
    const int x = std::clamp(centre - text_width(column_labels[c]) / 2, 0,
                             layout.width - text_width(column_labels[c]));
    canvas.text(x, label_y, column_labels[c], kInk);
  }
  // The colour scale: 100% at the top, 0% at the bottom of the grid's height.
  for (int y = 0; y < grid_height; ++y) {
    const double v = grid_height > 1 ? 1.0 - static_cast<double>(y) / (grid_height - 1) : 1.0;
    canvas.fill(legend_left, layout.grid_top + y, legend_width, 1, heatmap_colour(v));
  }
  canvas.text(legend_left + legend_width + 6, layout.grid_top, "100%", kInk);
  canvas.text(legend_left + legend_width + 6, layout.grid_top + grid_height - kGlyphHeight, "0%",
              kInk);

  std::vector<png_bytep> row_pointers(static_cast<std::size_t>(canvas.height()));
  for (int y = 0; y < canvas.height(); ++y) {
    row_pointers[static_cast<std::size_t>(y)] = const_cast<png_bytep>(canvas.row(y));
  }
  std::string png;
  if (!encode_png(row_pointers.data(), canvas.width(), canvas.height(), &png)) {
    throw Error(ErrorKind::io, "libpng could not encode the heatmap for '" + path.string() + "'");
  }
  if (!path.parent_path().empty()) std::filesystem::create_directories(path.parent_path());
  write_file_atomically(path, png);
}

}  // namespace lwm
