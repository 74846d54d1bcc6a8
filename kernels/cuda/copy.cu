// Copies and fills on the device: copy_cast (strided, converting) and fill.
//
// copy_cast_kernel: dst[i] = Dst(src[i]) for every linear index i of the shape.
//   Launch: 1-D grid-stride loop, 256 threads a block, grid_for(n) blocks. The dims are
//   merged first (kernels/cuda/strided.cuh): a contiguous copy or conversion is one dim and
//   each thread reads and writes consecutive elements (coalesced); a transposing copy reads
//   with a stride, each warp touching 32 sectors far apart (version 1 of the kernel family
//   "copy": copy_cast).
// copy_tiled_kernel (version 2, copy_cast_v2, for the copies kernels/cuda/copy_plan.h calls
//   transposes; any other copy runs copy_cast_kernel): a 32×32 tile of the transposed plane
//   moves through shared memory, read along the source's unit-stride dim and written along
//   the destination's, so both sides are coalesced; converts as copy_cast_kernel does.
//   Launch: blocks of 32×8 threads, min(tiles, 65536) blocks, each looping over tiles t,
//   t + gridDim.x, ... (the tile order and the index arithmetic: kernels/cuda/copy_plan.h).
//   Shared memory: 32 padded rows of 32 source elements (≤ 8.3 KiB, for 8-byte types).
// fill_kernel: dst[i] = value, same launch shape as copy_cast_kernel.
#include "kernels/copy.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/copy_plan.h"
#include "kernels/cuda/strided.cuh"

namespace mmg::cuda {

constexpr int kCopyBlock = 256;

template <class Dst, class Src>
__global__ void copy_cast_kernel(const Src* src, Dst* dst, int64_t n, StridedLayout<2> layout) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2];
    layout.offsets(i, off);
    dst[off[1]] = convert<Dst>(src[off[0]]);
  }
}

template <class Dst, class Src>
void copy_cast(const Src* src, const int64_t* src_strides, Dst* dst, const int64_t* dst_strides, int ndim,
               const int64_t* shape, int64_t n) {
  if (n == 0) return;
  const StridedLayout<2> layout(MergedDims<2>(ndim, shape, {src_strides, dst_strides}));
  copy_cast_kernel<Dst, Src><<<grid_for(n, kCopyBlock), kCopyBlock, 0, current_stream()>>>(src, dst, n, layout);
  MMG_CUDA_LAUNCH_CHECK();
}

template <class Dst, class Src>
__global__ void __launch_bounds__(kTile* kTileRows) copy_tiled_kernel(const Src* src, Dst* dst, TransposeCopyPlan plan) {
  // Raw bytes, not Src[...]: a __shared__ array may not have a constructor to run (bf16 and
  // f16 have one). Padded rows: phase 2 reads a column, 32 rows apart, in 32 banks.
  constexpr int pitch = tile_pitch(sizeof(Src));
  __shared__ __align__(8) unsigned char raw[kTile * pitch * sizeof(Src)];
  Src* tile = reinterpret_cast<Src*>(raw);
  const int x = threadIdx.x, y = threadIdx.y;
  // The loop's bounds are the same for every thread of the block, so every thread reaches
  // both barriers the same number of times.
  for (int64_t t = blockIdx.x; t < plan.tiles(); t += gridDim.x) {
    const TileOrigin o = tile_origin(plan, t);
#pragma unroll
    for (int k = 0; k < kTileSteps; ++k) {
      const TileStep s = tile_read(plan, o, x, y, k);
      if (s.inside) tile[s.row * pitch + s.col] = src[s.offset];
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kTileSteps; ++k) {
      const TileStep s = tile_write(plan, o, x, y, k);
      if (s.inside) dst[s.offset] = convert<Dst>(tile[s.row * pitch + s.col]);
    }
    __syncthreads();  // the next tile overwrites what this one's phase 2 reads
  }
}

template <class Dst, class Src>
void copy_cast_v2(const Src* src, const int64_t* src_strides, Dst* dst, const int64_t* dst_strides, int ndim,
                  const int64_t* shape, int64_t n) {
  if (n == 0) return;
  const MergedDims<2> merged(ndim, shape, {src_strides, dst_strides});
  const TransposeCopyPlan plan = plan_transpose_copy(merged);
  if (!plan.tiled) {
    const StridedLayout<2> layout(merged);
    copy_cast_kernel<Dst, Src><<<grid_for(n, kCopyBlock), kCopyBlock, 0, current_stream()>>>(src, dst, n, layout);
  } else {
    const dim3 block(kTile, kTileRows);
    copy_tiled_kernel<Dst, Src><<<static_cast<unsigned>(plan.blocks()), block, 0, current_stream()>>>(src, dst, plan);
  }
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T>
__global__ void fill_kernel(T* dst, int64_t n, T value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = value;
}

template <class T>
void fill(T* dst, int64_t n, T value) {
  if (n == 0) return;
  fill_kernel<T><<<grid_for(n, kCopyBlock), kCopyBlock, 0, current_stream()>>>(dst, n, value);
  MMG_CUDA_LAUNCH_CHECK();
}

// ---- instantiations: every pair of the eight dtypes ----
#define MMG_COPY_PAIR(D, S)                                                                                  \
  template void copy_cast<D, S>(const S*, const int64_t*, D*, const int64_t*, int, const int64_t*, int64_t);    \
  template void copy_cast_v2<D, S>(const S*, const int64_t*, D*, const int64_t*, int, const int64_t*, int64_t);
#define MMG_COPY_FROM(S)                                                                                 \
  MMG_COPY_PAIR(float, S) MMG_COPY_PAIR(double, S) MMG_COPY_PAIR(bf16, S) MMG_COPY_PAIR(f16, S)           \
  MMG_COPY_PAIR(int32_t, S) MMG_COPY_PAIR(int64_t, S) MMG_COPY_PAIR(uint8_t, S) MMG_COPY_PAIR(bool, S)
MMG_COPY_FROM(float)
MMG_COPY_FROM(double)
MMG_COPY_FROM(bf16)
MMG_COPY_FROM(f16)
MMG_COPY_FROM(int32_t)
MMG_COPY_FROM(int64_t)
MMG_COPY_FROM(uint8_t)
MMG_COPY_FROM(bool)
#undef MMG_COPY_FROM
#undef MMG_COPY_PAIR

template void fill<float>(float*, int64_t, float);
template void fill<double>(double*, int64_t, double);
template void fill<bf16>(bf16*, int64_t, bf16);
template void fill<f16>(f16*, int64_t, f16);
template void fill<int32_t>(int32_t*, int64_t, int32_t);
template void fill<int64_t>(int64_t*, int64_t, int64_t);
template void fill<uint8_t>(uint8_t*, int64_t, uint8_t);
template void fill<bool>(bool*, int64_t, bool);

}  // namespace mmg::cuda
