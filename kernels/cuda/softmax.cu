// Row softmax and log-softmax, forward and backward: the formulas in kernels/softmax.h.
//
// One row is reduced by a group of threads that all need the result (the max, the sum of
// exponentials, the dot product): kernels/cuda/row_group.cuh.
//
// Launch shapes (both grid-stride over rows; the row loop is uniform within a warp/block):
//  - cols <= 1024: a warp per row, 8 rows per block of 256. Lane l handles elements
//    l, l + 32, ... of the row: coalesced reads.
//  - longer rows: a block of 256 per row. Each warp reduces its part; lane 0 of each warp
//    writes it to shared memory; every thread then combines the 8 partials itself.
// v1 re-reads the row from global memory in each pass (three passes forward: max, sum,
// write); a row of a few thousand floats stays in L1/L2 between passes. It is the plain
// version, kept to read first.
//
// Storage and math (both versions): elements are stored as T (float, double, bf16, f16) and
// computed in A = acc_t<T> (float for the 16-bit types): widen<A> as each is read, the max,
// the sums, exp and log in A — shared memory and shuffles carry A — and narrow<T> (one
// rounding) as each is stored (kernels/cuda/pack.cuh).
//
// v2 (the *_v2 entry points, family "softmax" version 2 in core/kernel_versions.cpp):
//  - online statistics: the max and the sum of exponentials in one pass
//    (kernels/cuda/row_stats.h), so the forward reads x twice instead of three times, and
//    the groups reduce (max, sum) pairs in one butterfly;
//  - 16-byte accesses: where the row length is a multiple of the pack width V (4 floats,
//    8 bf16/f16: kernels/cuda/pack.cuh) and every pointer is 16-byte aligned, each thread
//    loads and stores V elements in one access: a quarter (an eighth) of the memory
//    instructions. Otherwise (doubles, odd lengths, views at odd offsets) one element (V = 1).
// Same launch shapes as v1; a thread handles packs p = start, start + step, ... of V elements.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/pack.cuh"
#include "kernels/cuda/row_group.cuh"
#include "kernels/cuda/row_stats.h"
#include "kernels/softmax.h"

namespace mmg::cuda {

constexpr int kSoftmaxBlock = kRowBlock;
constexpr int kSoftmaxWarps = kRowWarps;
constexpr int64_t kWarpRowMax = 1024;

template <bool Block, bool Log, class T>
__global__ void softmax_forward_kernel(const T* x, T* y, int64_t rows, int64_t cols) {
  using A = acc_t<T>;
  __shared__ A shared[kSoftmaxWarps];
  const RowGroup<Block> g;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    A m = -INFINITY;
    for (int64_t c = g.start; c < cols; c += g.step) m = fmax(m, widen<A>(xr[c]));
    m = group_all<Block>(m, MaxOp{}, shared);
    A s = 0;
    for (int64_t c = g.start; c < cols; c += g.step) s += exp(widen<A>(xr[c]) - m);
    s = group_all<Block>(s, SumOp{}, shared);
    if constexpr (Log) {
      const A log_norm = m + log(s);
      for (int64_t c = g.start; c < cols; c += g.step) yr[c] = narrow<T>(widen<A>(xr[c]) - log_norm);
    } else {
      const A inv = A(1) / s;
      for (int64_t c = g.start; c < cols; c += g.step) yr[c] = narrow<T>(exp(widen<A>(xr[c]) - m) * inv);
    }
  }
}

template <bool Block, bool Log, class T>
__global__ void softmax_backward_kernel(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
  using A = acc_t<T>;
  __shared__ A shared[kSoftmaxWarps];
  const RowGroup<Block> g;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* yr = y + r * cols;
    const T* dyr = dy + r * cols;
    T* dxr = dx + r * cols;
    A s = 0;  // softmax: Σ dy·y;  log_softmax: Σ dy
    for (int64_t c = g.start; c < cols; c += g.step)
      s += Log ? widen<A>(dyr[c]) : widen<A>(dyr[c]) * widen<A>(yr[c]);
    s = group_all<Block>(s, SumOp{}, shared);
    // Every read of dy in this row happened before the reduction returned, so dx may alias dy.
    for (int64_t c = g.start; c < cols; c += g.step) {
      const A yc = widen<A>(yr[c]), dyc = widen<A>(dyr[c]);
      if constexpr (Log) dxr[c] = narrow<T>(dyc - exp(yc) * s);
      else dxr[c] = narrow<T>(yc * (dyc - s));
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

// ---- v2: online statistics, 16-byte accesses ----

// Every thread of the group ends with the group's (max, sum) statistics. The butterfly
// combines lane l with lane l XOR offset; combine(a, b) and combine(b, a) are the same
// numbers (fmax and + are commutative), so all lanes agree. shared_m/shared_s: kRowWarps each.
template <bool Block, class A>
__device__ inline SoftmaxStats<A> group_softmax_stats(SoftmaxStats<A> st, A* shared_m, A* shared_s) {
  for (int offset = 16; offset > 0; offset /= 2) {
    SoftmaxStats<A> other;
    other.m = __shfl_xor_sync(0xffffffffu, st.m, offset);
    other.s = __shfl_xor_sync(0xffffffffu, st.s, offset);
    st = softmax_stats_combine(st, other);
  }
  if constexpr (!Block) {
    return st;
  } else {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) {
      shared_m[warp] = st.m;
      shared_s[warp] = st.s;
    }
    __syncthreads();
    SoftmaxStats<A> total;
    total.m = shared_m[0];
    total.s = shared_s[0];
    for (int w = 1; w < kRowWarps; ++w) {
      SoftmaxStats<A> part;
      part.m = shared_m[w];
      part.s = shared_s[w];
      total = softmax_stats_combine(total, part);
    }
    __syncthreads();  // shared is reused by the next row
    return total;
  }
}

// Pass 1: (m, s) of the row in one read. Pass 2: y from a second read of x.
// V divides cols (launch_forward_v2 checks).
template <bool Block, bool Log, int V, class T>
__global__ void softmax_forward_v2_kernel(const T* x, T* y, int64_t rows, int64_t cols) {
  using A = acc_t<T>;
  __shared__ A shared_m[kSoftmaxWarps], shared_s[kSoftmaxWarps];
  const RowGroup<Block> g;
  const int64_t packs = cols / V;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    SoftmaxStats<A> st;
    for (int64_t p = g.start; p < packs; p += g.step) {
      A v[V];
      load_pack<V>(xr + p * V, v);
#pragma unroll
      for (int i = 0; i < V; ++i) softmax_stats_add(st, v[i]);
    }
    st = group_softmax_stats<Block>(st, shared_m, shared_s);
    // As v1: y = exp(x − m)·(1/s), or x − (m + log s); a row of all −∞ (s = 0) gives NaN.
    const A inv = A(1) / st.s, log_norm = st.m + log(st.s);
    for (int64_t p = g.start; p < packs; p += g.step) {
      A v[V];
      load_pack<V>(xr + p * V, v);
#pragma unroll
      for (int i = 0; i < V; ++i) v[i] = Log ? v[i] - log_norm : exp(v[i] - st.m) * inv;
      store_pack<V>(yr + p * V, v);
    }
  }
}

// Pass 1: Σ dy·y (softmax) or Σ dy (log_softmax). Pass 2: dx. Every read of dy in a row
// happens before the reduction returns, so dx may alias dy (each pack is read and then
// written by the same thread).
template <bool Block, bool Log, int V, class T>
__global__ void softmax_backward_v2_kernel(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
  using A = acc_t<T>;
  __shared__ A shared[kSoftmaxWarps];
  const RowGroup<Block> g;
  const int64_t packs = cols / V;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* yr = y + r * cols;
    const T* dyr = dy + r * cols;
    T* dxr = dx + r * cols;
    A s = 0;
    for (int64_t p = g.start; p < packs; p += g.step) {
      A yv[V], dv[V];
      load_pack<V>(yr + p * V, yv);
      load_pack<V>(dyr + p * V, dv);
#pragma unroll
      for (int i = 0; i < V; ++i) s += Log ? dv[i] : dv[i] * yv[i];
    }
    s = group_all<Block>(s, SumOp{}, shared);
    for (int64_t p = g.start; p < packs; p += g.step) {
      A yv[V], dv[V];
      load_pack<V>(yr + p * V, yv);
      load_pack<V>(dyr + p * V, dv);
#pragma unroll
      for (int i = 0; i < V; ++i) dv[i] = Log ? dv[i] - exp(yv[i]) * s : yv[i] * (dv[i] - s);
      store_pack<V>(dxr + p * V, dv);
    }
  }
}

template <bool Log, int V, class T>
static void launch_forward_v2_packs(const T* x, T* y, int64_t rows, int64_t cols) {
  if (cols <= kWarpRowMax) {
    softmax_forward_v2_kernel<false, Log, V, T>
        <<<grid_for(rows * 32, kSoftmaxBlock), kSoftmaxBlock, 0, current_stream()>>>(x, y, rows, cols);
  } else {
    softmax_forward_v2_kernel<true, Log, V, T>
        <<<grid_for(rows * kSoftmaxBlock, kSoftmaxBlock), kSoftmaxBlock, 0, current_stream()>>>(x, y, rows, cols);
  }
  MMG_CUDA_LAUNCH_CHECK();
}

template <bool Log, int V, class T>
static void launch_backward_v2_packs(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
  if (cols <= kWarpRowMax) {
    softmax_backward_v2_kernel<false, Log, V, T>
        <<<grid_for(rows * 32, kSoftmaxBlock), kSoftmaxBlock, 0, current_stream()>>>(y, dy, dx, rows, cols);
  } else {
    softmax_backward_v2_kernel<true, Log, V, T>
        <<<grid_for(rows * kSoftmaxBlock, kSoftmaxBlock), kSoftmaxBlock, 0, current_stream()>>>(y, dy, dx, rows, cols);
  }
  MMG_CUDA_LAUNCH_CHECK();
}

// Packs of pack_width<T> where the rows fit them (kernels/cuda/pack.cuh: packs_fit), else
// one element at a time.
template <bool Log, class T>
static void launch_forward_v2(const T* x, T* y, int64_t rows, int64_t cols) {
  if (rows == 0 || cols == 0) return;
  if constexpr (pack_width<T> > 1) {
    if (packs_fit<T>(cols, {x, y})) return launch_forward_v2_packs<Log, pack_width<T>>(x, y, rows, cols);
  }
  launch_forward_v2_packs<Log, 1>(x, y, rows, cols);
}

template <bool Log, class T>
static void launch_backward_v2(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
  if (rows == 0 || cols == 0) return;
  if constexpr (pack_width<T> > 1) {
    if (packs_fit<T>(cols, {y, dy, dx}))
      return launch_backward_v2_packs<Log, pack_width<T>>(y, dy, dx, rows, cols);
  }
  launch_backward_v2_packs<Log, 1>(y, dy, dx, rows, cols);
}

template <class T>
void softmax_forward_v2(const T* x, T* y, int64_t rows, int64_t cols) {
  launch_forward_v2<false>(x, y, rows, cols);
}
template <class T>
void softmax_backward_v2(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
  launch_backward_v2<false>(y, dy, dx, rows, cols);
}
template <class T>
void log_softmax_forward_v2(const T* x, T* y, int64_t rows, int64_t cols) {
  launch_forward_v2<true>(x, y, rows, cols);
}
template <class T>
void log_softmax_backward_v2(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
  launch_backward_v2<true>(y, dy, dx, rows, cols);
}

// Every version for every storage type.
#define MMG_SOFTMAX_INSTANTIATE(T)                                                   \
  template void softmax_forward<T>(const T*, T*, int64_t, int64_t);                  \
  template void softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t);       \
  template void log_softmax_forward<T>(const T*, T*, int64_t, int64_t);              \
  template void log_softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t);   \
  template void softmax_forward_v2<T>(const T*, T*, int64_t, int64_t);               \
  template void softmax_backward_v2<T>(const T*, const T*, T*, int64_t, int64_t);    \
  template void log_softmax_forward_v2<T>(const T*, T*, int64_t, int64_t);           \
  template void log_softmax_backward_v2<T>(const T*, const T*, T*, int64_t, int64_t);
MMG_SOFTMAX_INSTANTIATE(float)
MMG_SOFTMAX_INSTANTIATE(double)
MMG_SOFTMAX_INSTANTIATE(bf16)
MMG_SOFTMAX_INSTANTIATE(f16)
#undef MMG_SOFTMAX_INSTANTIATE

}  // namespace mmg::cuda
