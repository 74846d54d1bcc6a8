#include "nn/transformer.h"

#include <cmath>
#include <optional>

namespace mmg::nn {

static int64_t mlp_hidden(const TransformerOptions& o, const char* who) {
  MMG_CHECK(o.dim > 0 && o.heads > 0, "{}: dim {} and heads {} must be positive", who, o.dim, o.heads);
  MMG_CHECK(o.mlp_ratio > 0, "{}: mlp_ratio must be positive, got {}", who, o.mlp_ratio);
  int64_t hidden = std::llround(static_cast<double>(o.dim) * o.mlp_ratio);
  MMG_CHECK(hidden > 0, "{}: dim {} · mlp_ratio {} gives an empty MLP", who, o.dim, o.mlp_ratio);
  return hidden;
}

// ---- encoder layer ----

TransformerEncoderLayer::TransformerEncoderLayer(const TransformerOptions& o, Generator* gen) : options(o) {
  const int64_t hidden = mlp_hidden(o, "TransformerEncoderLayer");
  ln_1 = register_module("ln_1", std::make_shared<LayerNorm>(o.dim, o.eps));
  attn = register_module("attn", std::make_shared<MultiHeadAttention>(o.dim, o.heads, o.dropout, o.dim, o.qkv_bias,
                                                                      gen, o.attn_dropout));
  ln_2 = register_module("ln_2", std::make_shared<LayerNorm>(o.dim, o.eps));
  mlp = register_module("mlp", std::make_shared<MLP>(o.dim, hidden, o.activation, o.dropout, gen, o.gated_mlp));
}

Tensor TransformerEncoderLayer::forward(const Tensor& x, const Tensor& key_mask, bool causal,
                                        const PackedTokens* rows) const {
  Tensor h = ln_1->forward(x);
  Tensor y = x + attn->forward(h, h, key_mask, causal, rows, rows);
  return y + mlp->forward(ln_2->forward(y));
}

LayerOutput TransformerEncoderLayer::forward_with_weights(const Tensor& x, const Tensor& key_mask, bool causal,
                                                          const PackedTokens* rows) const {
  Tensor h = ln_1->forward(x);
  auto a = attn->forward_with_weights(h, h, key_mask, causal, rows, rows);
  Tensor y = x + a.out;
  return {y + mlp->forward(ln_2->forward(y)), a.weights};
}

// ---- encoder ----

TransformerEncoder::TransformerEncoder(const TransformerOptions& o, int64_t depth, bool final_norm, Generator* gen)
    : options(o) {
  MMG_CHECK(depth >= 0, "TransformerEncoder: depth must be >= 0, got {}", depth);
  layers = register_module("layers", std::make_shared<ModuleList<TransformerEncoderLayer>>());
  for (int64_t i = 0; i < depth; ++i) layers->push_back(std::make_shared<TransformerEncoderLayer>(o, gen));
  if (final_norm) ln_f = register_module("ln_f", std::make_shared<LayerNorm>(o.dim, o.eps));
}

// The real tokens of x, when the options ask to skip the padding and the mask has some.
static std::optional<PackedTokens> packing(const TransformerOptions& o, const Tensor& key_mask) {
  return o.skip_padding ? PackedTokens::if_padded(key_mask) : std::nullopt;
}

Tensor TransformerEncoder::forward(const Tensor& x, const Tensor& key_mask, bool causal) const {
  const std::optional<PackedTokens> rows = packing(options, key_mask);
  const PackedTokens* r = rows ? &*rows : nullptr;
  Tensor h = r ? r->pack(x) : x;
  for (const auto& layer : *layers) h = layer->forward(h, key_mask, causal, r);
  if (ln_f) h = ln_f->forward(h);
  return r ? r->unpack(h) : h;
}

TransformerEncoder::WithWeights TransformerEncoder::forward_with_weights(const Tensor& x, const Tensor& key_mask,
                                                                         bool causal) const {
  const std::optional<PackedTokens> rows = packing(options, key_mask);
  const PackedTokens* r = rows ? &*rows : nullptr;
  WithWeights w;
  Tensor h = r ? r->pack(x) : x;
  for (const auto& layer : *layers) {
    LayerOutput o = layer->forward_with_weights(h, key_mask, causal, r);
    h = o.out;
    w.weights.push_back(o.weights);
  }
  if (ln_f) h = ln_f->forward(h);
  w.out = r ? r->unpack(h) : h;
  return w;
}

// ---- cross-attention (fusion) and decoder layers ----

CrossAttentionLayer::CrossAttentionLayer(const TransformerOptions& o, bool causal, Generator* gen)
    : options(o), causal(causal) {
  const int64_t hidden = mlp_hidden(o, causal ? "TransformerDecoderLayer" : "CrossAttentionLayer");
  const int64_t memory_dim = o.memory_dim > 0 ? o.memory_dim : o.dim;
  ln_1 = register_module("ln_1", std::make_shared<LayerNorm>(o.dim, o.eps));
  self_attn = register_module("self_attn",
                              std::make_shared<MultiHeadAttention>(o.dim, o.heads, o.dropout, o.dim, o.qkv_bias, gen,
                                                                   o.attn_dropout));
  ln_2 = register_module("ln_2", std::make_shared<LayerNorm>(o.dim, o.eps));
  cross_attn = register_module(
      "cross_attn", std::make_shared<MultiHeadAttention>(o.dim, o.heads, o.dropout, memory_dim, o.qkv_bias, gen,
                                                         o.attn_dropout));
  ln_3 = register_module("ln_3", std::make_shared<LayerNorm>(o.dim, o.eps));
  mlp = register_module("mlp", std::make_shared<MLP>(o.dim, hidden, o.activation, o.dropout, gen, o.gated_mlp));
}

// The memory is not normalised here: it arrives as the other encoder's (already normalised) output.
Tensor CrossAttentionLayer::forward(const Tensor& x, const Tensor& memory, const Tensor& x_mask,
                                    const Tensor& memory_mask, const PackedTokens* rows) const {
  Tensor h = ln_1->forward(x);
  Tensor y = x + self_attn->forward(h, h, x_mask, causal, rows, rows);
  y = y + cross_attn->forward(ln_2->forward(y), memory, memory_mask, false, rows);
  return y + mlp->forward(ln_3->forward(y));
}

LayerOutput CrossAttentionLayer::forward_with_weights(const Tensor& x, const Tensor& memory, const Tensor& x_mask,
                                                      const Tensor& memory_mask, const PackedTokens* rows) const {
  Tensor h = ln_1->forward(x);
  Tensor y = x + self_attn->forward(h, h, x_mask, causal, rows, rows);
  auto c = cross_attn->forward_with_weights(ln_2->forward(y), memory, memory_mask, false, rows);
  y = y + c.out;
  return {y + mlp->forward(ln_3->forward(y)), c.weights};
}

}  // namespace mmg::nn
