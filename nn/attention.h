// MultiHeadAttention: self- and cross-attention over the fused scaled_dot_product_attention op.
//
//   Q = x_q·W_qᵀ + b_q           [B,Sq,D]   -> heads [B,H,Sq,D/H]
//   K = x_kv·W_kᵀ + b_k          [B,Sk,Dkv] -> [B,Sk,D] -> [B,H,Sk,D/H]
//   V = x_kv·W_vᵀ + b_v          likewise
//   O_h = attn_dropout(softmax(Q_h K_hᵀ / √(D/H) + mask)) V_h    (one fused op for every head)
//   out = dropout(concat_h(O_h)·W_oᵀ + b_o)                     [B,Sq,D]
//
// Self-attention passes the same tensor as x_q and x_kv; cross-attention passes another
// modality's tokens as x_kv, whose width kv_dim may differ from dim (text of width 256
// attending to image patches of width 384: k_proj and v_proj are [D, Dkv]).
// The mask is a padding mask over keys, key_mask [B,Sk] bool, true = attend; `causal` lets
// query i see keys j <= i only. A query that sees no key gets a zero output (see
// core/ops/attention.cpp).
//
// Parameters: q_proj, k_proj, v_proj, out_proj (Linear: weight [out,in], bias [out]), the
// names of Hugging Face's BERT/CLIP attention. Two dropouts, both only in training mode:
// `dropout` on the output projection (timm's proj_drop), and `attn_dropout` on the attention
// probabilities (timm's attn_drop, BERT's attention_probs_dropout_prob), done inside the fused
// op (its dropout_p) with masks from the global generator, as nn::Dropout's. Both default to 0;
// attn_dropout holds no parameter, so checkpoints do not change with it.
//
// Packed tokens (nn/packed_tokens.h): with q_rows, x_q holds only the real rows [N,dim] of a
// padded [B,Sq,dim] and so does the output; with kv_rows, x_kv likewise. The projections run on
// the real rows alone; the rows are put back in place (zeros at the pads) just for the fused
// attention op, whose output is packed again before the output projection.
#pragma once
#include <memory>
#include <string>

#include "nn/layers.h"
#include "nn/packed_tokens.h"

namespace mmg::nn {

class MultiHeadAttention : public Module {
 public:
  // kv_dim <= 0 means dim (self-attention, or cross-attention between equal widths).
  // attn_dropout in [0, 1): the probability of dropping an attention weight while training.
  MultiHeadAttention(int64_t dim, int64_t heads, double dropout = 0.0, int64_t kv_dim = 0, bool bias = true,
                     Generator* gen = nullptr, double attn_dropout = 0.0);

  // x_q [B,Sq,dim], x_kv [B,Sk,kv_dim], key_mask [B,Sk] bool or undefined -> [B,Sq,dim].
  // Packed (q_rows, kv_rows given): x_q [Nq,dim], x_kv [Nk,kv_dim] -> [Nq,dim].
  Tensor forward(const Tensor& x_q, const Tensor& x_kv, const Tensor& key_mask = Tensor(), bool causal = false,
                 const PackedTokens* q_rows = nullptr, const PackedTokens* kv_rows = nullptr) const;

  // The attention probabilities for pictures of what attends to what: P = softmax(QKᵀ/√d + mask)
  // computed with plain ops (not the fused kernel) and averaged over heads, [B,Sq,Sk]. Rows of a
  // query that sees no key are zero, as the fused op's output is.
  Tensor attention_weights(const Tensor& x_q, const Tensor& x_kv, const Tensor& key_mask = Tensor(),
                           bool causal = false) const;

  struct WithWeights {
    Tensor out;      // forward(...)
    Tensor weights;  // attention_weights(...)
  };
  WithWeights forward_with_weights(const Tensor& x_q, const Tensor& x_kv, const Tensor& key_mask = Tensor(),
                                   bool causal = false, const PackedTokens* q_rows = nullptr,
                                   const PackedTokens* kv_rows = nullptr) const;

  std::string type_name() const override { return "MultiHeadAttention"; }

  int64_t dim, heads, head_dim, kv_dim;
  double attn_dropout;  // applied by forward() in training mode only
  std::shared_ptr<Linear> q_proj, k_proj, v_proj, out_proj;
  std::shared_ptr<Dropout> dropout;

 private:
  void check_inputs(const Tensor& x_q, const Tensor& x_kv, const Tensor& key_mask,
                    const PackedTokens* q_rows = nullptr, const PackedTokens* kv_rows = nullptr) const;
  Tensor split_heads(const Tensor& x) const;  // [B,S,D] -> [B,H,S,D/H]
};

}  // namespace mmg::nn
