// The rasteriser: line plots put their ink where the data says, text stays in its box,
// ticks are nice numbers, and the attention overlay blends the heat map where the weight is.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "core/mmgrad.h"
#include "train/plot.h"

using namespace mmg;
namespace fs = std::filesystem;

namespace {

// Pixels of exactly this colour: a line of width 2 covers its centre pixels fully.
std::vector<std::pair<int, int>> pixels_of(const Image& img, Rgb c) {
  std::vector<std::pair<int, int>> out;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x)
      if (img.at(x, y, 0) == c.r && img.at(x, y, 1) == c.g && img.at(x, y, 2) == c.b) out.emplace_back(x, y);
  return out;
}

// Pearson correlation of the x and y coordinates of a set of pixels.
double correlation(const std::vector<std::pair<int, int>>& pts) {
  double n = static_cast<double>(pts.size()), sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
  for (auto [x, y] : pts) sx += x, sy += y, sxx += double(x) * x, syy += double(y) * y, sxy += double(x) * y;
  double cov = sxy / n - sx / n * sy / n, vx = sxx / n - sx / n * sx / n, vy = syy / n - sy / n * sy / n;
  return cov / std::sqrt(vx * vy);
}

}  // namespace

TEST_CASE("plot: nice ticks are 1, 2 or 5 times a power of ten and cover the range") {
  auto check = [](double lo, double hi, int target) {
    CAPTURE(lo);
    CAPTURE(hi);
    std::vector<double> t = nice_ticks(lo, hi, target);
    REQUIRE(t.size() >= 2);
    CHECK(t.front() <= lo);
    CHECK(t.back() >= hi);
    double step = t[1] - t[0];
    for (size_t i = 1; i < t.size(); ++i) CHECK(t[i] - t[i - 1] == doctest::Approx(step));
    double mantissa = step / std::pow(10.0, std::floor(std::log10(step)));
    CHECK((std::abs(mantissa - 1) < 1e-9 || std::abs(mantissa - 2) < 1e-9 || std::abs(mantissa - 5) < 1e-9));
    CHECK(t.size() <= static_cast<size_t>(2 * target + 2));
  };
  check(0, 1, 5);
  check(0.13, 0.87, 5);
  check(-3.7, 12.2, 6);
  check(1e-4, 3e-4, 4);
  check(0, 30000, 5);
  check(2.5, 2.5, 5);  // a flat series still gets an axis
  std::vector<double> t = nice_ticks(0.13, 0.87, 5);  // step 0.2 from 0 to 1
  REQUIRE(t.size() == 6);
  CHECK(t[0] == 0.0);
  CHECK(t[5] == doctest::Approx(1.0));
}

TEST_CASE("plot: text is drawn inside its box, each character differently") {
  const Rgb white{255, 255, 255}, ink{0, 0, 0};
  Canvas c(100, 30, white);
  c.draw_text(10, 5, "LOSS 0.25", ink, 2);
  int w = Canvas::text_width("LOSS 0.25", 2);
  CHECK(w == (9 * 6 - 1) * 2);
  int inked = 0;
  for (int y = 0; y < 30; ++y)
    for (int x = 0; x < 100; ++x)
      if (!(c.pixel(x, y) == white)) {
        ++inked;
        CHECK(x >= 10);
        CHECK(x < 10 + w);
        CHECK(y >= 5);
        CHECK(y < 5 + Canvas::text_height(2));
      }
  CHECK(inked > 50);

  // Every character of the font has its own bitmap; lower case draws as upper case.
  const std::string chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.,:;-+=()[]<>/%?!'\"_#*|@&";
  std::set<std::vector<uint8_t>> bitmaps;
  for (char ch : chars) {
    Canvas g(5, 7, white);
    g.draw_text(0, 0, std::string(1, ch), ink);
    bitmaps.insert(g.image().data);
  }
  CHECK(bitmaps.size() == chars.size());
  Canvas lower(60, 7, white), upper(60, 7, white);
  lower.draw_text(0, 0, "attention", ink);
  upper.draw_text(0, 0, "ATTENTION", ink);
  CHECK(lower.image().data == upper.image().data);
}

TEST_CASE("plot: a line plot has the requested size and its lines where the data is") {
  const Rgb rising{200, 0, 200}, falling{0, 160, 0};
  LinePlot plot;
  plot.title = "loss";
  plot.x_label = "step";
  plot.y_label = "value";
  plot.width = 500;
  plot.height = 320;
  PlotSeries a{"", {}, {}, rising}, b{"", {}, {}, falling};  // unnamed: no legend swatches
  for (int i = 0; i <= 100; ++i) {
    a.x.push_back(i), a.y.push_back(0.01 * i);
    b.x.push_back(i), b.y.push_back(1.0 - 0.01 * i);
  }
  plot.series = {a, b};
  Image img = render_line_plot(plot);
  REQUIRE(img.width == 500);
  REQUIRE(img.height == 320);
  CHECK(img.channels == 3);
  // The corners are background.
  for (auto [x, y] : {std::pair{0, 0}, std::pair{499, 0}, std::pair{0, 319}, std::pair{499, 319}})
    for (int c = 0; c < 3; ++c) CHECK(img.at(x, y, c) == 255);

  auto up = pixels_of(img, rising), down = pixels_of(img, falling);
  // Each line spans most of the plot's width.
  REQUIRE(up.size() > 300);
  REQUIRE(down.size() > 300);
  // Rising data goes up the picture (rows decrease as columns increase), falling goes down.
  CHECK(correlation(up) < -0.95);
  CHECK(correlation(down) > 0.95);
  // The two lines cross in the middle: both colours occur near the same middle column, and
  // the rising line starts at the bottom where the falling one starts at the top.
  auto x_range = [](const std::vector<std::pair<int, int>>& p) {
    int lo = 1 << 30, hi = -1;
    for (auto [x, y] : p) lo = std::min(lo, x), hi = std::max(hi, x);
    return std::pair{lo, hi};
  };
  auto [ux0, ux1] = x_range(up);
  auto [dx0, dx1] = x_range(down);
  CHECK(std::abs(ux0 - dx0) <= 2);
  CHECK(ux1 - ux0 > 300);
  auto row_at = [](const std::vector<std::pair<int, int>>& p, int col) {
    for (auto [x, y] : p)
      if (x == col) return y;
    return -1;
  };
  int col = ux0 + 3;
  CHECK(row_at(up, col) > row_at(down, col) + 150);

  // Written as a PNG that decodes to the same picture.
  fs::path path = fs::temp_directory_path() / fmt::format("mmg_plot_{}.png", static_cast<long>(::getpid()));
  save_line_plot(plot, path.string());
  Image back = load_image(path.string());
  fs::remove(path);
  CHECK(back.width == 500);
  CHECK(back.height == 320);
  CHECK(back.data == img.data);
}

TEST_CASE("plot: non-finite points break the line, bad series are errors") {
  LinePlot plot;
  PlotSeries s{"", {0, 1, 2, 3}, {1, NAN, 2, INFINITY}, {255, 0, 0}};
  plot.series = {s};
  Image img = render_line_plot(plot);  // two isolated finite points: drawn as dots
  int red = 0, red_left = 0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x)
      if (img.at(x, y, 0) > 200 && img.at(x, y, 1) < 100 && img.at(x, y, 2) < 100) ++red, red_left += x < img.width / 2;
  CHECK(red >= 4);
  CHECK(red_left > 0);  // one dot at each end of the x axis
  CHECK(red_left < red);

  LinePlot bad;
  bad.series = {PlotSeries{"x", {0, 1}, {1}, {}}};
  CHECK_THROWS_WITH_AS(render_line_plot(bad), doctest::Contains("series 'x' has 2 x values but 1 y values"), Error);
  LinePlot empty;
  empty.title = "nothing";
  empty.series = {PlotSeries{"nan", {0}, {NAN}, {}}};
  CHECK_THROWS_WITH_AS(render_line_plot(empty), doctest::Contains("no finite point"), Error);
}

TEST_CASE("plot: the attention overlay blends heat where the weight is") {
  // A grey 8×8 image with a red top-left quarter; all the weight on the bottom-right cell.
  Image img(8, 8, 3, 100);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) img.at(x, y, 0) = 250, img.at(x, y, 1) = 0, img.at(x, y, 2) = 0;
  const int size = 64;
  Image out = render_attention_overlay(img, {0.0f, 0.0f, 0.0f, 0.5f}, 2, 2, "where is the red square?", size);
  CHECK(out.height == size + 20 + 18);
  CHECK(out.width > 2 * size + 44);
  const int y0 = 28, left = 10, right = 20 + size;

  // Left panel: the image, enlarged by nearest neighbour.
  for (int y = 0; y < size; y += 5)
    for (int x = 0; x < size; x += 5)
      for (int c = 0; c < 3; ++c) CHECK(out.at(left + x, y0 + y, c) == img.at(x * 8 / size, y * 8 / size, c));

  // Right panel: half image, half heat. Near the corners the upsampled grid is exactly the
  // cell's value: cold (0) top-left, hot (1) bottom-right.
  Rgb cold = heat_colour(0.0f), hot = heat_colour(1.0f);
  auto blended = [](int image_value, int heat_value) { return (image_value + heat_value + 1) / 2; };
  CHECK(out.at(right + 2, y0 + 2, 0) == blended(250, cold.r));
  CHECK(out.at(right + 2, y0 + 2, 2) == blended(0, cold.b));
  CHECK(out.at(right + size - 3, y0 + size - 3, 0) == blended(100, hot.r));
  CHECK(out.at(right + size - 3, y0 + size - 3, 2) == blended(100, hot.b));
  CHECK(hot.r > hot.b);
  CHECK(cold.b > cold.r);

  // The colour bar: hot on top, cold at the bottom.
  const int bar = 30 + 2 * size + 7;
  CHECK(out.at(bar, y0, 0) > out.at(bar, y0, 2));
  CHECK(out.at(bar, y0 + size - 1, 2) > out.at(bar, y0 + size - 1, 0));

  CHECK_THROWS_WITH_AS(render_attention_overlay(img, {1, 2, 3}, 2, 2), doctest::Contains("3 weights for a 2x2 grid"),
                       Error);
}
