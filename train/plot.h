// A small rasteriser for pictures a person opens: loss curves and attention overlays.
//
// Everything is drawn into an Image (train/image.h) and saved as PNG. Lines are
// anti-aliased by coverage (how much of a pixel a line of the given width covers, from the
// pixel centre's distance to the line); text uses a built-in 5×7 bitmap font (digits,
// upper-case letters — lower case is drawn as upper case — and common punctuation).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "train/image.h"

namespace mmg {

// An RGB image to draw on. Coordinates are pixels, x to the right, y down; a pixel's
// centre is at (x + 0.5, y + 0.5). Drawing outside the canvas is clipped.
class Canvas {
 public:
  Canvas(int width, int height, Rgb background);

  int width() const { return image_.width; }
  int height() const { return image_.height; }
  const Image& image() const { return image_; }
  Rgb pixel(int x, int y) const;

  // pixel ← (1 − alpha)·pixel + alpha·colour
  void blend_pixel(int x, int y, Rgb colour, float alpha);
  // The rectangle of pixels [x0, x1) × [y0, y1).
  void fill_rect(int x0, int y0, int x1, int y1, Rgb colour);
  // A polyline through (xs[i], ys[i]) of the given width; each pixel is blended once with
  // the largest coverage over all segments, so joints are not drawn twice. Points with a
  // non-finite coordinate break the line.
  void draw_polyline(const std::vector<float>& xs, const std::vector<float>& ys, Rgb colour, float width);
  void draw_line(float x0, float y0, float x1, float y1, Rgb colour, float width = 1.0f);
  // Text with its top-left corner at (x, y); each font pixel becomes scale × scale pixels.
  void draw_text(int x, int y, std::string_view text, Rgb colour, int scale = 1);
  // Copies an image (1 or 3 channels) with its top-left corner at (x, y).
  void draw_image(const Image& image, int x, int y);

  static int text_width(std::string_view text, int scale = 1);  // pixels
  static int text_height(int scale = 1) { return 7 * scale; }

 private:
  Image image_;
};

// ---- line plots ----

struct PlotSeries {
  std::string name;             // shown in the legend (when any series has a name)
  std::vector<double> x, y;     // same length; non-finite points are skipped
  Rgb colour{31, 119, 180};
};

struct LinePlot {
  std::string title, x_label, y_label;
  std::vector<PlotSeries> series;
  int width = 640, height = 400;
};

// The colour of series i in a small built-in palette (blue, orange, green, red, ...).
Rgb series_colour(int i);

// Axes with "nice" ticks (1, 2 or 5 × 10^k) covering every finite point, numbered tick
// labels, light grid lines, each series as a 2-pixel line, a legend and the title.
// Throws when there is no finite point to plot or a series' x and y differ in length.
Image render_line_plot(const LinePlot& plot);
void save_line_plot(const LinePlot& plot, const std::string& path);

// Tick positions from lo to hi: the step is 1, 2 or 5 × 10^k, chosen so that there are
// about `target` intervals, and the ends are rounded outwards to multiples of the step.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);

// ---- attention maps ----

// Colour of t in [0, 1] on a blue → cyan → green → yellow → red heat scale.
Rgb heat_colour(float t);

// Two panels side by side: the image enlarged to `size` × `size` (nearest neighbour, so its
// pixels stay visible), and the same with a heat map of `weights` (a grid_h × grid_w grid,
// row-major, e.g. one weight per image patch) upsampled bilinearly and blended on top
// (half image, half heat colour), plus a colour bar labelled with the weights' min and max.
// `title` (a caption or question, may be empty) is written above the panels.
// Layout: a 10-pixel margin; the panels' top-left corners are (10, y0) and (20 + size, y0)
// with y0 = 10, or 28 with a title; the colour bar (14 pixels wide, high values on top)
// starts at x = 30 + 2·size; the picture is size + 20 (+ 18 with a title) pixels high.
Image render_attention_overlay(const Image& image, const std::vector<float>& weights, int grid_h, int grid_w,
                               const std::string& title = "", int size = 192);

}  // namespace mmg
