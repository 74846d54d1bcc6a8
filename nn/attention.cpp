#include "nn/attention.h"

#include <cmath>

namespace mmg::nn {

MultiHeadAttention::MultiHeadAttention(int64_t dim, int64_t heads, double p, int64_t kv_dim, bool bias,
                                       Generator* gen, double attn_dropout)
    : dim(dim), heads(heads), head_dim(0), kv_dim(kv_dim > 0 ? kv_dim : dim), attn_dropout(attn_dropout) {
  MMG_CHECK(dim > 0 && heads > 0, "MultiHeadAttention: dim {} and heads {} must be positive", dim, heads);
  MMG_CHECK(dim % heads == 0, "MultiHeadAttention: dim {} is not divisible by heads {}", dim, heads);
  MMG_CHECK(attn_dropout >= 0.0 && attn_dropout < 1.0, "MultiHeadAttention: attn_dropout must be in [0, 1), got {}",
            attn_dropout);
  head_dim = dim / heads;
  q_proj = register_module("q_proj", std::make_shared<Linear>(dim, dim, bias, gen));
  k_proj = register_module("k_proj", std::make_shared<Linear>(this->kv_dim, dim, bias, gen));
  v_proj = register_module("v_proj", std::make_shared<Linear>(this->kv_dim, dim, bias, gen));
  out_proj = register_module("out_proj", std::make_shared<Linear>(dim, dim, bias, gen));
  dropout = register_module("dropout", std::make_shared<Dropout>(p));
}

void MultiHeadAttention::check_inputs(const Tensor& x_q, const Tensor& x_kv, const Tensor& key_mask) const {
  MMG_CHECK(x_q.defined() && x_kv.defined(), "MultiHeadAttention: undefined input");
  MMG_CHECK(x_q.dim() == 3 && x_q.size(2) == dim, "MultiHeadAttention: x_q {} must be [B,Sq,{}]",
            shape_str(x_q.shape()), dim);
  MMG_CHECK(x_kv.dim() == 3 && x_kv.size(2) == kv_dim && x_kv.size(0) == x_q.size(0),
            "MultiHeadAttention: x_kv {} must be [B,Sk,{}] with x_q's batch {} (x_q {})", shape_str(x_kv.shape()),
            kv_dim, x_q.size(0), shape_str(x_q.shape()));
  if (key_mask.defined()) {
    MMG_CHECK(key_mask.shape() == Shape({x_kv.size(0), x_kv.size(1)}),
              "MultiHeadAttention: key_mask {} must be [B,Sk] = [{},{}] for x_kv {}", shape_str(key_mask.shape()),
              x_kv.size(0), x_kv.size(1), shape_str(x_kv.shape()));
    MMG_CHECK(key_mask.dtype() == DType::boolean || key_mask.dtype() == DType::u8,
              "MultiHeadAttention: key_mask must be bool (true = attend), got {} {}", dtype_name(key_mask.dtype()),
              shape_str(key_mask.shape()));
  }
}

Tensor MultiHeadAttention::split_heads(const Tensor& x) const {
  return x.view({x.size(0), x.size(1), heads, head_dim}).permute({0, 2, 1, 3});
}

Tensor MultiHeadAttention::forward(const Tensor& x_q, const Tensor& x_kv, const Tensor& key_mask, bool causal) const {
  check_inputs(x_q, x_kv, key_mask);
  const int64_t B = x_q.size(0), Sq = x_q.size(1);
  Tensor q = split_heads(q_proj->forward(x_q));
  Tensor k = split_heads(k_proj->forward(x_kv));
  Tensor v = split_heads(v_proj->forward(x_kv));
  // Attention dropout only while training; eval mode runs the op without it (and draws nothing).
  const double p = is_training() ? attn_dropout : 0.0;
  Tensor o = scaled_dot_product_attention(q, k, v, key_mask, causal, std::nullopt, p);  // [B,H,Sq,D/H]
  Tensor merged = reshape(o.permute({0, 2, 1, 3}), {B, Sq, dim});      // heads side by side again
  return dropout->forward(out_proj->forward(merged));
}

Tensor MultiHeadAttention::attention_weights(const Tensor& x_q, const Tensor& x_kv, const Tensor& key_mask,
                                             bool causal) const {
  check_inputs(x_q, x_kv, key_mask);
  const int64_t B = x_q.size(0), Sq = x_q.size(1), Sk = x_kv.size(1);
  Tensor q = split_heads(q_proj->forward(x_q));
  Tensor k = split_heads(k_proj->forward(x_kv));
  Tensor scores = matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(head_dim)));

  // visible[b,1,i,j]: may query i look at key j? (Made on the inputs' device.)
  const Device dev = x_q.device();
  const TensorOptions flags{.dtype = DType::boolean, .device = dev}, ints{.dtype = DType::i64, .device = dev};
  Tensor visible = ones({B, 1, Sq, Sk}, flags);
  if (key_mask.defined()) visible = key_mask.to(DType::boolean).view({B, 1, 1, Sk}).expand({B, 1, Sq, Sk});
  if (causal) {
    Tensor lower = ge(arange(Sq, ints).view({Sq, 1}), arange(Sk, ints).view({1, Sk}));  // j <= i
    visible = where(lower, visible, zeros({}, flags));
  }
  // A large finite score rather than −∞ keeps a row that sees nothing free of NaN (it comes
  // out uniform); the last `where` then zeroes it, as the fused op zeroes that output.
  Tensor p = softmax(where(visible, scores, scalar_like(scores, -1e30)), -1);
  p = where(visible, p, scalar_like(p, 0.0));
  return mean(p, {1});
}

MultiHeadAttention::WithWeights MultiHeadAttention::forward_with_weights(const Tensor& x_q, const Tensor& x_kv,
                                                                         const Tensor& key_mask, bool causal) const {
  return {forward(x_q, x_kv, key_mask, causal), attention_weights(x_q, x_kv, key_mask, causal)};
}

}  // namespace mmg::nn
