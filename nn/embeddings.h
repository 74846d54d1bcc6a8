// Turning images and positions into tokens: PatchEmbedding (ViT), a learned positional
// embedding, and the fixed sinusoidal tables of Vaswani et al. (1-D) and MAE (2-D).
#pragma once
#include <memory>
#include <string>

#include "nn/layers.h"

namespace mmg::nn {

// The parameters of a patch projection in PyTorch's Conv2d layout, so a ViT checkpoint's
// "patch_embed.proj.weight" [dim,C,P,P] and "proj.bias" [dim] load as they are.
class PatchProjection : public Module {
 public:
  PatchProjection(int64_t in_channels, int64_t patch_size, int64_t dim, Generator* gen = nullptr);
  std::string type_name() const override { return "PatchProjection"; }
  Tensor weight, bias;  // [dim, C, P, P], [dim]
};

// ViT's patch embedding (Dosovitskiy et al. 2021): cut the image into P×P patches and map
// each patch (C·P·P values, ordered channel, row, column) linearly to `dim`:
//   images [B,C,H,W] -> [B,C,H/P,P,W/P,P] -> [B,H/P,W/P,C,P,P] -> [B,N,C·P·P]
//   tokens = patches · W.view(dim, C·P·P)ᵀ + b                       -> [B,N,dim]
// N = (H/P)·(W/P), patches in row-major order. This is exactly a stride-P convolution with
// kernel P (no conv op needed). Any H, W divisible by P are accepted; image_size sets
// num_patches, which position embeddings are sized by.
class PatchEmbedding : public Module {
 public:
  PatchEmbedding(int64_t image_size, int64_t patch_size, int64_t in_channels, int64_t dim, Generator* gen = nullptr);
  Tensor forward(const Tensor& images) const;
  std::string type_name() const override { return "PatchEmbedding"; }

  int64_t image_size, patch_size, in_channels, dim;
  int64_t grid_size;    // image_size / patch_size
  int64_t num_patches;  // grid_size²
  std::shared_ptr<PatchProjection> proj;
};

// A trainable table `weight` [max_len, dim], init trunc_normal(std 0.02) as ViT/BERT.
// forward(x [B,S,dim], start) returns x + weight[start : start+S].
class LearnedPositionalEmbedding : public Module {
 public:
  LearnedPositionalEmbedding(int64_t max_len, int64_t dim, Generator* gen = nullptr);
  Tensor forward(const Tensor& x, int64_t start = 0) const;
  std::string type_name() const override { return "LearnedPositionalEmbedding"; }
  int64_t max_len, dim;
  Tensor weight;
};

// Vaswani et al. (2017), [len, dim]: with ω_i = 1 / 10000^(2i/dim),
//   PE[pos, 2i] = sin(pos·ω_i),   PE[pos, 2i+1] = cos(pos·ω_i).
// An odd dim ends with a sine column. Constant (no grad): register it as a buffer where used.
Tensor sinusoidal_1d(int64_t len, int64_t dim, DType dtype = DType::f32);

// A 2-D table for a grid_h × grid_w patch grid, [grid_h·grid_w, dim] (rows in the patch order
// of PatchEmbedding), as MAE: the first dim/2 columns are sinusoidal_1d(·, dim/2) of the
// patch's row, the last dim/2 of its column. dim must be even.
// (MAE's own code stores each half as [all sines | all cosines] and puts the column first: the
// same numbers up to a fixed permutation of the channels. Checkpoints carry their table.)
Tensor sinusoidal_2d(int64_t grid_h, int64_t grid_w, int64_t dim, DType dtype = DType::f32);

}  // namespace mmg::nn
