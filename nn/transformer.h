// Transformer layers, pre-LN (Xiong et al. 2020; ViT, GPT-2): each sub-block normalises its
// input and adds its output back to the residual stream,
//   x = x + sub_block(LayerNorm(x))
// which trains without warm-up tricks at the depths used here.
//
//   TransformerEncoderLayer  ln_1, attn (self), ln_2, mlp
//   TransformerEncoder       layers.0 ... layers.{depth-1}, and ln_f (final LayerNorm) if asked
//   CrossAttentionLayer      ln_1, self_attn; ln_2, cross_attn (to memory); ln_3, mlp
//                            — the fusion layer of ALBEF: text attends to itself (padding mask),
//                            then to the image tokens, then the MLP
//   TransformerDecoderLayer  the same layer with causal self-attention (a captioning decoder)
//
// Packed tokens (nn/packed_tokens.h): given `rows`, a layer's x is the real rows [N,dim] of a
// padded batch; every row-wise step runs on those alone and only attention sees them padded.
// TransformerEncoder packs by itself when its options ask (skip_padding) and the mask has pads:
// its output is then zero at the pads, where the padded computation leaves numbers nobody reads.
//
// Dropout lives inside the sub-blocks: on the attention's output projection and in the MLP
// (after the activation and after fc2), and, with attn_dropout, on the attention
// probabilities inside the fused attention op, so the residual adds are plain.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/attention.h"
#include "nn/layers.h"
#include "nn/module_list.h"

namespace mmg::nn {

// What every layer here is built from. Designated initialisers read well:
//   TransformerEncoderLayer layer({.dim = 192, .heads = 3});
struct TransformerOptions {
  int64_t dim = 0;         // width of the residual stream
  int64_t heads = 0;       // attention heads; dim % heads == 0
  double mlp_ratio = 4.0;  // MLP hidden width = round(dim · mlp_ratio)
  double dropout = 0.0;       // on the attention's output projection and in the MLP
  double attn_dropout = 0.0;  // on the attention probabilities (nn/attention.h)
  Activation activation = Activation::gelu;
  bool gated_mlp = false;  // GEGLU feed-forward (nn::MLP): hidden width per half = dim · mlp_ratio
  double eps = 1e-5;       // LayerNorm epsilon (ViT uses 1e-6, BERT 1e-12)
  bool qkv_bias = true;    // biases of the attention projections
  int64_t memory_dim = 0;  // cross-attention layers: width of the memory (the other modality); 0 = dim
  bool skip_padding = false;  // TransformerEncoder: run the layers on the real tokens alone (above)
};

// Attention probabilities of one layer, for pictures: [B,Sq,Sk], averaged over heads.
struct LayerOutput {
  Tensor out;
  Tensor weights;
};

class TransformerEncoderLayer : public Module {
 public:
  explicit TransformerEncoderLayer(const TransformerOptions& options, Generator* gen = nullptr);
  // x [B,S,dim]; key_mask [B,S] bool (true = real token) or undefined. With rows: x [N,dim].
  Tensor forward(const Tensor& x, const Tensor& key_mask = Tensor(), bool causal = false,
                 const PackedTokens* rows = nullptr) const;
  LayerOutput forward_with_weights(const Tensor& x, const Tensor& key_mask = Tensor(), bool causal = false,
                                   const PackedTokens* rows = nullptr) const;
  std::string type_name() const override { return "TransformerEncoderLayer"; }

  TransformerOptions options;
  std::shared_ptr<LayerNorm> ln_1, ln_2;
  std::shared_ptr<MultiHeadAttention> attn;
  std::shared_ptr<MLP> mlp;
};

class TransformerEncoder : public Module {
 public:
  TransformerEncoder(const TransformerOptions& options, int64_t depth, bool final_norm = true,
                     Generator* gen = nullptr);
  Tensor forward(const Tensor& x, const Tensor& key_mask = Tensor(), bool causal = false) const;
  // The output and each layer's attention weights (layers in order).
  struct WithWeights {
    Tensor out;
    std::vector<Tensor> weights;
  };
  WithWeights forward_with_weights(const Tensor& x, const Tensor& key_mask = Tensor(), bool causal = false) const;
  std::string type_name() const override { return "TransformerEncoder"; }

  TransformerOptions options;
  std::shared_ptr<ModuleList<TransformerEncoderLayer>> layers;
  std::shared_ptr<LayerNorm> ln_f;  // null without final_norm
};

class CrossAttentionLayer : public Module {
 public:
  // causal: self-attention sees only earlier tokens (a decoder); false for fusion encoders.
  explicit CrossAttentionLayer(const TransformerOptions& options, bool causal = false, Generator* gen = nullptr);
  // x [B,S,dim] with x_mask [B,S]; memory [B,M,memory_dim] with memory_mask [B,M]; masks bool
  // (true = attend) or undefined. With rows: x [N,dim], the real rows of x_mask (the memory stays padded).
  Tensor forward(const Tensor& x, const Tensor& memory, const Tensor& x_mask = Tensor(),
                 const Tensor& memory_mask = Tensor(), const PackedTokens* rows = nullptr) const;
  // The output and the cross-attention weights [B,S,M] (which image tokens each word looks at).
  LayerOutput forward_with_weights(const Tensor& x, const Tensor& memory, const Tensor& x_mask = Tensor(),
                                   const Tensor& memory_mask = Tensor(), const PackedTokens* rows = nullptr) const;
  std::string type_name() const override { return "CrossAttentionLayer"; }

  TransformerOptions options;
  bool causal;
  std::shared_ptr<LayerNorm> ln_1, ln_2, ln_3;
  std::shared_ptr<MultiHeadAttention> self_attn, cross_attn;
  std::shared_ptr<MLP> mlp;
};

// A CrossAttentionLayer whose self-attention is causal.
class TransformerDecoderLayer : public CrossAttentionLayer {
 public:
  explicit TransformerDecoderLayer(const TransformerOptions& options, Generator* gen = nullptr)
      : CrossAttentionLayer(options, /*causal=*/true, gen) {}
  std::string type_name() const override { return "TransformerDecoderLayer"; }
};

}  // namespace mmg::nn
