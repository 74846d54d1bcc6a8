// Layer normalisation, forward and backward: the formulas in kernels/cuda/layer_norm.h.
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
//  - 16-byte accesses where the row length is a multiple of 4 floats and every pointer is
//    16-byte aligned (x, y, γ, β; x, dy, dx, γ in the backward): each thread loads and
//    stores float4 (V = 4), else one element (V = 1).
//  - backward: dx as v1 with those accesses; dγ and dβ by v1's two stages.
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/pack.cuh"
#include "kernels/cuda/layer_norm.h"
#include "kernels/cuda/row_group.cuh"
#include "kernels/cuda/row_stats.h"

namespace mmg::cuda {

constexpr int64_t kWarpRowMax = 1024;
constexpr int64_t kParamBlocks = 64;

template <bool Block, class T>
__global__ void layer_norm_forward_kernel(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd,
                                          int64_t rows, int64_t cols, T eps) {
  __shared__ T shared[kRowWarps];
  const RowGroup<Block> g;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T s = 0;
    for (int64_t c = g.start; c < cols; c += g.step) s += xr[c];
    const T mu = group_all<Block>(s, SumOp{}, shared) / T(cols);
    T q = 0;
    for (int64_t c = g.start; c < cols; c += g.step) q += (xr[c] - mu) * (xr[c] - mu);
    const T var = group_all<Block>(q, SumOp{}, shared) / T(cols);
    const T rs = T(1) / sqrt(var + eps);
    for (int64_t c = g.start; c < cols; c += g.step) {
      const T xhat = (xr[c] - mu) * rs;
      yr[c] = (gamma ? gamma[c] : T(1)) * xhat + (beta ? beta[c] : T(0));
    }
    if (g.start == 0) {  // one thread of the group
      if (mean) mean[r] = mu;
      if (rstd) rstd[r] = rs;
    }
  }
}

template <bool Block, class T>
__global__ void layer_norm_dx_kernel(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy, T* dx,
                                     int64_t rows, int64_t cols) {
  __shared__ T shared[kRowWarps];
  const RowGroup<Block> g;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* xr = x + r * cols;
    const T* dyr = dy + r * cols;
    T* dxr = dx + r * cols;
    const T mu = mean[r], rs = rstd[r];
    T sum_g = 0, sum_gx = 0;
    for (int64_t c = g.start; c < cols; c += g.step) {
      const T gc = (gamma ? gamma[c] : T(1)) * dyr[c];
      sum_g += gc;
      sum_gx += gc * (xr[c] - mu) * rs;
    }
    const T mean_g = group_all<Block>(sum_g, SumOp{}, shared) / T(cols);
    const T mean_gx = group_all<Block>(sum_gx, SumOp{}, shared) / T(cols);
    for (int64_t c = g.start; c < cols; c += g.step) {
      const T gc = (gamma ? gamma[c] : T(1)) * dyr[c];
      const T xhat = (xr[c] - mu) * rs;
      dxr[c] = rs * (gc - mean_g - xhat * mean_gx);
    }
  }
}

// Stage 1: partial[b, 0, c] = Σ_{r in block b} dy[r,c]·x̂[r,c], partial[b, 1, c] = Σ dy[r,c].
// Grid: (ceil(cols / 256), blocks); block b covers rows [b·rows/blocks, (b+1)·rows/blocks).
template <class T>
__global__ void layer_norm_param_partial_kernel(const T* x, const T* mean, const T* rstd, const T* dy, T* partial,
                                                int64_t rows, int64_t cols, int64_t blocks) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (c >= cols) return;
  const int64_t r0 = b * rows / blocks, r1 = (b + 1) * rows / blocks;
  T sg = 0, sb = 0;
  for (int64_t r = r0; r < r1; ++r) {
    const T d = dy[r * cols + c];
    sg += d * (x[r * cols + c] - mean[r]) * rstd[r];
    sb += d;
  }
  partial[(b * 2) * cols + c] = sg;
  partial[(b * 2 + 1) * cols + c] = sb;
}

// Stage 2: dγ[c] = Σ_b partial[b, 0, c], dβ[c] = Σ_b partial[b, 1, c], blocks in order.
template <class T>
__global__ void layer_norm_param_final_kernel(const T* partial, T* dgamma, T* dbeta, int64_t cols, int64_t blocks) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols; c += int64_t(gridDim.x) * blockDim.x) {
    T sg = 0, sb = 0;
    for (int64_t b = 0; b < blocks; ++b) {
      sg += partial[(b * 2) * cols + c];
      sb += partial[(b * 2 + 1) * cols + c];
    }
    if (dgamma) dgamma[c] = sg;
    if (dbeta) dbeta[c] = sb;
  }
}

static int64_t param_blocks(int64_t rows) { return std::min(rows, kParamBlocks); }

int64_t layer_norm_backward_workspace(int64_t rows, int64_t cols) { return param_blocks(rows) * 2 * cols; }

template <class T>
void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int64_t rows,
                        int64_t cols, T eps) {
  if (rows == 0 || cols == 0) return;
  if (cols <= kWarpRowMax) {
    layer_norm_forward_kernel<false, T><<<grid_for(rows * 32, kRowBlock), kRowBlock, 0, current_stream()>>>(
        x, gamma, beta, y, mean, rstd, rows, cols, eps);
  } else {
    layer_norm_forward_kernel<true, T><<<grid_for(rows * kRowBlock, kRowBlock), kRowBlock, 0, current_stream()>>>(
        x, gamma, beta, y, mean, rstd, rows, cols, eps);
  }
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T>
void layer_norm_backward(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy, T* dx, T* dgamma,
                         T* dbeta, int64_t rows, int64_t cols, T* workspace) {
  if (cols == 0) return;
  if (dx && rows > 0) {
    if (cols <= kWarpRowMax) {
      layer_norm_dx_kernel<false, T><<<grid_for(rows * 32, kRowBlock), kRowBlock, 0, current_stream()>>>(
          x, gamma, mean, rstd, dy, dx, rows, cols);
    } else {
      layer_norm_dx_kernel<true, T><<<grid_for(rows * kRowBlock, kRowBlock), kRowBlock, 0, current_stream()>>>(
          x, gamma, mean, rstd, dy, dx, rows, cols);
    }
    MMG_CUDA_LAUNCH_CHECK();
  }
  if (!dgamma && !dbeta) return;
  const int64_t blocks = param_blocks(rows);
  if (blocks > 0) {
    const dim3 grid(static_cast<unsigned>((cols + kRowBlock - 1) / kRowBlock), static_cast<unsigned>(blocks));
    layer_norm_param_partial_kernel<T><<<grid, kRowBlock, 0, current_stream()>>>(x, mean, rstd, dy, workspace, rows,
                                                                                 cols, blocks);
    MMG_CUDA_LAUNCH_CHECK();
  }
  // With no rows the sums are 0: stage 2 over zero blocks writes exactly that.
  layer_norm_param_final_kernel<T><<<grid_for(cols, kRowBlock), kRowBlock, 0, current_stream()>>>(workspace, dgamma,
                                                                                                  dbeta, cols, blocks);
  MMG_CUDA_LAUNCH_CHECK();
}

template void layer_norm_forward<float>(const float*, const float*, const float*, float*, float*, float*, int64_t,
                                        int64_t, float);
template void layer_norm_forward<double>(const double*, const double*, const double*, double*, double*, double*,
                                         int64_t, int64_t, double);
template void layer_norm_backward<float>(const float*, const float*, const float*, const float*, const float*, float*,
                                         float*, float*, int64_t, int64_t, float*);
template void layer_norm_backward<double>(const double*, const double*, const double*, const double*, const double*,
                                          double*, double*, double*, int64_t, int64_t, double*);

// ---- v2: Welford statistics, float4 accesses ----

// Every thread of the group ends with the group's Welford statistics: a warp combines into
// lane 0 (lane l takes lane l + offset; lanes whose partner is past 31 get their own value
// back and compute numbers nobody reads), then lane 0's result is broadcast. A block's warps
// then combine their lane-0 results through shared memory, in warp order, in every thread.
// shared: 3·kRowWarps values (n, mean, M₂ of each warp).
template <bool Block, class T>
__device__ inline WelfordStats<T> group_welford(WelfordStats<T> st, T* shared) {
  for (int offset = 16; offset > 0; offset /= 2) {
    WelfordStats<T> other;
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
    WelfordStats<T> total;
    for (int w = 0; w < kRowWarps; ++w) {
      WelfordStats<T> part;
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
template <bool Block, int V, class T>
__global__ void layer_norm_forward_v2_kernel(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd,
                                             int64_t rows, int64_t cols, T eps) {
  __shared__ T shared[3 * kRowWarps];
  const RowGroup<Block> g;
  const int64_t packs = cols / V;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    WelfordStats<T> st;
    for (int64_t p = g.start; p < packs; p += g.step) {
      T v[V];
      load_pack<V>(xr + p * V, v, T(0));
#pragma unroll
      for (int i = 0; i < V; ++i) welford_add(st, v[i]);
    }
    st = group_welford<Block>(st, shared);
    const T mu = st.mean, rs = T(1) / sqrt(st.m2 / T(cols) + eps);
    for (int64_t p = g.start; p < packs; p += g.step) {
      T v[V], gm[V], bt[V];
      load_pack<V>(xr + p * V, v, T(0));
      load_pack<V>(gamma ? gamma + p * V : nullptr, gm, T(1));
      load_pack<V>(beta ? beta + p * V : nullptr, bt, T(0));
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
template <bool Block, int V, class T>
__global__ void layer_norm_dx_v2_kernel(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy, T* dx,
                                        int64_t rows, int64_t cols) {
  __shared__ T shared[kRowWarps];
  const RowGroup<Block> g;
  const int64_t packs = cols / V;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* xr = x + r * cols;
    const T* dyr = dy + r * cols;
    T* dxr = dx + r * cols;
    const T mu = mean[r], rs = rstd[r];
    T sum_g = 0, sum_gx = 0;
    for (int64_t p = g.start; p < packs; p += g.step) {
      T xv[V], dv[V], gm[V];
      load_pack<V>(xr + p * V, xv, T(0));
      load_pack<V>(dyr + p * V, dv, T(0));
      load_pack<V>(gamma ? gamma + p * V : nullptr, gm, T(1));
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const T gc = gm[i] * dv[i];
        sum_g += gc;
        sum_gx += gc * (xv[i] - mu) * rs;
      }
    }
    const T mean_g = group_all<Block>(sum_g, SumOp{}, shared) / T(cols);
    const T mean_gx = group_all<Block>(sum_gx, SumOp{}, shared) / T(cols);
    for (int64_t p = g.start; p < packs; p += g.step) {
      T xv[V], dv[V], gm[V];
      load_pack<V>(xr + p * V, xv, T(0));
      load_pack<V>(dyr + p * V, dv, T(0));
      load_pack<V>(gamma ? gamma + p * V : nullptr, gm, T(1));
#pragma unroll
      for (int i = 0; i < V; ++i) dv[i] = rs * (gm[i] * dv[i] - mean_g - (xv[i] - mu) * rs * mean_gx);
      store_pack<V>(dxr + p * V, dv);
    }
  }
}

// 16-byte packs need floats, a row length that is a multiple of 4, and aligned pointers
// (null ones, an absent γ or β, do not count).
template <class T>
static bool packs_of_4(int64_t cols, std::initializer_list<const void*> pointers) {
  if (!std::is_same_v<T, float> || cols % 4 != 0) return false;
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

template <int V, class T>
static void launch_forward_v2(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int64_t rows,
                              int64_t cols, T eps) {
  if (cols <= kWarpRowMax) {
    layer_norm_forward_v2_kernel<false, V, T><<<grid_for(rows * 32, kRowBlock), kRowBlock, 0, current_stream()>>>(
        x, gamma, beta, y, mean, rstd, rows, cols, eps);
  } else {
    layer_norm_forward_v2_kernel<true, V, T><<<grid_for(rows * kRowBlock, kRowBlock), kRowBlock, 0, current_stream()>>>(
        x, gamma, beta, y, mean, rstd, rows, cols, eps);
  }
  MMG_CUDA_LAUNCH_CHECK();
}

template <int V, class T>
static void launch_dx_v2(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy, T* dx, int64_t rows,
                         int64_t cols) {
  if (cols <= kWarpRowMax) {
    layer_norm_dx_v2_kernel<false, V, T><<<grid_for(rows * 32, kRowBlock), kRowBlock, 0, current_stream()>>>(
        x, gamma, mean, rstd, dy, dx, rows, cols);
  } else {
    layer_norm_dx_v2_kernel<true, V, T><<<grid_for(rows * kRowBlock, kRowBlock), kRowBlock, 0, current_stream()>>>(
        x, gamma, mean, rstd, dy, dx, rows, cols);
  }
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T>
void layer_norm_forward_v2(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int64_t rows,
                           int64_t cols, T eps) {
  if (rows == 0 || cols == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (packs_of_4<T>(cols, {x, gamma, beta, y}))
      return launch_forward_v2<4>(x, gamma, beta, y, mean, rstd, rows, cols, eps);
  }
  launch_forward_v2<1>(x, gamma, beta, y, mean, rstd, rows, cols, eps);
}

template <class T>
void layer_norm_backward_v2(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy, T* dx, T* dgamma,
                            T* dbeta, int64_t rows, int64_t cols, T* workspace) {
  if (cols == 0) return;
  if (dx && rows > 0) {
    bool packed = false;
    if constexpr (std::is_same_v<T, float>) {
      packed = packs_of_4<T>(cols, {x, gamma, dy, dx});
      if (packed) launch_dx_v2<4>(x, gamma, mean, rstd, dy, dx, rows, cols);
    }
    if (!packed) launch_dx_v2<1>(x, gamma, mean, rstd, dy, dx, rows, cols);
  }
  // dγ and dβ: v1's two stages (dx == nullptr: they alone).
  if (dgamma || dbeta) layer_norm_backward<T>(x, gamma, mean, rstd, dy, nullptr, dgamma, dbeta, rows, cols, workspace);
}

template void layer_norm_forward_v2<float>(const float*, const float*, const float*, float*, float*, float*, int64_t,
                                           int64_t, float);
template void layer_norm_forward_v2<double>(const double*, const double*, const double*, double*, double*, double*,
                                            int64_t, int64_t, double);
template void layer_norm_backward_v2<float>(const float*, const float*, const float*, const float*, const float*,
                                            float*, float*, float*, int64_t, int64_t, float*);
template void layer_norm_backward_v2<double>(const double*, const double*, const double*, const double*,
                                             const double*, double*, double*, double*, int64_t, int64_t, double*);

}  // namespace mmg::cuda
