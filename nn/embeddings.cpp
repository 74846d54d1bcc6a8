#include "nn/embeddings.h"

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
