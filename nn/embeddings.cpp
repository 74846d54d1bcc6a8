#include "nn/embeddings.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "nn/init.h"

namespace mmg::nn {

// ---- patches ----

PatchProjection::PatchProjection(int64_t c, int64_t p, int64_t dim, Generator* gen) {
  MMG_CHECK(c > 0 && p > 0 && dim > 0, "PatchProjection: in_channels {}, patch_size {} and dim {} must be positive", c,
            p, dim);
  // PyTorch's Conv2d default: weight and bias ~ U(±1/√fan_in), fan_in = C·P·P.
  const double bound = 1.0 / std::sqrt(static_cast<double>(c * p * p));
  weight = register_parameter("weight", empty({dim, c, p, p}));
  init::uniform_(weight, -bound, bound, gen);
  bias = register_parameter("bias", empty({dim}));
  init::uniform_(bias, -bound, bound, gen);
}

PatchEmbedding::PatchEmbedding(int64_t image_size, int64_t patch_size, int64_t in_channels, int64_t dim,
                               Generator* gen)
    : image_size(image_size), patch_size(patch_size), in_channels(in_channels), dim(dim) {
  MMG_CHECK(image_size > 0 && patch_size > 0, "PatchEmbedding: image_size {} and patch_size {} must be positive",
            image_size, patch_size);
  MMG_CHECK(image_size % patch_size == 0, "PatchEmbedding: image_size {} is not divisible by patch_size {}",
            image_size, patch_size);
  grid_size = image_size / patch_size;
  num_patches = grid_size * grid_size;
  proj = register_module("proj", std::make_shared<PatchProjection>(in_channels, patch_size, dim, gen));
}

Tensor PatchEmbedding::forward(const Tensor& images) const {
  MMG_CHECK(images.defined() && images.dim() == 4 && images.size(1) == in_channels,
            "PatchEmbedding: images {} must be [B,{},H,W]", images.defined() ? shape_str(images.shape()) : "undefined",
            in_channels);
  const int64_t B = images.size(0), C = in_channels, H = images.size(2), W = images.size(3), P = patch_size;
  MMG_CHECK(H % P == 0 && W % P == 0, "PatchEmbedding: image size {}x{} of {} is not divisible by patch_size {}", H, W,
            shape_str(images.shape()), P);
  const int64_t gh = H / P, gw = W / P;
  Tensor patches = reshape(images, {B, C, gh, P, gw, P}).permute({0, 2, 4, 1, 3, 5});  // [B,gh,gw,C,P,P]
  patches = reshape(patches, {B, gh * gw, C * P * P});
  return linear(patches, proj->weight.view({dim, C * P * P}), proj->bias);
}

ConvWeight::ConvWeight(int64_t c_in, int64_t c_out, int64_t k, Generator* gen) {
  MMG_CHECK(c_in > 0 && c_out > 0 && k > 0, "ConvWeight: in_channels {}, out_channels {} and kernel {} must be positive",
            c_in, c_out, k);
  const double bound = 1.0 / std::sqrt(static_cast<double>(c_in * k * k));
  weight = register_parameter("weight", empty({c_out, c_in, k, k}));
  init::uniform_(weight, -bound, bound, gen);
}

std::vector<int64_t> ConvStem::conv3x3_stride2_taps(int64_t h, int64_t w) {
  const int64_t oh = (h + 1) / 2, ow = (w + 1) / 2, outside = h * w;
  std::vector<int64_t> taps;
  taps.reserve(static_cast<size_t>(oh * ow * 9));
  for (int64_t oy = 0; oy < oh; ++oy)
    for (int64_t ox = 0; ox < ow; ++ox)
      for (int64_t ky = 0; ky < 3; ++ky)
        for (int64_t kx = 0; kx < 3; ++kx) {
          const int64_t y = 2 * oy + ky - 1, x = 2 * ox + kx - 1;
          taps.push_back(y >= 0 && y < h && x >= 0 && x < w ? y * w + x : outside);
        }
  return taps;
}

ConvStem::ConvStem(int64_t image_size, int64_t patch_size, int64_t in_channels, int64_t dim, Generator* gen)
    : image_size(image_size), patch_size(patch_size), in_channels(in_channels), dim(dim) {
  MMG_CHECK(patch_size >= 2 && (patch_size & (patch_size - 1)) == 0,
            "ConvStem: patch_size {} must be a power of 2, at least 2 (one stride-2 convolution per halving)",
            patch_size);
  MMG_CHECK(image_size > 0 && image_size % patch_size == 0, "ConvStem: image_size {} is not divisible by patch_size {}",
            image_size, patch_size);
  MMG_CHECK(in_channels > 0 && dim > 0, "ConvStem: in_channels {} and dim {} must be positive", in_channels, dim);
  grid_size = image_size / patch_size;
  num_patches = grid_size * grid_size;
  int64_t k = 0;
  while ((int64_t{1} << k) < patch_size) ++k;
  for (int64_t i = 0; i < k; ++i) channels.push_back(std::max<int64_t>(16, (dim / 2) >> (k - 1 - i)));
  convs = register_module("convs", std::make_shared<ModuleList<ConvWeight>>());
  norms = register_module("norms", std::make_shared<ModuleList<LayerNorm>>());
  int64_t c = in_channels, side = image_size;
  for (int64_t out : channels) {
    convs->push_back(std::make_shared<ConvWeight>(c, out, 3, gen));
    norms->push_back(std::make_shared<LayerNorm>(out, 1e-6));
    taps_.push_back(conv3x3_stride2_taps(side, side));
    c = out, side /= 2;
  }
  proj = register_module("proj", std::make_shared<PatchProjection>(c, 1, dim, gen));
  taps_on_device_.resize(taps_.size());
}

Tensor ConvStem::forward(const Tensor& images) const {
  MMG_CHECK(images.defined() && images.dim() == 4 && images.size(1) == in_channels && images.size(2) == image_size &&
                images.size(3) == image_size,
            "ConvStem: images {} must be [B,{},{},{}]", images.defined() ? shape_str(images.shape()) : "undefined",
            in_channels, image_size, image_size);
  const int64_t B = images.size(0);
  int64_t side = image_size;
  Tensor x = reshape(images, {B, in_channels, side * side}).permute({0, 2, 1});  // channels last: [B,H·W,C]
  for (size_t i = 0; i < taps_.size(); ++i) {
    Tensor& taps = taps_on_device_[i];
    if (!taps.defined() || !(taps.device() == x.device()))
      taps = from_vector(taps_[i], {static_cast<int64_t>(taps_[i].size())}).to(x.device());
    const int64_t c = x.size(2), out_side = (side + 1) / 2, n_out = out_side * out_side;
    Tensor padded = cat({x, zeros({B, 1, c}, {.dtype = x.dtype(), .device = x.device()})}, 1);  // row H·W is zero
    // Each output's 9 taps side by side, tap-major: [B,n,9·c] with no copy beyond the gather.
    Tensor cols = reshape(index_select(padded, 1, taps), {B, n_out, 9 * c});
    // The weight [out,c,3,3] reordered to match, [out,3,3,c]: a copy of the small weight
    // instead of a transpose of the large gathered activations.
    const ConvWeight& conv = (*convs)[i];
    const int64_t out = conv.weight.size(0);
    x = linear(cols, reshape(conv.weight.permute({0, 2, 3, 1}), {out, 9 * c}));
    x = gelu((*norms)[i].forward(x));
    side = out_side;
  }
  return linear(x, proj->weight.view({dim, x.size(2)}), proj->bias);
}

// ---- positions ----

LearnedPositionalEmbedding::LearnedPositionalEmbedding(int64_t max_len, int64_t dim, Generator* gen)
    : max_len(max_len), dim(dim) {
  MMG_CHECK(max_len > 0 && dim > 0, "LearnedPositionalEmbedding: max_len {} and dim {} must be positive", max_len,
            dim);
  weight = register_parameter("weight", empty({max_len, dim}));
  init::trunc_normal_(weight, 0.02, 0.0, std::nullopt, std::nullopt, gen);
}

Tensor LearnedPositionalEmbedding::forward(const Tensor& x, int64_t start) const {
  MMG_CHECK(x.defined() && x.dim() >= 2 && x.size(-1) == dim, "LearnedPositionalEmbedding: x {} must be [...,S,{}]",
            x.defined() ? shape_str(x.shape()) : "undefined", dim);
  const int64_t S = x.size(-2);
  MMG_CHECK(start >= 0 && start + S <= max_len,
            "LearnedPositionalEmbedding: positions {}..{} of x {} exceed max_len {}", start, start + S - 1,
            shape_str(x.shape()), max_len);
  return x + weight.slice(0, start, start + S);
}

Tensor sinusoidal_1d(int64_t len, int64_t dim, DType dtype) {
  MMG_CHECK(len >= 0 && dim > 0, "sinusoidal_1d: len {} must be >= 0 and dim {} positive", len, dim);
  std::vector<double> pe(static_cast<size_t>(len * dim));
  for (int64_t pos = 0; pos < len; ++pos)
    for (int64_t c = 0; c < dim; ++c) {
      const int64_t two_i = c - c % 2;  // columns 2i and 2i+1 share the frequency ω_i
      const double angle = static_cast<double>(pos) / std::pow(10000.0, static_cast<double>(two_i) / dim);
      pe[pos * dim + c] = c % 2 == 0 ? std::sin(angle) : std::cos(angle);
    }
  return from_vector(pe, {len, dim}).to(dtype);
}

Tensor sinusoidal_2d(int64_t grid_h, int64_t grid_w, int64_t dim, DType dtype) {
  MMG_CHECK(grid_h >= 0 && grid_w >= 0, "sinusoidal_2d: grid {}x{} must not be negative", grid_h, grid_w);
  MMG_CHECK(dim > 0 && dim % 2 == 0, "sinusoidal_2d: dim {} must be positive and even (half rows, half columns)",
            dim);
  // Patch n sits at row n / grid_w, column n % grid_w: gather the 1-D tables by those indices.
  std::vector<int64_t> rows, cols;
  for (int64_t r = 0; r < grid_h; ++r)
    for (int64_t c = 0; c < grid_w; ++c) {
      rows.push_back(r);
      cols.push_back(c);
    }
  const int64_t n = grid_h * grid_w;
  Tensor by_row = index_select(sinusoidal_1d(grid_h, dim / 2, DType::f64), 0, from_vector(rows, {n}));
  Tensor by_col = index_select(sinusoidal_1d(grid_w, dim / 2, DType::f64), 0, from_vector(cols, {n}));
  return cat({by_row, by_col}, 1).to(dtype);
}

}  // namespace mmg::nn
