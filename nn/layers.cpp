#include "nn/layers.h"

#include <cmath>

#include "nn/init.h"

namespace mmg::nn {

Linear::Linear(int64_t in, int64_t out, bool with_bias, Generator* gen) : in_features(in), out_features(out) {
  MMG_CHECK(in > 0 && out > 0, "Linear: sizes must be positive, got in {} out {}", in, out);
  double bound = 1.0 / std::sqrt(static_cast<double>(in));
  weight = register_parameter("weight", empty({out, in}));
  init::uniform_(weight, -bound, bound, gen);
  if (with_bias) {
    bias = register_parameter("bias", empty({out}));
    init::uniform_(bias, -bound, bound, gen);
  }
}

LayerNorm::LayerNorm(int64_t dim, double eps, bool affine) : dim(dim), eps(eps) {
  MMG_CHECK(dim > 0, "LayerNorm: dim must be positive, got {}", dim);
  if (affine) {
    weight = register_parameter("weight", ones({dim}));
    bias = register_parameter("bias", zeros({dim}));
  }
}

Embedding::Embedding(int64_t num, int64_t dim, Generator* gen) : num_embeddings(num), dim(dim) {
  MMG_CHECK(num > 0 && dim > 0, "Embedding: sizes must be positive, got {} x {}", num, dim);
  weight = register_parameter("weight", empty({num, dim}));
  init::normal_(weight, 0.0, 1.0, gen);
}

Activation activation_from_name(const std::string& name) {
  if (name == "gelu") return Activation::gelu;
  if (name == "gelu_tanh") return Activation::gelu_tanh;
  if (name == "relu") return Activation::relu;
  MMG_FAIL("activation: unknown name '{}' (expected gelu, gelu_tanh or relu)", name);
}

std::string activation_name(Activation a) {
  switch (a) {
    case Activation::gelu: return "gelu";
    case Activation::gelu_tanh: return "gelu_tanh";
    case Activation::relu: return "relu";
  }
  return "?";
}

Tensor activate(const Tensor& x, Activation a) {
  switch (a) {
    case Activation::gelu: return gelu(x);
    case Activation::gelu_tanh: return gelu(x, GeluApprox::tanh);
    case Activation::relu: return relu(x);
  }
  return x;
}

MLP::MLP(int64_t dim, int64_t hidden, Activation act, double p, Generator* gen, bool gated) : act(act), gated(gated) {
  fc1 = register_module("fc1", std::make_shared<Linear>(dim, gated ? 2 * hidden : hidden, true, gen));
  fc2 = register_module("fc2", std::make_shared<Linear>(hidden, dim, true, gen));
  drop = register_module("dropout", std::make_shared<Dropout>(p));
}

Tensor MLP::forward(const Tensor& x) const {
  Tensor h = fc1->forward(x);
  if (gated && act != Activation::relu) {  // [a | g] → a · gelu(g), one fused op
    h = geglu(h, act == Activation::gelu_tanh ? GeluApprox::tanh : GeluApprox::none);
  } else if (gated) {
    std::vector<Tensor> halves = chunk(h, 2, -1);  // [a | g] → a · relu(g)
    h = halves[0] * activate(halves[1], act);
  } else {
    h = activate(h, act);
  }
  return drop->forward(fc2->forward(drop->forward(h)));
}

}  // namespace mmg::nn
