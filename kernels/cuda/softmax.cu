// Row softmax and log-softmax, forward and backward: the formulas in kernels/cuda/softmax.h.
//
// One row is reduced by a group of threads that all need the result (the max, the sum of
// exponentials, the dot product): kernels/cuda/row_group.cuh.
//
// Launch shapes (both grid-stride over rows; the row loop is uniform within a warp/block):
//  - cols <= 1024: a warp per row, 8 rows per block of 256. Lane l handles elements
//    l, l + 32, ... of the row: coalesced reads.
//  - longer rows: a block of 256 per row. Each warp reduces its part; lane 0 of each warp
//    writes it to shared memory; every thread then combines the 8 partials itself.
// Each pass re-reads the row from global memory (three passes forward: max, sum, write);
// a row of a few thousand floats stays in L1/L2 between passes. This is the plain version:
// an online (one-pass max and sum) and vectorised version is the next step for speed.
#include <cmath>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/row_group.cuh"
#include "kernels/cuda/softmax.h"

namespace mmg::cuda {

constexpr int kSoftmaxBlock = kRowBlock;
constexpr int kSoftmaxWarps = kRowWarps;
constexpr int64_t kWarpRowMax = 1024;

template <bool Block, bool Log, class T>
__global__ void softmax_forward_kernel(const T* x, T* y, int64_t rows, int64_t cols) {
  __shared__ T shared[kSoftmaxWarps];
  const RowGroup<Block> g;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T m = -INFINITY;
    for (int64_t c = g.start; c < cols; c += g.step) m = fmax(m, xr[c]);
    m = group_all<Block>(m, MaxOp{}, shared);
    T s = 0;
    for (int64_t c = g.start; c < cols; c += g.step) s += exp(xr[c] - m);
    s = group_all<Block>(s, SumOp{}, shared);
    if constexpr (Log) {
      const T log_norm = m + log(s);
      for (int64_t c = g.start; c < cols; c += g.step) yr[c] = xr[c] - log_norm;
    } else {
      const T inv = T(1) / s;
      for (int64_t c = g.start; c < cols; c += g.step) yr[c] = exp(xr[c] - m) * inv;
    }
  }
}

template <bool Block, bool Log, class T>
__global__ void softmax_backward_kernel(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
  __shared__ T shared[kSoftmaxWarps];
  const RowGroup<Block> g;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* yr = y + r * cols;
    const T* dyr = dy + r * cols;
    T* dxr = dx + r * cols;
    T s = 0;  // softmax: Σ dy·y;  log_softmax: Σ dy
    for (int64_t c = g.start; c < cols; c += g.step) s += Log ? dyr[c] : dyr[c] * yr[c];
    s = group_all<Block>(s, SumOp{}, shared);
    // Every read of dy in this row happened before the reduction returned, so dx may alias dy.
    for (int64_t c = g.start; c < cols; c += g.step) {
      if constexpr (Log) dxr[c] = dyr[c] - exp(yr[c]) * s;
      else dxr[c] = yr[c] * (dyr[c] - s);
    }
  }
}

template <bool Log, class T>
static void launch_forward(const T* x, T* y, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  if (cols <= kWarpRowMax) {
    softmax_forward_kernel<false, Log, T><<<grid_for(rows * 32, kSoftmaxBlock), kSoftmaxBlock, 0, current_stream()>>>(
        x, y, rows, cols);
  } else {
    softmax_forward_kernel<true, Log, T>
        <<<grid_for(rows * kSoftmaxBlock, kSoftmaxBlock), kSoftmaxBlock, 0, current_stream()>>>(x, y, rows, cols);
  }
  MMG_CUDA_LAUNCH_CHECK();
}

template <bool Log, class T>
static void launch_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  if (cols <= kWarpRowMax) {
    softmax_backward_kernel<false, Log, T><<<grid_for(rows * 32, kSoftmaxBlock), kSoftmaxBlock, 0, current_stream()>>>(
        y, dy, dx, rows, cols);
  } else {
    softmax_backward_kernel<true, Log, T>
        <<<grid_for(rows * kSoftmaxBlock, kSoftmaxBlock), kSoftmaxBlock, 0, current_stream()>>>(y, dy, dx, rows, cols);
  }
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t cols) {
  launch_forward<false>(x, y, rows, cols);
}
template <class T>
void softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
  launch_backward<false>(y, dy, dx, rows, cols);
}
template <class T>
void log_softmax_forward(const T* x, T* y, int64_t rows, int64_t cols) {
  launch_forward<true>(x, y, rows, cols);
}
template <class T>
void log_softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
  launch_backward<true>(y, dy, dx, rows, cols);
}

template void softmax_forward<float>(const float*, float*, int64_t, int64_t);
template void softmax_forward<double>(const double*, double*, int64_t, int64_t);
template void softmax_backward<float>(const float*, const float*, float*, int64_t, int64_t);
template void softmax_backward<double>(const double*, const double*, double*, int64_t, int64_t);
template void log_softmax_forward<float>(const float*, float*, int64_t, int64_t);
template void log_softmax_forward<double>(const double*, double*, int64_t, int64_t);
template void log_softmax_backward<float>(const float*, const float*, float*, int64_t, int64_t);
template void log_softmax_backward<double>(const double*, const double*, double*, int64_t, int64_t);

}  // namespace mmg::cuda
