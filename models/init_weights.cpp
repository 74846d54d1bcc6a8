#include "models/init_weights.h"

#include "nn/init.h"
#include "nn/layers.h"

namespace mmg::models {

void init_transformer_weights(nn::Module& m, Generator* gen, double std) {
  for (auto& [name, module] : m.named_modules()) {
    if (auto* linear = dynamic_cast<nn::Linear*>(module)) {
      nn::init::trunc_normal_(linear->weight, std, 0.0, std::nullopt, std::nullopt, gen);
      if (linear->bias.defined()) nn::init::zeros_(linear->bias);
    } else if (auto* table = dynamic_cast<nn::Embedding*>(module)) {
      nn::init::trunc_normal_(table->weight, std, 0.0, std::nullopt, std::nullopt, gen);
    }
  }
}

}  // namespace mmg::models
