// Fused scaled dot-product attention, forward and backward.
//
// Layouts, all contiguous row-major:
//   q, out, dq       [B, H, Sq, D]
//   k, v, dk, dv     [B, H, Sk, D]
//   lse              [B, H, Sq]
//   key_mask         [B, Sk] uint8 (1 = attend, 0 = masked), or nullptr for none
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
// gradient. Outputs are overwritten, never accumulated into.
#pragma once
#include <cstdint>

namespace mmg::cpu {

// Writes out and lse. (b, h, block of 64 queries) tasks run in parallel; each holds one
// [64, Sk] block of scores, so memory stays O(Sk) per thread, never O(Sq·Sk).
template <class T>
void attention_forward(const T* q, const T* k, const T* v, const uint8_t* key_mask, T* out,
                       T* lse, int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D,
                       bool causal, T scale);

// Given dout = ∂L/∂O, writes dq, dk, dv. P is recomputed from q, k and the saved lse
// (P_ij = exp(S_ij − lse_i)) rather than stored; then, flash-attention style,
//   Δ_i = Σ_d dO_id O_id          (= Σ_j P_ij dP_ij)
//   dV = Pᵀ dO,   dP = dO Vᵀ,   dS = P ⊙ (dP − Δ),   dQ = scale · dS K,   dK = scale · dSᵀ Q
// (b, h) pairs run in parallel; each walks its query blocks in order, summing into dk, dv.
template <class T>
void attention_backward(const T* q, const T* k, const T* v, const uint8_t* key_mask,
                        const T* out, const T* dout, const T* lse, T* dq, T* dk, T* dv,
                        int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D, bool causal,
                        T scale);

}  // namespace mmg::cpu
