// CLIP's symmetric InfoNCE on tensor cores, version 3 of the clip_loss family: the forward and
// backward of kernels/cuda/contrastive.h (math: kernels/losses.h) for bf16 and f16 embeddings,
// every product on mma.sync.aligned.m16n8k16 (sm_80 and newer) accumulating in f32.
//
// ---- what is computed ----
// The algorithm is v2's (kernels/cuda/contrastive.cu): with s = exp(t) and L = s·u·vᵀ, never
// stored,
//   forward    r_a = log Σ_b exp L_ab and c_b = log Σ_a exp L_ab by an online log-sum-exp over
//              tiles of 64 columns (c is the same kernel on (v, u): Lᵀ = s·v·uᵀ), the matching
//              scores L_aa caught where the row pass meets the diagonal, and
//              loss = Σ_a (r_a + c_a − 2·L_aa) / (2N), summed in double in one block;
//   backward   G_ab = g/(2N)·(P_ab + Q_ab − 2δ_ab),  P_ab = exp(L_ab − r_a),  Q_ab = exp(L_ab − c_b),
//              recomputed per tile from the saved r and c;  d u = s·G·v,  d v = s·Gᵀ·u (the
//              same kernel on (v, u, c, r): Gᵀ has G's formula with the roles swapped),
//              d t = Σ_ab G_ab·L_ab (each row's share in double, then one block sums them).
// What changes from v2 is the arithmetic:
//   - u, v (and d u, d v) are 16-bit T in memory and shared memory; t, g, r, c, the loss and
//     d t are f32;
//   - u·vᵀ and G·v are mma.m16n8k16 with f32 accumulators; the softmax terms (max, exp2, sums)
//     are f32, in log2 units (scores kept as L·log2 e, lse stored in natural log);
//   - G enters G·v rounded to T, as Ĝ = σ·(P + Q − 2δ) with σ = 2^13 (kClipMmaGradScale,
//     kernels/cuda/clip_mma_tiling.h says why: f16's range), and s·g/(2N)/σ scales the f32
//     sums. So the error is one 16-bit rounding of each weight, not of the sums.
//
// ---- fragments (kernels/cuda/mma_fragment.h has the index functions) ----
// Scores, per warp: A = 16 rows of u from a row-major shared chunk (load_a: a register is two
// neighbours of one row), B = the tile's rows of v read as vᵀ (load_b_nk: B[k][n] = v[n][k],
// again two neighbours of one row); C fragments in f32 (mma_c_element: lane (group, quad) holds
// rows group and group + 8, columns 2·quad, 2·quad + 1 of each n8 tile).
// Gradients, per warp: the C fragments of 16 rows × 64 columns of G are the A fragments of G·v,
// 16 columns = two n8 tiles side by side (mma_a_from_c; a_from_c in mma_ops.cuh), rounded to T by cvt.rn.{bf16,f16}x2;
// B = v's tile rows as [k = b][n = column of d] (load_b_kn: two 16-bit loads per register).
//
// ---- tiles, warps, shared memory ----
// Launch: ⌈N/64⌉ blocks of 128 threads (4 warps) for each pass; warp w owns rows a0 + 16w … +15
// (the m of one mma). The other side streams past in tiles of 64 rows; both come through shared
// memory by chunks of 64 elements of d, so any d (1 … 1024 and beyond) runs with one fixed
// layout: As [64][72] and Bs [64][72] 16-bit, rows padded by 8 elements (16-byte aligned rows for
// 16-byte copies, conflict-free fragment loads as in mma_fragment.h), 18,432 bytes, static (no
// opt-in). Per warp per tile and chunk: scores 4 k16 steps × 8 n8 tiles = 32 mma.
//   lse kernel    per tile: scores [16 × 64] over d (32 registers), then the online lse: the
//                 row max of the tile by quad shuffles, the lane's share of the row sum rescaled.
//   grad kernel   per tile: scores as above, G in registers (16 A-fragment registers), then for
//                 each chunk of 64 columns of d: the chunk of the B tile into Bs, and 8 n8 tiles
//                 × 4 k16 steps of Ĝ·B. The sums over the tiles are f32: a lane keeps its
//                 elements of d A in `partial` ([N, d] f32 in device memory, O(N·d)) — written at
//                 the first tile, added to at the others (the same lane, the same elements, so
//                 no race and a fixed order) and, at the last tile, scaled and rounded to T into
//                 d A. d ≤ 256 or so would fit in registers; the scratch keeps any d on one path.
// Warps whose 16 rows all lie past N load their share of every chunk and skip the products, so
// every __syncthreads is reached by the whole block. Rows past N and columns past d are zeros
// in shared memory; scores against columns past N are −∞ (lse) or G = 0 (grad).
// Global to shared: 16-byte copies when d % 8 == 0 and the pointers are 16-byte aligned, else
// element by element. The copies are synchronous: cp.async double buffering is the next step.
//
// Registers (ptxas -v, nvcc 13.0, bf16 and f16 alike; no spills, no stack): lse kernel 90 (sm_80)
// / 88 (sm_90) — 5 blocks of 128 per SM; grad kernel 154 / 161 — 3 blocks; total kernel ≤ 32.
// Shared: 18,432 bytes per block for both tile kernels, 2,048 for the total.
//
// Work: forward 2 passes × 2·N²·d; backward 2 passes × 4·N²·d (scores recomputed, then G·B).
// Deterministic: every output element has one writer and every sum a fixed order.
#include <cuda_runtime.h>

#include <cmath>
#include <initializer_list>
#include <string>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/clip_mma_tiling.h"
#include "kernels/cuda/contrastive.h"
#include "kernels/cuda/mma_ops.cuh"

namespace mmg::cuda {
namespace clip_mma {

using namespace mma_ops;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr int kTotalThreads = 256;
constexpr int NT = kClipMmaScoreTiles;  // n8 tiles of scores per warp and tile (8)

// ---- global → shared ----

// Rows [r0, r0 + R) × columns [k0, k0 + 64) of a row-major [rows, d] matrix into a shared
// chunk (row stride kClipMmaLd); rows ≥ rows and columns ≥ d become zeros. vec: 16-byte copies.
template <int R>
__device__ void load_chunk(uint16_t* tile, const uint16_t* m, int64_t r0, int64_t rows, int64_t d, int64_t k0,
                           bool vec) {
  if (vec) {
    constexpr int per_row = kClipMmaChunk / 8;
    for (int e = threadIdx.x; e < R * per_row; e += kClipMmaThreads) {
      const int r = e / per_row, c = (e % per_row) * 8;
      const int64_t row = r0 + r, k = k0 + c;
      uint4 x = make_uint4(0, 0, 0, 0);
      if (row < rows && k < d) x = *reinterpret_cast<const uint4*>(m + row * d + k);  // d % 8 == 0: k + 8 ≤ d
      *reinterpret_cast<uint4*>(tile + clip_mma_smem_index(r, c)) = x;
    }
  } else {
    for (int e = threadIdx.x; e < R * kClipMmaChunk; e += kClipMmaThreads) {
      const int r = e / kClipMmaChunk, c = e % kClipMmaChunk;
      const int64_t row = r0 + r, k = k0 + c;
      tile[clip_mma_smem_index(r, c)] = (row < rows && k < d) ? m[row * d + k] : uint16_t(0);
    }
  }
}

// ---- the score tile ----

// sc = ⟨A_a, B_b⟩ in f32 C fragments for the warp's 16 rows a and the tile's 64 rows b (n8 tile
// n: b = b0 + 8n + column). Called by every thread of the block (it synchronises); a warp with
// live == false loads its share and skips the products.
template <class T>
__device__ void score_tile(float (&sc)[NT][4], const uint16_t* A, const uint16_t* B, int64_t N, int64_t d,
                           int64_t a0, int64_t b0, uint16_t* As, uint16_t* Bs, bool vec, bool live) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int n = 0; n < NT; ++n)
#pragma unroll
    for (int r = 0; r < 4; ++r) sc[n][r] = 0.f;
  for (int64_t k0 = 0; k0 < d; k0 += kClipMmaChunk) {
    __syncthreads();  // every warp is done with the previous chunk (or the previous tile's Bs)
    load_chunk<kClipMmaRows>(As, A, a0, N, d, k0, vec);
    load_chunk<kClipMmaStream>(Bs, B, b0, N, d, k0, vec);
    __syncthreads();
    if (!live) continue;
#pragma unroll
    for (int kk = 0; kk < kClipMmaChunkSteps; ++kk) {
      uint32_t af[4];
      load_a(af, As, kClipMmaLd, warp * kMmaWarpRows, kk * 16, lane);
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        uint32_t bf[2];
        load_b_nk(bf, Bs, kClipMmaLd, n * 8, kk * 16, lane);
        mma_16816<T>(sc[n], af, bf);
      }
    }
  }
}

// ---- forward ----

// lse[a] = log Σ_b exp(s·⟨A_a, B_b⟩), s = exp(log_scale[0]); diag[a] = s·⟨A_a, B_a⟩ when diag is
// not null (the row pass).
template <class T>
__global__ void __launch_bounds__(kClipMmaThreads)
    clip_mma_lse_kernel(const uint16_t* A, const uint16_t* B, int64_t N, int64_t d, const float* log_scale, float* lse,
                        float* diag, bool vec) {
  __shared__ __align__(16) uint16_t As[kClipMmaRows * kClipMmaLd];
  __shared__ __align__(16) uint16_t Bs[kClipMmaStream * kClipMmaLd];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float s = expf(log_scale[0]), s2 = s * kLog2e;
  const float neg_inf = -INFINITY;
  const int64_t a0 = int64_t(blockIdx.x) * kClipMmaRows;
  const bool live = a0 + warp * kMmaWarpRows < N;  // the same for the whole warp
  // Per lane, rows group (h = 0) and group + 8 (h = 1): the running max in log2 units (the
  // same in the row's 4 lanes) and this lane's share of Σ exp2(x − max).
  float m[2] = {neg_inf, neg_inf}, l[2] = {0.f, 0.f};
  for (int64_t b0 = 0; b0 < N; b0 += kClipMmaStream) {
    float sc[NT][4];
    score_tile<T>(sc, A, B, N, d, a0, b0, As, Bs, vec, live);
    if (!live) continue;  // nothing below synchronises the block
    float mx[2] = {neg_inf, neg_inf};
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const ClipMmaPair p = clip_mma_score_pair(a0, b0, warp, lane, n, r);
        if (diag != nullptr && p.a == p.b && p.a < N) diag[p.a] = s * sc[n][r];
        const float x = p.b < N ? sc[n][r] * s2 : neg_inf;
        sc[n][r] = x;
        mx[r >> 1] = fmaxf(mx[r >> 1], x);
      }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      // Column b0 < N is in every tile, so the row's max over its 4 lanes is finite.
      const float m_new = fmaxf(m[h], quad_max(mx[h]));
      l[h] *= m[h] == neg_inf ? 0.f : exp2f(m[h] - m_new);
      m[h] = m_new;
    }
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int r = 0; r < 4; ++r)
        if (sc[n][r] != neg_inf) l[r >> 1] += exp2f(sc[n][r] - m[r >> 1]);
  }
  if (!live) return;  // past the last __syncthreads
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float total = quad_sum(l[h]);
    const int64_t a = a0 + warp * kMmaWarpRows + mma_group(lane) + 8 * h;
    if (mma_quad(lane) == 0 && a < N) lse[a] = (m[h] + log2f(total)) * kLn2;
  }
}

// ---- backward ----

// dA = s·G·B with G_ab = g/(2N)·(exp(L_ab − lseA_a) + exp(L_ab − lseB_b) − 2δ_ab), L = s·A·Bᵀ,
// g = grad_loss[0]; partial: [N, d] f32 scratch; dt_rows[a] = Σ_b G_ab·L_ab when not null.
// __launch_bounds__(…, 1): without the 1, ptxas held this kernel to 128 registers and spilled
// 56 bytes (nvcc 13.0); with it, 154 (sm_80) / 161 (sm_90) and no spills — 3 blocks per SM.
template <class T>
__global__ void __launch_bounds__(kClipMmaThreads, 1)
    clip_mma_grad_kernel(const uint16_t* A, const uint16_t* B, int64_t N, int64_t d, const float* log_scale,
                         const float* lseA, const float* lseB, const float* grad_loss, uint16_t* dA, float* partial,
                         double* dt_rows, bool vec) {
  __shared__ __align__(16) uint16_t As[kClipMmaRows * kClipMmaLd];
  __shared__ __align__(16) uint16_t Bs[kClipMmaStream * kClipMmaLd];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float s = expf(log_scale[0]), s2 = s * kLog2e;
  const double coef = double(grad_loss[0]) / (2.0 * double(N));                  // g/(2N)
  const float out_scale = static_cast<float>(double(s) * coef / kClipMmaGradScale);  // s·g/(2N)/σ
  const int64_t a0 = int64_t(blockIdx.x) * kClipMmaRows;
  const int64_t w0 = a0 + warp * kMmaWarpRows;
  const bool live = w0 < N;
  const int64_t last_b0 = ((N - 1) / kClipMmaStream) * kClipMmaStream;
  float lse2_a[2];  // lseA of rows group, group + 8, in log2 units
  double dt[2] = {0.0, 0.0};
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t a = w0 + mma_group(lane) + 8 * h;
    lse2_a[h] = a < N ? lseA[a] * kLog2e : 0.f;
  }
  for (int64_t b0 = 0; b0 < N; b0 += kClipMmaStream) {
    float sc[NT][4];
    score_tile<T>(sc, A, B, N, d, a0, b0, As, Bs, vec, live);
    uint32_t gf[kClipMmaStreamSteps][4] = {};  // Ĝ as the A fragments of Ĝ·B
    if (live) {
      float dt_tile[2] = {0.f, 0.f};  // Σ (P + Q − 2δ)·L·log2 e over this lane's columns
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const ClipMmaPair p = clip_mma_score_pair(a0, b0, warp, lane, n, r);
          float gh = 0.f;  // pairs outside the N×N matrix add nothing
          if (p.a < N && p.b < N) {
            const float x = sc[n][r] * s2;  // L·log2 e
            gh = exp2f(x - lse2_a[r >> 1]) + exp2f(x - lseB[p.b] * kLog2e);
            if (p.a == p.b) gh -= 2.f;
            dt_tile[r >> 1] += gh * x;
          }
          sc[n][r] = gh * kClipMmaGradScale;
        }
      dt[0] += double(dt_tile[0]);
      dt[1] += double(dt_tile[1]);
#pragma unroll
      for (int ks = 0; ks < kClipMmaStreamSteps; ++ks) a_from_c<T>(gf[ks], sc[2 * ks], sc[2 * ks + 1]);
    }
    for (int64_t k0 = 0; k0 < d; k0 += kClipMmaChunk) {
      __syncthreads();  // every warp is done with Bs (the scores, or the previous chunk)
      load_chunk<kClipMmaStream>(Bs, B, b0, N, d, k0, vec);
      __syncthreads();
      if (!live) continue;
#pragma unroll
      for (int n = 0; n < kClipMmaChunkTiles; ++n) {
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int ks = 0; ks < kClipMmaStreamSteps; ++ks) {
          uint32_t bf[2];
          load_b_kn(bf, Bs, kClipMmaLd, ks * 16, n * 8, lane);
          mma_16816<T>(acc, gf[ks], bf);
        }
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const ClipMmaOut o = clip_mma_grad_out(a0, k0, warp, lane, n, r);
          if (o.a < N && o.k < d) {
            float* p = partial + o.a * d + o.k;
            const float sum = b0 == 0 ? acc[r] : *p + acc[r];
            if (b0 == last_b0)
              dA[o.a * d + o.k] = T(out_scale * sum).bits;
            else
              *p = sum;
          }
        }
      }
    }
  }
  if (dt_rows == nullptr || !live) return;  // past the last __syncthreads; the quad is in one warp
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const double total = quad_sum(dt[h]);
    const int64_t a = w0 + mma_group(lane) + 8 * h;
    if (mma_quad(lane) == 0 && a < N) dt_rows[a] = total * coef * double(kLn2);
  }
}

// ---- scalars from per-row terms ----

// out[0] = factor · Σ_i term(i), in double: 256 strided shares, then a tree.
template <class Term>
__global__ void __launch_bounds__(kTotalThreads) clip_mma_total_kernel(Term term, int64_t n, double factor,
                                                                      float* out) {
  __shared__ double partial[kTotalThreads];
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kTotalThreads) sum += term(i);
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int stride = kTotalThreads / 2; stride > 0; stride /= 2) {
    if (int(threadIdx.x) < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = static_cast<float>(partial[0] * factor);
}

// r_i + c_i − 2·L_ii: twice the loss of pair i.
struct LossTerm {
  const float* row_lse;
  const float* col_lse;
  const float* diag;
  __device__ double operator()(int64_t i) const {
    return double(row_lse[i]) + double(col_lse[i]) - 2.0 * double(diag[i]);
  }
};

struct RowTerm {
  const double* x;
  __device__ double operator()(int64_t i) const { return x[i]; }
};

// ---- host side ----

// mma.sync on 16-bit inputs needs sm_80 (a driver could JIT the PTX for an older device).
static void require_mma_device() {
  int dev = 0, major = 0, minor = 0;
  MMG_CUDA_CHECK(cudaGetDevice(&dev));
  MMG_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  MMG_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
  if (major < 8)
    throw_error(__FILE__, __LINE__,
                "clip_loss v3 (mma.sync on bf16/f16) needs compute capability 8.0 or newer; cuda:" +
                    std::to_string(dev) + " has " + std::to_string(major) + "." + std::to_string(minor));
}

// 16-byte copies need d a multiple of 8 and both matrices 16-byte aligned.
static bool vec_ok(int64_t d, std::initializer_list<const void*> ptrs) {
  if (d % 8 != 0) return false;
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

template <class T>
static const uint16_t* bits(const T* p) {
  return reinterpret_cast<const uint16_t*>(p);
}

static unsigned blocks(int64_t N) { return static_cast<unsigned>(clip_mma_blocks(N)); }

}  // namespace clip_mma

template <class T>
void clip_loss_mma_forward(const T* img, const T* txt, int64_t N, int64_t d, const float* log_scale, float* loss_out,
                           float* row_lse, float* col_lse, float* diag) {
  using namespace clip_mma;
  if (N == 0) return;
  require_mma_device();
  cudaStream_t stream = current_stream();
  const bool vec = vec_ok(d, {img, txt});
  clip_mma_lse_kernel<T><<<blocks(N), kClipMmaThreads, 0, stream>>>(bits(img), bits(txt), N, d, log_scale, row_lse,
                                                                    diag, vec);
  MMG_CUDA_LAUNCH_CHECK();
  clip_mma_lse_kernel<T><<<blocks(N), kClipMmaThreads, 0, stream>>>(bits(txt), bits(img), N, d, log_scale, col_lse,
                                                                    nullptr, vec);
  MMG_CUDA_LAUNCH_CHECK();
  clip_mma_total_kernel<<<1, kTotalThreads, 0, stream>>>(LossTerm{row_lse, col_lse, diag}, N,
                                                         1.0 / (2.0 * static_cast<double>(N)), loss_out);
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T>
void clip_loss_mma_backward(const T* img, const T* txt, int64_t N, int64_t d, const float* log_scale,
                            const float* row_lse, const float* col_lse, const float* grad_loss, T* d_img, T* d_txt,
                            float* d_log_scale, float* partial, double* dt_rows) {
  using namespace clip_mma;
  if (N == 0) return;
  require_mma_device();
  cudaStream_t stream = current_stream();
  const bool vec = vec_ok(d, {img, txt});
  // d u (and d t's rows) from the rows of L; d v from its columns, the same kernel on Lᵀ. The
  // two passes share `partial`: they run one after the other on the stream.
  clip_mma_grad_kernel<T><<<blocks(N), kClipMmaThreads, 0, stream>>>(
      bits(img), bits(txt), N, d, log_scale, row_lse, col_lse, grad_loss, reinterpret_cast<uint16_t*>(d_img), partial,
      dt_rows, vec);
  MMG_CUDA_LAUNCH_CHECK();
  clip_mma_grad_kernel<T><<<blocks(N), kClipMmaThreads, 0, stream>>>(
      bits(txt), bits(img), N, d, log_scale, col_lse, row_lse, grad_loss, reinterpret_cast<uint16_t*>(d_txt), partial,
      nullptr, vec);
  MMG_CUDA_LAUNCH_CHECK();
  clip_mma_total_kernel<<<1, kTotalThreads, 0, stream>>>(RowTerm{dt_rows}, N, 1.0, d_log_scale);
  MMG_CUDA_LAUNCH_CHECK();
}

#define MMG_CLIP_MMA_INSTANTIATE(T)                                                                                \
  template void clip_loss_mma_forward<T>(const T*, const T*, int64_t, int64_t, const float*, float*, float*, float*, \
                                         float*);                                                                  \
  template void clip_loss_mma_backward<T>(const T*, const T*, int64_t, int64_t, const float*, const float*,         \
                                          const float*, const float*, T*, T*, float*, float*, double*);
MMG_CLIP_MMA_INSTANTIATE(bf16)
MMG_CLIP_MMA_INSTANTIATE(f16)
#undef MMG_CLIP_MMA_INSTANTIATE

}  // namespace mmg::cuda
