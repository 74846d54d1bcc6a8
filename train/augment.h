// Data augmentation on images: random crops and colour changes that make a small data set
// look larger to a model, drawn deterministically from a Generator (core/rng.h) so that a
// run can be reproduced exactly.
//
//   random_resized_crop  a random window of 60–100 % of the area with an aspect ratio
//                        in [3/4, 4/3], resized to out_size × out_size (torchvision's
//                        RandomResizedCrop: 10 tries, then a centre crop)
//   colour_jitter        brightness, contrast and saturation each scaled by a random
//                        factor in [1 − x, 1 + x] (torchvision's ColorJitter formulas)
//   horizontal_flip      the mirror image
//
// Horizontal flips are OFF by default: the captions of the scene data sets say "left of"
// and "right of", and a mirrored picture makes those captions false. Turn them on only for
// data whose texts do not speak of left and right.
//
// Each random function reserves a fixed number of counters from the generator (whatever
// its outcome), so the draws of one image never shift those of the next.
#pragma once
#include <utility>

#include "core/rng.h"
#include "train/image.h"

namespace mmg {

// The w × h window whose top-left pixel is (x, y); it must lie inside the image.
Image crop(const Image& image, int x, int y, int w, int h);

// torchvision's RandomResizedCrop. Up to 10 tries: draw an area fraction s uniform in
// `scale` and an aspect ratio r = exp(uniform(log ratio.first, log ratio.second)); the
// window is w = round(√(s·A·r)) by h = round(√(s·A / r)) (A = width·height); if it fits,
// its corner is uniform among the places it fits. When no try fits, the largest centre
// window whose aspect ratio lies within `ratio`. The window is then resized (bilinear) to
// out_size × out_size.
Image random_resized_crop(const Image& image, int out_size, Generator& gen,
                          std::pair<double, double> scale = {0.6, 1.0},
                          std::pair<double, double> ratio = {3.0 / 4.0, 4.0 / 3.0});

// torchvision's ColorJitter without hue. For each of brightness, contrast, saturation with
// strength x > 0, a factor f uniform in [max(0, 1 − x), 1 + x]; the three adjustments are
// applied in a random order, each a blend v' = clamp(f·v + (1 − f)·u, 0, 255) with
//   brightness  u = 0                                   (v' = f·v)
//   contrast    u = the mean grey value of the image
//   saturation  u = the pixel's own grey value  (grey = 0.2989 R + 0.587 G + 0.114 B, torchvision's weights)
// (values are rounded to the nearest integer after each step). A grey (1-channel) image is
// its own grey value, so saturation leaves it unchanged. Strength 0 leaves that property
// unchanged, and all three 0 return the image as it is.
Image colour_jitter(const Image& image, Generator& gen, double brightness, double contrast, double saturation);

// The mirror image: column x becomes column width − 1 − x.
Image horizontal_flip(const Image& image);

struct AugmentOptions {
  bool enabled = false;     // off: resize_and_center_crop only (evaluation, and the default)
  double min_scale = 0.6;   // random_resized_crop's smallest area fraction
  double brightness = 0.2, contrast = 0.2, saturation = 0.2;
  bool hflip = false;       // a flip with probability 1/2; off because it breaks left/right captions
};

// The training transform: with `enabled`, a random resized crop to out_size, colour jitter
// and (with `hflip`) a coin-flip mirror; otherwise resize_and_center_crop(image, out_size),
// drawing nothing from the generator.
Image augment(const Image& image, const AugmentOptions& options, int out_size, Generator& gen);

}  // namespace mmg
