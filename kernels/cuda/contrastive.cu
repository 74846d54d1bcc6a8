// Fused image–text pair losses on CUDA: CLIP's symmetric InfoNCE (clip_loss) and the
// bidirectional hinge ranking loss, forward and backward — the math of kernels/losses.h,
// computed without ever storing the N×N scores (the flash pattern): memory O(N·d).
//
// One idea carries every kernel. A block owns a tile of 64 rows of A and streams the rows of
// B past it, 64 at a time; each score ⟨A_a, B_b⟩ of the 64×64 tile is built in registers
// (score_tile: steps of 16 elements of d through shared memory; 256 threads, each holding
// 4×4 scores) and used at once. Since Lᵀ = s·v·uᵀ, every "column" quantity of the loss is a
// "row" quantity of the same kernel with A and B swapped:
//
//   pair_lse_kernel(A, B)       lse_a = log Σ_b exp(s·⟨A_a, B_b⟩) by an online log-sum-exp:
//                               each thread keeps a running (max m, sum l) over the columns
//                               it has seen — a new tile raises m to the tile's max and
//                               rescales l by exp(m_old − m_new) — and at the end the 16
//                               threads of a row merge their pairs. (u, v) gives the row
//                               lse r, (v, u) the column lse c.
//   clip_grad_kernel(A, B)      G_ab = g/(2N)·(exp(L_ab − lseA_a) + exp(L_ab − lseB_b) − 2δ_ab)
//                               for a tile, into shared memory; then accumulate_rows adds
//                               s·Σ_b G_ab·B_b to the block's rows of dA by steps of 64
//                               elements of d (any d: the block owns those rows of dA, so it
//                               reads and rewrites them in global memory, no atomics). On
//                               (u, v, r, c) it gives d u and each row's Σ_b G_ab·L_ab (for
//                               d t); on (v, u, c, r), d v — Gᵀ has the same formula.
//   hinge_rows_kernel(u, v)     each row's two hinges of every off-diagonal score, one pass
//                               (the matching scores D_i = ⟨u_i, v_i⟩ come first).
//   hinge_grad_kernel(A, B)     G_ab = g/N·([m − D_a + S_ab > 0] + [m − D_b + S_ab > 0]) off
//                               the diagonal, accumulated as above, and each row's count
//                               Σ_b [m − D_a + S_ab > 0]. The diagonal needs a row count and
//                               a column count (kernels/losses.h); the column count of i is
//                               the row count of i in the pass on (v, u), so
//                               hinge_diagonal_kernel adds G_ii = −g/N·(both counts) after
//                               the two passes.
//   matching_scores_kernel      D_i = ⟨u_i, v_i⟩ (a warp per row, summed in double).
//   total_kernel                a scalar from per-row terms: one block of 256, strided shares
//                               then a tree in shared memory — the loss and d t.
//
// Launch shapes: the pair kernels ⌈N/64⌉ blocks of 256 threads; matching scores
// grid_for(32·N) blocks of 256; total one block of 256; the hinge diagonal grid_for(N·d) of
// 256. Shared memory: pair_lse and hinge_rows 2·16·65 elements (8.3 KB in f32, 16.6 KB in
// f64, static); the gradient kernels add a 64×65 tile of G and a 64×65 slab of B: 41.6 KB
// in f32, 83.2 KB in f64 (dynamic, opted in above 48 KB).
//
// Work: a pass over the pairs costs 2·N²·d FLOPs for the scores; the gradient passes as much
// again for Σ_b G_ab·B_b. clip forward: two passes, 4·N²·d (the scores are recomputed for the
// column lse rather than kept) and 2·N² exponentials; clip backward: two gradient passes,
// 8·N²·d and 4·N² exponentials. hinge forward: one pass, 2·N²·d; backward: 8·N²·d.
// Memory read: the two N×d inputs once per tile of rows (served mostly from L2), O(N) lse.
//
// Deterministic: every output element has one writer and every sum runs in a fixed order, so
// a run gives the same bits as the last.
#include <cmath>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/contrastive.h"
#include "kernels/cuda/row_group.cuh"

namespace mmg::cuda {

constexpr int kTile = kPairTile;                // rows of A, and rows of B, per tile
constexpr int kChunk = kPairChunk;              // elements of d per step of a score tile
constexpr int kLanes = kPairLanes;              // threads along each side of a tile
constexpr int kPer = kTile / kLanes;            // scores per thread along each side
constexpr int kThreads = kLanes * kLanes;       // 256
constexpr int kPad = kTile + 1;                 // shared row stride: the +1 spreads banks
constexpr int kGradChunk = kPairGradChunk;      // elements of d per step of Σ_b G_ab·B_b
constexpr int kGradPer = kGradChunk / kLanes;   // outputs per thread along d in that step
constexpr int kGradPad = kGradChunk + 1;
constexpr int kTotalThreads = 256;
static_assert(kTile % kLanes == 0 && kGradChunk % kLanes == 0, "tiles split evenly among the lanes");
static_assert((kTile * kChunk) % kThreads == 0 && (kTile * kGradChunk) % kThreads == 0,
              "every thread loads the same number of elements");
static_assert(kLanes <= 32 && 32 % kLanes == 0, "the threads of a tile row are lanes of one warp");

// Shared elements of a gradient kernel: the two score slabs, the tile of G, the slab of B.
constexpr int kGradSmemElems = 2 * kChunk * kPad + kTile * kPad + kTile * kGradPad;

// ---------------------------------------------------------------------------------------
// Building blocks

// acc[r][c] = ⟨A_a, B_b⟩ for this thread's rows a = a0 + ty + kLanes·r and columns
// b = b0 + tx + kLanes·c; rows past N read as zeros (so their scores are 0, never used).
// Each step stores the slabs A[a0 : a0+64, k0 : k0+16] and B[b0 : b0+64, k0 : k0+16]
// k-major in As, Bs (kChunk × kPad), so the inner loop reads a row of each.
// Called by every thread of the block (it synchronises).
template <class T>
__device__ void score_tile(const T* A, const T* B, int64_t N, int64_t d, int64_t a0, int64_t b0, T* As, T* Bs,
                           T (&acc)[kPer][kPer]) {
  const int tx = threadIdx.x % kLanes, ty = threadIdx.x / kLanes;
#pragma unroll
  for (int r = 0; r < kPer; ++r)
#pragma unroll
    for (int c = 0; c < kPer; ++c) acc[r][c] = T(0);
  for (int64_t k0 = 0; k0 < d; k0 += kChunk) {
    // Element e of a 64×16 slab: row e / 16, column e % 16 — 16 threads read 16 consecutive
    // elements of one row.
#pragma unroll
    for (int q = 0; q < kTile * kChunk / kThreads; ++q) {
      const int e = threadIdx.x + kThreads * q;
      const int row = e / kChunk, kk = e % kChunk;
      const int64_t k = k0 + kk;
      As[kk * kPad + row] = (a0 + row < N && k < d) ? A[(a0 + row) * d + k] : T(0);
      Bs[kk * kPad + row] = (b0 + row < N && k < d) ? B[(b0 + row) * d + k] : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kChunk; ++kk) {
      T x[kPer], y[kPer];
#pragma unroll
      for (int r = 0; r < kPer; ++r) x[r] = As[kk * kPad + ty + kLanes * r];
#pragma unroll
      for (int c = 0; c < kPer; ++c) y[c] = Bs[kk * kPad + tx + kLanes * c];
#pragma unroll
      for (int r = 0; r < kPer; ++r)
#pragma unroll
        for (int c = 0; c < kPer; ++c) acc[r][c] += x[r] * y[c];
    }
    __syncthreads();  // the slabs are overwritten by the next step
  }
}

// dA[a, :] (+)= s·Σ_j G[a − a0][j]·B[b0 + j, :] for the block's rows a < N: the tile b0 = 0
// writes, later tiles add. G: the tile in shared memory (kTile × kPad), every thread's
// writes to it done (a __syncthreads before the call). By steps of kGradChunk elements of d
// through Bd (kTile × kGradPad); thread (tx, ty) owns outputs (ty + kLanes·r, tx + kLanes·c)
// of a step, the same ones at every tile, so its read-modify-writes of dA never race.
// Called by every thread of the block (it synchronises).
template <class T>
__device__ void accumulate_rows(const T* G, const T* B, int64_t N, int64_t d, int64_t a0, int64_t b0, T s, T* Bd,
                                T* dA) {
  const int tx = threadIdx.x % kLanes, ty = threadIdx.x / kLanes;
  for (int64_t k0 = 0; k0 < d; k0 += kGradChunk) {
#pragma unroll
    for (int q = 0; q < kTile * kGradChunk / kThreads; ++q) {
      const int e = threadIdx.x + kThreads * q;
      const int j = e / kGradChunk, kk = e % kGradChunk;
      const int64_t b = b0 + j, k = k0 + kk;
      Bd[j * kGradPad + kk] = (b < N && k < d) ? B[b * d + k] : T(0);
    }
    __syncthreads();
    T out[kPer][kGradPer] = {};
    for (int j = 0; j < kTile; ++j) {
      T g[kPer], y[kGradPer];
#pragma unroll
      for (int r = 0; r < kPer; ++r) g[r] = G[(ty + kLanes * r) * kPad + j];
#pragma unroll
      for (int c = 0; c < kGradPer; ++c) y[c] = Bd[j * kGradPad + tx + kLanes * c];
#pragma unroll
      for (int r = 0; r < kPer; ++r)
#pragma unroll
        for (int c = 0; c < kGradPer; ++c) out[r][c] += g[r] * y[c];
    }
#pragma unroll
    for (int r = 0; r < kPer; ++r) {
      const int64_t a = a0 + ty + kLanes * r;
#pragma unroll
      for (int c = 0; c < kGradPer; ++c) {
        const int64_t k = k0 + tx + kLanes * c;
        if (a < N && k < d) {
          T* p = dA + a * d + k;
          *p = b0 == 0 ? s * out[r][c] : *p + s * out[r][c];
        }
      }
    }
    __syncthreads();  // Bd is overwritten by the next step, G by the next tile
  }
}

// The sum of v over the kLanes threads of a tile row (consecutive lanes of one warp:
// threadIdx.x = ty·kLanes + tx); every one of them gets it. All 32 lanes must call it.
template <class T>
__device__ inline T row_lanes_sum(T v) {
  for (int offset = kLanes / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// (m, l) ← the merge of two running log-sum-exps (max, Σ exp(x − max)). A part that has seen
// no column (m = −inf, l = 0) adds nothing — and must not reach exp(−inf − (−inf)) = NaN.
template <class T>
__device__ inline void merge_lse(T& m, T& l, T m2, T l2) {
  const T M = fmax(m, m2);
  if (M == -INFINITY) return;
  l = (m == -INFINITY ? T(0) : l * exp(m - M)) + (m2 == -INFINITY ? T(0) : l2 * exp(m2 - M));
  m = M;
}

// ---------------------------------------------------------------------------------------
// clip_loss

// lse[a] = log Σ_b exp(s·⟨A_a, B_b⟩), s = exp(log_scale[0]).
template <class T>
__global__ void __launch_bounds__(kThreads)
    pair_lse_kernel(const T* A, const T* B, int64_t N, int64_t d, const T* log_scale, T* lse) {
  __shared__ T As[kChunk * kPad], Bs[kChunk * kPad];
  const int tx = threadIdx.x % kLanes, ty = threadIdx.x / kLanes;
  const T s = exp(log_scale[0]);
  const int64_t a0 = int64_t(blockIdx.x) * kTile;
  T m[kPer], l[kPer];  // this thread's running (max, Σ exp(L − max)) of each of its rows
#pragma unroll
  for (int r = 0; r < kPer; ++r) {
    m[r] = -INFINITY;
    l[r] = T(0);
  }
  for (int64_t b0 = 0; b0 < N; b0 += kTile) {
    T acc[kPer][kPer];
    score_tile(A, B, N, d, a0, b0, As, Bs, acc);
#pragma unroll
    for (int r = 0; r < kPer; ++r) {
      T tile_max = -INFINITY;
#pragma unroll
      for (int c = 0; c < kPer; ++c)
        if (b0 + tx + kLanes * c < N) tile_max = fmax(tile_max, s * acc[r][c]);
      if (tile_max == -INFINITY) continue;  // no column of this thread in this (last) tile
      const T m_new = fmax(m[r], tile_max);
      T sum = T(0);
#pragma unroll
      for (int c = 0; c < kPer; ++c)
        if (b0 + tx + kLanes * c < N) sum += exp(s * acc[r][c] - m_new);
      l[r] = l[r] * exp(m[r] - m_new) + sum;  // m = −inf before the first tile: exp → 0, l = 0
      m[r] = m_new;
    }
  }
#pragma unroll
  for (int r = 0; r < kPer; ++r) {
    for (int offset = kLanes / 2; offset > 0; offset /= 2) {
      const T m2 = __shfl_xor_sync(0xffffffffu, m[r], offset);
      const T l2 = __shfl_xor_sync(0xffffffffu, l[r], offset);
      merge_lse(m[r], l[r], m2, l2);
    }
    const int64_t a = a0 + ty + kLanes * r;
    if (tx == 0 && a < N) lse[a] = m[r] + log(l[r]);
  }
}

// dA = s·G·B with G_ab = g/(2N)·(exp(L_ab − lseA_a) + exp(L_ab − lseB_b) − 2δ_ab),
// L_ab = s·⟨A_a, B_b⟩, g = grad_loss[0]; and, when dt_rows is not null, dt_rows[a] = Σ_b G_ab·L_ab.
template <class T>
__global__ void __launch_bounds__(kThreads)
    clip_grad_kernel(const T* A, const T* B, int64_t N, int64_t d, const T* log_scale, const T* lseA,
                     const T* lseB, const T* grad_loss, T* dA, double* dt_rows) {
  extern __shared__ __align__(16) unsigned char pair_smem[];
  T* As = reinterpret_cast<T*>(pair_smem);
  T* Bs = As + kChunk * kPad;
  T* G = Bs + kChunk * kPad;
  T* Bd = G + kTile * kPad;
  const int tx = threadIdx.x % kLanes, ty = threadIdx.x / kLanes;
  const T s = exp(log_scale[0]);
  const T coef = grad_loss[0] / (T(2) * static_cast<T>(N));  // g/(2N)
  const int64_t a0 = int64_t(blockIdx.x) * kTile;
  T lse_a[kPer];
  double dt[kPer];  // this thread's share of Σ_b G_ab·L_ab
#pragma unroll
  for (int r = 0; r < kPer; ++r) {
    const int64_t a = a0 + ty + kLanes * r;
    lse_a[r] = a < N ? lseA[a] : T(0);
    dt[r] = 0.0;
  }
  for (int64_t b0 = 0; b0 < N; b0 += kTile) {
    T acc[kPer][kPer];
    score_tile(A, B, N, d, a0, b0, As, Bs, acc);
    T lse_b[kPer];
#pragma unroll
    for (int c = 0; c < kPer; ++c) {
      const int64_t b = b0 + tx + kLanes * c;
      lse_b[c] = b < N ? lseB[b] : T(0);
    }
#pragma unroll
    for (int r = 0; r < kPer; ++r) {
      const int64_t a = a0 + ty + kLanes * r;
#pragma unroll
      for (int c = 0; c < kPer; ++c) {
        const int64_t b = b0 + tx + kLanes * c;
        T g = T(0);  // pairs outside the N×N matrix add nothing
        if (a < N && b < N) {
          const T L = s * acc[r][c];
          g = coef * (exp(L - lse_a[r]) + exp(L - lse_b[c]));
          if (a == b) g -= T(2) * coef;
          dt[r] += double(g * L);
        }
        G[(ty + kLanes * r) * kPad + tx + kLanes * c] = g;
      }
    }
    __syncthreads();  // the whole tile of G before anyone reads a row of it
    accumulate_rows(G, B, N, d, a0, b0, s, Bd, dA);
  }
  if (dt_rows != nullptr) {  // the same for every thread: the shuffles see the whole warp
#pragma unroll
    for (int r = 0; r < kPer; ++r) {
      const double total = row_lanes_sum(dt[r]);
      const int64_t a = a0 + ty + kLanes * r;
      if (tx == 0 && a < N) dt_rows[a] = total;
    }
  }
}

// ---------------------------------------------------------------------------------------
// hinge_ranking_loss

// D[a] = ⟨A_a, B_a⟩, summed in double (as on the CPU) and stored in T; a warp per row.
template <class T>
__global__ void matching_scores_kernel(const T* A, const T* B, int64_t N, int64_t d, T* D) {
  const RowGroup<false> g;
  for (int64_t a = g.first_row; a < N; a += g.row_step) {  // the same rows for the whole warp
    double dot = 0.0;
    for (int64_t k = g.start; k < d; k += g.step) dot += double(A[a * d + k]) * double(B[a * d + k]);
    dot = warp_all(dot, SumOp{});
    if (g.start == 0) D[a] = static_cast<T>(dot);
  }
}

template <class T>
__device__ inline T hinge(T x) {
  return x > T(0) ? x : T(0);
}

// row_loss[a] = Σ_{b≠a} [m − D_a + S_ab]₊ + [m − D_b + S_ab]₊,  S_ab = ⟨u_a, v_b⟩: the hinge of
// text b against image a's match, and of image a against text b's match.
template <class T>
__global__ void __launch_bounds__(kThreads)
    hinge_rows_kernel(const T* A, const T* B, const T* D, int64_t N, int64_t d, T margin, double* row_loss) {
  __shared__ T As[kChunk * kPad], Bs[kChunk * kPad];
  const int tx = threadIdx.x % kLanes, ty = threadIdx.x / kLanes;
  const int64_t a0 = int64_t(blockIdx.x) * kTile;
  T D_a[kPer];
  double h[kPer];
#pragma unroll
  for (int r = 0; r < kPer; ++r) {
    const int64_t a = a0 + ty + kLanes * r;
    D_a[r] = a < N ? D[a] : T(0);
    h[r] = 0.0;
  }
  for (int64_t b0 = 0; b0 < N; b0 += kTile) {
    T acc[kPer][kPer];
    score_tile(A, B, N, d, a0, b0, As, Bs, acc);
#pragma unroll
    for (int c = 0; c < kPer; ++c) {
      const int64_t b = b0 + tx + kLanes * c;
      if (b >= N) continue;
      const T D_b = D[b];
#pragma unroll
      for (int r = 0; r < kPer; ++r) {
        const int64_t a = a0 + ty + kLanes * r;
        if (a >= N || a == b) continue;
        // (m − D) + S in T, in the CPU kernel's order, so both decide each kink alike.
        h[r] += double(hinge(margin - D_a[r] + acc[r][c]));
        h[r] += double(hinge(margin - D_b + acc[r][c]));
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kPer; ++r) {
    const double total = row_lanes_sum(h[r]);
    const int64_t a = a0 + ty + kLanes * r;
    if (tx == 0 && a < N) row_loss[a] = total;
  }
}

// dA = G·B with G_ab = g/N·([m − D_a + S_ab > 0] + [m − D_b + S_ab > 0]) for a ≠ b and G_aa = 0
// here (hinge_diagonal_kernel adds it); count[a] = Σ_{b≠a} [m − D_a + S_ab > 0].
template <class T>
__global__ void __launch_bounds__(kThreads)
    hinge_grad_kernel(const T* A, const T* B, const T* D, int64_t N, int64_t d, T margin, const T* grad_loss, T* dA,
                      double* count) {
  extern __shared__ __align__(16) unsigned char pair_smem[];
  T* As = reinterpret_cast<T*>(pair_smem);
  T* Bs = As + kChunk * kPad;
  T* G = Bs + kChunk * kPad;
  T* Bd = G + kTile * kPad;
  const int tx = threadIdx.x % kLanes, ty = threadIdx.x / kLanes;
  const T coef = grad_loss[0] / static_cast<T>(N);  // g/N
  const int64_t a0 = int64_t(blockIdx.x) * kTile;
  T D_a[kPer];
  int own[kPer];  // this thread's share of row a's count
#pragma unroll
  for (int r = 0; r < kPer; ++r) {
    const int64_t a = a0 + ty + kLanes * r;
    D_a[r] = a < N ? D[a] : T(0);
    own[r] = 0;
  }
  for (int64_t b0 = 0; b0 < N; b0 += kTile) {
    T acc[kPer][kPer];
    score_tile(A, B, N, d, a0, b0, As, Bs, acc);
#pragma unroll
    for (int c = 0; c < kPer; ++c) {
      const int64_t b = b0 + tx + kLanes * c;
      const T D_b = b < N ? D[b] : T(0);
#pragma unroll
      for (int r = 0; r < kPer; ++r) {
        const int64_t a = a0 + ty + kLanes * r;
        T g = T(0);
        if (a < N && b < N && a != b) {
          const bool row_side = margin - D_a[r] + acc[r][c] > T(0);  // b violates a's margin
          const bool col_side = margin - D_b + acc[r][c] > T(0);     // a violates b's margin
          own[r] += row_side;
          g = coef * static_cast<T>(int(row_side) + int(col_side));
        }
        G[(ty + kLanes * r) * kPad + tx + kLanes * c] = g;
      }
    }
    __syncthreads();  // the whole tile of G before anyone reads a row of it
    accumulate_rows(G, B, N, d, a0, b0, T(1), Bd, dA);
  }
#pragma unroll
  for (int r = 0; r < kPer; ++r) {
    const int total = row_lanes_sum(own[r]);
    const int64_t a = a0 + ty + kLanes * r;
    if (tx == 0 && a < N) count[a] = double(total);
  }
}

// The diagonal of G, G_ii = −g/N·(row_count_i + col_count_i): −g/N·(…)·v_i into d u_i and
// ·u_i into d v_i. A grid-stride loop over the N·d elements.
template <class T>
__global__ void hinge_diagonal_kernel(const T* img, const T* txt, int64_t N, int64_t d, const T* grad_loss,
                                      const double* row_count, const double* col_count, T* d_img, T* d_txt) {
  const T coef = grad_loss[0] / static_cast<T>(N);
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < N * d; k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = k / d;
    const T g = -coef * static_cast<T>(row_count[i] + col_count[i]);
    d_img[k] += g * txt[k];
    d_txt[k] += g * img[k];
  }
}

// ---------------------------------------------------------------------------------------
// Scalars from per-row terms

// out[0] = (Σ_i term(i)) / divisor, in double: 256 strided shares, then a tree.
template <class T, class Term>
__global__ void __launch_bounds__(kTotalThreads) total_kernel(Term term, int64_t n, double divisor, T* out) {
  __shared__ double partial[kTotalThreads];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kTotalThreads) s += term(i);
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int stride = kTotalThreads / 2; stride > 0; stride /= 2) {
    if (int(threadIdx.x) < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = static_cast<T>(partial[0] / divisor);
}

// r_i + c_i − 2·L_ii, the clip loss of pair i times 2 (L_ii = s·D_i).
template <class T>
struct ClipPairTerm {
  const T* row_lse;
  const T* col_lse;
  const T* diag;
  const T* log_scale;
  __device__ double operator()(int64_t i) const {
    const T L = exp(log_scale[0]) * diag[i];
    return double(row_lse[i]) + double(col_lse[i]) - 2.0 * double(L);
  }
};

struct RowTerm {
  const double* x;
  __device__ double operator()(int64_t i) const { return x[i]; }
};

static unsigned pair_blocks(int64_t N) { return static_cast<unsigned>((N + kTile - 1) / kTile); }

// ---------------------------------------------------------------------------------------
// Entry points

template <class T>
void clip_loss_forward(const T* img, const T* txt, int64_t N, int64_t d, const T* log_scale, T* loss_out,
                       T* row_lse, T* col_lse, T* work) {
  if (N == 0) return;
  cudaStream_t stream = current_stream();
  pair_lse_kernel<T><<<pair_blocks(N), kThreads, 0, stream>>>(img, txt, N, d, log_scale, row_lse);
  MMG_CUDA_LAUNCH_CHECK();
  pair_lse_kernel<T><<<pair_blocks(N), kThreads, 0, stream>>>(txt, img, N, d, log_scale, col_lse);
  MMG_CUDA_LAUNCH_CHECK();
  matching_scores_kernel<T><<<grid_for(N * 32, kRowBlock), kRowBlock, 0, stream>>>(img, txt, N, d, work);
  MMG_CUDA_LAUNCH_CHECK();
  total_kernel<T><<<1, kTotalThreads, 0, stream>>>(ClipPairTerm<T>{row_lse, col_lse, work, log_scale}, N,
                                                   2.0 * static_cast<double>(N), loss_out);
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T>
void clip_loss_backward(const T* img, const T* txt, int64_t N, int64_t d, const T* log_scale, const T* row_lse,
                        const T* col_lse, const T* grad_loss, T* d_img, T* d_txt, T* d_log_scale, double* work) {
  if (N == 0) return;
  cudaStream_t stream = current_stream();
  const int smem = kGradSmemElems * static_cast<int>(sizeof(T));
  MMG_CUDA_CHECK(cudaFuncSetAttribute(clip_grad_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  // d u (and d t's rows) from the rows of L; d v from its columns, the same kernel on Lᵀ.
  clip_grad_kernel<T><<<pair_blocks(N), kThreads, smem, stream>>>(img, txt, N, d, log_scale, row_lse, col_lse,
                                                                   grad_loss, d_img, work);
  MMG_CUDA_LAUNCH_CHECK();
  clip_grad_kernel<T><<<pair_blocks(N), kThreads, smem, stream>>>(txt, img, N, d, log_scale, col_lse, row_lse,
                                                                   grad_loss, d_txt, nullptr);
  MMG_CUDA_LAUNCH_CHECK();
  total_kernel<T><<<1, kTotalThreads, 0, stream>>>(RowTerm{work}, N, 1.0, d_log_scale);
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T>
void hinge_ranking_loss_forward(const T* img, const T* txt, int64_t N, int64_t d, T margin, T* loss_out, T* diag,
                                double* row_work) {
  if (N == 0) return;
  cudaStream_t stream = current_stream();
  matching_scores_kernel<T><<<grid_for(N * 32, kRowBlock), kRowBlock, 0, stream>>>(img, txt, N, d, diag);
  MMG_CUDA_LAUNCH_CHECK();
  hinge_rows_kernel<T><<<pair_blocks(N), kThreads, 0, stream>>>(img, txt, diag, N, d, margin, row_work);
  MMG_CUDA_LAUNCH_CHECK();
  total_kernel<T><<<1, kTotalThreads, 0, stream>>>(RowTerm{row_work}, N, static_cast<double>(N), loss_out);
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T>
void hinge_ranking_loss_backward(const T* img, const T* txt, int64_t N, int64_t d, T margin, const T* grad_loss,
                                 T* d_img, T* d_txt, T* diag, double* count_work) {
  if (N == 0) return;
  cudaStream_t stream = current_stream();
  matching_scores_kernel<T><<<grid_for(N * 32, kRowBlock), kRowBlock, 0, stream>>>(img, txt, N, d, diag);
  MMG_CUDA_LAUNCH_CHECK();
  const int smem = kGradSmemElems * static_cast<int>(sizeof(T));
  MMG_CUDA_CHECK(cudaFuncSetAttribute(hinge_grad_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  // Off the diagonal: d u from the rows of S, d v from its columns (the kernel on Sᵀ, whose
  // row counts are S's column counts). D is symmetric in u and v, so both passes share it.
  hinge_grad_kernel<T><<<pair_blocks(N), kThreads, smem, stream>>>(img, txt, diag, N, d, margin, grad_loss, d_img,
                                                                    count_work);
  MMG_CUDA_LAUNCH_CHECK();
  hinge_grad_kernel<T><<<pair_blocks(N), kThreads, smem, stream>>>(txt, img, diag, N, d, margin, grad_loss, d_txt,
                                                                    count_work + N);
  MMG_CUDA_LAUNCH_CHECK();
  if (N * d == 0) return;
  hinge_diagonal_kernel<T><<<grid_for(N * d, kRowBlock), kRowBlock, 0, stream>>>(
      img, txt, N, d, grad_loss, count_work, count_work + N, d_img, d_txt);
  MMG_CUDA_LAUNCH_CHECK();
}

#define MMG_INSTANTIATE_CONTRASTIVE(T)                                                                               \
  template void clip_loss_forward<T>(const T*, const T*, int64_t, int64_t, const T*, T*, T*, T*, T*);                \
  template void clip_loss_backward<T>(const T*, const T*, int64_t, int64_t, const T*, const T*, const T*, const T*, \
                                      T*, T*, T*, double*);                                                          \
  template void hinge_ranking_loss_forward<T>(const T*, const T*, int64_t, int64_t, T, T*, T*, double*);             \
  template void hinge_ranking_loss_backward<T>(const T*, const T*, int64_t, int64_t, T, const T*, T*, T*, T*, double*);
MMG_INSTANTIATE_CONTRASTIVE(float)
MMG_INSTANTIATE_CONTRASTIVE(double)
#undef MMG_INSTANTIATE_CONTRASTIVE

}  // namespace mmg::cuda
