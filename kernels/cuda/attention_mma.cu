// Flash attention on tensor cores, v3 of the attention family: the forward and backward of
// kernels/cuda/attention.h (semantics: kernels/attention.h) for bf16 and f16 inputs, with every
// matrix product on mma.sync.aligned.m16n8k16 (sm_80 and newer) accumulating in f32.
//
// ---- what is computed ----
// The algorithm is v2's (kernels/cuda/attention_flash.cu, FlashAttention-2): per (b, h), with
// s_ij = scale · q_i · k_j and −∞ where key j is hidden (masked, past Sk, or causal j > i),
//   forward    running max m_i and sum l_i over the key tiles, O_i = Σ_j z_ij p_ij v_j / l_i,
//              lse_i = m_i + log l_i  (z_ij the dropout factor, 1 without dropout)
//   backward   Δ_i = dO_i · O_i;   P_ij = exp(s_ij − lse_i);   dS_ij = P_ij (z_ij dO_i·v_j − Δ_i)
//              dV_j = Σ_i z_ij P_ij dO_i,  dK_j = scale Σ_i dS_ij q_i,  dQ_i = scale Σ_j dS_ij k_j
// in three tile kernels and a Δ kernel, each output element summed by one thread in a fixed
// order: no atomics, the same bits on every run. What changes from v2 is the arithmetic:
//   - Q, K, V, O, dO, dQ, dK, dV are 16-bit (T = bf16 or f16) in memory and shared memory;
//   - S = Q·Kᵀ, dP = dO·Vᵀ and the three products that sum over a tile (P·V, dSᵀ·Q or dS·K,
//     Pᵀ·dO) are mma.m16n8k16 with f32 accumulators;
//   - the softmax (max, exp, sums), lse and Δ are f32; P and dS are rounded to T only to enter
//     the next product (as FlashAttention-2 does), so the error is that of one 16-bit rounding
//     of each weight, not of the sums;
//   - exponentials are exp2: scores are kept as s·log2 e, lse is stored in natural log.
//
// ---- fragments (kernels/cuda/mma_fragment.h has the index functions) ----
// PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type": lane = 4·group + quad;
// an A register holds A[row][2q], A[row][2q+1] (row = group or group + 8, +8 columns for
// registers 2, 3), a B register B[2q][group], B[2q+1][group] (+8 rows for register 1), C/D
// registers c0, c1 = C[group][2q], C[group][2q+1] and c2, c3 the same at row group + 8.
// The operands come from shared memory three ways:
//   A from a row-major [m][k] tile (Q, K, V, dO as rows × head dim): a register is two
//     neighbours of one row, one 32-bit load (load_a);
//   B from an [n][k] tile, i.e. Kᵀ or Vᵀ (or Qᵀ, dOᵀ) read out of the row-major K: B[k][n] =
//     K[n][k], again two neighbours of one row, one 32-bit load (load_b_nk);
//   B from a [k][n] tile (V in P·V, Q and dO in dK/dV, K in dQ): the register's two elements
//     are in two rows, two 16-bit loads packed into one register (load_b_kn). ldmatrix.trans
//     would do this in one instruction per 4 registers; the explicit loads keep every index
//     visible and checkable on the host, and cost shared-memory instructions, not bandwidth.
//   A from registers: P and dS are C fragments of one product and the A fragment of the next,
//     16 keys = two n8 tiles side by side (mma_a_from_c), converted to T by cvt.rn.{bf16,f16}x2.
//
// ---- tiles, warps, shared memory ----
// A block is 4 warps (128 threads); each warp owns 16 rows of the block's 64-row tile:
//   forward   64 queries; keys stream past 64 at a time. Per warp per key tile:
//             S [16 × 64] = 8 n8 tiles × Dp/16 k-steps of mma, P·V [16 × Dp] = Dp/8 × 4 mma.
//             Registers per lane: Q fragments Dp/4, S 32, O Dp/2.
//   dK/dV     64 keys; queries stream past 32 at a time. Per warp: Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ
//             [16 keys × 32 queries], then dV += (Z⊙P)ᵀ·dO and dK += dSᵀ·Q [16 × Dp].
//             Registers: dK and dV accumulators Dp/2 each, Sᵀ and dPᵀ 16 each.
//   dQ        64 queries; keys stream past 32 at a time. Per warp: S = Q·Kᵀ, dP = dO·Vᵀ
//             [16 × 32], then dQ += dS·K [16 × Dp]. Registers: dQ Dp/2, S and dP 16 each.
// Causal: a block stops at the last key tile its last query can see (mma_key_end) or starts
// at the first query tile that can see its first key (mma_query_begin), and a warp skips the
// products of a tile that lies wholly above the diagonal for its 16 rows (mma_tiles_meet); a
// warp whose rows are all past Sq (or keys past Sk) skips every tile. Skipping is per warp
// and never crosses a __syncthreads: all 128 threads load every tile.
// Shared memory (dynamic; 16-bit tiles with rows of Dp + 8 elements, mma_fragment.h):
//   forward   Q [64] + K [64] + V [64] rows, key_ok [64]                 Dp 128: 52,288 bytes
//   dK/dV     K [64] + V [64] + Q [32] + dO [32] rows, lse, Δ [32] f32   Dp 128: 52,544 bytes
//   dQ        Q [64] + dO [64] + K [32] + V [32] rows, key_ok [32]       Dp 128: 52,256 bytes
// (Dp 64: 27.7 KB; Dp 32: 15.4 KB). Past 48 KB the kernel opts in (cudaFuncSetAttribute); sm_80
// gives a block up to 163 KB, sm_90 227 KB. The 8-element padding makes every fragment load
// conflict-free: in load_a and load_b_nk the 8 groups read 8 rows at one column, and row r
// starts 4r banks later (mod 32), so the 8 rows × 4 quads cover 32 banks; in load_b_kn lanes
// read rows 2q, 2q + 1 (+8) at column group, the 4 quads start 8 banks apart and the 8 groups'
// columns share 4 words (two lanes per word, which is a broadcast, not a conflict).
// Global to shared: 16-byte copies (8 elements) when D is a multiple of 8 and the pointers are
// 16-byte aligned, else element by element; rows past the end and columns d ≥ D are zeros, so
// a ragged last tile and a head dim below Dp (24 → 32, 100 → 128) need no other care. The
// copies are synchronous: cp.async double buffering is the next step, not taken here.
//
// Code: the instruction, fragment loads, C → A hand-over and quad shuffles are mma_ops.cuh's
// (shared with contrastive_mma.cu); the tile copies, the forward's step over one key tile and
// its final store are attention_mma.cuh's (shared with v4, attention_short.cu).
//
// Head dims: Dp = 32, 64, 128 as v2 (attention_flash_supports). Instances per T: forward, dK/dV
// and dQ × 3 head dims × with/without dropout, and Δ. Registers (ptxas, nvcc 13.0, sm_80 and
// sm_90 alike within a few): 128–190 at Dp 32, 135–246 at Dp 64, 170–255 at Dp 128, the dropout
// instances the heaviest (Philox inline); no spills but 24 bytes in sm_90's forward at Dp 32. At
// 255 registers a 128-thread block allows 2 blocks (8 warps) per SM: registers, not shared
// memory, bound the occupancy at Dp 128.
#include <cuda_runtime.h>

#include <cmath>
#include <string>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_mma.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/mma_fragment.h"
#include "kernels/cuda/row_group.cuh"

namespace mmg::cuda {

// The instruction, the fragment loads and the quad shuffles are kernels/cuda/mma_ops.cuh's; the
// tile copies, the forward's key-tile step and its store, shared with v4, attention_mma.cuh's.
using namespace flash_mma;

// ---- forward ----

// One tile of 64 queries of one (b, h) per block iteration; grid-stride over the B·H·q_tiles
// tiles (t = bh · q_tiles + query tile). scale2 = scale · log2 e.
template <class T, int Dp, bool Drop>
__global__ void __launch_bounds__(kMmaThreads)
    attention_mma_forward_kernel(const uint16_t* q, const uint16_t* k, const uint16_t* v, const uint8_t* key_mask,
                                 uint16_t* out, float* lse, int64_t H, int64_t Sq, int64_t Sk, int D, bool causal,
                                 float scale2, int64_t q_tiles, int64_t n_tiles, bool vec, AttentionDropout drop) {
  constexpr int ld = mma_ld(Dp);
  constexpr int Bc = kMmaForwardKeys;
  constexpr int KD = Dp / 16;  // k-steps over the head dim (Q·Kᵀ)
  constexpr int NO = Dp / 8;   // n8 tiles of O: 8 head-dim columns each
  extern __shared__ __align__(16) unsigned char smem[];
  uint16_t* Qs = reinterpret_cast<uint16_t*>(smem);            // [64][ld]
  uint16_t* Ks = Qs + kMmaBlockRows * ld;                        // [Bc][ld]
  uint16_t* Vs = Ks + Bc * ld;                                   // [Bc][ld]
  uint8_t* key_ok = reinterpret_cast<uint8_t*>(Vs + Bc * ld);    // [Bc]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float neg_inf = -INFINITY;
  const float kept = static_cast<float>(drop.scale);  // 1/(1−p), read only when Drop

  for (int64_t t = blockIdx.x; t < n_tiles; t += gridDim.x) {
    const int64_t bh = t / q_tiles, i0 = (t % q_tiles) * kMmaBlockRows, b = bh / H;
    const uint8_t* mask = key_mask ? key_mask + b * Sk : nullptr;
    const int64_t w0 = i0 + warp * kMmaWarpRows;  // the warp's first query
    const bool live = w0 < Sq;
    __syncthreads();  // the previous tile's reads of Qs are done
    load_rows<Dp>(Qs, q + bh * Sq * D, i0, Sq, kMmaBlockRows, D, vec);
    __syncthreads();
    uint32_t qf[KD][4];
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) load_a(qf[kk], Qs, ld, warp * kMmaWarpRows, kk * 16, lane);

    // Per lane, rows group (h = 0) and group + 8 (h = 1) of the warp's 16: the running max in
    // log2 units, this lane's share of the row sum, and O's C fragments.
    float m[2] = {neg_inf, neg_inf}, l[2] = {0.f, 0.f}, o[NO][4];
#pragma unroll
    for (int n = 0; n < NO; ++n)
#pragma unroll
      for (int r = 0; r < 4; ++r) o[n][r] = 0.f;

    const int64_t kend = mma_key_end(causal, i0, kMmaBlockRows, Sk);
    for (int64_t j0 = 0; j0 < kend; j0 += Bc) {
      __syncthreads();  // every warp is done with the previous K and V tiles
      load_rows<Dp>(Ks, k + bh * Sk * D, j0, Sk, Bc, D, vec);
      load_rows<Dp>(Vs, v + bh * Sk * D, j0, Sk, Bc, D, vec);
      load_key_ok(key_ok, mask, j0, Sk, Bc);
      __syncthreads();
      if (!live || !mma_tiles_meet(causal, w0 + kMmaWarpRows - 1, j0)) continue;
      forward_tile<T, Dp, Bc, Drop>(qf, Ks, Vs, key_ok, j0, Bc, w0, causal, scale2, bh, Sq, Sk, drop, kept, m, l,
                                    o, lane);
    }
    forward_store<T, Dp>(o, m, l, out + bh * Sq * D, lse + bh * Sq, w0, Sq, D, lane);
  }
}

// ---- backward ----

// Δ_i = Σ_d dO_id O_id in f32, a warp per row (grid-stride, uniform per warp).
template <class T>
__global__ void attention_mma_delta_kernel(const T* out, const T* dout, float* delta, int64_t rows, int D) {
  const RowGroup<false> g;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    float s = 0.f;
    for (int d = g.start; d < D; d += g.step) s += static_cast<float>(dout[r * D + d]) * static_cast<float>(out[r * D + d]);
    s = warp_all(s, SumOp{});
    if (g.start == 0) delta[r] = s;
  }
}

// One tile of 64 keys of one (b, h) per block iteration (t = bh · k_tiles + key tile); the
// query tiles stream past, 32 queries at a time. lse and Δ are f32.
template <class T, int Dp, bool Drop>
__global__ void __launch_bounds__(kMmaThreads)
    attention_mma_dkdv_kernel(const uint16_t* q, const uint16_t* k, const uint16_t* v, const uint8_t* key_mask,
                              const uint16_t* dout, const float* lse, const float* delta, uint16_t* dk, uint16_t* dv,
                              int64_t H, int64_t Sq, int64_t Sk, int D, bool causal, float scale, float scale2,
                              int64_t k_tiles, int64_t n_tiles, bool vec, AttentionDropout drop) {
  constexpr int ld = mma_ld(Dp);
  constexpr int Bq = kMmaBackwardStream;
  constexpr int KD = Dp / 16;  // k-steps over the head dim (K·Qᵀ, V·dOᵀ)
  constexpr int NQ = Bq / 8;   // n8 tiles of Sᵀ: 8 queries each
  constexpr int KQ = Bq / 16;  // k-steps over the queries (Pᵀ·dO, dSᵀ·Q)
  constexpr int NO = Dp / 8;   // n8 tiles of dK, dV
  extern __shared__ __align__(16) unsigned char smem[];
  uint16_t* Ks = reinterpret_cast<uint16_t*>(smem);                 // [64][ld]
  uint16_t* Vs = Ks + kMmaBlockRows * ld;                             // [64][ld]
  uint16_t* Qs = Vs + kMmaBlockRows * ld;                             // [Bq][ld]
  uint16_t* dOs = Qs + Bq * ld;                                       // [Bq][ld]
  float* lse_s = reinterpret_cast<float*>(dOs + Bq * ld);             // [Bq] lse · log2 e, −∞ past Sq
  float* delta_s = lse_s + Bq;                                        // [Bq]
  uint8_t* key_ok = reinterpret_cast<uint8_t*>(delta_s + Bq);         // [64]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float neg_inf = -INFINITY;
  [[maybe_unused]] const float kept = static_cast<float>(drop.scale);

  for (int64_t t = blockIdx.x; t < n_tiles; t += gridDim.x) {
    const int64_t bh = t / k_tiles, j0 = (t % k_tiles) * kMmaBlockRows, b = bh / H;
    const uint8_t* mask = key_mask ? key_mask + b * Sk : nullptr;
    const int64_t wk0 = j0 + warp * kMmaWarpRows;  // the warp's first key
    const bool live = wk0 < Sk;
    __syncthreads();  // the previous tile's reads of Ks, Vs and key_ok are done
    load_rows<Dp>(Ks, k + bh * Sk * D, j0, Sk, kMmaBlockRows, D, vec);
    load_rows<Dp>(Vs, v + bh * Sk * D, j0, Sk, kMmaBlockRows, D, vec);
    load_key_ok(key_ok, mask, j0, Sk, kMmaBlockRows);
    // (read after the __syncthreads that follows the first query tile's loads)

    float dka[NO][4], dva[NO][4];
#pragma unroll
    for (int n = 0; n < NO; ++n)
#pragma unroll
      for (int r = 0; r < 4; ++r) dka[n][r] = dva[n][r] = 0.f;

    // With Sk > Sq under causal the keys j ≥ Sq are seen by no query: no tile runs, and their
    // dK and dV are the zeros written below.
    for (int64_t i0 = mma_query_begin(causal, j0, Bq); i0 < Sq; i0 += Bq) {
      __syncthreads();  // every warp is done with the previous Q, dO, lse and Δ
      load_rows<Dp>(Qs, q + bh * Sq * D, i0, Sq, Bq, D, vec);
      load_rows<Dp>(dOs, dout + bh * Sq * D, i0, Sq, Bq, D, vec);
      for (int i = threadIdx.x; i < Bq; i += kMmaThreads) {
        const bool in = i0 + i < Sq;
        lse_s[i] = in ? lse[bh * Sq + i0 + i] * kLog2e : neg_inf;
        delta_s[i] = in ? delta[bh * Sq + i0 + i] : 0.f;
      }
      __syncthreads();
      if (!live || !mma_tiles_meet(causal, i0 + Bq - 1, wk0)) continue;

      // Sᵀ = K Qᵀ and dPᵀ = V dOᵀ: rows the warp's 16 keys, columns the tile's 32 queries.
      float st[NQ][4], dpt[NQ][4];
#pragma unroll
      for (int n = 0; n < NQ; ++n)
#pragma unroll
        for (int r = 0; r < 4; ++r) st[n][r] = dpt[n][r] = 0.f;
#pragma unroll
      for (int kk = 0; kk < KD; ++kk) {
        uint32_t ka[4], va[4];
        load_a(ka, Ks, ld, warp * kMmaWarpRows, kk * 16, lane);
        load_a(va, Vs, ld, warp * kMmaWarpRows, kk * 16, lane);
#pragma unroll
        for (int n = 0; n < NQ; ++n) {
          uint32_t bq[2], bo[2];
          load_b_nk(bq, Qs, ld, n * 8, kk * 16, lane);
          load_b_nk(bo, dOs, ld, n * 8, kk * 16, lane);
          mma_16816<T>(st[n], ka, bq);
          mma_16816<T>(dpt[n], va, bo);
        }
      }

      // st ← z·P (what dV sums), dpt ← dS = P (z·dP − Δ); P = 0 where hidden or lse = −∞.
#pragma unroll
      for (int n = 0; n < NQ; ++n)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const MmaIndex e = mma_c_element(lane, r);
          const int jl = warp * kMmaWarpRows + e.row, il = n * 8 + e.col;
          const int64_t j = j0 + jl, i = i0 + il;
          const float lse2 = lse_s[il];
          const bool visible = key_ok[jl] && lse2 != neg_inf && (!causal || j <= i);
          const float p = visible ? exp2f(st[n][r] * scale2 - lse2) : 0.f;
          float z = 1.f;
          if constexpr (Drop) {
            // visible implies i < Sq (lse = −∞ past it) and j < Sk (key_ok).
            z = visible && attention_dropout_keep(drop, (bh * Sq + i) * Sk + j) ? kept : 0.f;
          }
          st[n][r] = z * p;
          dpt[n][r] = p * (z * dpt[n][r] - delta_s[il]);
        }

      // dV += (z·P)ᵀ dO and dK += dSᵀ Q: A from the registers (16 queries per k-step), the
      // tile's rows (queries) are the k of dO and Q.
#pragma unroll
      for (int kk = 0; kk < KQ; ++kk) {
        uint32_t pa[4], da[4];
        a_from_c<T>(pa, st[2 * kk], st[2 * kk + 1]);
        a_from_c<T>(da, dpt[2 * kk], dpt[2 * kk + 1]);
#pragma unroll
        for (int n = 0; n < NO; ++n) {
          uint32_t bo[2], bq[2];
          load_b_kn(bo, dOs, ld, kk * 16, n * 8, lane);
          load_b_kn(bq, Qs, ld, kk * 16, n * 8, lane);
          mma_16816<T>(dva[n], pa, bo);
          mma_16816<T>(dka[n], da, bq);
        }
      }
    }

#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t j = wk0 + mma_group(lane) + 8 * h;
      if (j < Sk) {
#pragma unroll
        for (int n = 0; n < NO; ++n) {
          const int col = n * 8 + 2 * mma_quad(lane);
          store_pair<T>(dk + bh * Sk * D, j, col, D, scale * dka[n][2 * h], scale * dka[n][2 * h + 1]);
          store_pair<T>(dv + bh * Sk * D, j, col, D, dva[n][2 * h], dva[n][2 * h + 1]);
        }
      }
    }
  }
}

// One tile of 64 queries of one (b, h) per block iteration, as in the forward; the key tiles
// stream past, 32 keys at a time.
template <class T, int Dp, bool Drop>
__global__ void __launch_bounds__(kMmaThreads)
    attention_mma_dq_kernel(const uint16_t* q, const uint16_t* k, const uint16_t* v, const uint8_t* key_mask,
                            const uint16_t* dout, const float* lse, const float* delta, uint16_t* dq, int64_t H,
                            int64_t Sq, int64_t Sk, int D, bool causal, float scale, float scale2, int64_t q_tiles,
                            int64_t n_tiles, bool vec, AttentionDropout drop) {
  constexpr int ld = mma_ld(Dp);
  constexpr int Bc = kMmaBackwardStream;
  constexpr int KD = Dp / 16;  // k-steps over the head dim (Q·Kᵀ, dO·Vᵀ)
  constexpr int NK = Bc / 8;   // n8 tiles of S: 8 keys each
  constexpr int KK = Bc / 16;  // k-steps over the keys (dS·K)
  constexpr int NO = Dp / 8;   // n8 tiles of dQ
  extern __shared__ __align__(16) unsigned char smem[];
  uint16_t* Qs = reinterpret_cast<uint16_t*>(smem);            // [64][ld]
  uint16_t* dOs = Qs + kMmaBlockRows * ld;                       // [64][ld]
  uint16_t* Ks = dOs + kMmaBlockRows * ld;                       // [Bc][ld]
  uint16_t* Vs = Ks + Bc * ld;                                   // [Bc][ld]
  uint8_t* key_ok = reinterpret_cast<uint8_t*>(Vs + Bc * ld);    // [Bc]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float neg_inf = -INFINITY;
  [[maybe_unused]] const float kept = static_cast<float>(drop.scale);

  for (int64_t t = blockIdx.x; t < n_tiles; t += gridDim.x) {
    const int64_t bh = t / q_tiles, i0 = (t % q_tiles) * kMmaBlockRows, b = bh / H;
    const uint8_t* mask = key_mask ? key_mask + b * Sk : nullptr;
    const int64_t w0 = i0 + warp * kMmaWarpRows;
    const bool live = w0 < Sq;
    __syncthreads();  // the previous tile's reads of Qs and dOs are done
    load_rows<Dp>(Qs, q + bh * Sq * D, i0, Sq, kMmaBlockRows, D, vec);
    load_rows<Dp>(dOs, dout + bh * Sq * D, i0, Sq, kMmaBlockRows, D, vec);

    // lse (log2 units) and Δ of the lane's rows group and group + 8.
    float lse2[2], dl[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t i = w0 + mma_group(lane) + 8 * h;
      lse2[h] = i < Sq ? lse[bh * Sq + i] * kLog2e : neg_inf;
      dl[h] = i < Sq ? delta[bh * Sq + i] : 0.f;
    }
    float dqa[NO][4];
#pragma unroll
    for (int n = 0; n < NO; ++n)
#pragma unroll
      for (int r = 0; r < 4; ++r) dqa[n][r] = 0.f;

    const int64_t kend = mma_key_end(causal, i0, kMmaBlockRows, Sk);
    for (int64_t j0 = 0; j0 < kend; j0 += Bc) {
      __syncthreads();  // every warp is done with the previous K, V and key_ok
      load_rows<Dp>(Ks, k + bh * Sk * D, j0, Sk, Bc, D, vec);
      load_rows<Dp>(Vs, v + bh * Sk * D, j0, Sk, Bc, D, vec);
      load_key_ok(key_ok, mask, j0, Sk, Bc);
      __syncthreads();
      if (!live || !mma_tiles_meet(causal, w0 + kMmaWarpRows - 1, j0)) continue;

      // S = Q Kᵀ and dP = dO Vᵀ: rows the warp's 16 queries, columns the tile's 32 keys.
      float s[NK][4], dp[NK][4];
#pragma unroll
      for (int n = 0; n < NK; ++n)
#pragma unroll
        for (int r = 0; r < 4; ++r) s[n][r] = dp[n][r] = 0.f;
#pragma unroll
      for (int kk = 0; kk < KD; ++kk) {
        uint32_t qa[4], oa[4];
        load_a(qa, Qs, ld, warp * kMmaWarpRows, kk * 16, lane);
        load_a(oa, dOs, ld, warp * kMmaWarpRows, kk * 16, lane);
#pragma unroll
        for (int n = 0; n < NK; ++n) {
          uint32_t bk[2], bv[2];
          load_b_nk(bk, Ks, ld, n * 8, kk * 16, lane);
          load_b_nk(bv, Vs, ld, n * 8, kk * 16, lane);
          mma_16816<T>(s[n], qa, bk);
          mma_16816<T>(dp[n], oa, bv);
        }
      }

      // s ← dS = P (z·dP − Δ).
#pragma unroll
      for (int n = 0; n < NK; ++n)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const MmaIndex e = mma_c_element(lane, r);
          const int h = r >> 1, jl = n * 8 + e.col;
          const int64_t i = w0 + e.row, j = j0 + jl;
          const bool visible = key_ok[jl] && lse2[h] != neg_inf && (!causal || j <= i);
          const float p = visible ? exp2f(s[n][r] * scale2 - lse2[h]) : 0.f;
          float z = 1.f;
          if constexpr (Drop) z = visible && attention_dropout_keep(drop, (bh * Sq + i) * Sk + j) ? kept : 0.f;
          s[n][r] = p * (z * dp[n][r] - dl[h]);
        }

      // dQ += dS K: the tile's rows (keys) are the k of K.
#pragma unroll
      for (int kk = 0; kk < KK; ++kk) {
        uint32_t da[4];
        a_from_c<T>(da, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
        for (int n = 0; n < NO; ++n) {
          uint32_t bk[2];
          load_b_kn(bk, Ks, ld, kk * 16, n * 8, lane);
          mma_16816<T>(dqa[n], da, bk);
        }
      }
    }

#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t i = w0 + mma_group(lane) + 8 * h;
      if (i < Sq) {
#pragma unroll
        for (int n = 0; n < NO; ++n)
          store_pair<T>(dq + bh * Sq * D, i, n * 8 + 2 * mma_quad(lane), D, scale * dqa[n][2 * h],
                        scale * dqa[n][2 * h + 1]);
      }
    }
  }
}

// ---- launches ----

template <class T, int Dp, bool Drop>
static void mma_forward_launch(const T* q, const T* k, const T* v, const uint8_t* key_mask, T* out, float* lse,
                               int64_t BH, int64_t H, int64_t Sq, int64_t Sk, int D, bool causal, float scale,
                               const AttentionDropout& drop) {
  const int64_t q_tiles = tiles_of(Sq, kMmaBlockRows), n = BH * q_tiles;
  const size_t bytes = mma_forward_smem_bytes(Dp);
  const bool vec = vec_copies(D, {q, k, v});
  allow_shared_bytes(attention_mma_forward_kernel<T, Dp, Drop>, bytes);
  attention_mma_forward_kernel<T, Dp, Drop><<<tile_grid(n), kMmaThreads, bytes, current_stream()>>>(
      bits(q), bits(k), bits(v), key_mask, out_bits(out), lse, H, Sq, Sk, D, causal, scale * kLog2e, q_tiles, n, vec,
      drop);
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T, int Dp>
static void mma_forward(const T* q, const T* k, const T* v, const uint8_t* key_mask, T* out, float* lse, int64_t BH,
                        int64_t H, int64_t Sq, int64_t Sk, int D, bool causal, float scale,
                        const AttentionDropout& drop) {
  if (drop.p > 0)
    mma_forward_launch<T, Dp, true>(q, k, v, key_mask, out, lse, BH, H, Sq, Sk, D, causal, scale, drop);
  else
    mma_forward_launch<T, Dp, false>(q, k, v, key_mask, out, lse, BH, H, Sq, Sk, D, causal, scale, drop);
}

template <class T, int Dp, bool Drop>
static void mma_backward_launch(const T* q, const T* k, const T* v, const uint8_t* key_mask, const T* dout,
                                const float* lse, const float* delta, T* dq, T* dk, T* dv, int64_t BH, int64_t H,
                                int64_t Sq, int64_t Sk, int D, bool causal, float scale,
                                const AttentionDropout& drop) {
  const bool vec = vec_copies(D, {q, k, v, dout});
  const int64_t k_tiles = tiles_of(Sk, kMmaBlockRows), nk = BH * k_tiles;
  const size_t dkdv_bytes = mma_dkdv_smem_bytes(Dp);
  allow_shared_bytes(attention_mma_dkdv_kernel<T, Dp, Drop>, dkdv_bytes);
  attention_mma_dkdv_kernel<T, Dp, Drop><<<tile_grid(nk), kMmaThreads, dkdv_bytes, current_stream()>>>(
      bits(q), bits(k), bits(v), key_mask, bits(dout), lse, delta, out_bits(dk), out_bits(dv), H, Sq, Sk, D, causal, scale,
      scale * kLog2e, k_tiles, nk, vec, drop);
  MMG_CUDA_LAUNCH_CHECK();

  const int64_t q_tiles = tiles_of(Sq, kMmaBlockRows), nq = BH * q_tiles;
  const size_t dq_bytes = mma_dq_smem_bytes(Dp);
  allow_shared_bytes(attention_mma_dq_kernel<T, Dp, Drop>, dq_bytes);
  attention_mma_dq_kernel<T, Dp, Drop><<<tile_grid(nq), kMmaThreads, dq_bytes, current_stream()>>>(
      bits(q), bits(k), bits(v), key_mask, bits(dout), lse, delta, out_bits(dq), H, Sq, Sk, D, causal, scale,
      scale * kLog2e, q_tiles, nq, vec, drop);
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T, int Dp>
static void mma_backward(const T* q, const T* k, const T* v, const uint8_t* key_mask, const T* dout, const float* lse,
                         const float* delta, T* dq, T* dk, T* dv, int64_t BH, int64_t H, int64_t Sq, int64_t Sk, int D,
                         bool causal, float scale, const AttentionDropout& drop) {
  if (drop.p > 0)
    mma_backward_launch<T, Dp, true>(q, k, v, key_mask, dout, lse, delta, dq, dk, dv, BH, H, Sq, Sk, D, causal, scale,
                                     drop);
  else
    mma_backward_launch<T, Dp, false>(q, k, v, key_mask, dout, lse, delta, dq, dk, dv, BH, H, Sq, Sk, D, causal,
                                      scale, drop);
}

template <class T>
void attention_mma_forward(const T* q, const T* k, const T* v, const uint8_t* key_mask, T* out, float* lse, int64_t B,
                           int64_t H, int64_t Sq, int64_t Sk, int64_t D, bool causal, float scale,
                           const AttentionDropout& drop) {
  const int64_t BH = B * H;
  if (BH * Sq == 0) return;
  require_mma_device("attention v3");
  const int d = static_cast<int>(D);
  if (D <= 32)
    mma_forward<T, 32>(q, k, v, key_mask, out, lse, BH, H, Sq, Sk, d, causal, scale, drop);
  else if (D <= 64)
    mma_forward<T, 64>(q, k, v, key_mask, out, lse, BH, H, Sq, Sk, d, causal, scale, drop);
  else
    mma_forward<T, 128>(q, k, v, key_mask, out, lse, BH, H, Sq, Sk, d, causal, scale, drop);
}

template <class T>
void attention_mma_backward(const T* q, const T* k, const T* v, const uint8_t* key_mask, const T* out, const T* dout,
                            const float* lse, float* delta, T* dq, T* dk, T* dv, int64_t B, int64_t H, int64_t Sq,
                            int64_t Sk, int64_t D, bool causal, float scale, const AttentionDropout& drop) {
  const int64_t BH = B * H, rows = BH * Sq;
  if (BH == 0) return;
  require_mma_device("attention v3");
  const int d = static_cast<int>(D);
  // With Sq = 0 there is no Δ to form, and the dK/dV kernel writes zeros (no query tile runs).
  if (rows > 0) {
    attention_mma_delta_kernel<T><<<grid_for(rows * 32, kRowBlock), kRowBlock, 0, current_stream()>>>(out, dout, delta,
                                                                                                    rows, d);
    MMG_CUDA_LAUNCH_CHECK();
  }
  if (D <= 32)
    mma_backward<T, 32>(q, k, v, key_mask, dout, lse, delta, dq, dk, dv, BH, H, Sq, Sk, d, causal, scale, drop);
  else if (D <= 64)
    mma_backward<T, 64>(q, k, v, key_mask, dout, lse, delta, dq, dk, dv, BH, H, Sq, Sk, d, causal, scale, drop);
  else
    mma_backward<T, 128>(q, k, v, key_mask, dout, lse, delta, dq, dk, dv, BH, H, Sq, Sk, d, causal, scale, drop);
}

#define MMG_ATTENTION_MMA_INSTANTIATE(T)                                                                            \
  template void attention_mma_forward<T>(const T*, const T*, const T*, const uint8_t*, T*, float*, int64_t, int64_t, \
                                         int64_t, int64_t, int64_t, bool, float, const AttentionDropout&);         \
  template void attention_mma_backward<T>(const T*, const T*, const T*, const uint8_t*, const T*, const T*,          \
                                          const float*, float*, T*, T*, T*, int64_t, int64_t, int64_t, int64_t,     \
                                          int64_t, bool, float, const AttentionDropout&);

MMG_ATTENTION_MMA_INSTANTIATE(bf16)
MMG_ATTENTION_MMA_INSTANTIATE(f16)

}  // namespace mmg::cuda
