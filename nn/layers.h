// The basic layers: Linear, LayerNorm, Embedding, Dropout, activations, MLP.
// Parameter names follow PyTorch (weight, bias) so state dicts map across.
#pragma once
#include <memory>
#include <string>

#include "core/ops.h"
#include "core/rng.h"
#include "nn/module.h"

namespace mmg::nn {

// y = x·Wᵀ + b; W [out, in], b [out]. Init as PyTorch: W, b ~ U(±1/√in).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const { return linear(x, weight, bias); }
  std::string type_name() const override { return "Linear"; }
  int64_t in_features, out_features;
  Tensor weight, bias;  // bias undefined when built without one
};

// Normalises over the last dim: (x − mean)/√(var + eps)·weight + bias.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool affine = true);
  Tensor forward(const Tensor& x) const { return layer_norm(x, {dim}, weight, bias, eps); }
  std::string type_name() const override { return "LayerNorm"; }
  int64_t dim;
  double eps;
  Tensor weight, bias;
};

// A lookup table [num, dim]: indices of any shape -> [..., dim]. Init N(0, 1) as PyTorch
// (models re-initialise with their own scheme).
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, Generator* gen = nullptr);
  Tensor forward(const Tensor& indices) const { return embedding(weight, indices); }
  std::string type_name() const override { return "Embedding"; }
  int64_t num_embeddings, dim;
  Tensor weight;
};

// Zeroes elements with probability p while training (drawing from `gen`, default the
// global generator); the identity in eval mode. Layers that contain a Dropout never hand it
// the generator they were initialised with: that one may be a local that is gone by the
// time the model trains, so their masks come from the global generator (manual_seed).
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.1, Generator* gen = nullptr) : p(p), gen(gen) {}
  Tensor forward(const Tensor& x) const { return dropout(x, p, is_training(), gen); }
  std::string type_name() const override { return "Dropout"; }
  double p;
  Generator* gen;
};

enum class Activation { gelu, gelu_tanh, relu };
Activation activation_from_name(const std::string& name);  // "gelu", "gelu_tanh", "relu"
std::string activation_name(Activation a);
Tensor activate(const Tensor& x, Activation a);

// fc1 -> activation -> dropout -> fc2 -> dropout: the transformer feed-forward block.
// Gated (GEGLU with gelu; Shazeer 2020, "GLU Variants Improve Transformer"): fc1 makes two
// halves [a, g] of width hidden each and the block computes fc2(a ⊙ act(g)). The product lets
// one layer multiply two features of a token (a sign by a position, say) — a plain MLP only
// reaches a product through the curvature of its activation, which is slow to learn.
class MLP : public Module {
 public:
  MLP(int64_t dim, int64_t hidden, Activation act = Activation::gelu, double dropout = 0.0, Generator* gen = nullptr,
      bool gated = false);
  Tensor forward(const Tensor& x) const;
  std::string type_name() const override { return "MLP"; }
  std::shared_ptr<Linear> fc1, fc2;
  std::shared_ptr<Dropout> drop;
  Activation act;
  bool gated;
};

}  // namespace mmg::nn
