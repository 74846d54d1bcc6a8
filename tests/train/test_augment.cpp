// Augmentation: each transform checked against what it must do, measured from the pixels —
// a crop window read back from a coordinate-coded picture, jitter factors recovered from
// the output and checked to be one factor for the whole image — plus determinism from the
// seed and the identity cases.
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "core/mmgrad.h"
#include "train/augment.h"

using namespace mmg;

namespace {

// A picture whose red value is the column and green value the row (blue a fixed pattern).
Image coordinates(int w, int h) {
  Image img(w, h, 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      img.at(x, y, 0) = static_cast<uint8_t>(x);
      img.at(x, y, 1) = static_cast<uint8_t>(y);
      img.at(x, y, 2) = static_cast<uint8_t>((x * 7 + y * 3) % 256);
    }
  return img;
}

Image pattern(int w, int h, int c, int lo = 0, int hi = 255) {
  Image img(w, h, c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) img.at(x, y, k) = static_cast<uint8_t>(lo + (x * 37 + y * 101 + k * 59) % (hi - lo + 1));
  return img;
}

}  // namespace

TEST_CASE("augment: crop copies the window, flip mirrors, and flipping twice is the identity") {
  Image img = pattern(9, 7, 3);
  Image c = crop(img, 2, 1, 4, 5);
  REQUIRE(c.width == 4);
  REQUIRE(c.height == 5);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 4; ++x)
      for (int k = 0; k < 3; ++k) CHECK(c.at(x, y, k) == img.at(x + 2, y + 1, k));
  CHECK_THROWS_AS(crop(img, 6, 0, 4, 2), Error);
  Image f = horizontal_flip(img);
  for (int y = 0; y < 7; ++y)
    for (int x = 0; x < 9; ++x)
      for (int k = 0; k < 3; ++k) CHECK(f.at(x, y, k) == img.at(8 - x, y, k));
  CHECK(horizontal_flip(f).data == img.data);
}

TEST_CASE("augment: random_resized_crop picks windows within the scale and ratio ranges") {
  const int W = 200, H = 160, out = 16;
  Image img = coordinates(W, H);
  Generator gen(123);
  std::set<int> lefts;
  for (int trial = 0; trial < 50; ++trial) {
    Image o = random_resized_crop(img, out, gen);
    REQUIRE(o.width == out);
    REQUIRE(o.height == out);
    // Output pixel i samples the window at (i + 0.5)·w/out − 0.5, so columns 0 and out−1 are
    // (out − 1)·w/out apart in the window: the red values (= x) give w back, ±1 for rounding.
    const double w = (o.at(out - 1, 0, 0) - o.at(0, 0, 0)) * out / (out - 1.0);
    const double h = (o.at(0, out - 1, 1) - o.at(0, 0, 1)) * out / (out - 1.0);
    const double left = o.at(0, 0, 0) - (0.5 * w / out - 0.5), top = o.at(0, 0, 1) - (0.5 * h / out - 0.5);
    CAPTURE(w);
    CAPTURE(h);
    CHECK(w * h / (W * H) >= 0.6 - 0.03);
    CHECK(w * h / (W * H) <= 1.0 + 0.03);
    CHECK(w / h >= 0.75 - 0.03);
    CHECK(w / h <= 4.0 / 3.0 + 0.03);
    CHECK(left >= -1);
    CHECK(top >= -1);
    CHECK(left + w <= W + 1);
    CHECK(top + h <= H + 1);
    lefts.insert(static_cast<int>(left));
  }
  CHECK(lefts.size() > 10);  // the windows move
}

TEST_CASE("augment: the whole square picture at scale 1 and ratio 1 is a plain resize, otherwise a centre crop") {
  Generator gen(5);
  Image square = pattern(30, 30, 3);
  CHECK(random_resized_crop(square, 12, gen, {1.0, 1.0}, {1.0, 1.0}).data == resize_bilinear(square, 12, 12).data);
  // A 40×30 picture has no 1:1 window of its whole area: every try fails and the fallback is
  // the largest centred square, 30×30 at column 5.
  Image wide = pattern(40, 30, 3);
  CHECK(random_resized_crop(wide, 12, gen, {1.0, 1.0}, {1.0, 1.0}).data ==
        resize_bilinear(crop(wide, 5, 0, 30, 30), 12, 12).data);
}

TEST_CASE("augment: the same seed gives the same pictures, another seed others") {
  Image img = pattern(48, 40, 3);
  AugmentOptions on;
  on.enabled = true;
  on.hflip = true;
  Generator a(7), b(7), c(8);
  for (int i = 0; i < 5; ++i) {
    Image x = augment(img, on, 32, a), y = augment(img, on, 32, b), z = augment(img, on, 32, c);
    CHECK(x.width == 32);
    CHECK(x.height == 32);
    CHECK(x.data == y.data);
    CHECK(x.data != z.data);
  }
  CHECK(a.offset() == b.offset());
  // Disabled: the evaluation transform, drawing nothing.
  Generator g(1);
  CHECK(augment(img, AugmentOptions{}, 32, g).data == resize_and_center_crop(img, 32).data);
  CHECK(g.offset() == 0);
}

TEST_CASE("augment: colour jitter of strength 0 is the identity") {
  Generator gen(3);
  for (int channels : {1, 3}) {
    Image img = pattern(11, 9, channels);
    CHECK(colour_jitter(img, gen, 0, 0, 0).data == img.data);
  }
}

TEST_CASE("augment: brightness multiplies every value by one factor, clamped at 255") {
  Image img = pattern(16, 16, 3);
  Generator gen(11);
  for (int trial = 0; trial < 10; ++trial) {
    Image out = colour_jitter(img, gen, 0.9, 0, 0);
    // Recover the factor from the largest value that did not saturate (the most precise
    // ratio), then check every value against it.
    size_t best = img.data.size();
    for (size_t i = 0; i < img.data.size(); ++i)
      if (out.data[i] < 255 && (best == img.data.size() || img.data[i] > img.data[best])) best = i;
    REQUIRE(best < img.data.size());
    REQUIRE(img.data[best] >= 100);  // f <= 1.9 leaves every value up to 134 unsaturated
    const double f = static_cast<double>(out.data[best]) / img.data[best];
    CHECK(f >= 0.1 - 0.01);
    CHECK(f <= 1.9 + 0.01);
    for (size_t i = 0; i < img.data.size(); ++i)
      CHECK(std::abs(out.data[i] - std::min(255.0, f * img.data[i])) <= 1.5);
  }
}

TEST_CASE("augment: contrast scales the distance from the mean grey value by one factor") {
  Image img = pattern(20, 20, 1, 60, 190);  // far from 0 and 255: no clamping at factor <= 1.5
  double mean = 0;
  for (uint8_t v : img.data) mean += v;
  mean /= img.data.size();
  Generator gen(2);
  for (int trial = 0; trial < 10; ++trial) {
    Image out = colour_jitter(img, gen, 0, 0.5, 0);
    size_t far = 0;  // the value furthest from the mean gives the factor most precisely
    for (size_t i = 0; i < img.data.size(); ++i)
      if (std::abs(img.data[i] - mean) > std::abs(img.data[far] - mean)) far = i;
    const double f = (out.data[far] - mean) / (img.data[far] - mean);
    CHECK(f >= 0.5 - 0.02);
    CHECK(f <= 1.5 + 0.02);
    for (size_t i = 0; i < img.data.size(); ++i) CHECK(std::abs(out.data[i] - (mean + f * (img.data[i] - mean))) <= 1.5);
  }
}

TEST_CASE("augment: saturation keeps each pixel's grey value and leaves grey pictures alone") {
  Image img = pattern(12, 12, 3);
  Generator gen(4);
  auto grey = [](const Image& im, int x, int y) {
    return 0.2989 * im.at(x, y, 0) + 0.587 * im.at(x, y, 1) + 0.114 * im.at(x, y, 2);
  };
  bool changed = false;
  for (int trial = 0; trial < 5; ++trial) {
    Image out = colour_jitter(img, gen, 0, 0, 0.5);
    changed |= out.data != img.data;
    // Blending with the grey value stays on the line through the pixel and its grey; where
    // nothing is clamped, the grey value is kept (up to rounding).
    for (int y = 0; y < 12; ++y)
      for (int x = 0; x < 12; ++x) {
        bool clamped = false;
        for (int k = 0; k < 3; ++k) clamped |= out.at(x, y, k) == 0 || out.at(x, y, k) == 255;
        if (!clamped) CHECK(std::abs(grey(out, x, y) - grey(img, x, y)) <= 1.0);
      }
  }
  CHECK(changed);
  Image grey_rgb(8, 8, 3);
  for (size_t i = 0; i < grey_rgb.data.size(); ++i) grey_rgb.data[i] = static_cast<uint8_t>((i / 3) * 4);
  CHECK(colour_jitter(grey_rgb, gen, 0, 0, 1.0).data == grey_rgb.data);
  Image one_channel = pattern(8, 8, 1);
  CHECK(colour_jitter(one_channel, gen, 0, 0, 1.0).data == one_channel.data);
}
