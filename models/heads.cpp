#include "models/heads.h"

#include "models/init_weights.h"

namespace mmg::models {

ITMHead::ITMHead(int64_t dim, Generator* gen) : nn::Linear(dim, 2, true, gen) { init_transformer_weights(*this, gen); }

MLMHead::MLMHead(int64_t dim, int64_t vocab_size, double eps, Generator* gen) {
  dense = register_module("dense", std::make_shared<nn::Linear>(dim, dim, true, gen));
  layer_norm = register_module("layer_norm", std::make_shared<nn::LayerNorm>(dim, eps));
  decoder = register_module("decoder", std::make_shared<nn::Linear>(dim, vocab_size, true, gen));
  init_transformer_weights(*this, gen);
}

Tensor MLMHead::forward(const Tensor& hidden) const {
  return decoder->forward(layer_norm->forward(gelu(dense->forward(hidden))));
}

VQAHead::VQAHead(int64_t dim, int64_t num_answers, double eps, Generator* gen) {
  fc1 = register_module("fc1", std::make_shared<nn::Linear>(dim, 2 * dim, true, gen));
  layer_norm = register_module("layer_norm", std::make_shared<nn::LayerNorm>(2 * dim, eps));
  fc2 = register_module("fc2", std::make_shared<nn::Linear>(2 * dim, num_answers, true, gen));
  init_transformer_weights(*this, gen);
}

Tensor VQAHead::forward(const Tensor& fused_cls) const {
  return fc2->forward(gelu(layer_norm->forward(fc1->forward(fused_cls))));
}

ClassificationHead::ClassificationHead(int64_t dim, int64_t num_classes, double eps, Generator* gen) {
  norm = register_module("norm", std::make_shared<nn::LayerNorm>(dim, eps));
  fc = register_module("fc", std::make_shared<nn::Linear>(dim, num_classes, true, gen));
  init_transformer_weights(*this, gen);
}

}  // namespace mmg::models
