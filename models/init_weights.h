// The weight initialisation the transformer models share (as timm's ViT and BERT):
//   every Linear weight and every Embedding table ~ truncated normal, std 0.02, cut at ±2 std;
//   every Linear bias = 0; LayerNorms keep weight 1, bias 0 (their construction values).
// Small initial weights keep each residual block close to the identity at the start, so deep
// pre-LN stacks train without warm-up tricks. Modules not listed here (the patch projection,
// a model's own tokens and tables) are initialised by their owners.
#pragma once
#include "core/rng.h"
#include "nn/module.h"

namespace mmg::models {

inline constexpr double kTransformerInitStd = 0.02;

// Re-initialises every Linear and Embedding in the sub-tree of `m`, drawing in the order of
// named_modules() from `gen` (the global generator when null), so a seed gives one model.
void init_transformer_weights(nn::Module& m, Generator* gen = nullptr, double std = kTransformerInitStd);

}  // namespace mmg::models
