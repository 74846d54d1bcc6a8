// Turning images and positions into tokens: PatchEmbedding (ViT), a learned positional
// embedding, and the fixed sinusoidal tables of Vaswani et al. (1-D) and MAE (2-D).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/module_list.h"

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

// A convolution's weight without a bias, in PyTorch's Conv2d layout [c_out,c_in,k,k], drawn as
// PyTorch draws it: U(±1/√fan_in), fan_in = c_in·k·k.
class ConvWeight : public Module {
 public:
  ConvWeight(int64_t in_channels, int64_t out_channels, int64_t kernel, Generator* gen = nullptr);
  std::string type_name() const override { return "ConvWeight"; }
  Tensor weight;
};

// Early convolutions (Xiao et al. 2021, "Early Convolutions Help Transformers See Better"): in
// place of one linear map per P×P patch, log2(P) convolutions of kernel 3, stride 2, padding 1,
// each followed by LayerNorm over the channels and GELU, then a 1×1 convolution to `dim`:
//   images [B,C,H,W] -> [B,H/2·W/2,c_1] -> ... -> [B,(H/P)·(W/P),c_k] -> [B,N,dim]
// Neighbouring patches overlap and the map is no longer linear, so a shape a few pixels wide
// that straddles a patch border is still seen whole. Channels double up to c_k = dim/2 (at
// least 16). A convolution is a gather and a matrix product (no conv op needed): each output
// position gathers its 3×3 input taps (channels last; taps in the padding read an appended
// zero row), ordered row, column, channel; the weight, kept in PyTorch's Conv2d layout
// [c_out,c_in,3,3], is permuted to [c_out,3,3,c_in] to match.
// Parameters: convs.{i}.weight [c_i,c_{i-1},3,3] (no bias: a LayerNorm follows),
// norms.{i}.{weight,bias}, proj.{weight [dim,c_k,1,1], bias}. P must be a power of 2, ≥ 2.
class ConvStem : public Module {
 public:
  ConvStem(int64_t image_size, int64_t patch_size, int64_t in_channels, int64_t dim, Generator* gen = nullptr);
  Tensor forward(const Tensor& images) const;  // [B,C,image_size,image_size] -> [B,N,dim]
  std::string type_name() const override { return "ConvStem"; }

  // The gather index of one 3×3, stride-2, padding-1 convolution over an h×w grid: for output
  // (oy,ox) and tap (ky,kx) the input position (2·oy+ky−1)·w + (2·ox+kx−1), or h·w where that
  // falls outside. i64 [ceil(h/2)·ceil(w/2)·9], output positions row-major, taps row-major.
  static std::vector<int64_t> conv3x3_stride2_taps(int64_t h, int64_t w);

  int64_t image_size, patch_size, in_channels, dim;
  int64_t grid_size, num_patches;
  std::vector<int64_t> channels;  // c_1 .. c_k
  std::shared_ptr<ModuleList<ConvWeight>> convs;
  std::shared_ptr<ModuleList<LayerNorm>> norms;
  std::shared_ptr<PatchProjection> proj;  // the 1×1 convolution

 private:
  std::vector<std::vector<int64_t>> taps_;  // per convolution
  mutable std::vector<Tensor> taps_on_device_;
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
