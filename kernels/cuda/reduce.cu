// Row reductions with warp shuffles: sum (rows and the middle dim of a block) and max/min
// with the index of the first extreme.
//
// A warp reduces 32 partial results in five steps: at each step every lane adds the value
// held by the lane `offset` above it (__shfl_down_sync), offset = 16, 8, 4, 2, 1, and lane 0
// ends with the total. No shared memory and no __syncthreads inside a warp.
//
// Launch shapes:
//  - rows of at most kWarpRowCols elements: a warp per row (8 rows per block of 256), each
//    lane striding the row by 32, then one warp reduction. Short rows (the last dim of
//    activations, a bias) keep every lane busy instead of leaving most of a block idle.
//  - longer rows: a block of 256 per row (grid-stride over rows), each thread striding the row
//    by 256; the 8 warps reduce their partials, lane 0 of each writes one to shared memory,
//    and warp 0 reduces those 8.
//  - sum_mid: a thread per output (o, k), looping over j; consecutive threads read
//    consecutive k, so every load of a warp is one coalesced row segment.
#include <type_traits>

#include "kernels/cuda/check.cuh"
#include "kernels/reduce.h"

namespace mmg::cuda {

constexpr int kReduceBlock = 256;
constexpr int kWarpsPerBlock = kReduceBlock / 32;
constexpr int64_t kWarpRowCols = 1024;

// The accumulator: double for float rows (as on the CPU), int64 for integers.
template <class T>
using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

// ---- sum ----

template <class A>
__device__ inline A warp_sum(A v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;  // complete in lane 0
}

// A warp per row: lane l adds x[r, l], x[r, l + 32], ...
template <class T>
__global__ void sum_rows_warp_kernel(const T* x, T* out, int64_t rows, int64_t cols) {
  const int lane = threadIdx.x % 32;
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  for (int64_t r = warp; r < rows; r += warps) {  // the whole warp takes the same r: shuffles see all 32 lanes
    const T* row = x + r * cols;
    Acc<T> acc = 0;
    for (int64_t c = lane; c < cols; c += 32) acc += Acc<T>(row[c]);
    acc = warp_sum(acc);
    if (lane == 0) out[r] = T(acc);
  }
}

// A block per row: thread t adds x[r, t], x[r, t + 256], ...; warps, then warp 0, reduce.
template <class T>
__global__ void sum_rows_block_kernel(const T* x, T* out, int64_t rows, int64_t cols) {
  __shared__ Acc<T> partial[kWarpsPerBlock];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * cols;
    Acc<T> acc = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) acc += Acc<T>(row[c]);
    acc = warp_sum(acc);
    if (lane == 0) partial[warp] = acc;
    __syncthreads();
    if (warp == 0) {
      acc = lane < kWarpsPerBlock ? partial[lane] : Acc<T>(0);
      acc = warp_sum(acc);
      if (lane == 0) out[r] = T(acc);
    }
    __syncthreads();  // partial is rewritten by the next row
  }
}

template <class T>
void sum_rows(const T* x, T* out, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  if (cols <= kWarpRowCols) {
    sum_rows_warp_kernel<T><<<grid_for(rows * 32, kReduceBlock), kReduceBlock, 0, current_stream()>>>(x, out, rows, cols);
  } else {
    sum_rows_block_kernel<T><<<grid_for(rows * kReduceBlock, kReduceBlock), kReduceBlock, 0, current_stream()>>>(
        x, out, rows, cols);
  }
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T>
__global__ void sum_mid_kernel(const T* x, T* out, int64_t outer, int64_t n, int64_t inner) {
  const int64_t total = outer * inner;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = i / inner, k = i % inner;
    const T* p = x + o * n * inner + k;
    Acc<T> acc = 0;
    for (int64_t j = 0; j < n; ++j) acc += Acc<T>(p[j * inner]);
    out[i] = T(acc);
  }
}

template <class T>
void sum_mid(const T* x, T* out, int64_t outer, int64_t n, int64_t inner) {
  if (outer * inner == 0) return;
  sum_mid_kernel<T><<<grid_for(outer * inner, kReduceBlock), kReduceBlock, 0, current_stream()>>>(x, out, outer, n,
                                                                                                  inner);
  MMG_CUDA_LAUNCH_CHECK();
}

// ---- max / min with the index ----
// A candidate (value, index); index −1 marks "none yet". better() decides which of two
// candidates wins: a NaN beats any number, a larger (max) or smaller (min) value beats
// another, and between equals (or two NaNs) the smaller index wins. That rule does not
// depend on the order candidates meet, so any reduction tree gives the CPU's answer: the
// extreme, at its first position, or the first NaN.

template <class T>
__device__ inline bool is_nan_value(T v) {
  if constexpr (std::is_floating_point_v<T>) return isnan(v);
  else return false;
}

template <bool Max, class T>
__device__ inline bool better(T v, int64_t i, T w, int64_t j) {  // does (v, i) beat (w, j)?
  if (i < 0) return false;
  if (j < 0) return true;
  const bool vn = is_nan_value(v), wn = is_nan_value(w);
  if (vn || wn) return vn && (!wn || i < j);
  if (Max ? v > w : v < w) return true;
  return v == w && i < j;
}

template <bool Max, class T>
__device__ inline void warp_extreme(T& v, int64_t& i) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const T w = __shfl_down_sync(0xffffffffu, v, offset);
    const int64_t j = __shfl_down_sync(0xffffffffu, i, offset);
    if (better<Max>(w, j, v, i)) {
      v = w;
      i = j;
    }
  }
}

template <bool Max, class T>
__device__ inline void scan_row(const T* row, int64_t cols, int64_t start, int64_t step, T& v, int64_t& i) {
  for (int64_t c = start; c < cols; c += step) {
    const T w = row[c];
    if (better<Max>(w, c, v, i)) {
      v = w;
      i = c;
    }
  }
}

template <bool Max, class T>
__global__ void extreme_rows_warp_kernel(const T* x, T* values, int64_t* indices, int64_t rows, int64_t cols) {
  const int lane = threadIdx.x % 32;
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  for (int64_t r = warp; r < rows; r += warps) {
    T v = T(0);
    int64_t i = -1;
    scan_row<Max>(x + r * cols, cols, lane, 32, v, i);
    warp_extreme<Max>(v, i);
    if (lane == 0) {
      values[r] = v;
      indices[r] = i;
    }
  }
}

template <bool Max, class T>
__global__ void extreme_rows_block_kernel(const T* x, T* values, int64_t* indices, int64_t rows, int64_t cols) {
  __shared__ T part_v[kWarpsPerBlock];
  __shared__ int64_t part_i[kWarpsPerBlock];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    T v = T(0);
    int64_t i = -1;
    scan_row<Max>(x + r * cols, cols, threadIdx.x, blockDim.x, v, i);
    warp_extreme<Max>(v, i);
    if (lane == 0) {
      part_v[warp] = v;
      part_i[warp] = i;
    }
    __syncthreads();
    if (warp == 0) {
      v = lane < kWarpsPerBlock ? part_v[lane] : T(0);
      i = lane < kWarpsPerBlock ? part_i[lane] : int64_t(-1);
      warp_extreme<Max>(v, i);
      if (lane == 0) {
        values[r] = v;
        indices[r] = i;
      }
    }
    __syncthreads();
  }
}

template <bool Max, class T>
static void extreme_rows(const T* x, T* values, int64_t* indices, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  if (cols <= kWarpRowCols) {
    extreme_rows_warp_kernel<Max, T><<<grid_for(rows * 32, kReduceBlock), kReduceBlock, 0, current_stream()>>>(
        x, values, indices, rows, cols);
  } else {
    extreme_rows_block_kernel<Max, T><<<grid_for(rows * kReduceBlock, kReduceBlock), kReduceBlock, 0,
                                        current_stream()>>>(x, values, indices, rows, cols);
  }
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T>
void max_rows(const T* x, T* values, int64_t* indices, int64_t rows, int64_t cols) {
  extreme_rows<true>(x, values, indices, rows, cols);
}
template <class T>
void min_rows(const T* x, T* values, int64_t* indices, int64_t rows, int64_t cols) {
  extreme_rows<false>(x, values, indices, rows, cols);
}

// ---- instantiations ----
template void sum_rows<float>(const float*, float*, int64_t, int64_t);
template void sum_rows<double>(const double*, double*, int64_t, int64_t);
template void sum_rows<int64_t>(const int64_t*, int64_t*, int64_t, int64_t);
template void sum_mid<float>(const float*, float*, int64_t, int64_t, int64_t);
template void sum_mid<double>(const double*, double*, int64_t, int64_t, int64_t);
template void sum_mid<int64_t>(const int64_t*, int64_t*, int64_t, int64_t, int64_t);
#define MMG_EXTREME(T)                                                               \
  template void max_rows<T>(const T*, T*, int64_t*, int64_t, int64_t);              \
  template void min_rows<T>(const T*, T*, int64_t*, int64_t, int64_t);
MMG_EXTREME(float)
MMG_EXTREME(double)
MMG_EXTREME(int32_t)
MMG_EXTREME(int64_t)
MMG_EXTREME(uint8_t)
#undef MMG_EXTREME

}  // namespace mmg::cuda
