#include "train/augment.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/philox.h"

namespace mmg {

namespace {

// Uniform draws from counters reserved on a generator: the k-th draw uses counter first + k.
struct Uniforms {
  uint64_t seed, first;
  double at(uint64_t k) const { return philox_uniform_f64(seed, first + k); }       // [0, 1)
  double at(uint64_t k, double lo, double hi) const { return lo + (hi - lo) * at(k); }
  int below(uint64_t k, int n) const { return std::min(n - 1, static_cast<int>(at(k) * n)); }
};

constexpr int kCropTries = 10;
constexpr uint64_t kCropDraws = 4 * kCropTries;  // area, ratio, top, left per try
constexpr uint64_t kJitterDraws = 6;             // three factors, two for the order (one spare)

uint8_t to_byte(double v) { return static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 255.0))); }

// torchvision's grey value of pixel i (an RGB image; a grey image is its own value).
double grey_at(const Image& img, size_t i) {
  if (img.channels < 3) return img.data[i * img.channels];
  const uint8_t* p = img.data.data() + i * img.channels;
  return 0.2989 * p[0] + 0.587 * p[1] + 0.114 * p[2];
}

// v' = f·v + (1 − f)·u(pixel) on the colour channels (an alpha channel is kept).
template <class Anchor>
void blend(Image& img, double f, Anchor anchor) {
  const int colours = img.channels == 4 ? 3 : img.channels == 2 ? 1 : img.channels;
  const size_t n = static_cast<size_t>(img.width) * img.height;
  for (size_t i = 0; i < n; ++i) {
    const double u = anchor(i);
    for (int c = 0; c < colours; ++c) {
      uint8_t& v = img.data[i * img.channels + c];
      v = to_byte(f * v + (1 - f) * u);
    }
  }
}

void adjust_brightness(Image& img, double f) { blend(img, f, [](size_t) { return 0.0; }); }

void adjust_contrast(Image& img, double f) {
  const size_t n = static_cast<size_t>(img.width) * img.height;
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += grey_at(img, i);
  const double mean = sum / static_cast<double>(n);
  blend(img, f, [&](size_t) { return mean; });
}

void adjust_saturation(Image& img, double f) {
  if (img.channels < 3) return;  // grey already: blending with itself changes nothing
  const Image before = img;
  blend(img, f, [&](size_t i) { return grey_at(before, i); });
}

}  // namespace

Image crop(const Image& in, int x, int y, int w, int h) {
  MMG_CHECK(w > 0 && h > 0 && x >= 0 && y >= 0 && x + w <= in.width && y + h <= in.height,
            "crop: window {}x{} at ({}, {}) does not fit in a {}x{} image", w, h, x, y, in.width, in.height);
  Image out(w, h, in.channels);
  const size_t row_bytes = static_cast<size_t>(w) * in.channels;
  for (int r = 0; r < h; ++r)
    std::memcpy(out.data.data() + r * row_bytes,
                in.data.data() + (static_cast<size_t>(y + r) * in.width + x) * in.channels, row_bytes);
  return out;
}

Image random_resized_crop(const Image& in, int out_size, Generator& gen, std::pair<double, double> scale,
                          std::pair<double, double> ratio) {
  MMG_CHECK(!in.empty() && out_size > 0, "random_resized_crop: output size {} of a {}x{} image", out_size, in.width,
            in.height);
  MMG_CHECK(scale.first > 0 && scale.first <= scale.second && scale.second <= 1,
            "random_resized_crop: scale ({}, {}) must satisfy 0 < min <= max <= 1", scale.first, scale.second);
  MMG_CHECK(ratio.first > 0 && ratio.first <= ratio.second,
            "random_resized_crop: ratio ({}, {}) must satisfy 0 < min <= max", ratio.first, ratio.second);
  const Uniforms u{gen.seed(), gen.reserve(kCropDraws)};
  const int W = in.width, H = in.height;
  const double area = static_cast<double>(W) * H;
  for (int t = 0; t < kCropTries; ++t) {
    const double target = area * u.at(4 * t, scale.first, scale.second);
    const double aspect = std::exp(u.at(4 * t + 1, std::log(ratio.first), std::log(ratio.second)));
    const int w = static_cast<int>(std::lround(std::sqrt(target * aspect)));
    const int h = static_cast<int>(std::lround(std::sqrt(target / aspect)));
    if (w > 0 && w <= W && h > 0 && h <= H) {
      const int top = u.below(4 * t + 2, H - h + 1), left = u.below(4 * t + 3, W - w + 1);
      return resize_bilinear(crop(in, left, top, w, h), out_size, out_size);
    }
  }
  // No try fitted: the whole image, trimmed at the centre to the nearest allowed ratio.
  const double in_ratio = static_cast<double>(W) / H;
  int w = W, h = H;
  if (in_ratio < ratio.first) h = static_cast<int>(std::lround(w / ratio.first));
  else if (in_ratio > ratio.second) w = static_cast<int>(std::lround(h * ratio.second));
  w = std::clamp(w, 1, W), h = std::clamp(h, 1, H);
  return resize_bilinear(crop(in, (W - w) / 2, (H - h) / 2, w, h), out_size, out_size);
}

Image colour_jitter(const Image& in, Generator& gen, double brightness, double contrast, double saturation) {
  MMG_CHECK(!in.empty(), "colour_jitter: the input image is empty");
  MMG_CHECK(brightness >= 0 && contrast >= 0 && saturation >= 0,
            "colour_jitter: strengths (brightness {}, contrast {}, saturation {}) must be non-negative", brightness,
            contrast, saturation);
  const Uniforms u{gen.seed(), gen.reserve(kJitterDraws)};
  const double strength[3] = {brightness, contrast, saturation};
  double factor[3];
  for (int k = 0; k < 3; ++k) factor[k] = u.at(k, std::max(0.0, 1 - strength[k]), 1 + strength[k]);
  // A random order of the three adjustments (Fisher–Yates), as torchvision applies them.
  std::array<int, 3> order = {0, 1, 2};
  std::swap(order[2], order[u.below(3, 3)]);
  std::swap(order[1], order[u.below(4, 2)]);
  Image out = in;
  for (int k : order) {
    if (strength[k] == 0) continue;  // off: no change at all (not even rounding)
    if (k == 0) adjust_brightness(out, factor[k]);
    else if (k == 1) adjust_contrast(out, factor[k]);
    else adjust_saturation(out, factor[k]);
  }
  return out;
}

Image horizontal_flip(const Image& in) {
  Image out(in.width, in.height, in.channels);
  for (int y = 0; y < in.height; ++y)
    for (int x = 0; x < in.width; ++x)
      for (int c = 0; c < in.channels; ++c) out.at(in.width - 1 - x, y, c) = in.at(x, y, c);
  return out;
}

Image augment(const Image& in, const AugmentOptions& o, int out_size, Generator& gen) {
  if (!o.enabled) return resize_and_center_crop(in, out_size);
  Image out = random_resized_crop(in, out_size, gen, {o.min_scale, 1.0});
  out = colour_jitter(out, gen, o.brightness, o.contrast, o.saturation);
  if (o.hflip) {
    const uint64_t coin = gen.reserve(1);
    if (philox_uniform_f64(gen.seed(), coin) < 0.5) out = horizontal_flip(out);
  }
  return out;
}

}  // namespace mmg
