// Fused scaled dot-product attention, forward and backward.
//
// Layouts, all contiguous row-major:
//   q, out, dq       [B, H, Sq, D]
//   k, v, dk, dv     [B, H, Sk, D]
//   lse              [B, H, Sq]
//   key_mask         [B, Sk] uint8 (1 = attend, 0 = masked), or nullptr for none
//   query_mask       [B, Sq] uint8 (1 = a query, 0 = masked: it sees no key), or nullptr for none
// For each (b, h):
//   S = scale · Q Kᵀ                         [Sq, Sk]
//   S_ij = −∞ where key j is masked, or (causal) where j > i
//   P = softmax_rows(S),   O = P V,   lse_i = log Σ_j exp(S_ij)
//
// Causal is top-left aligned, exactly like PyTorch's
// scaled_dot_product_attention(is_causal=True): query i sees keys j <= i whatever Sq and
// Sk are. With Sq > Sk the queries i >= Sk see every key; with Sk > Sq the last keys are
// seen by no query (their dk, dv are zero).
//
// A query row whose keys are all masked has no softmax: its output is zeros, its
// lse = −∞, and the backward gives it (and the keys it would have seen through it) zero
// gradient. A masked query is such a row, whatever the keys: the pad queries of a batch of
// texts padded to its longest text, whose outputs nobody reads. The CPU kernels skip the
// queries past the last unmasked one of each batch (the pads of right-padded text) outright.
// Outputs are overwritten, never accumulated into.
//
// Dropout on the attention weights (AttentionDropout below, p > 0): each weight P_ij is
// kept or dropped before it meets V, by a mask drawn from Philox (kernels/philox.h) as a
// pure function of the weight's flat position in [B, H, Sq, Sk]:
//   n_bhij  = ((b·H + h)·Sq + i)·Sk + j                 = b·H·Sq·Sk + h·Sq·Sk + i·Sk + j
//   keep_bhij = philox_uniform_f32(seed, base + n_bhij) >= p    (p rounded to f32, as in
//               kernels/dropout.h; the op reserves the B·H·Sq·Sk counters [base, base + B·H·Sq·Sk))
//   Z_ij = keep_ij / (1−p)
//   O = (Z ⊙ P) V
// So the CPU kernel, which walks blocks of 64 queries, and the CUDA kernels, one that
// holds the whole matrix and one that makes its tiles one 32×32 piece at a time (in the
// forward and again in the backward), draw the same mask for the same (seed, base).
// lse stays the log-sum-exp of the undropped scores (FlashAttention-2's convention): the
// backward recomputes the undropped P from it, and regenerates Z (nothing of it is stored):
//   dV = (Z ⊙ P)ᵀ dO
//   dP = Z ⊙ (dO Vᵀ)                        the gradient reaching P through the mask
//   Δ_i = Σ_j P_ij dP_ij = Σ_j (Z ⊙ P)_ij (dO_i · V_j) = dO_i · O_i
//   dS = P ⊙ (dP − Δ),   dQ = scale · dS K,   dK = scale · dSᵀ Q
// so Δ is still the row sum of dO ⊙ O, O being the (dropped) output the forward returned.
// A weight that is dropped still has a gradient through the softmax (dS_ij = −P_ij Δ_i):
// the other weights of its row are what changed when it moved.
#pragma once
#include <cstdint>

#include "kernels/philox.h"

namespace mmg {

// The dropout of the attention weights; p = 0 (the default) is no dropout, and then the
// kernels run exactly the code they run without it.
struct AttentionDropout {
  float p = 0.0f;       // probability of dropping a weight, in [0, 1)
  double scale = 1.0;   // 1/(1−p): the factor of a kept weight (cast to the kernel's T)
  uint64_t seed = 0;    // Philox key
  uint64_t base = 0;    // the first of the B·H·Sq·Sk counters reserved for this call
};

// keep_bhij for the weight at flat position n = ((b·H + h)·Sq + i)·Sk + j.
MMG_HOST_DEVICE bool attention_dropout_keep(const AttentionDropout& drop, int64_t n) {
  return philox_uniform_f32(drop.seed, drop.base + static_cast<uint64_t>(n)) >= drop.p;
}

}  // namespace mmg

namespace mmg::cpu {

// One past the last entry of a key or query mask row (n bytes, or nullptr for none) that lets its
// key or query through. The kernels stop there: the keys after it have weight 0 (no sum changes),
// the queries after it see no key (their zeros are written, not computed).
inline int64_t mask_limit(const uint8_t* mask, int64_t n) {
  if (!mask) return n;
  while (n > 0 && !mask[n - 1]) --n;
  return n;
}

// One operand of the CPU kernels: a [B, H, S, D] tensor whose (b, h, s) row of D values is
// contiguous and starts at data + b·b_stride + h·h_stride + s·s_stride. Packed [B,H,S,D] has
// strides {H·S·D, S·D, D}; a projection's output [B, S, H·D] seen as heads (view + permute,
// no copy) has {S·H·D, D, H·D}. Taking strides lets the op skip the copies those permutes
// would need, for its inputs, its output and the gradients.
template <class T>
struct HeadRows {
  T* data;
  int64_t b_stride, h_stride, s_stride;
  T* row(int64_t b, int64_t h, int64_t s) const { return data + b * b_stride + h * h_stride + s * s_stride; }
};

// The CPU kernels take one of two paths through the same math (both tested against one
// reference, to the same tolerances):
//   query_blocks  per (b, h) and block of 64 queries, Eigen products for Q Kᵀ, P V and the
//                 backward's five (kernels/cpu/attention.cpp): long sequences, wide heads
//   query_lanes   per (b, h) and group of 8 queries, one query per vector lane, so that the
//                 softmax runs down the keys with whole vectors (kernels/cpu/attention_lanes.cpp):
//                 short sequences and narrow heads, where an Eigen product costs more to set
//                 up than to compute
// by_size takes the one cpu_attention_path_for names; tests and benchmarks may name either.
enum class CpuAttentionPath { by_size, query_blocks, query_lanes };
CpuAttentionPath cpu_attention_path_for(int64_t Sk, int64_t D);

// Packed [B, H, S, D].
template <class T>
HeadRows<T> packed_heads(T* data, int64_t H, int64_t S, int64_t D) {
  return {data, H * S * D, S * D, D};
}

// Saved attention weights. The query-lanes path can keep P from the forward for the backward,
// which then skips recomputing Q Kᵀ and the exponentials (a third of its work on the demo's
// heads); short sequences make P small. This many elements of T hold them for a call that
// takes `path` (0 when the call takes the query-blocks path, which never keeps P):
// B·H·⌈Sq/8⌉·Sk·8, the [keys, 8 queries] tiles of every group of 8 queries.
int64_t cpu_attention_saved_weights(int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D,
                                    CpuAttentionPath path = CpuAttentionPath::by_size);

// Writes out and lse. (b, h, block of 64 queries) tasks run in parallel; each holds one
// [64, Sk] block of scores, so memory stays O(Sk) per thread, never O(Sq·Sk).
// lse is packed [B, H, Sq]. saved_weights (may be null): cpu_attention_saved_weights(...)
// elements that the query-lanes path fills with P (before dropout) for the backward.
template <class T>
void attention_forward(HeadRows<const T> q, HeadRows<const T> k, HeadRows<const T> v, const uint8_t* key_mask,
                       const uint8_t* query_mask, HeadRows<T> out, T* lse, int64_t B, int64_t H, int64_t Sq,
                       int64_t Sk, int64_t D, bool causal, T scale, const AttentionDropout& drop = {},
                       CpuAttentionPath path = CpuAttentionPath::by_size, T* saved_weights = nullptr);

// Given dout = ∂L/∂O, writes dq, dk, dv. P is recomputed from q, k and the saved lse
// (P_ij = exp(S_ij − lse_i)), or read from saved_weights when the forward filled them (same
// path, same sizes); then, flash-attention style,
//   Δ_i = Σ_d dO_id O_id          (= Σ_j P_ij dP_ij)
//   dV = Pᵀ dO,   dP = dO Vᵀ,   dS = P ⊙ (dP − Δ),   dQ = scale · dS K,   dK = scale · dSᵀ Q
// (with dropout, the formulas above the AttentionDropout struct; `drop` must be the forward's).
// (b, h) pairs run in parallel; each walks its queries in order, summing into dk, dv.
template <class T>
void attention_backward(HeadRows<const T> q, HeadRows<const T> k, HeadRows<const T> v, const uint8_t* key_mask,
                        const uint8_t* query_mask, HeadRows<const T> out, HeadRows<const T> dout, const T* lse,
                        HeadRows<T> dq, HeadRows<T> dk, HeadRows<T> dv, int64_t B, int64_t H, int64_t Sq, int64_t Sk,
                        int64_t D, bool causal, T scale, const AttentionDropout& drop = {},
                        CpuAttentionPath path = CpuAttentionPath::by_size, const T* saved_weights = nullptr);

// The same on packed [B, H, S, D] buffers.
template <class T>
void attention_forward(const T* q, const T* k, const T* v, const uint8_t* key_mask, const uint8_t* query_mask,
                       T* out, T* lse, int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D, bool causal, T scale,
                       const AttentionDropout& drop = {}, CpuAttentionPath path = CpuAttentionPath::by_size,
                       T* saved_weights = nullptr) {
  attention_forward<T>(packed_heads(q, H, Sq, D), packed_heads(k, H, Sk, D), packed_heads(v, H, Sk, D), key_mask,
                       query_mask, packed_heads(out, H, Sq, D), lse, B, H, Sq, Sk, D, causal, scale, drop, path,
                       saved_weights);
}

template <class T>
void attention_backward(const T* q, const T* k, const T* v, const uint8_t* key_mask, const uint8_t* query_mask,
                        const T* out, const T* dout, const T* lse, T* dq, T* dk, T* dv, int64_t B, int64_t H,
                        int64_t Sq, int64_t Sk, int64_t D, bool causal, T scale, const AttentionDropout& drop = {},
                        CpuAttentionPath path = CpuAttentionPath::by_size, const T* saved_weights = nullptr) {
  attention_backward<T>(packed_heads(q, H, Sq, D), packed_heads(k, H, Sk, D), packed_heads(v, H, Sk, D), key_mask,
                        query_mask, packed_heads(out, H, Sq, D), packed_heads(dout, H, Sq, D), lse,
                        packed_heads(dq, H, Sq, D), packed_heads(dk, H, Sk, D), packed_heads(dv, H, Sk, D), B, H,
                        Sq, Sk, D, causal, scale, drop, path, saved_weights);
}

}  // namespace mmg::cpu
