// Row-wise kernels (softmax, layer_norm): a row is handled by a group of threads — a warp
// for short rows, a block of kRowBlock threads for long ones — and every thread of the group
// needs the row's reductions (a max, a sum), so the reductions are butterflies: at each step
// lane l combines its value with lane l XOR offset (__shfl_xor_sync, offset 16, 8, 4, 2, 1),
// and after five steps every lane holds the total, no broadcast needed. A block then
// combines its warps' totals through shared memory.
//
// Launch: 256 threads a block. Warp groups: grid_for(rows · 32) blocks, 8 rows per block at
// a time. Block groups: grid_for(rows · 256) blocks, one row per block at a time. Both loop
// over rows with a grid stride; the loop is uniform within the group, so every shuffle and
// __syncthreads is reached by all its threads.
#pragma once
#include <cstdint>

namespace mmg::cuda {

constexpr int kRowBlock = 256;
constexpr int kRowWarps = kRowBlock / 32;

struct MaxOp {
  template <class T>
  __device__ T operator()(T a, T b) const { return fmax(a, b); }
};
struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const { return a + b; }
};

// Every lane of the warp ends with op over the 32 lanes' values.
template <class T, class Op>
__device__ inline T warp_all(T v, Op op) {
  for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// The row reduction of a group: a warp (Block == false) or a block of kRowBlock threads.
// Every thread of the group gets the result. `shared` holds kRowWarps values (block only).
template <bool Block, class T, class Op>
__device__ inline T group_all(T v, Op op, T* shared) {
  v = warp_all(v, op);
  if constexpr (!Block) {
    return v;
  } else {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    T total = shared[0];
    for (int w = 1; w < kRowWarps; ++w) total = op(total, shared[w]);
    __syncthreads();  // shared is reused by the next reduction
    return total;
  }
}

// Where this thread works: its group's first row and row step, and its first column and
// column step within a row.
template <bool Block>
struct RowGroup {
  int64_t first_row, row_step;
  int start, step;
  __device__ RowGroup() {
    if constexpr (Block) {
      first_row = blockIdx.x;
      row_step = gridDim.x;
      start = threadIdx.x;
      step = blockDim.x;
    } else {
      first_row = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
      row_step = int64_t(gridDim.x) * blockDim.x / 32;
      start = threadIdx.x % 32;
      step = 32;
    }
  }
};

}  // namespace mmg::cuda
