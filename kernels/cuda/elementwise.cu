// Elementwise kernels: unary ops, binary ops with broadcasting, where, GELU.
//
// Launch shape, for every kernel in this file: a 1-D grid-stride loop, 256 threads a
// block, grid_for(n) blocks (kernels/cuda/check.cuh); thread t handles elements t,
// t + gridDim·blockDim, ... so any n works with any grid, and consecutive threads touch
// consecutive elements (coalesced) whenever the operands are contiguous.
//
// unary_kernel:   out[i] = f(x[i]),            x and out contiguous
// binary_kernel:  out[i] = a[off_a(i)] ∘ b[off_b(i)], out contiguous, the offsets from the
//                 merged strided layout (kernels/cuda/strided.cuh): stride 0 repeats an
//                 operand along a broadcast dim, and a fully contiguous pair skips the
//                 index arithmetic.
// where_kernel:   out[i] = c[off_c(i)] ? a[off_a(i)] : b[off_b(i)]
// gelu_*_kernel:  the formulas in kernels/gelu.h, one pass over x (and dy).
//
// Version 2 (the *_packed_kernel's, at the end): the same math on 16-byte packs of V
// elements (V = 16 / sizeof(T)), so that a warp moves 512 contiguous bytes per operand and
// access instead of 128, with V independent elements in flight per thread. Same launch
// shape with packs in place of elements: grid_for(n / V) blocks of 256, a grid-stride loop
// over the packs; the tail (fewer than V elements after the last whole pack) is done one
// element a thread by the grid's first threads. Where packs do not fit (the layout or the
// pointers' alignment, kernels/cuda/elementwise_plan.h), the v1 kernel runs instead.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/elementwise_plan.h"
#include "kernels/cuda/pack.cuh"
#include "kernels/cuda/strided.cuh"
#include "kernels/elementwise.h"
#include "kernels/gelu.h"

namespace mmg::cuda {

constexpr int kBlock = 256;

#define MMG_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

// ---- unary ----

// The scalar math of each unary op (core/ops/unary.cpp has the same in its lambdas).
template <class T>
__device__ inline T apply_unary(UnaryOp op, T v, double p0, double p1) {
  if constexpr (std::is_floating_point_v<T>) {
    switch (op) {
      case UnaryOp::neg: return -v;
      case UnaryOp::exp: return exp(v);
      case UnaryOp::log: return log(v);
      case UnaryOp::sqrt: return sqrt(v);
      case UnaryOp::rsqrt: return T(1) / sqrt(v);
      case UnaryOp::abs: return fabs(v);  // |−0| = +0
      case UnaryOp::tanh: return tanh(v);
      case UnaryOp::sigmoid: {
        // For v < 0 the same value is e^v/(1 + e^v), which never overflows e^(−v).
        if (v >= T(0)) return T(1) / (T(1) + exp(-v));
        const T e = exp(v);
        return e / (T(1) + e);
      }
      case UnaryOp::relu: return (v > T(0) || isnan(v)) ? v : T(0);  // NaN passes through
      case UnaryOp::pow:
        if (p0 == 2.0) return v * v;
        if (p0 == 1.0) return v;
        return pow(v, T(p0));
      case UnaryOp::clamp: return v < T(p0) ? T(p0) : (v > T(p1) ? T(p1) : v);  // NaN passes through
    }
    return v;
  } else {
    switch (op) {
      case UnaryOp::abs:
        if constexpr (std::is_unsigned_v<T>) return v;
        else return v < 0 ? T(-v) : v;
      case UnaryOp::relu: return v > T(0) ? v : T(0);
      case UnaryOp::clamp:  // p0, p1 already brought into T's range by unary()
        if (double(v) < p0) return T(p0);
        if (double(v) > p1) return T(p1);
        return v;
      default: return v;  // other ops are refused for integers by unary() below
    }
  }
}

template <class T>
__global__ void unary_kernel(UnaryOp op, const T* x, T* out, int64_t n, double p0, double p1) {
  MMG_GRID_STRIDE(i, n) out[i] = apply_unary<T>(op, x[i], p0, p1);
}

// Refuses the ops integers do not take; brings clamp's bounds into an integer T's range.
template <class T>
void check_unary(UnaryOp op, double& p0, double& p1) {
  if constexpr (!std::is_floating_point_v<T>) {
    if (op != UnaryOp::abs && op != UnaryOp::relu && op != UnaryOp::clamp)
      throw_error(__FILE__, __LINE__, "cuda::unary: this op takes floating dtypes only");
    // Bounds past T's range are first brought into it (i32 clamped to min 1e10 is all 2^31 − 1).
    const double lowest = double(std::numeric_limits<T>::lowest()), highest = double(std::numeric_limits<T>::max());
    p0 = std::clamp(p0, lowest, highest);
    p1 = std::clamp(p1, lowest, highest);
  }
}

template <class T>
void unary(UnaryOp op, const T* x, T* out, int64_t n, double p0, double p1) {
  check_unary<T>(op, p0, p1);
  if (n == 0) return;
  unary_kernel<T><<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(op, x, out, n, p0, p1);
  MMG_CUDA_LAUNCH_CHECK();
}

// ---- binary ----

bool is_comparison(BinaryOp op) { return op >= BinaryOp::eq; }

// The scalar math of each binary op (core/ops/elementwise.cpp has the same in its lambdas).
template <class T, class R>
__device__ inline R apply_binary(BinaryOp op, T x, T y) {
  switch (op) {
    case BinaryOp::add: return R(x + y);
    case BinaryOp::sub: return R(x - y);
    case BinaryOp::mul: return R(x * y);
    case BinaryOp::div: return R(x / y);
    case BinaryOp::pow:
      if constexpr (std::is_floating_point_v<T>) return R(pow(x, y));
      else return R(0);  // refused for integers by binary() below
    case BinaryOp::maximum:
      if constexpr (std::is_floating_point_v<T>) {
        if (isnan(x)) return R(x);
      }
      return R(x > y ? x : y);  // y NaN: x > y is false, y is picked
    case BinaryOp::minimum:
      if constexpr (std::is_floating_point_v<T>) {
        if (isnan(x)) return R(x);
      }
      return R(x < y ? x : y);
    case BinaryOp::eq: return R(x == y);
    case BinaryOp::ne: return R(x != y);
    case BinaryOp::lt: return R(x < y);
    case BinaryOp::le: return R(x <= y);
    case BinaryOp::gt: return R(x > y);
    case BinaryOp::ge: return R(x >= y);
  }
  return R(0);
}

template <class T, class R>
__global__ void binary_kernel(BinaryOp op, const T* a, const T* b, R* out, int64_t n, StridedLayout<2> layout) {
  MMG_GRID_STRIDE(i, n) {
    int64_t off[2];
    layout.offsets(i, off);
    out[i] = apply_binary<T, R>(op, a[off[0]], b[off[1]]);
  }
}

template <class T, class R>
void check_binary(BinaryOp op) {
  const bool want_bool = std::is_same_v<R, bool>;
  if (is_comparison(op) != want_bool)
    throw_error(__FILE__, __LINE__, "cuda::binary: comparisons write bool, arithmetic writes the operand type");
  if (op == BinaryOp::pow && !std::is_floating_point_v<T>)
    throw_error(__FILE__, __LINE__, "cuda::binary: pow takes floating dtypes only");
}

template <class T, class R>
void binary(BinaryOp op, const T* a, const int64_t* a_strides, const T* b, const int64_t* b_strides, R* out, int ndim,
            const int64_t* shape, int64_t n) {
  check_binary<T, R>(op);
  if (n == 0) return;
  const StridedLayout<2> layout(MergedDims<2>(ndim, shape, {a_strides, b_strides}));
  binary_kernel<T, R><<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(op, a, b, out, n, layout);
  MMG_CUDA_LAUNCH_CHECK();
}

// ---- where ----

template <class T>
__global__ void where_kernel(const bool* c, const T* a, const T* b, T* out, int64_t n, StridedLayout<3> layout) {
  MMG_GRID_STRIDE(i, n) {
    int64_t off[3];
    layout.offsets(i, off);
    out[i] = c[off[0]] ? a[off[1]] : b[off[2]];
  }
}

template <class T>
void where(const bool* c, const int64_t* c_strides, const T* a, const int64_t* a_strides, const T* b,
           const int64_t* b_strides, T* out, int ndim, const int64_t* shape, int64_t n) {
  if (n == 0) return;
  const StridedLayout<3> layout(MergedDims<3>(ndim, shape, {c_strides, a_strides, b_strides}));
  where_kernel<T><<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(c, a, b, out, n, layout);
  MMG_CUDA_LAUNCH_CHECK();
}

// ---- GELU ----

constexpr double kSqrt2OverPi = 0.7978845608028654;  // √(2/π)
constexpr double kInvSqrt2 = 0.7071067811865476;     // 1/√2
constexpr double kInvSqrt2Pi = 0.3989422804014327;   // 1/√(2π)
constexpr double kTanhCubic = 0.044715;

// y(v) and dy/dv(v), the formulas of kernels/gelu.h.
template <class T>
__device__ inline T gelu_value(T v, bool tanh_approx) {
  const T k = T(kSqrt2OverPi), c = T(kTanhCubic);
  return tanh_approx ? T(0.5) * v * (T(1) + tanh(k * (v + c * v * v * v))) : T(0.5) * v * (T(1) + erf(v * T(kInvSqrt2)));
}

template <class T>
__device__ inline T gelu_slope(T v, bool tanh_approx) {
  const T k = T(kSqrt2OverPi), c = T(kTanhCubic);
  if (tanh_approx) {
    const T t = tanh(k * (v + c * v * v * v));
    return T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * k * (T(1) + T(3) * c * v * v);
  }
  return T(0.5) * (T(1) + erf(v * T(kInvSqrt2))) + v * exp(T(-0.5) * v * v) * T(kInvSqrt2Pi);
}

template <class T>
__global__ void gelu_forward_kernel(const T* x, T* y, int64_t n, bool tanh_approx) {
  MMG_GRID_STRIDE(i, n) y[i] = gelu_value(x[i], tanh_approx);
}

template <class T>
__global__ void gelu_backward_kernel(const T* x, const T* dy, T* dx, int64_t n, bool tanh_approx) {
  MMG_GRID_STRIDE(i, n) dx[i] = dy[i] * gelu_slope(x[i], tanh_approx);
}

template <class T>
void gelu_forward(const T* x, T* y, int64_t n, bool tanh_approx) {
  if (n == 0) return;
  gelu_forward_kernel<T><<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(x, y, n, tanh_approx);
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T>
void gelu_backward(const T* x, const T* dy, T* dx, int64_t n, bool tanh_approx) {
  if (n == 0) return;
  gelu_backward_kernel<T><<<grid_for(n, kBlock), kBlock, 0, current_stream()>>>(x, dy, dx, n, tanh_approx);
  MMG_CUDA_LAUNCH_CHECK();
}

// ---- version 2: 16-byte packs ----

// The tail (< V ≤ 16 elements) needs no more threads than one block has.
static_assert(kBlock >= 16, "a block covers any tail");

// The grid's thread index, counted over all blocks: the tail's threads.
__device__ inline int64_t global_thread() { return blockIdx.x * int64_t(blockDim.x) + threadIdx.x; }

template <class T>
__global__ void unary_packed_kernel(UnaryOp op, const T* x, T* out, int64_t n, double p0, double p1) {
  constexpr int V = vector_width<T>;
  const int64_t packs = whole_packs(n, V);
  MMG_GRID_STRIDE(p, packs) {
    T v[V];
    load_vec<V>(x + p * V, v);
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = apply_unary<T>(op, v[k], p0, p1);
    store_vec<V>(out + p * V, v);
  }
  const int64_t i = packs * V + global_thread();  // the tail, fewer than V elements
  if (i < n) out[i] = apply_unary<T>(op, x[i], p0, p1);
}

template <class T>
void unary_v2(UnaryOp op, const T* x, T* out, int64_t n, double p0, double p1) {
  if (!aligned_16({x, out})) return unary<T>(op, x, out, n, p0, p1);
  check_unary<T>(op, p0, p1);
  if (n == 0) return;
  const int64_t packs = whole_packs(n, vector_width<T>);
  unary_packed_kernel<T><<<grid_for(packs, kBlock), kBlock, 0, current_stream()>>>(op, x, out, n, p0, p1);
  MMG_CUDA_LAUNCH_CHECK();
}

// v[k] = p[k] for k < V in one access when the operand is walked (stride 1), else V copies
// of p[0] (an operand of one element, repeated).
template <int V, class T>
__device__ inline void load_or_repeat(const T* p, bool walked, T (&v)[V]) {
  if (walked) {
    load_vec<V>(p, v);
  } else {
    const T one = *p;
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = one;
  }
}

// The flat path: out[i] = a[i·sa] ∘ b[i·sb] over n elements, sa and sb 0 or 1.
template <class T, class R>
__global__ void binary_flat_packed_kernel(BinaryOp op, const T* a, const T* b, R* out, int64_t n, bool a_walked,
                                          bool b_walked) {
  constexpr int V = vector_width<T>;
  const int64_t packs = whole_packs(n, V);
  MMG_GRID_STRIDE(p, packs) {
    T x[V], y[V];
    R r[V];
    load_or_repeat<V>(a + (a_walked ? p * V : 0), a_walked, x);
    load_or_repeat<V>(b + (b_walked ? p * V : 0), b_walked, y);
#pragma unroll
    for (int k = 0; k < V; ++k) r[k] = apply_binary<T, R>(op, x[k], y[k]);
    store_vec<V>(out + p * V, r);
  }
  const int64_t i = packs * V + global_thread();
  if (i < n) out[i] = apply_binary<T, R>(op, a[a_walked ? i : 0], b[b_walked ? i : 0]);
}

// The rows path: out[r, c] = a[r·sa + c] ∘ b[r·sb + c] over M rows of N, sa and sb 0 or N,
// N a multiple of V (no tail).
template <class T, class R>
__global__ void binary_rows_packed_kernel(BinaryOp op, const T* a, const T* b, R* out, BinaryPackPlan plan) {
  constexpr int V = vector_width<T>;
  const int64_t packs = whole_packs(plan.rows * plan.cols, V);
  MMG_GRID_STRIDE(p, packs) {
    int64_t oa, ob;
    rows_pack_offsets(plan, p, V, oa, ob);
    T x[V], y[V];
    R r[V];
    load_vec<V>(a + oa, x);
    load_vec<V>(b + ob, y);
#pragma unroll
    for (int k = 0; k < V; ++k) r[k] = apply_binary<T, R>(op, x[k], y[k]);
    store_vec<V>(out + p * V, r);
  }
}

template <class T, class R>
void binary_v2(BinaryOp op, const T* a, const int64_t* a_strides, const T* b, const int64_t* b_strides, R* out,
               int ndim, const int64_t* shape, int64_t n) {
  check_binary<T, R>(op);
  if (n == 0) return;
  constexpr int V = vector_width<T>;
  const MergedDims<2> merged(ndim, shape, {a_strides, b_strides});
  const BinaryPackPlan plan = plan_binary_packs(merged, V, aligned_16({a}), aligned_16({b}), aligned_16({out}));
  const unsigned blocks = grid_for(whole_packs(n, V), kBlock);
  switch (plan.path) {
    case PackPath::flat:
      binary_flat_packed_kernel<T, R><<<blocks, kBlock, 0, current_stream()>>>(op, a, b, out, n, plan.a_stride == 1,
                                                                               plan.b_stride == 1);
      break;
    case PackPath::rows:
      binary_rows_packed_kernel<T, R><<<blocks, kBlock, 0, current_stream()>>>(op, a, b, out, plan);
      break;
    case PackPath::scalar:
      return binary<T, R>(op, a, a_strides, b, b_strides, out, ndim, shape, n);
  }
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T>
__global__ void gelu_forward_packed_kernel(const T* x, T* y, int64_t n, bool tanh_approx) {
  constexpr int V = vector_width<T>;
  const int64_t packs = whole_packs(n, V);
  MMG_GRID_STRIDE(p, packs) {
    T v[V];
    load_vec<V>(x + p * V, v);
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = gelu_value(v[k], tanh_approx);
    store_vec<V>(y + p * V, v);
  }
  const int64_t i = packs * V + global_thread();
  if (i < n) y[i] = gelu_value(x[i], tanh_approx);
}

template <class T>
__global__ void gelu_backward_packed_kernel(const T* x, const T* dy, T* dx, int64_t n, bool tanh_approx) {
  constexpr int V = vector_width<T>;
  const int64_t packs = whole_packs(n, V);
  MMG_GRID_STRIDE(p, packs) {
    T v[V], g[V];
    load_vec<V>(x + p * V, v);
    load_vec<V>(dy + p * V, g);
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = g[k] * gelu_slope(v[k], tanh_approx);
    store_vec<V>(dx + p * V, v);
  }
  const int64_t i = packs * V + global_thread();
  if (i < n) dx[i] = dy[i] * gelu_slope(x[i], tanh_approx);
}

template <class T>
void gelu_forward_v2(const T* x, T* y, int64_t n, bool tanh_approx) {
  if (!aligned_16({x, y})) return gelu_forward<T>(x, y, n, tanh_approx);
  if (n == 0) return;
  const unsigned blocks = grid_for(whole_packs(n, vector_width<T>), kBlock);
  gelu_forward_packed_kernel<T><<<blocks, kBlock, 0, current_stream()>>>(x, y, n, tanh_approx);
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T>
void gelu_backward_v2(const T* x, const T* dy, T* dx, int64_t n, bool tanh_approx) {
  if (!aligned_16({x, dy, dx})) return gelu_backward<T>(x, dy, dx, n, tanh_approx);
  if (n == 0) return;
  const unsigned blocks = grid_for(whole_packs(n, vector_width<T>), kBlock);
  gelu_backward_packed_kernel<T><<<blocks, kBlock, 0, current_stream()>>>(x, dy, dx, n, tanh_approx);
  MMG_CUDA_LAUNCH_CHECK();
}

// ---- instantiations ----
#define MMG_ARITH(T)                                                                                       \
  template void unary<T>(UnaryOp, const T*, T*, int64_t, double, double);                                  \
  template void binary<T, T>(BinaryOp, const T*, const int64_t*, const T*, const int64_t*, T*, int,        \
                             const int64_t*, int64_t);                                                     \
  template void binary<T, bool>(BinaryOp, const T*, const int64_t*, const T*, const int64_t*, bool*, int,  \
                                const int64_t*, int64_t);                                                  \
  template void unary_v2<T>(UnaryOp, const T*, T*, int64_t, double, double);                               \
  template void binary_v2<T, T>(BinaryOp, const T*, const int64_t*, const T*, const int64_t*, T*, int,     \
                                const int64_t*, int64_t);                                                  \
  template void binary_v2<T, bool>(BinaryOp, const T*, const int64_t*, const T*, const int64_t*, bool*,    \
                                   int, const int64_t*, int64_t);
MMG_ARITH(float)
MMG_ARITH(double)
MMG_ARITH(int32_t)
MMG_ARITH(int64_t)
MMG_ARITH(uint8_t)
#undef MMG_ARITH

#define MMG_WHERE(T)                                                                                       \
  template void where<T>(const bool*, const int64_t*, const T*, const int64_t*, const T*, const int64_t*, T*, \
                         int, const int64_t*, int64_t);
MMG_WHERE(float)
MMG_WHERE(double)
MMG_WHERE(bf16)
MMG_WHERE(f16)
MMG_WHERE(int32_t)
MMG_WHERE(int64_t)
MMG_WHERE(uint8_t)
MMG_WHERE(bool)
#undef MMG_WHERE

template void gelu_forward<float>(const float*, float*, int64_t, bool);
template void gelu_forward<double>(const double*, double*, int64_t, bool);
template void gelu_backward<float>(const float*, const float*, float*, int64_t, bool);
template void gelu_backward<double>(const double*, const double*, double*, int64_t, bool);
template void gelu_forward_v2<float>(const float*, float*, int64_t, bool);
template void gelu_forward_v2<double>(const double*, double*, int64_t, bool);
template void gelu_backward_v2<float>(const float*, const float*, float*, int64_t, bool);
template void gelu_backward_v2<double>(const double*, const double*, double*, int64_t, bool);

}  // namespace mmg::cuda
