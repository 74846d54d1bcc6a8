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
// Launch: 256 threads a block, grid_for(count) blocks.
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/index.h"

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

#define MMG_INDEX_FORWARD(T) \
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

template void index_select_backward<float>(const float*, const int64_t*, const int64_t*, float*, int64_t, int64_t,
                                           int64_t, int64_t);
template void index_select_backward<double>(const double*, const int64_t*, const int64_t*, double*, int64_t, int64_t,
                                            int64_t, int64_t);

}  // namespace mmg::cuda
