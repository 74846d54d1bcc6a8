// Layer normalisation, forward and backward: the formulas in kernels/layer_norm.h.
//
// forward kernel: a row per group (kernels/cuda/row_group.cuh: a warp for rows up to 1024,
//   else a block). Two reductions per row, the mean and then Σ(x − μ)² (the two-pass
//   variance, as on the CPU: it cannot go negative or lose the small variance of a row with
//   a large mean), then each thread writes its elements of y.
// backward, dx: the same row groups; one pass for Σ g and Σ g·x̂ (two butterflies), one to
//   write dx.
// backward, dγ and dβ: sums over rows, done in two fixed stages so the result does not
//   depend on the grid: (1) the rows are cut into kParamBlocks blocks; a thread per
//   (column, block) sums dy·x̂ and dy over its block's rows into the workspace — consecutive
//   threads read consecutive columns of a row, coalesced; (2) a thread per column adds the
//   blocks' partial sums in order.
//
// v2 (the *_v2 entry points, family "layer_norm" version 2 in core/kernel_versions.cpp):
//  - forward: Welford statistics (kernels/cuda/row_stats.h), the mean and M₂ = Σ(x − μ)² in
//    one pass over the row, so x is read twice instead of three times; like the two-pass
//    variance it has no cancellation (never Σx² − nμ²). A warp reduces to lane 0
//    (shuffle down) and broadcasts, so every thread uses lane 0's numbers.
//  - 16-byte accesses where the row length is a multiple of the pack width V (4 floats,
//    8 bf16/f16: kernels/cuda/pack.cuh) and every pointer is 16-byte aligned (x, y, γ, β;
//    x, dy, dx, γ in the backward): each thread loads and stores V elements per access
//    (an f32 γ beside bf16 rows: 8 floats, two accesses), else one element (V = 1).
//  - backward: dx as v1 with those accesses; dγ and dβ by v1's two stages.
//
// Storage and math (both versions): x, y, dy, dx are stored as T; γ, β, dγ, dβ as P (T, or
// float beside a 16-bit T); everything is computed in A = acc_t<T> (float for 16-bit T):
// widen<A> as an element is read, narrow (one rounding) as it is stored. μ, rstd and the
// dγ/dβ partial sums are A, so dγ/dβ are summed over all rows in A and rounded once.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/pack.cuh"
#include "kernels/cuda/row_group.cuh"
#include "kernels/cuda/row_stats.h"
#include "kernels/layer_norm.h"

namespace mmg::cuda {

constexpr int64_t kWarpRowMax = 1024;
constexpr int64_t kParamBlocks = 64;

// γ_c or β_c in A; an absent one (nullptr) reads as `fill`.
template <class A, class P>
__device__ inline A param_at(const P* p, int64_t c, A fill) {
  return p ? widen<A>(p[c]) : fill;
}

template <bool Block, class T, class P>
__global__ void layer_norm_forward_kernel(const T* x, const P* gamma, const P* beta, T* y, acc_t<T>* mean,
                                          acc_t<T>* rstd, int64_t rows, int64_t cols, acc_t<T> eps) {
  using A = acc_t<T>;
  __shared__ A shared[kRowWarps];
  const RowGroup<Block> g;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    A s = 0;
    for (int64_t c = g.start; c < cols; c += g.step) s += widen<A>(xr[c]);
    const A mu = group_all<Block>(s, SumOp{}, shared) / A(cols);
    A q = 0;
    for (int64_t c = g.start; c < cols; c += g.step) {
      const A d = widen<A>(xr[c]) - mu;
      q += d * d;
    }
    const A var = group_all<Block>(q, SumOp{}, shared) / A(cols);
    const A rs = A(1) / sqrt(var + eps);
    for (int64_t c = g.start; c < cols; c += g.step) {
      const A xhat = (widen<A>(xr[c]) - mu) * rs;
      yr[c] = narrow<T>(param_at(gamma, c, A(1)) * xhat + param_at(beta, c, A(0)));
    }
    if (g.start == 0) {  // one thread of the group
      if (mean) mean[r] = mu;
      if (rstd) rstd[r] = rs;
    }
  }
}

template <bool Block, class T, class P>
__global__ void layer_norm_dx_kernel(const T* x, const P* gamma, const acc_t<T>* mean, const acc_t<T>* rstd,
                                     const T* dy, T* dx, int64_t rows, int64_t cols) {
  using A = acc_t<T>;
  __shared__ A shared[kRowWarps];
  const RowGroup<Block> g;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* xr = x + r * cols;
    const T* dyr = dy + r * cols;
    T* dxr = dx + r * cols;
    const A mu = mean[r], rs = rstd[r];
    A sum_g = 0, sum_gx = 0;
    for (int64_t c = g.start; c < cols; c += g.step) {
      const A gc = param_at(gamma, c, A(1)) * widen<A>(dyr[c]);
      sum_g += gc;
      sum_gx += gc * (widen<A>(xr[c]) - mu) * rs;
    }
    const A mean_g = group_all<Block>(sum_g, SumOp{}, shared) / A(cols);
    const A mean_gx = group_all<Block>(sum_gx, SumOp{}, shared) / A(cols);
    // Each dy element is read by the thread that then writes its dx, so this kernel alone would
    // allow dx to alias dy; the dγ/dβ kernels launched after it read dy again, so callers (and
    // kernels/layer_norm.h) keep them apart.
    for (int64_t c = g.start; c < cols; c += g.step) {
      const A gc = param_at(gamma, c, A(1)) * widen<A>(dyr[c]);
      const A xhat = (widen<A>(xr[c]) - mu) * rs;
      dxr[c] = narrow<T>(rs * (gc - mean_g - xhat * mean_gx));
    }
  }
}

// Stage 1: partial[b, 0, c] = Σ_{r in block b} dy[r,c]·x̂[r,c], partial[b, 1, c] = Σ dy[r,c],
// in A. Grid: (ceil(cols / 256), blocks); block b covers rows [b·rows/blocks, (b+1)·rows/blocks).
template <class T>
__global__ void layer_norm_param_partial_kernel(const T* x, const acc_t<T>* mean, const acc_t<T>* rstd, const T* dy,
                                                acc_t<T>* partial, int64_t rows, int64_t cols, int64_t blocks) {
  using A = acc_t<T>;
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (c >= cols) return;
  const int64_t r0 = b * rows / blocks, r1 = (b + 1) * rows / blocks;
  A sg = 0, sb = 0;
  for (int64_t r = r0; r < r1; ++r) {
    const A d = widen<A>(dy[r * cols + c]);
    sg += d * (widen<A>(x[r * cols + c]) - mean[r]) * rstd[r];
    sb += d;
  }
  partial[(b * 2) * cols + c] = sg;
  partial[(b * 2 + 1) * cols + c] = sb;
}

// Stage 2: dγ[c] = Σ_b partial[b, 0, c], dβ[c] = Σ_b partial[b, 1, c], blocks in order, in A;
// one rounding to P.
template <class A, class P>
__global__ void layer_norm_param_final_kernel(const A* partial, P* dgamma, P* dbeta, int64_t cols, int64_t blocks) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols; c += int64_t(gridDim.x) * blockDim.x) {
    A sg = 0, sb = 0;
    for (int64_t b = 0; b < blocks; ++b) {
      sg += partial[(b * 2) * cols + c];
      sb += partial[(b * 2 + 1) * cols + c];
    }
    if (dgamma) dgamma[c] = narrow<P>(sg);
    if (dbeta) dbeta[c] = narrow<P>(sb);
  }
}

static int64_t param_blocks(int64_t rows) { return std::min(rows, kParamBlocks); }

int64_t layer_norm_backward_workspace(int64_t rows, int64_t cols) { return param_blocks(rows) * 2 * cols; }

template <class T, class P>
void layer_norm_forward(const T* x, const P* gamma, const P* beta, T* y, acc_t<T>* mean, acc_t<T>* rstd,
                        int64_t rows, int64_t cols, acc_t<T> eps) {
  if (rows == 0 || cols == 0) return;
  if (cols <= kWarpRowMax) {
    layer_norm_forward_kernel<false, T, P><<<grid_for(rows * 32, kRowBlock), kRowBlock, 0, current_stream()>>>(
        x, gamma, beta, y, mean, rstd, rows, cols, eps);
  } else {
    layer_norm_forward_kernel<true, T, P><<<grid_for(rows * kRowBlock, kRowBlock), kRowBlock, 0, current_stream()>>>(
        x, gamma, beta, y, mean, rstd, rows, cols, eps);
  }
  MMG_CUDA_LAUNCH_CHECK();
}

// dγ and dβ by the two stages (either may be nullptr, not both).
template <class T, class P>
static void launch_param_grads(const T* x, const acc_t<T>* mean, const acc_t<T>* rstd, const T* dy, P* dgamma,
                               P* dbeta, int64_t rows, int64_t cols, acc_t<T>* workspace) {
  const int64_t blocks = param_blocks(rows);
  if (blocks > 0) {
    const dim3 grid(static_cast<unsigned>((cols + kRowBlock - 1) / kRowBlock), static_cast<unsigned>(blocks));
    layer_norm_param_partial_kernel<T><<<grid, kRowBlock, 0, current_stream()>>>(x, mean, rstd, dy, workspace, rows,
                                                                                 cols, blocks);
    MMG_CUDA_LAUNCH_CHECK();
  }
  // With no rows the sums are 0: stage 2 over zero blocks writes exactly that.
  layer_norm_param_final_kernel<acc_t<T>, P><<<grid_for(cols, kRowBlock), kRowBlock, 0, current_stream()>>>(
      workspace, dgamma, dbeta, cols, blocks);
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T, class P>
void layer_norm_backward(const T* x, const P* gamma, const acc_t<T>* mean, const acc_t<T>* rstd, const T* dy, T* dx,
                         P* dgamma, P* dbeta, int64_t rows, int64_t cols, acc_t<T>* workspace) {
  if (cols == 0) return;
  if (dx && rows > 0) {
    if (cols <= kWarpRowMax) {
      layer_norm_dx_kernel<false, T, P><<<grid_for(rows * 32, kRowBlock), kRowBlock, 0, current_stream()>>>(
          x, gamma, mean, rstd, dy, dx, rows, cols);
    } else {
      layer_norm_dx_kernel<true, T, P><<<grid_for(rows * kRowBlock, kRowBlock), kRowBlock, 0, current_stream()>>>(
          x, gamma, mean, rstd, dy, dx, rows, cols);
    }
    MMG_CUDA_LAUNCH_CHECK();
  }
  if (dgamma || dbeta) launch_param_grads(x, mean, rstd, dy, dgamma, dbeta, rows, cols, workspace);
}

// ---- v2: Welford statistics, 16-byte accesses ----

// Every thread of the group ends with the group's Welford statistics: a warp combines into
// lane 0 (lane l takes lane l + offset; lanes whose partner is past 31 get their own value
// back and compute numbers nobody reads), then lane 0's result is broadcast. A block's warps
// then combine their lane-0 results through shared memory, in warp order, in every thread.
// shared: 3·kRowWarps values (n, mean, M₂ of each warp).
template <bool Block, class A>
__device__ inline WelfordStats<A> group_welford(WelfordStats<A> st, A* shared) {
  for (int offset = 16; offset > 0; offset /= 2) {
    WelfordStats<A> other;
    other.n = __shfl_down_sync(0xffffffffu, st.n, offset);
    other.mean = __shfl_down_sync(0xffffffffu, st.mean, offset);
    other.m2 = __shfl_down_sync(0xffffffffu, st.m2, offset);
    st = welford_combine(st, other);
  }
  st.n = __shfl_sync(0xffffffffu, st.n, 0);
  st.mean = __shfl_sync(0xffffffffu, st.mean, 0);
  st.m2 = __shfl_sync(0xffffffffu, st.m2, 0);
  if constexpr (!Block) {
    return st;
  } else {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) {
      shared[3 * warp] = st.n;
      shared[3 * warp + 1] = st.mean;
      shared[3 * warp + 2] = st.m2;
    }
    __syncthreads();
    WelfordStats<A> total;
    for (int w = 0; w < kRowWarps; ++w) {
      WelfordStats<A> part;
      part.n = shared[3 * w];
      part.mean = shared[3 * w + 1];
      part.m2 = shared[3 * w + 2];
      total = welford_combine(total, part);
    }
    __syncthreads();  // shared is reused by the next row
    return total;
  }
}

// Pass 1: Welford (n, μ, M₂) of the row. Pass 2: y = γ·(x − μ)·rstd + β. V divides cols.
template <bool Block, int V, class T, class P>
__global__ void layer_norm_forward_v2_kernel(const T* x, const P* gamma, const P* beta, T* y, acc_t<T>* mean,
                                             acc_t<T>* rstd, int64_t rows, int64_t cols, acc_t<T> eps) {
  using A = acc_t<T>;
  __shared__ A shared[3 * kRowWarps];
  const RowGroup<Block> g;
  const int64_t packs = cols / V;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    WelfordStats<A> st;
    for (int64_t p = g.start; p < packs; p += g.step) {
      A v[V];
      load_pack<V>(xr + p * V, v);
#pragma unroll
      for (int i = 0; i < V; ++i) welford_add(st, v[i]);
    }
    st = group_welford<Block>(st, shared);
    const A mu = st.mean, rs = A(1) / sqrt(st.m2 / A(cols) + eps);
    for (int64_t p = g.start; p < packs; p += g.step) {
      A v[V], gm[V], bt[V];
      load_pack<V>(xr + p * V, v);
      load_pack<V>(gamma ? gamma + p * V : nullptr, gm, A(1));
      load_pack<V>(beta ? beta + p * V : nullptr, bt, A(0));
#pragma unroll
      for (int i = 0; i < V; ++i) v[i] = gm[i] * ((v[i] - mu) * rs) + bt[i];
      store_pack<V>(yr + p * V, v);
    }
    if (g.start == 0) {  // one thread of the group
      if (mean) mean[r] = mu;
      if (rstd) rstd[r] = rs;
    }
  }
}

// dx_j = rstd·(g_j − mean(g) − x̂_j·mean(g·x̂)), g = γ ⊙ dy: one pass for the two sums, one
// to write dx.
template <bool Block, int V, class T, class P>
__global__ void layer_norm_dx_v2_kernel(const T* x, const P* gamma, const acc_t<T>* mean, const acc_t<T>* rstd,
                                        const T* dy, T* dx, int64_t rows, int64_t cols) {
  using A = acc_t<T>;
  __shared__ A shared[kRowWarps];
  const RowGroup<Block> g;
  const int64_t packs = cols / V;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* xr = x + r * cols;
    const T* dyr = dy + r * cols;
    T* dxr = dx + r * cols;
    const A mu = mean[r], rs = rstd[r];
    A sum_g = 0, sum_gx = 0;
    for (int64_t p = g.start; p < packs; p += g.step) {
      A xv[V], dv[V], gm[V];
      load_pack<V>(xr + p * V, xv);
      load_pack<V>(dyr + p * V, dv);
      load_pack<V>(gamma ? gamma + p * V : nullptr, gm, A(1));
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const A gc = gm[i] * dv[i];
        sum_g += gc;
        sum_gx += gc * (xv[i] - mu) * rs;
      }
    }
    const A mean_g = group_all<Block>(sum_g, SumOp{}, shared) / A(cols);
    const A mean_gx = group_all<Block>(sum_gx, SumOp{}, shared) / A(cols);
    for (int64_t p = g.start; p < packs; p += g.step) {
      A xv[V], dv[V], gm[V];
      load_pack<V>(xr + p * V, xv);
      load_pack<V>(dyr + p * V, dv);
      load_pack<V>(gamma ? gamma + p * V : nullptr, gm, A(1));
#pragma unroll
      for (int i = 0; i < V; ++i) dv[i] = rs * (gm[i] * dv[i] - mean_g - (xv[i] - mu) * rs * mean_gx);
      store_pack<V>(dxr + p * V, dv);
    }
  }
}

template <int V, class T, class P>
static void launch_forward_v2(const T* x, const P* gamma, const P* beta, T* y, acc_t<T>* mean, acc_t<T>* rstd,
                              int64_t rows, int64_t cols, acc_t<T> eps) {
  if (cols <= kWarpRowMax) {
    layer_norm_forward_v2_kernel<false, V, T, P><<<grid_for(rows * 32, kRowBlock), kRowBlock, 0, current_stream()>>>(
        x, gamma, beta, y, mean, rstd, rows, cols, eps);
  } else {
    layer_norm_forward_v2_kernel<true, V, T, P>
        <<<grid_for(rows * kRowBlock, kRowBlock), kRowBlock, 0, current_stream()>>>(x, gamma, beta, y, mean, rstd,
                                                                                    rows, cols, eps);
  }
  MMG_CUDA_LAUNCH_CHECK();
}

template <int V, class T, class P>
static void launch_dx_v2(const T* x, const P* gamma, const acc_t<T>* mean, const acc_t<T>* rstd, const T* dy, T* dx,
                         int64_t rows, int64_t cols) {
  if (cols <= kWarpRowMax) {
    layer_norm_dx_v2_kernel<false, V, T, P><<<grid_for(rows * 32, kRowBlock), kRowBlock, 0, current_stream()>>>(
        x, gamma, mean, rstd, dy, dx, rows, cols);
  } else {
    layer_norm_dx_v2_kernel<true, V, T, P><<<grid_for(rows * kRowBlock, kRowBlock), kRowBlock, 0, current_stream()>>>(
        x, gamma, mean, rstd, dy, dx, rows, cols);
  }
  MMG_CUDA_LAUNCH_CHECK();
}

// Packs of pack_width<T> where the rows fit them (kernels/cuda/pack.cuh: packs_fit), else
// one element at a time.
template <class T, class P>
void layer_norm_forward_v2(const T* x, const P* gamma, const P* beta, T* y, acc_t<T>* mean, acc_t<T>* rstd,
                           int64_t rows, int64_t cols, acc_t<T> eps) {
  if (rows == 0 || cols == 0) return;
  if constexpr (pack_width<T> > 1) {
    if (packs_fit<T>(cols, {x, gamma, beta, y}))
      return launch_forward_v2<pack_width<T>>(x, gamma, beta, y, mean, rstd, rows, cols, eps);
  }
  launch_forward_v2<1>(x, gamma, beta, y, mean, rstd, rows, cols, eps);
}

template <class T, class P>
void layer_norm_backward_v2(const T* x, const P* gamma, const acc_t<T>* mean, const acc_t<T>* rstd, const T* dy,
                            T* dx, P* dgamma, P* dbeta, int64_t rows, int64_t cols, acc_t<T>* workspace) {
  if (cols == 0) return;
  if (dx && rows > 0) {
    bool packed = false;
    if constexpr (pack_width<T> > 1) {
      packed = packs_fit<T>(cols, {x, gamma, dy, dx});
      if (packed) launch_dx_v2<pack_width<T>>(x, gamma, mean, rstd, dy, dx, rows, cols);
    }
    if (!packed) launch_dx_v2<1>(x, gamma, mean, rstd, dy, dx, rows, cols);
  }
  // dγ and dβ: v1's two stages.
  if (dgamma || dbeta) launch_param_grads(x, mean, rstd, dy, dgamma, dbeta, rows, cols, workspace);
}

// Every version for each (activation, parameter) pair the op uses: the same type, or f32
// parameters beside 16-bit activations.
#define MMG_LAYER_NORM_INSTANTIATE(T, P)                                                                            \
  template void layer_norm_forward<T, P>(const T*, const P*, const P*, T*, acc_t<T>*, acc_t<T>*, int64_t, int64_t, \
                                         acc_t<T>);                                                                \
  template void layer_norm_backward<T, P>(const T*, const P*, const acc_t<T>*, const acc_t<T>*, const T*, T*, P*,  \
                                          P*, int64_t, int64_t, acc_t<T>*);                                        \
  template void layer_norm_forward_v2<T, P>(const T*, const P*, const P*, T*, acc_t<T>*, acc_t<T>*, int64_t,       \
                                            int64_t, acc_t<T>);                                                    \
  template void layer_norm_backward_v2<T, P>(const T*, const P*, const acc_t<T>*, const acc_t<T>*, const T*, T*,   \
                                             P*, P*, int64_t, int64_t, acc_t<T>*);
MMG_LAYER_NORM_INSTANTIATE(float, float)
MMG_LAYER_NORM_INSTANTIATE(double, double)
MMG_LAYER_NORM_INSTANTIATE(bf16, bf16)
MMG_LAYER_NORM_INSTANTIATE(bf16, float)
MMG_LAYER_NORM_INSTANTIATE(f16, f16)
MMG_LAYER_NORM_INSTANTIATE(f16, float)
#undef MMG_LAYER_NORM_INSTANTIATE

}  // namespace mmg::cuda
