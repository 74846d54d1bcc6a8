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
#include <algorithm>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/layer_norm.h"
#include "kernels/cuda/row_group.cuh"

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

}  // namespace mmg::cuda
