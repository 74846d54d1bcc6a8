#include "train/plot.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace mmg {

// ---- the 5×7 font ----
//
// Each glyph is seven rows of five columns, top to bottom, separated by '|'; '#' is ink.
namespace {

struct Glyph {
  char c;
  const char* rows;
};

constexpr Glyph kFont[] = {
    {' ', ".....|.....|.....|.....|.....|.....|....."},
    {'0', ".###.|#...#|#..##|#.#.#|##..#|#...#|.###."},
    {'1', "..#..|.##..|..#..|..#..|..#..|..#..|.###."},
    {'2', ".###.|#...#|....#|...#.|..#..|.#...|#####"},
    {'3', "#####|...#.|..#..|...#.|....#|#...#|.###."},
    {'4', "...#.|..##.|.#.#.|#..#.|#####|...#.|...#."},
    {'5', "#####|#....|####.|....#|....#|#...#|.###."},
    {'6', "..##.|.#...|#....|####.|#...#|#...#|.###."},
    {'7', "#####|....#|...#.|..#..|.#...|.#...|.#..."},
    {'8', ".###.|#...#|#...#|.###.|#...#|#...#|.###."},
    {'9', ".###.|#...#|#...#|.####|....#|...#.|.##.."},
    {'A', ".###.|#...#|#...#|#####|#...#|#...#|#...#"},
    {'B', "####.|#...#|#...#|####.|#...#|#...#|####."},
    {'C', ".###.|#...#|#....|#....|#....|#...#|.###."},
    {'D', "###..|#..#.|#...#|#...#|#...#|#..#.|###.."},
    {'E', "#####|#....|#....|####.|#....|#....|#####"},
    {'F', "#####|#....|#....|####.|#....|#....|#...."},
    {'G', ".###.|#...#|#....|#.###|#...#|#...#|.####"},
    {'H', "#...#|#...#|#...#|#####|#...#|#...#|#...#"},
    {'I', ".###.|..#..|..#..|..#..|..#..|..#..|.###."},
    {'J', "..###|...#.|...#.|...#.|...#.|#..#.|.##.."},
    {'K', "#...#|#..#.|#.#..|##...|#.#..|#..#.|#...#"},
    {'L', "#....|#....|#....|#....|#....|#....|#####"},
    {'M', "#...#|##.##|#.#.#|#.#.#|#...#|#...#|#...#"},
    {'N', "#...#|#...#|##..#|#.#.#|#..##|#...#|#...#"},
    {'O', ".###.|#...#|#...#|#...#|#...#|#...#|.###."},
    {'P', "####.|#...#|#...#|####.|#....|#....|#...."},
    {'Q', ".###.|#...#|#...#|#...#|#.#.#|#..#.|.##.#"},
    {'R', "####.|#...#|#...#|####.|#.#..|#..#.|#...#"},
    {'S', ".####|#....|#....|.###.|....#|....#|####."},
    {'T', "#####|..#..|..#..|..#..|..#..|..#..|..#.."},
    {'U', "#...#|#...#|#...#|#...#|#...#|#...#|.###."},
    {'V', "#...#|#...#|#...#|#...#|#...#|.#.#.|..#.."},
    {'W', "#...#|#...#|#...#|#.#.#|#.#.#|#.#.#|.#.#."},
    {'X', "#...#|#...#|.#.#.|..#..|.#.#.|#...#|#...#"},
    {'Y', "#...#|#...#|.#.#.|..#..|..#..|..#..|..#.."},
    {'Z', "#####|....#|...#.|..#..|.#...|#....|#####"},
    {'.', ".....|.....|.....|.....|.....|.##..|.##.."},
    {',', ".....|.....|.....|.....|.##..|..#..|.#..."},
    {':', ".....|.##..|.##..|.....|.##..|.##..|....."},
    {';', ".....|.##..|.##..|.....|.##..|..#..|.#..."},
    {'-', ".....|.....|.....|#####|.....|.....|....."},
    {'+', ".....|..#..|..#..|#####|..#..|..#..|....."},
    {'=', ".....|.....|#####|.....|#####|.....|....."},
    {'(', "...#.|..#..|.#...|.#...|.#...|..#..|...#."},
    {')', ".#...|..#..|...#.|...#.|...#.|..#..|.#..."},
    {'[', ".###.|.#...|.#...|.#...|.#...|.#...|.###."},
    {']', ".###.|...#.|...#.|...#.|...#.|...#.|.###."},
    {'<', "...#.|..#..|.#...|#....|.#...|..#..|...#."},
    {'>', ".#...|..#..|...#.|....#|...#.|..#..|.#..."},
    {'/', ".....|....#|...#.|..#..|.#...|#....|....."},
    {'%', "##...|##..#|...#.|..#..|.#...|#..##|...##"},
    {'?', ".###.|#...#|....#|...#.|..#..|.....|..#.."},
    {'!', "..#..|..#..|..#..|..#..|..#..|.....|..#.."},
    {'\'', "..#..|..#..|.#...|.....|.....|.....|....."},
    {'"', ".#.#.|.#.#.|.....|.....|.....|.....|....."},
    {'_', ".....|.....|.....|.....|.....|.....|#####"},
    {'#', ".#.#.|.#.#.|#####|.#.#.|#####|.#.#.|.#.#."},
    {'*', ".....|..#..|#.#.#|.###.|#.#.#|..#..|....."},
    {'|', "..#..|..#..|..#..|..#..|..#..|..#..|..#.."},
    {'@', ".###.|#...#|#.###|#.#.#|#.###|#....|.###."},
    {'&', ".##..|#..#.|#.#..|.#...|#.#.#|#..#.|.##.#"},
};

// The glyph of c (lower case drawn as upper case; unknown characters as '?').
const char* glyph_rows(char c) {
  char u = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const Glyph& g : kFont)
    if (g.c == u) return g.rows;
  return glyph_rows('?');
}

constexpr int kGlyphW = 5, kGlyphH = 7, kAdvance = 6;  // one blank column between glyphs

}  // namespace

// ---- canvas ----

Canvas::Canvas(int width, int height, Rgb background) : image_(width, height, 3) {
  for (size_t i = 0; i < image_.data.size(); i += 3) {
    image_.data[i] = background.r;
    image_.data[i + 1] = background.g;
    image_.data[i + 2] = background.b;
  }
}

Rgb Canvas::pixel(int x, int y) const {
  return {image_.at(x, y, 0), image_.at(x, y, 1), image_.at(x, y, 2)};
}

void Canvas::blend_pixel(int x, int y, Rgb colour, float alpha) {
  if (x < 0 || y < 0 || x >= width() || y >= height() || alpha <= 0) return;
  alpha = std::min(alpha, 1.0f);
  const uint8_t c[3] = {colour.r, colour.g, colour.b};
  for (int k = 0; k < 3; ++k) {
    uint8_t& p = image_.at(x, y, k);
    p = static_cast<uint8_t>(std::lround((1 - alpha) * p + alpha * c[k]));
  }
}

void Canvas::fill_rect(int x0, int y0, int x1, int y1, Rgb colour) {
  for (int y = std::max(0, y0); y < std::min(height(), y1); ++y)
    for (int x = std::max(0, x0); x < std::min(width(), x1); ++x) blend_pixel(x, y, colour, 1.0f);
}

// Distance from point p to the segment a–b.
static float segment_distance(float px, float py, float ax, float ay, float bx, float by) {
  float dx = bx - ax, dy = by - ay;
  float len2 = dx * dx + dy * dy;
  float t = len2 > 0 ? std::clamp(((px - ax) * dx + (py - ay) * dy) / len2, 0.0f, 1.0f) : 0.0f;
  float ex = ax + t * dx - px, ey = ay + t * dy - py;
  return std::sqrt(ex * ex + ey * ey);
}

void Canvas::draw_polyline(const std::vector<float>& xs, const std::vector<float>& ys, Rgb colour, float width) {
  MMG_CHECK(xs.size() == ys.size(), "draw_polyline: {} x values but {} y values", xs.size(), ys.size());
  const float half = width / 2;
  // Coverage of a pixel: 1 within half the width of the line, falling linearly to 0 over
  // the next pixel, which approximates the area of the pixel the line covers.
  std::vector<float> coverage(static_cast<size_t>(this->width()) * height(), 0.0f);
  auto cover_segment = [&](float ax, float ay, float bx, float by) {
    int x0 = std::max(0, static_cast<int>(std::floor(std::min(ax, bx) - half - 1)));
    int x1 = std::min(this->width() - 1, static_cast<int>(std::ceil(std::max(ax, bx) + half + 1)));
    int y0 = std::max(0, static_cast<int>(std::floor(std::min(ay, by) - half - 1)));
    int y1 = std::min(height() - 1, static_cast<int>(std::ceil(std::max(ay, by) + half + 1)));
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) {
        float d = segment_distance(x + 0.5f, y + 0.5f, ax, ay, bx, by);
        float c = std::clamp(half + 0.5f - d, 0.0f, 1.0f);
        float& cov = coverage[static_cast<size_t>(y) * this->width() + x];
        cov = std::max(cov, c);
      }
  };
  auto finite = [&](size_t i) { return std::isfinite(xs[i]) && std::isfinite(ys[i]); };
  for (size_t i = 0; i < xs.size(); ++i) {
    if (!finite(i)) continue;
    bool prev = i > 0 && finite(i - 1);
    bool next = i + 1 < xs.size() && finite(i + 1);
    if (prev) cover_segment(xs[i - 1], ys[i - 1], xs[i], ys[i]);
    if (!prev && !next) cover_segment(xs[i], ys[i], xs[i], ys[i]);  // an isolated point: a dot
  }
  for (int y = 0; y < height(); ++y)
    for (int x = 0; x < this->width(); ++x) blend_pixel(x, y, colour, coverage[static_cast<size_t>(y) * this->width() + x]);
}

void Canvas::draw_line(float x0, float y0, float x1, float y1, Rgb colour, float width) {
  draw_polyline({x0, x1}, {y0, y1}, colour, width);
}

void Canvas::draw_text(int x, int y, std::string_view text, Rgb colour, int scale) {
  for (char ch : text) {
    const char* rows = glyph_rows(ch);
    for (int r = 0; r < kGlyphH; ++r)
      for (int c = 0; c < kGlyphW; ++c)
        if (rows[r * (kGlyphW + 1) + c] == '#')
          fill_rect(x + c * scale, y + r * scale, x + (c + 1) * scale, y + (r + 1) * scale, colour);
    x += kAdvance * scale;
  }
}

int Canvas::text_width(std::string_view text, int scale) {
  return text.empty() ? 0 : (static_cast<int>(text.size()) * kAdvance - 1) * scale;
}

void Canvas::draw_image(const Image& img, int x0, int y0) {
  MMG_CHECK(img.channels == 1 || img.channels == 3, "draw_image: {} channels (1 or 3 expected)", img.channels);
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      Rgb c = img.channels == 3 ? Rgb{img.at(x, y, 0), img.at(x, y, 1), img.at(x, y, 2)}
                                : Rgb{img.at(x, y, 0), img.at(x, y, 0), img.at(x, y, 0)};
      blend_pixel(x0 + x, y0 + y, c, 1.0f);
    }
}

// ---- line plots ----

Rgb series_colour(int i) {
  static constexpr Rgb kPalette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},
                                     {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127}};
  constexpr int n = sizeof(kPalette) / sizeof(kPalette[0]);
  return kPalette[((i % n) + n) % n];
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  MMG_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi && target >= 1,
            "nice_ticks: range [{}, {}] with {} intervals", lo, hi, target);
  if (hi - lo < 1e-12 * std::max(1.0, std::abs(hi))) {  // a flat line: widen around it
    double pad = lo == 0 ? 1.0 : std::abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  // The step: the raw step rounded up to 1, 2, 5 or 10 times a power of ten.
  double raw = (hi - lo) / target;
  double decade = std::pow(10.0, std::floor(std::log10(raw)));
  double step = decade * 10;
  for (double m : {1.0, 2.0, 5.0})
    if (m * decade >= raw * (1 - 1e-9)) {
      step = m * decade;
      break;
    }
  double first = std::floor(lo / step + 1e-9) * step, last = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> ticks;
  for (int64_t i = 0; first + i * step <= last + step * 1e-6; ++i) {
    double t = first + i * step;
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);  // print 0, never -0 or 1e-17
  }
  return ticks;
}

namespace {

// A tick label with as many decimals as the step needs (0.25 → 2, 10 → 0).
std::string tick_label(double v, double step) {
  if (std::abs(v) >= 1e6 || (step < 1e-4 && v != 0)) return fmt::format("{:.3g}", v);
  int decimals = 0;
  while (decimals < 6 && std::abs(step * std::pow(10.0, decimals) - std::round(step * std::pow(10.0, decimals))) > 1e-6)
    ++decimals;
  return fmt::format("{:.{}f}", v, decimals);
}

constexpr Rgb kInk{40, 40, 40}, kGrid{225, 225, 225}, kWhite{255, 255, 255};

}  // namespace

Image render_line_plot(const LinePlot& plot) {
  MMG_CHECK(plot.width >= 200 && plot.height >= 150, "render_line_plot: size {}x{} is too small (min 200x150)",
            plot.width, plot.height);
  // Data range over every finite point.
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
  for (const PlotSeries& s : plot.series) {
    MMG_CHECK(s.x.size() == s.y.size(), "render_line_plot: series '{}' has {} x values but {} y values", s.name,
              s.x.size(), s.y.size());
    for (size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        xmin = std::min(xmin, s.x[i]), xmax = std::max(xmax, s.x[i]);
        ymin = std::min(ymin, s.y[i]), ymax = std::max(ymax, s.y[i]);
      }
  }
  MMG_CHECK(std::isfinite(xmin), "render_line_plot '{}': no finite point to plot", plot.title);
  std::vector<double> xt = nice_ticks(xmin, xmax, 6), yt = nice_ticks(ymin, ymax, 5);
  double xstep = xt[1] - xt[0], ystep = yt[1] - yt[0];
  std::vector<std::string> ylabels;
  int ylabel_w = 0;
  for (double v : yt) {
    ylabels.push_back(tick_label(v, ystep));
    ylabel_w = std::max(ylabel_w, Canvas::text_width(ylabels.back()));
  }

  // Layout: title on top, y tick labels on the left, x tick labels and label below.
  const int left = ylabel_w + 14, right = 16, top = 12 + (plot.title.empty() ? 0 : 24) + 14;
  const int bottom = 20 + (plot.x_label.empty() ? 0 : 14);
  const int pw = plot.width - left - right, ph = plot.height - top - bottom;
  MMG_CHECK(pw > 20 && ph > 20, "render_line_plot: {}x{} leaves no room for the axes", plot.width, plot.height);
  auto px = [&](double x) { return static_cast<float>(left + (x - xt.front()) / (xt.back() - xt.front()) * pw); };
  auto py = [&](double y) { return static_cast<float>(top + ph - (y - yt.front()) / (yt.back() - yt.front()) * ph); };

  Canvas canvas(plot.width, plot.height, kWhite);
  if (!plot.title.empty())
    canvas.draw_text((plot.width - Canvas::text_width(plot.title, 2)) / 2, 12, plot.title, kInk, 2);
  if (!plot.y_label.empty()) canvas.draw_text(left, top - 12, plot.y_label, kInk);

  // Grid lines and ticks with their numbers.
  for (size_t i = 0; i < yt.size(); ++i) {
    int y = static_cast<int>(std::lround(py(yt[i])));
    canvas.fill_rect(left, y, left + pw, y + 1, kGrid);
    canvas.fill_rect(left - 4, y, left, y + 1, kInk);
    canvas.draw_text(left - 7 - Canvas::text_width(ylabels[i]), y - 3, ylabels[i], kInk);
  }
  for (double v : xt) {
    int x = static_cast<int>(std::lround(px(v)));
    canvas.fill_rect(x, top, x + 1, top + ph, kGrid);
    canvas.fill_rect(x, top + ph, x + 1, top + ph + 4, kInk);
    std::string label = tick_label(v, xstep);
    canvas.draw_text(x - Canvas::text_width(label) / 2, top + ph + 7, label, kInk);
  }
  if (!plot.x_label.empty())
    canvas.draw_text(left + (pw - Canvas::text_width(plot.x_label)) / 2, top + ph + 20, plot.x_label, kInk);
  // The axes: a frame around the plot area.
  canvas.fill_rect(left, top, left + 1, top + ph + 1, kInk);
  canvas.fill_rect(left, top + ph, left + pw + 1, top + ph + 1, kInk);

  // The series.
  for (const PlotSeries& s : plot.series) {
    std::vector<float> xs(s.x.size()), ys(s.y.size());
    for (size_t i = 0; i < s.x.size(); ++i) {
      bool ok = std::isfinite(s.x[i]) && std::isfinite(s.y[i]);
      xs[i] = ok ? px(s.x[i]) : std::numeric_limits<float>::quiet_NaN();
      ys[i] = ok ? py(s.y[i]) : std::numeric_limits<float>::quiet_NaN();
    }
    canvas.draw_polyline(xs, ys, s.colour, 2.0f);
  }

  // Legend in the top-right corner of the plot area, when the series have names.
  int named = 0, legend_w = 0;
  for (const PlotSeries& s : plot.series)
    if (!s.name.empty()) ++named, legend_w = std::max(legend_w, Canvas::text_width(s.name));
  if (named > 0) {
    int bw = legend_w + 34, bh = named * 12 + 8, bx = left + pw - bw - 6, by = top + 6;
    canvas.fill_rect(bx, by, bx + bw, by + bh, kWhite);
    canvas.fill_rect(bx, by, bx + bw, by + 1, kGrid), canvas.fill_rect(bx, by + bh - 1, bx + bw, by + bh, kGrid);
    canvas.fill_rect(bx, by, bx + 1, by + bh, kGrid), canvas.fill_rect(bx + bw - 1, by, bx + bw, by + bh, kGrid);
    int row = 0;
    for (const PlotSeries& s : plot.series) {
      if (s.name.empty()) continue;
      int y = by + 5 + row++ * 12;
      canvas.fill_rect(bx + 6, y + 2, bx + 24, y + 5, s.colour);
      canvas.draw_text(bx + 28, y, s.name, kInk);
    }
  }
  return canvas.image();
}

void save_line_plot(const LinePlot& plot, const std::string& path) { save_png(render_line_plot(plot), path); }

// ---- attention maps ----

Rgb heat_colour(float t) {
  // Piecewise-linear through five stops: dark blue, cyan, green, yellow, red.
  static constexpr float kStops[5][3] = {{0, 0, 140}, {0, 200, 255}, {40, 220, 60}, {255, 230, 0}, {230, 20, 20}};
  t = std::clamp(std::isfinite(t) ? t : 0.0f, 0.0f, 1.0f) * 4;
  int i = std::min(3, static_cast<int>(t));
  float f = t - i;
  auto mix = [&](int k) { return static_cast<uint8_t>(std::lround(kStops[i][k] * (1 - f) + kStops[i + 1][k] * f)); };
  return {mix(0), mix(1), mix(2)};
}

Image render_attention_overlay(const Image& image, const std::vector<float>& weights, int grid_h, int grid_w,
                               const std::string& title, int size) {
  MMG_CHECK(!image.empty() && (image.channels == 1 || image.channels == 3),
            "render_attention_overlay: the image must be grey or RGB, got {} channels", image.channels);
  MMG_CHECK(grid_h > 0 && grid_w > 0 && weights.size() == static_cast<size_t>(grid_h) * grid_w,
            "render_attention_overlay: {} weights for a {}x{} grid", weights.size(), grid_h, grid_w);
  MMG_CHECK(size >= 32, "render_attention_overlay: panel size {} is too small (min 32)", size);
  auto [lo_it, hi_it] = std::minmax_element(weights.begin(), weights.end());
  const float lo = *lo_it, hi = *hi_it, span = hi > lo ? hi - lo : 1.0f;

  // The image enlarged by nearest neighbour, as RGB.
  Image big(size, size, 3);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x)
      for (int c = 0; c < 3; ++c)
        big.at(x, y, c) = image.at(x * image.width / size, y * image.height / size, image.channels == 3 ? c : 0);

  // The weight grid as a grey image (0..255 = lo..hi), upsampled bilinearly, coloured and
  // blended half and half with the image.
  Image grid(grid_w, grid_h, 1);
  for (int i = 0; i < grid_h * grid_w; ++i)
    grid.data[i] = static_cast<uint8_t>(std::lround(255.0f * (weights[i] - lo) / span));
  Image heat = resize_bilinear(grid, size, size);
  Image overlay = big;
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      Rgb h = heat_colour(heat.at(x, y, 0) / 255.0f);
      const uint8_t hc[3] = {h.r, h.g, h.b};
      for (int c = 0; c < 3; ++c)
        overlay.at(x, y, c) = static_cast<uint8_t>((overlay.at(x, y, c) + hc[c] + 1) / 2);
    }

  // Layout: title, two panels, the colour bar with its labels.
  const int pad = 10, title_h = title.empty() ? 0 : 18, bar_w = 14;
  std::string lo_label = fmt::format("{:.3g}", lo), hi_label = fmt::format("{:.3g}", hi);
  const int label_w = std::max(Canvas::text_width(lo_label), Canvas::text_width(hi_label));
  const int width = pad + size + pad + size + pad + bar_w + 6 + label_w + pad;
  const int height = pad + title_h + size + pad;
  Canvas canvas(std::max(width, Canvas::text_width(title) + 2 * pad), height, kWhite);
  if (!title.empty()) canvas.draw_text(pad, pad, title, kInk);
  const int y0 = pad + title_h;
  canvas.draw_image(big, pad, y0);
  canvas.draw_image(overlay, 2 * pad + size, y0);
  const int bx = 3 * pad + 2 * size;
  for (int y = 0; y < size; ++y) canvas.fill_rect(bx, y0 + y, bx + bar_w, y0 + y + 1, heat_colour(1.0f - (y + 0.5f) / size));
  canvas.draw_text(bx + bar_w + 6, y0, hi_label, kInk);
  canvas.draw_text(bx + bar_w + 6, y0 + size - 7, lo_label, kInk);
  return canvas.image();
}

}  // namespace mmg
