// Scaled dot-product attention on a CUDA device, in four versions side by side (the semantics
// of all are those of kernels/attention.h: layouts [B,H,S,D], key_mask [B,Sk] u8 or null,
// causal top-left aligned, a query with no visible key gives zero output, lse = −∞ and zero
// gradients). core/ops/attention.cpp picks one with kernel_version("attention").
//
// ---- v1 (kernels/cuda/attention.cu): the plain path through the scores ----
// Per (b, h), the op runs
//   S = scale · Q Kᵀ                 gemm_batched, S [B·H, Sq, Sk] in device memory
//   P = masked_softmax_rows(S)       attention_masked_softmax below, in place
//   O = P V                          gemm_batched
// and keeps P for the backward:
//   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − Σ_j dP ⊙ P)  (softmax_backward),
//   dQ = scale · dS K,  dK = scale · dSᵀ Q.
// Memory is O(B·H·Sq·Sk): the version that is easy to check. With dropout (the mask Z of
// kernels/attention.h) P stays undropped; attention_dropout_weights writes Z ⊙ P into a
// scratch matrix for O = (Z ⊙ P) V, and the backward regenerates it in its dS buffer:
//   dS ← Z ⊙ P,  dV = dSᵀ dO,  dS ← dO Vᵀ,  dS ← Z ⊙ dS,  dS ← P ⊙ (dS − Σ_j P ⊙ dS),  dQ, dK
// (Σ_j P_ij (Z ⊙ dO Vᵀ)_ij = dO_i · O_i: softmax_backward's Δ is the one of kernels/attention.h).
//
// ---- v2 (kernels/cuda/attention_flash.cu): flash attention, fused ----
// The Sq×Sk scores never reach global memory. A block takes kFlashQueryTile queries of one
// (b, h) and streams the keys past them kFlashKeyTile at a time through shared memory, with
// an online softmax: per query row a running max m and sum l, and when a tile raises the max
// from m to m', the accumulated output and l are rescaled by exp(m − m'). At the end
// O = acc / l and lse = m + log l. The backward recomputes P_ij = exp(S_ij − lse_i) from the
// saved lse, FlashAttention-2 style, in three deterministic kernels (no atomics):
//   Δ_i = Σ_d dO_id O_id                  a warp per query row
//   dV_j = Σ_i P_ij dO_i,  dK_j = scale · Σ_i dS_ij Q_i      a block per (b·h, key tile),
//                                          streaming the query tiles
//   dQ_i = scale · Σ_j dS_ij K_j           a block per (b·h, query tile), streaming key tiles
// with dS = P ⊙ (dP − Δ), dP = dO Vᵀ. Memory is O(B·H·S·D): out and lse are all it saves.
// With dropout each kernel draws Z_ij for the (i, j) of its tile from the flat index
// (bh·Sq + i)·Sk + j, in the forward and again in both backward kernels — the mask is never
// stored — and uses Z ⊙ P where P meets V or dO, Z ⊙ dP in dS (kernels/attention.h):
//   forward  l_i sums the undropped p_ij (so lse is undropped), acc_i the dropped Z_ij p_ij v_j
//   dK/dV    dV_j += Σ_i Z_ij P_ij dO_i,  dS_ij = P_ij (Z_ij dP_ij − Δ_i)
//   dQ       dS_ij = P_ij (Z_ij dP_ij − Δ_i)
// The kernels are templates on whether they drop: with p = 0 the instance without any
// dropout code runs, so attention without dropout costs what it did before.
//
// Launch shape (all three tile kernels): 128 threads = 4 warps; a warp owns 8 rows of the
// block's tile (queries, or keys in the dK/dV kernel) and its 32 lanes stand for the 32
// columns of the other side (one key, or one query, per lane) when scores are formed, and
// for the head-dim columns d = lane + 32c when outputs accumulate. A grid-stride loop over
// the B·H·tiles tiles (grid.x only, capped), so any B·H fits.
//
// Tile sizes, 32 queries × 32 keys, are chosen for the short sequences that are the main
// case (ViT S = 197, text S = 32 / 77, cross-attention 64 × 197) with many B·H: the last
// tile of 197 keys is 5/32 full, so 197 keys cost 224 key slots (64-key tiles: 256), 77
// costs 96 (64-key tiles: 128), 32 exactly one tile; and B·H·⌈S/32⌉ blocks (ViT, B·H 3072:
// 21504 blocks) fill every SM many times over, so larger tiles would buy nothing here.
//
// Head dims: D = 32, 64, 128 have their own template instance (Dp = D); any other D ≤ 128
// runs on the next instance up with the extra columns zero-filled when loaded (they add 0
// to every dot product) and never written. D > 128 is not taken (attention_flash_supports):
// each lane keeps 8 rows × Dp/32 accumulators per output in registers and each tile is
// 32 × Dp in shared memory, and at Dp = 256 the f64 backward's four tiles alone would need
// 256 KiB, past the 163 KiB a block may have on sm_80; the op runs v1 there.
//
// Shared memory, dynamic (opted in past 48 KiB with cudaFuncSetAttribute), in elements of T:
//   forward   Q 32·Dp + K 32·(Dp+1) + V 32·Dp + P 32·32
//   dK/dV     K 32·Dp + V 32·Dp + Q 32·(Dp+1) + dO 32·(Dp+1) + P 32·32 + dS 32·32
//   dQ        Q 32·Dp + dO 32·Dp + K 32·(Dp+1) + V 32·(Dp+1) + dS 32·32
// The largest, dK/dV in f64 at Dp = 128, is 144.5 KiB (f32: 72.3 KiB); the ViT case, f32 at
// Dp = 64, needs 28.1 KiB forward and 40.3 KiB for dK/dV. A tile a lane reads along its own row (lane = row) has rows of Dp+1
// elements, so the 32 lanes' reads of column d fall in 32 different banks.
#pragma once
#include <cstdint>

#include "kernels/attention.h"
#include "kernels/half.h"

namespace mmg::cuda {

// ---- v1 ----

// In place over s [B·H·Sq, Sk] (row r = ((b·H + h)·Sq + i)): key j is visible to query i
// when key_mask is null or key_mask[b·Sk + j] != 0, and (causal) j <= i. Then
//   s_ij ← exp(s_ij − m_i) / Σ_{visible j'} exp(s_ij' − m_i)   for visible j,  0 otherwise,
// m_i the max over visible keys. A row with no visible key becomes all zeros (the CPU op's
// zero output and zero gradient for such a query). T: float, double.
template <class T>
void attention_masked_softmax(T* s, const uint8_t* key_mask, int64_t B, int64_t H, int64_t Sq, int64_t Sk,
                              bool causal);

// y_n = x_n · Z_n over the n = B·H·Sq·Sk elements of a [B,H,Sq,Sk] matrix, n being the flat
// index of kernels/attention.h: Z_n = 1/(1−p) where attention_dropout_keep(drop, n), else 0.
// x and y may be the same buffer. Needs drop.p > 0. T: float, double.
template <class T>
void attention_dropout_weights(const T* x, T* y, int64_t n, const AttentionDropout& drop);

// ---- v2 ----

constexpr int64_t kFlashQueryTile = 32;   // queries per tile (Br)
constexpr int64_t kFlashKeyTile = 32;     // keys per tile (Bc)
constexpr int64_t kFlashMaxHeadDim = 128;

// Whether the flash kernels take head dim D (1 ≤ D ≤ 128).
constexpr bool attention_flash_supports(int64_t D) { return D >= 1 && D <= kFlashMaxHeadDim; }

// Writes out [B,H,Sq,D] and lse [B,H,Sq] (lse of the undropped weights). Needs Sk ≥ 1 and
// attention_flash_supports(D). T: float, double.
template <class T>
void attention_flash_forward(const T* q, const T* k, const T* v, const uint8_t* key_mask, T* out, T* lse, int64_t B,
                             int64_t H, int64_t Sq, int64_t Sk, int64_t D, bool causal, T scale,
                             const AttentionDropout& drop = {});

// Given dout = ∂L/∂O and the forward's out and lse, writes dq, dk, dv (overwritten, every
// element). delta is a workspace of B·H·Sq elements (it receives Δ). Deterministic: the same
// inputs give the same bits. `drop` must be the forward's. Needs Sk ≥ 1 and
// attention_flash_supports(D). T: float, double.
template <class T>
void attention_flash_backward(const T* q, const T* k, const T* v, const uint8_t* key_mask, const T* out,
                              const T* dout, const T* lse, T* delta, T* dq, T* dk, T* dv, int64_t B, int64_t H,
                              int64_t Sq, int64_t Sk, int64_t D, bool causal, T scale,
                              const AttentionDropout& drop = {});

// ---- v3 (kernels/cuda/attention_mma.cu): flash attention on tensor cores ----
// The algorithm of v2 — online softmax forward saving lse, Δ / dK-dV / dQ backward, no atomics,
// dropout redrawn from the flat index — with bf16 or f16 Q, K, V, O and gradients, both
// products of each step on mma.sync.m16n8k16 with f32 accumulation, the softmax in f32
// registers and lse and Δ in f32. The file's header has the fragment layouts, tiles and shared
// memory; kernels/cuda/mma_fragment.h the index functions it shares with the host tests.
// Needs a device of compute capability 8.0 or newer (mmg::Error otherwise), Sk ≥ 1 and
// attention_flash_supports(D). T: bf16, f16.

// Writes out [B,H,Sq,D] (T) and lse [B,H,Sq] (f32, of the undropped weights).
template <class T>
void attention_mma_forward(const T* q, const T* k, const T* v, const uint8_t* key_mask, T* out, float* lse,
                           int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D, bool causal, float scale,
                           const AttentionDropout& drop = {});

// Given dout and the forward's out and lse, writes dq, dk, dv (T, every element). delta is an f32
// workspace of B·H·Sq elements. Deterministic. `drop` must be the forward's.
template <class T>
void attention_mma_backward(const T* q, const T* k, const T* v, const uint8_t* key_mask, const T* out,
                            const T* dout, const float* lse, float* delta, T* dq, T* dk, T* dv, int64_t B, int64_t H,
                            int64_t Sq, int64_t Sk, int64_t D, bool causal, float scale,
                            const AttentionDropout& drop = {});

// ---- v4 (kernels/cuda/attention_short.cu): short sequences on tensor cores ----
// v3's forward specialised for Sk ≤ 256 (attention_short_plan.h has the rule and the plan): a
// CTA loads one head's whole K and V (up to 4 heads when Sq ≤ 48) into shared memory once, and
// its warps take 16-row query chunks over the resident keys, with v3's online softmax, fragments
// and dropout. It writes what v3's forward writes — out in T, lse in f32 — so the backward of
// v4 is v3's, attention_mma_backward, unchanged. Where Sk > 256 it runs attention_mma_forward
// itself. Needs compute capability 8.0 or newer, Sk ≥ 1 and attention_flash_supports(D), as v3.
// T: bf16, f16.
template <class T>
void attention_short_forward(const T* q, const T* k, const T* v, const uint8_t* key_mask, T* out, float* lse,
                             int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D, bool causal, float scale,
                             const AttentionDropout& drop = {});

}  // namespace mmg::cuda
