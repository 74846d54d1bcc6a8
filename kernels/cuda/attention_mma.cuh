// The pieces of the tensor-core flash attention that v3 (attention_mma.cu) and v4
// (attention_short.cu) share: the copies between global and padded shared tiles, the forward's
// step over one key tile for one warp's 16 queries (S = Q·Kᵀ, the online softmax in exp2 units,
// dropout from the flat index, O += P·V) and the forward's final store of O and lse, and the
// host-side launch helpers. The file header of attention_mma.cu explains the fragments, the
// shared tiles and the arithmetic; tests/kernels/mma_emulation.h emulates these same functions
// lane by lane on the host.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "kernels/attention.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/mma_fragment.h"
#include "kernels/cuda/mma_ops.cuh"

namespace mmg::cuda::flash_mma {

using namespace mma_ops;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ---- global ↔ shared ----

// Rows [r0, r0 + R) of a row-major [rows, D] matrix into a shared tile of R rows × Dp columns
// (row stride mma_ld(Dp)), by the block's kMmaThreads threads; rows ≥ rows and columns ≥ D
// become zeros. vec: 16-byte copies (D % 8 == 0 and 16-byte aligned pointers).
template <int Dp>
__device__ __forceinline__ void load_rows(uint16_t* tile, const uint16_t* m, int64_t r0, int64_t rows, int R, int D,
                                          bool vec) {
  constexpr int ld = mma_ld(Dp);
  if (vec) {
    constexpr int chunks = Dp / 8;
    for (int e = threadIdx.x; e < R * chunks; e += kMmaThreads) {
      const int r = e / chunks, c = (e % chunks) * 8;
      const int64_t row = r0 + r;
      uint4 x = make_uint4(0, 0, 0, 0);
      if (row < rows && c < D) x = *reinterpret_cast<const uint4*>(m + row * D + c);  // D % 8 == 0: c + 8 ≤ D
      *reinterpret_cast<uint4*>(tile + r * ld + c) = x;
    }
  } else {
    for (int e = threadIdx.x; e < R * Dp; e += kMmaThreads) {
      const int r = e / Dp, c = e % Dp;
      const int64_t row = r0 + r;
      tile[r * ld + c] = (row < rows && c < D) ? m[row * D + c] : uint16_t(0);
    }
  }
}

// key_ok[j] = key j0 + j exists and is not masked, for j < n.
__device__ __forceinline__ void load_key_ok(uint8_t* key_ok, const uint8_t* mask, int64_t j0, int64_t Sk, int n) {
  for (int j = threadIdx.x; j < n; j += kMmaThreads) key_ok[j] = j0 + j < Sk && (!mask || mask[j0 + j]);
}

// Row `row` of a [rows, D] 16-bit matrix gets the two values of one C register pair at columns
// col, col + 1 (col even), rounded to T; columns ≥ D are not written.
template <class T>
__device__ __forceinline__ void store_pair(uint16_t* m, int64_t row, int col, int D, float x0, float x1) {
  const uint32_t p = pack2<T>(x0, x1);
  uint16_t* at = m + row * D + col;
  if ((D & 1) == 0) {
    if (col < D) *reinterpret_cast<uint32_t*>(at) = p;  // D even: col + 1 < D too, and 4-byte aligned
  } else {
    if (col < D) at[0] = static_cast<uint16_t>(p & 0xffffu);
    if (col + 1 < D) at[1] = static_cast<uint16_t>(p >> 16);
  }
}

// ---- the forward, one warp's 16 queries ----

// One key tile for the warp's queries [w0, w0 + 16), whose Q fragments are qf: keys
// [j0, j0 + keys) of a tile Bc wide, with Ks and Vs at the tile's first row (row stride
// mma_ld(Dp)) and key_ok at its first key. keys is a multiple of 16, at most Bc: the n8 tiles
// and k-steps past it are skipped (their keys are hidden: past Sk, or under causal past the
// warp's last query), which v4 uses to stop a ragged last tile at a multiple of 16; v3 passes
// keys = Bc, and the tests fold away.
//   S = Q Kᵀ (scaled to log2 units, −∞ where hidden), m ← max(m, row max), l and O rescaled by
//   exp2(m_old − m), p = exp2(s − m) summed into l, O += (z·p) V with z the dropout factor.
// m, l: the running max (log2 units) and this lane's share of the row sum of rows group (h = 0)
// and group + 8 (h = 1); o: O's C fragments. With Drop, weight (i, j) of (b, h) = bh is kept when
// attention_dropout_keep(drop, (bh·Sq + i)·Sk + j) and then scaled by kept = 1/(1−p); drop is
// the kernel's parameter, by reference, so that it stays in the parameter space.
template <class T, int Dp, int Bc, bool Drop>
__device__ __forceinline__ void forward_tile(const uint32_t (&qf)[Dp / 16][4], const uint16_t* Ks, const uint16_t* Vs,
                                             const uint8_t* key_ok, int64_t j0, int keys, int64_t w0, bool causal,
                                             float scale2, int64_t bh, int64_t Sq, int64_t Sk,
                                             const AttentionDropout& drop, float kept, float (&m)[2], float (&l)[2],
                                             float (&o)[Dp / 8][4], int lane) {
  constexpr int ld = mma_ld(Dp);
  constexpr int KD = Dp / 16;  // k-steps over the head dim (Q·Kᵀ)
  constexpr int NS = Bc / 8;   // n8 tiles of S: 8 keys each
  constexpr int KS = Bc / 16;  // k-steps over the keys (P·V)
  constexpr int NO = Dp / 8;   // n8 tiles of O: 8 head-dim columns each
  const float neg_inf = -INFINITY;

  // S = Q Kᵀ for the warp's 16 queries and the tile's keys.
  float s[NS][4];
#pragma unroll
  for (int n = 0; n < NS; ++n)
#pragma unroll
    for (int r = 0; r < 4; ++r) s[n][r] = 0.f;
#pragma unroll
  for (int kk = 0; kk < KD; ++kk)
#pragma unroll
    for (int n = 0; n < NS; ++n) {
      if (n * 8 >= keys) continue;
      uint32_t bk[2];
      load_b_nk(bk, Ks, ld, n * 8, kk * 16, lane);
      mma_16816<T>(s[n], qf[kk], bk);
    }

  // Scale to log2 units, hide what is not visible, and take each row's max.
  float mx[2] = {neg_inf, neg_inf};
#pragma unroll
  for (int n = 0; n < NS; ++n)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const MmaIndex e = mma_c_element(lane, r);
      const int jl = n * 8 + e.col;
      const bool visible = n * 8 < keys && key_ok[jl] && (!causal || j0 + jl <= w0 + e.row);
      s[n][r] = visible ? s[n][r] * scale2 : neg_inf;
      mx[r >> 1] = fmaxf(mx[r >> 1], s[n][r]);
    }
  float alpha[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float m_new = fmaxf(m[h], quad_max(mx[h]));  // the same in the row's 4 lanes
    alpha[h] = m_new == neg_inf ? 1.f : exp2f(m[h] - m_new);
    m[h] = m_new;
    l[h] *= alpha[h];
  }
#pragma unroll
  for (int n = 0; n < NO; ++n)
#pragma unroll
    for (int r = 0; r < 4; ++r) o[n][r] *= alpha[r >> 1];

  // p = exp2(s − m): l sums it, and s is overwritten by the weight that meets V (z·p).
#pragma unroll
  for (int n = 0; n < NS; ++n)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const float p = s[n][r] == neg_inf ? 0.f : exp2f(s[n][r] - m[r >> 1]);
      l[r >> 1] += p;
      float pv = p;
      if constexpr (Drop) {
        const MmaIndex e = mma_c_element(lane, r);
        const int64_t i = w0 + e.row, j = j0 + n * 8 + e.col;
        if (p != 0.f && i < Sq) pv = attention_dropout_keep(drop, (bh * Sq + i) * Sk + j) ? p * kept : 0.f;
      }
      s[n][r] = pv;
    }

  // O += P V: P from the registers (16 keys per k-step), V's rows are the k.
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
    if (kk * 16 >= keys) continue;
    uint32_t pa[4];
    a_from_c<T>(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
    for (int n = 0; n < NO; ++n) {
      uint32_t bv[2];
      load_b_kn(bv, Vs, ld, kk * 16, n * 8, lane);
      mma_16816<T>(o[n], pa, bv);
    }
  }
}

// The warp's rows [w0, w0 + 16) of one (b, h) after the last key tile: O = acc / l into out_bh
// ([Sq, D], T) and lse = (m + log2 l)·ln 2 into lse_bh ([Sq], f32); l = 0 exactly when the row
// saw no visible key (zero output, lse = −∞). Rows ≥ Sq are not written.
template <class T, int Dp>
__device__ __forceinline__ void forward_store(const float (&o)[Dp / 8][4], const float (&m)[2], const float (&l)[2],
                                              uint16_t* out_bh, float* lse_bh, int64_t w0, int64_t Sq, int D,
                                              int lane) {
  constexpr int NO = Dp / 8;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float sum = quad_sum(l[h]);
    const int64_t i = w0 + mma_group(lane) + 8 * h;
    if (i < Sq) {
      const float inv = sum > 0.f ? 1.f / sum : 0.f;
#pragma unroll
      for (int n = 0; n < NO; ++n)
        store_pair<T>(out_bh, i, n * 8 + 2 * mma_quad(lane), D, o[n][2 * h] * inv, o[n][2 * h + 1] * inv);
      if (mma_quad(lane) == 0) lse_bh[i] = sum > 0.f ? (m[h] + log2f(sum)) * kLn2 : -INFINITY;
    }
  }
}

// ---- host side ----

// Blocks for a grid-stride loop over n tiles (as v2: at most 65536).
inline unsigned tile_grid(int64_t n) {
  const int64_t cap = int64_t(1) << 16;
  return static_cast<unsigned>(n < 1 ? 1 : (n > cap ? cap : n));
}

template <class Kernel>
void allow_shared_bytes(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    MMG_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

inline int64_t tiles_of(int64_t n, int64_t tile) { return (n + tile - 1) / tile; }

// mma.sync on 16-bit inputs needs sm_80; the kernels are built for sm_80 and sm_90, but a
// driver could still JIT the PTX for an older device, where the instruction does not exist.
// `what` names the version in the error ("attention v3").
inline void require_mma_device(const char* what) {
  int dev = 0, major = 0, minor = 0;
  MMG_CUDA_CHECK(cudaGetDevice(&dev));
  MMG_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  MMG_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  if (major < 8)
    throw_error(__FILE__, __LINE__,
                std::string(what) + " (mma.sync on bf16/f16) needs compute capability 8.0 or newer; cuda:" +
                    std::to_string(dev) + " has " + std::to_string(major) + "." + std::to_string(minor));
}

// 16-byte copies need D a multiple of 8 and every matrix 16-byte aligned.
inline bool vec_copies(int64_t D, std::initializer_list<const void*> ptrs) {
  if (D % 8 != 0) return false;
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

// The kernels see bf16 and f16 as their bits.
template <class T>
const uint16_t* bits(const T* p) {
  return reinterpret_cast<const uint16_t*>(p);
}
template <class T>
uint16_t* out_bits(T* p) {
  return reinterpret_cast<uint16_t*>(p);
}

}  // namespace mmg::cuda::flash_mma
