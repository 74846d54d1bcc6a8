// Flash attention, v2 of the attention family: the forward and backward of
// kernels/cuda/attention.h (semantics: kernels/attention.h), with the Sq×Sk scores kept in
// registers and shared memory, a tile at a time, never in global memory.
//
// Forward, for one tile of 32 queries (one block) and each tile of 32 keys in turn:
//   s_ij = scale · q_i · k_j,  −∞ where key j is hidden (masked, past Sk, or causal j > i)
//   m'_i = max(m_i, max_j s_ij)                       the running max, over the warp's lanes
//   α_i  = exp(m_i − m'_i)                            rescales what was summed under m_i
//   p_ij = exp(s_ij − m'_i),   l_i ← α_i l_i + Σ_j p_ij,   acc_i ← α_i acc_i + Σ_j p_ij v_j
// and at the end O_i = acc_i / l_i, lse_i = m_i + log l_i. A row that has seen no visible
// key yet has m = −∞; it adds nothing and is not rescaled (exp(−∞ − (−∞)) would be NaN), and
// if it ends that way its output is 0 and its lse −∞, as on the CPU.
//
// Backward, with P_ij = exp(s_ij − lse_i) recomputed (0 where hidden or lse_i = −∞):
//   delta kernel   Δ_i = Σ_d dO_id O_id                         (= Σ_j P_ij dP_ij)
//   dK/dV kernel   per key tile, over the query tiles that can see it:
//                  dP_ij = dO_i · v_j,  dS_ij = P_ij (dP_ij − Δ_i),
//                  dV_j += Σ_i P_ij dO_i,   dK_j += scale · Σ_i dS_ij q_i
//   dQ kernel      per query tile, over the key tiles it can see:
//                  dQ_i += scale · Σ_j dS_ij k_j
// Each output element is summed by one thread in a fixed order: no atomics, so the result
// is the same bit for bit on every run. dS is computed twice (once per kernel); that costs
// the recomputation of S and dP, and buys the determinism and no [Sq, Sk] buffer.
//
// Dropout (kernels/attention.h), in the instances with Drop = true: wherever a weight p_ij
// is formed it is also decided whether it is kept, z_ij = keep(drop, (bh·Sq + i)·Sk + j) ?
// 1/(1−p) : 0, from the weight's place in the whole [B,H,Sq,Sk] matrix and never from the
// tile's — so the forward and the two backward kernels, each with its own tiling, draw the
// same z for the same (i, j), and so does the CPU. Then
//   forward   l_i sums p_ij (lse stays undropped), acc_i sums z_ij p_ij v_j
//   dK/dV     dV_j += Σ_i z_ij P_ij dO_i,   dS_ij = P_ij (z_ij dP_ij − Δ_i)
//   dQ        dS_ij = P_ij (z_ij dP_ij − Δ_i)
// A weight is drawn only where it is visible (p could be non-zero) and inside the matrix
// (i < Sq, j < Sk): a hidden or padding weight is 0 whatever its z.
//
// Thread layout (kernels/cuda/attention.h has the launch shape and the shared-memory
// budget): a warp owns 8 rows of the block's own tile; when scores are formed, lane l stands
// for row l of the streamed tile, so each lane holds 8 scores, one per owned row. When
// outputs accumulate, lane l owns the head-dim columns d = l + 32c, and the probabilities
// go through shared memory, read by every lane at the same address (a broadcast).
#include <cmath>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/row_group.cuh"

namespace mmg::cuda {

constexpr int kBr = static_cast<int>(kFlashQueryTile);
constexpr int kBc = static_cast<int>(kFlashKeyTile);
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kRows = 8;  // rows of the block's own tile per warp
static_assert(kBr == 32 && kBc == 32, "a lane stands for one query or one key of a streamed tile");
static_assert(kWarps * kRows == kBr && kWarps * kRows == kBc, "the warps cover the block's tile, queries or keys");

// Copies rows [r0, r0 + 32) of a row-major [rows, D] matrix into a shared tile of 32 rows
// of Dp columns, row stride `stride` (Dp, or Dp + 1 for a tile read along its rows by the
// lanes). Rows past the end and columns d ≥ D become zeros: they add nothing to any dot
// product, so a short last tile and a head dim below Dp need no other care. Every thread of
// the block takes part; consecutive threads read consecutive elements of a row (coalesced).
template <class T, int Dp>
__device__ void load_tile(T* tile, int stride, const T* m, int64_t r0, int64_t rows, int D) {
  for (int e = threadIdx.x; e < 32 * Dp; e += kThreads) {
    const int r = e / Dp, d = e % Dp;
    const int64_t row = r0 + r;
    tile[r * stride + d] = (row < rows && d < D) ? m[row * D + d] : T(0);
  }
}

// ---- forward ----

template <class T, int Dp>
constexpr size_t forward_smem_bytes() {
  return sizeof(T) * (kBr * Dp + kBc * (Dp + 1) + kBc * Dp + kBr * kBc);
}

// One tile of 32 queries of one (b, h) per block iteration; grid-stride over the
// B·H·q_tiles tiles (t = bh · q_tiles + query tile). Drop: dropout on the weights.
template <class T, int Dp, bool Drop>
__global__ void __launch_bounds__(kThreads)
    attention_flash_forward_kernel(const T* q, const T* k, const T* v, const uint8_t* key_mask, T* out, T* lse,
                                   int64_t H, int64_t Sq, int64_t Sk, int D, bool causal, T scale, int64_t q_tiles,
                                   int64_t n_tiles, AttentionDropout drop) {
  constexpr int C = Dp / 32;  // head-dim columns per lane
  extern __shared__ __align__(16) unsigned char smem[];
  T* Qs = reinterpret_cast<T*>(smem);  // [kBr][Dp]      read by broadcast
  T* Ks = Qs + kBr * Dp;               // [kBc][Dp + 1]  lane j reads row j
  T* Vs = Ks + kBc * (Dp + 1);         // [kBc][Dp]      lane reads columns lane + 32c
  T* Ps = Vs + kBc * Dp;               // [kBr][kBc]     p of this key tile; warp w has rows 8w..8w+7
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const T neg_inf = T(-INFINITY);
  [[maybe_unused]] const T kept = static_cast<T>(drop.scale);  // 1/(1−p), read only when Drop

  for (int64_t t = blockIdx.x; t < n_tiles; t += gridDim.x) {
    const int64_t bh = t / q_tiles, i0 = (t % q_tiles) * kBr, b = bh / H;
    const uint8_t* mask = key_mask ? key_mask + b * Sk : nullptr;
    const T* kh = k + bh * Sk * D;
    const T* vh = v + bh * Sk * D;
    __syncthreads();  // the previous tile's reads of Qs are done
    load_tile<T, Dp>(Qs, Dp, q + bh * Sq * D, i0, Sq, D);

    T m[kRows], l[kRows], acc[kRows][C];  // l: this lane's share of the row sum
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      m[r] = neg_inf;
      l[r] = T(0);
#pragma unroll
      for (int c = 0; c < C; ++c) acc[r][c] = T(0);
    }
    // Under causal the tile's last query, i0 + 31, sees keys j <= i0 + 31 only.
    const int64_t kend = causal && i0 + kBr < Sk ? i0 + kBr : Sk;
    for (int64_t j0 = 0; j0 < kend; j0 += kBc) {
      __syncthreads();  // every warp is done with the previous K and V tiles
      load_tile<T, Dp>(Ks, Dp + 1, kh, j0, Sk, D);
      load_tile<T, Dp>(Vs, Dp, vh, j0, Sk, D);
      __syncthreads();

      // s[r] = q_i · k_j for this lane's key j and the warp's queries i = i0 + 8w + r.
      T s[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) s[r] = T(0);
      const T* krow = Ks + lane * (Dp + 1);
#pragma unroll 8
      for (int d = 0; d < Dp; ++d) {
        const T kd = krow[d];
#pragma unroll
        for (int r = 0; r < kRows; ++r) s[r] += Qs[(warp * kRows + r) * Dp + d] * kd;
      }

      const int64_t j = j0 + lane;
      const bool key_seen = j < Sk && (!mask || mask[j]);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const int64_t i = i0 + warp * kRows + r;
        const bool visible = key_seen && (!causal || j <= i);
        const T sr = visible ? s[r] * scale : neg_inf;
        const T m_new = fmax(m[r], warp_all(sr, MaxOp{}));  // the same in every lane
        const T alpha = m_new == neg_inf ? T(1) : exp(m[r] - m_new);
        const T p = visible ? exp(sr - m_new) : T(0);
        l[r] = l[r] * alpha + p;
#pragma unroll
        for (int c = 0; c < C; ++c) acc[r][c] *= alpha;
        m[r] = m_new;
        T pv = p;  // the weight that meets V: z_ij p_ij with dropout
        if constexpr (Drop) {
          if (visible && i < Sq) pv = attention_dropout_keep(drop, (bh * Sq + i) * Sk + j) ? p * kept : T(0);
        }
        Ps[(warp * kRows + r) * kBc + lane] = pv;
      }
      __syncwarp();  // the warp's rows of Ps are written before its lanes read all of them

      // acc[r][c] += Σ_j p_ij v_jd, d = lane + 32c (z_ij p_ij with dropout).
#pragma unroll 4
      for (int jj = 0; jj < kBc; ++jj) {
        T vj[C];
#pragma unroll
        for (int c = 0; c < C; ++c) vj[c] = Vs[jj * Dp + lane + 32 * c];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          const T p = Ps[(warp * kRows + r) * kBc + jj];
#pragma unroll
          for (int c = 0; c < C; ++c) acc[r][c] += p * vj[c];
        }
      }
      // Ps is written again only after the __syncthreads at the top of the next key tile.
    }

    // O = acc / l, lse = m + log l, with l summed over the lanes. l = 0 exactly when the
    // row saw no visible key (otherwise its max key alone adds exp(0) = 1).
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const T sum = warp_all(l[r], SumOp{});
      const int64_t i = i0 + warp * kRows + r;
      if (i < Sq) {
        const T inv = sum > T(0) ? T(1) / sum : T(0);
        T* orow = out + (bh * Sq + i) * D;
#pragma unroll
        for (int c = 0; c < C; ++c) {
          const int d = lane + 32 * c;
          if (d < D) orow[d] = acc[r][c] * inv;
        }
        if (lane == 0) lse[bh * Sq + i] = sum > T(0) ? m[r] + log(sum) : neg_inf;
      }
    }
  }
}

// ---- backward ----

// Δ_i = Σ_d dO_id O_id, a warp per row of the B·H·Sq rows (grid-stride, the row loop
// uniform within the warp, so the butterfly sees all 32 lanes).
template <class T>
__global__ void attention_flash_delta_kernel(const T* out, const T* dout, T* delta, int64_t rows, int D) {
  const RowGroup<false> g;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    T s = 0;
    for (int d = g.start; d < D; d += g.step) s += dout[r * D + d] * out[r * D + d];
    s = warp_all(s, SumOp{});
    if (g.start == 0) delta[r] = s;
  }
}

template <class T, int Dp>
constexpr size_t dkdv_smem_bytes() {
  return sizeof(T) * (2 * kBc * Dp + 2 * kBr * (Dp + 1) + 2 * kBc * kBr);
}

// One tile of 32 keys of one (b, h) per block iteration (t = bh · k_tiles + key tile); the
// warps own the keys (8 each) and the lanes stand for the 32 queries of a streamed tile.
template <class T, int Dp, bool Drop>
__global__ void __launch_bounds__(kThreads)
    attention_flash_dkdv_kernel(const T* q, const T* k, const T* v, const uint8_t* key_mask, const T* dout,
                                const T* lse, const T* delta, T* dk, T* dv, int64_t H, int64_t Sq, int64_t Sk, int D,
                                bool causal, T scale, int64_t k_tiles, int64_t n_tiles, AttentionDropout drop) {
  constexpr int C = Dp / 32;
  extern __shared__ __align__(16) unsigned char smem[];
  T* Ks = reinterpret_cast<T*>(smem);  // [kBc][Dp]      read by broadcast
  T* Vs = Ks + kBc * Dp;               // [kBc][Dp]      read by broadcast
  T* Qs = Vs + kBc * Dp;               // [kBr][Dp + 1]  lane i reads row i; all lanes read columns
  T* dOs = Qs + kBr * (Dp + 1);        // [kBr][Dp + 1]  likewise
  T* Ps = dOs + kBr * (Dp + 1);        // [kBc][kBr]     P_ij, row = key (warp w: 8w..8w+7), column = query
  T* dSs = Ps + kBc * kBr;             // [kBc][kBr]     dS_ij, likewise
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const T neg_inf = T(-INFINITY);
  [[maybe_unused]] const T kept = static_cast<T>(drop.scale);  // 1/(1−p), read only when Drop

  for (int64_t t = blockIdx.x; t < n_tiles; t += gridDim.x) {
    const int64_t bh = t / k_tiles, j0 = (t % k_tiles) * kBc, b = bh / H;
    const uint8_t* mask = key_mask ? key_mask + b * Sk : nullptr;
    const T* qh = q + bh * Sq * D;
    const T* doh = dout + bh * Sq * D;
    __syncthreads();  // the previous tile's reads of Ks and Vs are done
    load_tile<T, Dp>(Ks, Dp, k + bh * Sk * D, j0, Sk, D);
    load_tile<T, Dp>(Vs, Dp, v + bh * Sk * D, j0, Sk, D);

    bool key_seen[kRows];
    T dk_acc[kRows][C], dv_acc[kRows][C];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int64_t j = j0 + warp * kRows + r;
      key_seen[r] = j < Sk && (!mask || mask[j]);
#pragma unroll
      for (int c = 0; c < C; ++c) dk_acc[r][c] = dv_acc[r][c] = T(0);
    }
    // Under causal, queries i < j0 see none of keys j0..j0+31: start at the query tile
    // holding query j0. (With Sk > Sq the keys j >= Sq are seen by no query: no tile runs,
    // their dK and dV are the zeros written below.)
    const int64_t i_begin = causal ? (j0 / kBr) * kBr : 0;
    for (int64_t i0 = i_begin; i0 < Sq; i0 += kBr) {
      __syncthreads();  // every warp is done with the previous Q and dO tiles
      load_tile<T, Dp>(Qs, Dp + 1, qh, i0, Sq, D);
      load_tile<T, Dp>(dOs, Dp + 1, doh, i0, Sq, D);
      __syncthreads();

      // This lane's query i; lse = −∞ (a row that sees no key, or i past Sq) contributes nothing.
      const int64_t i = i0 + lane;
      const T lse_i = i < Sq ? lse[bh * Sq + i] : neg_inf;
      const T delta_i = i < Sq ? delta[bh * Sq + i] : T(0);
      // s[r] = q_i · k_j, dp[r] = dO_i · v_j for the warp's keys j = j0 + 8w + r.
      T s[kRows], dp[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) s[r] = dp[r] = T(0);
      const T* qrow = Qs + lane * (Dp + 1);
      const T* orow = dOs + lane * (Dp + 1);
#pragma unroll 8
      for (int d = 0; d < Dp; ++d) {
        const T qd = qrow[d], od = orow[d];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          s[r] += Ks[(warp * kRows + r) * Dp + d] * qd;
          dp[r] += Vs[(warp * kRows + r) * Dp + d] * od;
        }
      }
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const int64_t j = j0 + warp * kRows + r;
        const bool visible = key_seen[r] && lse_i != neg_inf && (!causal || j <= i);
        const T p = visible ? exp(s[r] * scale - lse_i) : T(0);
        if constexpr (Drop) {
          // visible implies i < Sq (lse_i = −∞ past it) and j < Sk (key_seen).
          const T z = visible && attention_dropout_keep(drop, (bh * Sq + i) * Sk + j) ? kept : T(0);
          Ps[(warp * kRows + r) * kBr + lane] = z * p;
          dSs[(warp * kRows + r) * kBr + lane] = p * (z * dp[r] - delta_i);
        } else {
          Ps[(warp * kRows + r) * kBr + lane] = p;
          dSs[(warp * kRows + r) * kBr + lane] = p * (dp[r] - delta_i);
        }
      }
      __syncwarp();  // the warp's rows of Ps and dSs are written before its lanes read them

      // dv[r][c] += Σ_i P_ij dO_id (z_ij P_ij with dropout),  dk[r][c] += Σ_i dS_ij q_id, d = lane + 32c.
#pragma unroll 4
      for (int ii = 0; ii < kBr; ++ii) {
        T qv[C], ov[C];
#pragma unroll
        for (int c = 0; c < C; ++c) {
          qv[c] = Qs[ii * (Dp + 1) + lane + 32 * c];
          ov[c] = dOs[ii * (Dp + 1) + lane + 32 * c];
        }
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          const T p = Ps[(warp * kRows + r) * kBr + ii], ds = dSs[(warp * kRows + r) * kBr + ii];
#pragma unroll
          for (int c = 0; c < C; ++c) {
            dv_acc[r][c] += p * ov[c];
            dk_acc[r][c] += ds * qv[c];
          }
        }
      }
    }

#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int64_t j = j0 + warp * kRows + r;
      if (j < Sk) {
#pragma unroll
        for (int c = 0; c < C; ++c) {
          const int d = lane + 32 * c;
          if (d < D) {
            dk[(bh * Sk + j) * D + d] = scale * dk_acc[r][c];
            dv[(bh * Sk + j) * D + d] = dv_acc[r][c];
          }
        }
      }
    }
  }
}

template <class T, int Dp>
constexpr size_t dq_smem_bytes() {
  return sizeof(T) * (2 * kBr * Dp + 2 * kBc * (Dp + 1) + kBr * kBc);
}

// One tile of 32 queries of one (b, h) per block iteration, as in the forward; the lanes
// stand for the keys of a streamed tile.
template <class T, int Dp, bool Drop>
__global__ void __launch_bounds__(kThreads)
    attention_flash_dq_kernel(const T* q, const T* k, const T* v, const uint8_t* key_mask, const T* dout,
                              const T* lse, const T* delta, T* dq, int64_t H, int64_t Sq, int64_t Sk, int D,
                              bool causal, T scale, int64_t q_tiles, int64_t n_tiles, AttentionDropout drop) {
  constexpr int C = Dp / 32;
  extern __shared__ __align__(16) unsigned char smem[];
  T* Qs = reinterpret_cast<T*>(smem);  // [kBr][Dp]      read by broadcast
  T* dOs = Qs + kBr * Dp;              // [kBr][Dp]      read by broadcast
  T* Ks = dOs + kBr * Dp;              // [kBc][Dp + 1]  lane j reads row j; all lanes read columns
  T* Vs = Ks + kBc * (Dp + 1);         // [kBc][Dp + 1]  lane j reads row j
  T* dSs = Vs + kBc * (Dp + 1);        // [kBr][kBc]     dS_ij; warp w has rows 8w..8w+7
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const T neg_inf = T(-INFINITY);
  [[maybe_unused]] const T kept = static_cast<T>(drop.scale);  // 1/(1−p), read only when Drop

  for (int64_t t = blockIdx.x; t < n_tiles; t += gridDim.x) {
    const int64_t bh = t / q_tiles, i0 = (t % q_tiles) * kBr, b = bh / H;
    const uint8_t* mask = key_mask ? key_mask + b * Sk : nullptr;
    const T* kh = k + bh * Sk * D;
    const T* vh = v + bh * Sk * D;
    __syncthreads();  // the previous tile's reads of Qs and dOs are done
    load_tile<T, Dp>(Qs, Dp, q + bh * Sq * D, i0, Sq, D);
    load_tile<T, Dp>(dOs, Dp, dout + bh * Sq * D, i0, Sq, D);

    T lse_r[kRows], delta_r[kRows], dq_acc[kRows][C];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int64_t i = i0 + warp * kRows + r;
      lse_r[r] = i < Sq ? lse[bh * Sq + i] : neg_inf;
      delta_r[r] = i < Sq ? delta[bh * Sq + i] : T(0);
#pragma unroll
      for (int c = 0; c < C; ++c) dq_acc[r][c] = T(0);
    }
    const int64_t kend = causal && i0 + kBr < Sk ? i0 + kBr : Sk;
    for (int64_t j0 = 0; j0 < kend; j0 += kBc) {
      __syncthreads();  // every warp is done with the previous K and V tiles
      load_tile<T, Dp>(Ks, Dp + 1, kh, j0, Sk, D);
      load_tile<T, Dp>(Vs, Dp + 1, vh, j0, Sk, D);
      __syncthreads();

      // s[r] = q_i · k_j, dp[r] = dO_i · v_j for this lane's key j and the warp's queries i.
      T s[kRows], dp[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) s[r] = dp[r] = T(0);
      const T* krow = Ks + lane * (Dp + 1);
      const T* vrow = Vs + lane * (Dp + 1);
#pragma unroll 8
      for (int d = 0; d < Dp; ++d) {
        const T kd = krow[d], vd = vrow[d];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          s[r] += Qs[(warp * kRows + r) * Dp + d] * kd;
          dp[r] += dOs[(warp * kRows + r) * Dp + d] * vd;
        }
      }
      const int64_t j = j0 + lane;
      const bool key_seen = j < Sk && (!mask || mask[j]);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const int64_t i = i0 + warp * kRows + r;
        const bool visible = key_seen && lse_r[r] != neg_inf && (!causal || j <= i);
        const T p = visible ? exp(s[r] * scale - lse_r[r]) : T(0);
        if constexpr (Drop) {
          // visible implies i < Sq (lse = −∞ past it) and j < Sk (key_seen).
          const T z = visible && attention_dropout_keep(drop, (bh * Sq + i) * Sk + j) ? kept : T(0);
          dSs[(warp * kRows + r) * kBc + lane] = p * (z * dp[r] - delta_r[r]);
        } else {
          dSs[(warp * kRows + r) * kBc + lane] = p * (dp[r] - delta_r[r]);
        }
      }
      __syncwarp();  // the warp's rows of dSs are written before its lanes read them

      // dq[r][c] += Σ_j dS_ij k_jd, d = lane + 32c.
#pragma unroll 4
      for (int jj = 0; jj < kBc; ++jj) {
        T kv[C];
#pragma unroll
        for (int c = 0; c < C; ++c) kv[c] = Ks[jj * (Dp + 1) + lane + 32 * c];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          const T ds = dSs[(warp * kRows + r) * kBc + jj];
#pragma unroll
          for (int c = 0; c < C; ++c) dq_acc[r][c] += ds * kv[c];
        }
      }
    }

#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int64_t i = i0 + warp * kRows + r;
      if (i < Sq) {
#pragma unroll
        for (int c = 0; c < C; ++c) {
          const int d = lane + 32 * c;
          if (d < D) dq[(bh * Sq + i) * D + d] = scale * dq_acc[r][c];
        }
      }
    }
  }
}

// ---- launches ----

// Blocks for a grid-stride loop over n tiles: one tile per block up to 65536 blocks (far
// more than an H100 holds at once), and grid.x never near its limit whatever B·H is.
static unsigned tile_grid(int64_t n) {
  const int64_t cap = int64_t(1) << 16;
  return static_cast<unsigned>(n < 1 ? 1 : (n > cap ? cap : n));
}

// A block may use more than 48 KiB of dynamic shared memory only when the kernel is told so
// (per device, so it is said before every launch that needs it; the call is cheap).
template <class Kernel>
static void allow_shared_bytes(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    MMG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

static int64_t tiles_of(int64_t n, int64_t tile) { return (n + tile - 1) / tile; }

// The instance with dropout only when p > 0 (Drop = false has no dropout code at all).
template <class T, int Dp, bool Drop>
static void flash_forward_launch(const T* q, const T* k, const T* v, const uint8_t* key_mask, T* out, T* lse,
                                 int64_t BH, int64_t H, int64_t Sq, int64_t Sk, int D, bool causal, T scale,
                                 const AttentionDropout& drop) {
  const int64_t q_tiles = tiles_of(Sq, kBr), n = BH * q_tiles;
  const size_t bytes = forward_smem_bytes<T, Dp>();
  allow_shared_bytes(attention_flash_forward_kernel<T, Dp, Drop>, bytes);
  attention_flash_forward_kernel<T, Dp, Drop><<<tile_grid(n), kThreads, bytes, current_stream()>>>(
      q, k, v, key_mask, out, lse, H, Sq, Sk, D, causal, scale, q_tiles, n, drop);
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T, int Dp>
static void flash_forward(const T* q, const T* k, const T* v, const uint8_t* key_mask, T* out, T* lse, int64_t BH,
                          int64_t H, int64_t Sq, int64_t Sk, int D, bool causal, T scale,
                          const AttentionDropout& drop) {
  if (drop.p > 0)
    flash_forward_launch<T, Dp, true>(q, k, v, key_mask, out, lse, BH, H, Sq, Sk, D, causal, scale, drop);
  else
    flash_forward_launch<T, Dp, false>(q, k, v, key_mask, out, lse, BH, H, Sq, Sk, D, causal, scale, drop);
}

template <class T, int Dp, bool Drop>
static void flash_backward_launch(const T* q, const T* k, const T* v, const uint8_t* key_mask, const T* dout,
                                  const T* lse, const T* delta, T* dq, T* dk, T* dv, int64_t BH, int64_t H, int64_t Sq,
                                  int64_t Sk, int D, bool causal, T scale, const AttentionDropout& drop) {
  const int64_t k_tiles = tiles_of(Sk, kBc), nk = BH * k_tiles;
  const size_t dkdv_bytes = dkdv_smem_bytes<T, Dp>();
  allow_shared_bytes(attention_flash_dkdv_kernel<T, Dp, Drop>, dkdv_bytes);
  attention_flash_dkdv_kernel<T, Dp, Drop><<<tile_grid(nk), kThreads, dkdv_bytes, current_stream()>>>(
      q, k, v, key_mask, dout, lse, delta, dk, dv, H, Sq, Sk, D, causal, scale, k_tiles, nk, drop);
  MMG_CUDA_LAUNCH_CHECK();

  const int64_t q_tiles = tiles_of(Sq, kBr), nq = BH * q_tiles;
  const size_t dq_bytes = dq_smem_bytes<T, Dp>();
  allow_shared_bytes(attention_flash_dq_kernel<T, Dp, Drop>, dq_bytes);
  attention_flash_dq_kernel<T, Dp, Drop><<<tile_grid(nq), kThreads, dq_bytes, current_stream()>>>(
      q, k, v, key_mask, dout, lse, delta, dq, H, Sq, Sk, D, causal, scale, q_tiles, nq, drop);
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T, int Dp>
static void flash_backward(const T* q, const T* k, const T* v, const uint8_t* key_mask, const T* dout, const T* lse,
                           const T* delta, T* dq, T* dk, T* dv, int64_t BH, int64_t H, int64_t Sq, int64_t Sk, int D,
                           bool causal, T scale, const AttentionDropout& drop) {
  if (drop.p > 0)
    flash_backward_launch<T, Dp, true>(q, k, v, key_mask, dout, lse, delta, dq, dk, dv, BH, H, Sq, Sk, D, causal, scale,
                                       drop);
  else
    flash_backward_launch<T, Dp, false>(q, k, v, key_mask, dout, lse, delta, dq, dk, dv, BH, H, Sq, Sk, D, causal,
                                        scale, drop);
}

template <class T>
void attention_flash_forward(const T* q, const T* k, const T* v, const uint8_t* key_mask, T* out, T* lse, int64_t B,
                             int64_t H, int64_t Sq, int64_t Sk, int64_t D, bool causal, T scale,
                             const AttentionDropout& drop) {
  const int64_t BH = B * H;
  if (BH * Sq == 0) return;
  const int d = static_cast<int>(D);
  // The head dim picks the instance: 32, 64 or 128 columns, the extra ones zero-filled.
  if (D <= 32)
    flash_forward<T, 32>(q, k, v, key_mask, out, lse, BH, H, Sq, Sk, d, causal, scale, drop);
  else if (D <= 64)
    flash_forward<T, 64>(q, k, v, key_mask, out, lse, BH, H, Sq, Sk, d, causal, scale, drop);
  else
    flash_forward<T, 128>(q, k, v, key_mask, out, lse, BH, H, Sq, Sk, d, causal, scale, drop);
}

template <class T>
void attention_flash_backward(const T* q, const T* k, const T* v, const uint8_t* key_mask, const T* out,
                              const T* dout, const T* lse, T* delta, T* dq, T* dk, T* dv, int64_t B, int64_t H,
                              int64_t Sq, int64_t Sk, int64_t D, bool causal, T scale,
                              const AttentionDropout& drop) {
  const int64_t BH = B * H, rows = BH * Sq;
  if (BH == 0) return;
  const int d = static_cast<int>(D);
  // With Sq = 0 there is no Δ to form, and the dK/dV kernel writes zeros (no query tile runs).
  if (rows > 0) {
    attention_flash_delta_kernel<T><<<grid_for(rows * 32, kRowBlock), kRowBlock, 0, current_stream()>>>(
        out, dout, delta, rows, d);
    MMG_CUDA_LAUNCH_CHECK();
  }
  if (D <= 32)
    flash_backward<T, 32>(q, k, v, key_mask, dout, lse, delta, dq, dk, dv, BH, H, Sq, Sk, d, causal, scale, drop);
  else if (D <= 64)
    flash_backward<T, 64>(q, k, v, key_mask, dout, lse, delta, dq, dk, dv, BH, H, Sq, Sk, d, causal, scale, drop);
  else
    flash_backward<T, 128>(q, k, v, key_mask, dout, lse, delta, dq, dk, dv, BH, H, Sq, Sk, d, causal, scale, drop);
}

template void attention_flash_forward<float>(const float*, const float*, const float*, const uint8_t*, float*, float*,
                                             int64_t, int64_t, int64_t, int64_t, int64_t, bool, float,
                                             const AttentionDropout&);
template void attention_flash_forward<double>(const double*, const double*, const double*, const uint8_t*, double*,
                                              double*, int64_t, int64_t, int64_t, int64_t, int64_t, bool, double,
                                              const AttentionDropout&);
template void attention_flash_backward<float>(const float*, const float*, const float*, const uint8_t*, const float*,
                                              const float*, const float*, float*, float*, float*, float*, int64_t,
                                              int64_t, int64_t, int64_t, int64_t, bool, float,
                                              const AttentionDropout&);
template void attention_flash_backward<double>(const double*, const double*, const double*, const uint8_t*,
                                               const double*, const double*, const double*, double*, double*, double*,
                                               double*, int64_t, int64_t, int64_t, int64_t, int64_t, bool, double,
                                               const AttentionDropout&);

}  // namespace mmg::cuda
