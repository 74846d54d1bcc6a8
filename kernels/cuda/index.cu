// Row gather (index_select, embedding) and its deterministic scatter-add backward.
//
// index_select_forward_kernel: a 1-D grid-stride loop over the outer·n·inner outputs;
//   consecutive threads take consecutive i (the innermost, contiguous dim), so a warp reads
//   a contiguous run of one selected row and writes a contiguous run of the output.
// index_select_backward_kernel: a 1-D grid-stride loop over the outer·size·inner elements of
//   gx; the thread for (o, k, i) walks the positions j that selected row k (the CSR built on
//   the host) in increasing order and adds g[o, j, i]. No atomics: one writer per element,
//   a fixed order of the terms. A row selected many times (a frequent token) makes its
//   threads walk long lists while others idle — the price of determinism without a sort on
//   the device.
// gather_forward_kernel: a grid-stride loop over the outputs p (row-major over the index's
//   shape); the thread turns p into coordinates, walks x's strides with the coordinate along
//   `dim` replaced by index[p].
// gather_backward_kernel: a grid-stride loop over lines (positions that differ only along
//   `dim`); the thread for a line walks it in order j = 0, 1, ... and adds g into the gx
//   element its index names — the one writer of every element that line can reach.
// Launch: 256 threads a block, grid_for(count) blocks.
#include "kernels/cuda/check.cuh"
#include "kernels/index.h"
#include "kernels/strided.h"

namespace mmg::cuda {

constexpr int kIndexBlock = 256;

template <class T>
__global__ void index_select_forward_kernel(const T* x, const int64_t* index, T* out, int64_t outer, int64_t size,
                                            int64_t inner, int64_t n) {
  const int64_t total = outer * n * inner;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = k % inner, j = (k / inner) % n, o = k / (inner * n);
    out[k] = x[(o * size + index[j]) * inner + i];
  }
}

template <class T>
__global__ void index_select_backward_kernel(const T* g, const int64_t* offsets, const int64_t* positions, T* gx,
                                             int64_t outer, int64_t size, int64_t inner, int64_t n) {
  const int64_t total = outer * size * inner;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total; k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = k % inner, row = (k / inner) % size, o = k / (inner * size);
    T acc = 0;
    for (int64_t p = offsets[row]; p < offsets[row + 1]; ++p) acc += g[(o * n + positions[p]) * inner + i];
    gx[k] = acc;
  }
}

template <class T>
void index_select_forward(const T* x, const int64_t* index, T* out, int64_t outer, int64_t size, int64_t inner,
                          int64_t n) {
  const int64_t total = outer * n * inner;
  if (total == 0) return;
  index_select_forward_kernel<T><<<grid_for(total, kIndexBlock), kIndexBlock, 0, current_stream()>>>(
      x, index, out, outer, size, inner, n);
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T>
void index_select_backward(const T* g, const int64_t* offsets, const int64_t* positions, T* gx, int64_t outer,
                           int64_t size, int64_t inner, int64_t n) {
  const int64_t total = outer * size * inner;
  if (total == 0) return;
  index_select_backward_kernel<T><<<grid_for(total, kIndexBlock), kIndexBlock, 0, current_stream()>>>(
      g, offsets, positions, gx, outer, size, inner, n);
  MMG_CUDA_LAUNCH_CHECK();
}

// ---- gather ----
// A layout passed by value: `shape` over `ndim` dims and one set of strides per operand
// walked (a: x or gx, b: g and index, which are contiguous).
struct GatherLayout {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t a[kMaxDims], b[kMaxDims];
  // Offsets of position i (row-major over shape) in both operands.
  __device__ void offsets(int64_t i, int64_t& oa, int64_t& ob) const {
    oa = 0;
    ob = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t c = i % shape[d];
      i /= shape[d];
      oa += c * a[d];
      ob += c * b[d];
    }
  }
};

// out[p] = x[walk(p) + index[p]·step], walk = x's strides with the one along dim set to 0.
template <class T>
__global__ void gather_forward_kernel(const T* x, const int64_t* index, T* out, GatherLayout layout, int64_t step,
                                      int64_t n) {
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < n; p += int64_t(gridDim.x) * blockDim.x) {
    int64_t ox, unused;
    layout.offsets(p, ox, unused);
    out[p] = x[ox + index[p] * step];
  }
}

// Lines over `layout` (the shape without dim): gx line start in a, g/index line start in b.
template <class T>
__global__ void gather_backward_kernel(const T* g, const int64_t* index, T* gx, GatherLayout layout, int64_t lines,
                                       int64_t len, int64_t g_step, int64_t gx_step) {
  for (int64_t l = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; l < lines; l += int64_t(gridDim.x) * blockDim.x) {
    int64_t ogx, og;
    layout.offsets(l, ogx, og);
    for (int64_t j = 0; j < len; ++j) {
      const int64_t p = og + j * g_step;
      gx[ogx + index[p] * gx_step] += g[p];
    }
  }
}

template <class T>
void gather_forward(const T* x, const int64_t* x_strides, const int64_t* index, T* out, int ndim, const int64_t* shape,
                    int64_t dim) {
  GatherLayout layout{};
  layout.ndim = ndim;
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) {
    layout.shape[d] = shape[d];
    layout.a[d] = d == dim ? 0 : x_strides[d];
    layout.b[d] = 0;
    n *= shape[d];
  }
  if (n == 0) return;
  gather_forward_kernel<T><<<grid_for(n, kIndexBlock), kIndexBlock, 0, current_stream()>>>(x, index, out, layout,
                                                                                           x_strides[dim], n);
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T>
void gather_backward(const T* g, const int64_t* index, T* gx, const int64_t* gx_strides, int ndim,
                     const int64_t* shape, int64_t dim) {
  int64_t strides[kMaxDims];  // contiguous strides of `shape` (g and index)
  for (int64_t d = ndim - 1, s = 1; d >= 0; --d) {
    strides[d] = s;
    s *= shape[d];
  }
  GatherLayout layout{};
  int64_t lines = 1;
  for (int d = 0; d < ndim; ++d) {
    if (d == dim) continue;
    layout.shape[layout.ndim] = shape[d];
    layout.a[layout.ndim] = gx_strides[d];
    layout.b[layout.ndim] = strides[d];
    lines *= shape[d];
    ++layout.ndim;
  }
  const int64_t len = shape[dim];
  if (len == 0 || lines == 0) return;
  gather_backward_kernel<T><<<grid_for(lines, kIndexBlock), kIndexBlock, 0, current_stream()>>>(
      g, index, gx, layout, lines, len, strides[dim], gx_strides[dim]);
  MMG_CUDA_LAUNCH_CHECK();
}

#define MMG_INDEX_FORWARD(T) \
  template void gather_forward<T>(const T*, const int64_t*, const int64_t*, T*, int, const int64_t*, int64_t); \
  template void index_select_forward<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);
MMG_INDEX_FORWARD(float)
MMG_INDEX_FORWARD(double)
MMG_INDEX_FORWARD(bf16)
MMG_INDEX_FORWARD(f16)
MMG_INDEX_FORWARD(int32_t)
MMG_INDEX_FORWARD(int64_t)
MMG_INDEX_FORWARD(uint8_t)
MMG_INDEX_FORWARD(bool)
#undef MMG_INDEX_FORWARD

template void gather_backward<float>(const float*, const int64_t*, float*, const int64_t*, int, const int64_t*,
                                     int64_t);
template void gather_backward<double>(const double*, const int64_t*, double*, const int64_t*, int, const int64_t*,
                                      int64_t);
template void index_select_backward<float>(const float*, const int64_t*, const int64_t*, float*, int64_t, int64_t,
                                           int64_t, int64_t);
template void index_select_backward<double>(const double*, const int64_t*, const int64_t*, double*, int64_t, int64_t,
                                            int64_t, int64_t);

}  // namespace mmg::cuda
