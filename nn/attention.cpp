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

// Padded inputs are [B,S,width]; packed ones [N,width] with N = rows.count(), standing for
// [rows.batch(), rows.seq(), width]. The logical shapes must agree with each other and the mask.
void MultiHeadAttention::check_inputs(const Tensor& x_q, const Tensor& x_kv, const Tensor& key_mask,
                                      const PackedTokens* q_rows, const PackedTokens* kv_rows) const {
  MMG_CHECK(x_q.defined() && x_kv.defined(), "MultiHeadAttention: undefined input");
  auto logical = [&](const Tensor& x, const PackedTokens* rows, int64_t width, const char* which,
                     const char* seq) -> Shape {
    if (rows) {
      MMG_CHECK(x.dim() == 2 && x.size(0) == rows->count() && x.size(1) == width,
                "MultiHeadAttention: packed {} {} must be [N,{}] with N = {}, the real tokens of [{},{}]", which,
                shape_str(x.shape()), width, rows->count(), rows->batch(), rows->seq());
      return {rows->batch(), rows->seq(), width};
    }
    MMG_CHECK(x.dim() == 3 && x.size(2) == width, "MultiHeadAttention: {} {} must be [B,{},{}]", which,
              shape_str(x.shape()), seq, width);
    return x.shape();
  };
  const Shape q = logical(x_q, q_rows, dim, "x_q", "Sq"), kv = logical(x_kv, kv_rows, kv_dim, "x_kv", "Sk");
  MMG_CHECK(kv[0] == q[0], "MultiHeadAttention: x_kv {} must have x_q's batch {} (x_q {})", shape_str(kv), q[0],
            shape_str(q));
  if (key_mask.defined()) {
    MMG_CHECK(key_mask.shape() == Shape({kv[0], kv[1]}),
              "MultiHeadAttention: key_mask {} must be [B,Sk] = [{},{}] for x_kv {}", shape_str(key_mask.shape()),
              kv[0], kv[1], shape_str(kv));
    MMG_CHECK(key_mask.dtype() == DType::boolean || key_mask.dtype() == DType::u8,
              "MultiHeadAttention: key_mask must be bool (true = attend), got {} {}", dtype_name(key_mask.dtype()),
              shape_str(key_mask.shape()));
  }
}

// Back to the padded layout [B,S,width] for the fused op, when packed.
static Tensor padded(const Tensor& x, const PackedTokens* rows) { return rows ? rows->unpack(x) : x; }

Tensor MultiHeadAttention::split_heads(const Tensor& x) const {
  return x.view({x.size(0), x.size(1), heads, head_dim}).permute({0, 2, 1, 3});
}

Tensor MultiHeadAttention::forward(const Tensor& x_q, const Tensor& x_kv, const Tensor& key_mask, bool causal,
                                   const PackedTokens* q_rows, const PackedTokens* kv_rows) const {
  check_inputs(x_q, x_kv, key_mask, q_rows, kv_rows);
  // The projections on the rows given (the real ones alone, when packed), then padded.
  Tensor q = padded(q_proj->forward(x_q), q_rows);
  Tensor k = padded(k_proj->forward(x_kv), kv_rows);
  Tensor v = padded(v_proj->forward(x_kv), kv_rows);
  const int64_t B = q.size(0), Sq = q.size(1);
  q = split_heads(q);
  k = split_heads(k);
  v = split_heads(v);
  // Attention dropout only while training; eval mode runs the op without it (and draws nothing).
  const double p = is_training() ? attn_dropout : 0.0;
  // Packed queries: the pads' outputs are dropped by pack below, so attention need not compute
  // them (its query mask).
  const Tensor query_mask = q_rows ? q_rows->mask() : Tensor();
  Tensor o = scaled_dot_product_attention(q, k, v, key_mask, causal, std::nullopt, p, nullptr, query_mask);
  Tensor merged = reshape(o.permute({0, 2, 1, 3}), {B, Sq, dim});      // heads side by side again
  if (q_rows) merged = q_rows->pack(merged);
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

// Packed: the weights' rows of pad queries are computed from zero inputs (nobody reads them).
MultiHeadAttention::WithWeights MultiHeadAttention::forward_with_weights(const Tensor& x_q, const Tensor& x_kv,
                                                                         const Tensor& key_mask, bool causal,
                                                                         const PackedTokens* q_rows,
                                                                         const PackedTokens* kv_rows) const {
  Tensor out = forward(x_q, x_kv, key_mask, causal, q_rows, kv_rows);
  return {out, attention_weights(padded(x_q, q_rows), padded(x_kv, kv_rows), key_mask, causal)};
}

}  // namespace mmg::nn
