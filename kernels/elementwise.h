// Elementwise kernels: unary ops, binary ops with broadcasting, where.
// CPU (mmg::cpu): kernels/cpu/elementwise.h, templates defined in that header.
// CUDA (mmg::cuda): declared below, implemented in kernels/cuda/elementwise.cu (beside the
// CUDA GELU of kernels/gelu.h, which shares its 16-byte packs).
//
// The CPU runs elementwise ops as lambdas handed to templates (kernels/cpu/elementwise.h);
// a lambda of a .cpp file cannot become device code, so on CUDA each op is named by a code
// and the kernel applies it with a switch (the same for every thread, so it costs no
// divergence). The scalar math of each op is written to match core/ops' CPU lambdas: same
// NaN rules, same kink values, same integer handling.
//
// All pointers are device memory on the current device; work goes to its compute stream.
//
// Two versions (the kernel family "elementwise", core/kernel_versions.h; the ops pick one):
//   v1  unary, binary (and GELU's gelu_forward, gelu_backward): one element a thread and
//       loop step
//   v2  unary_v2, binary_v2 (and gelu_forward_v2, gelu_backward_v2): the same math in 16-byte
//       packs (4 f32 or i32, 2 f64 or i64, 16 u8) where the layout and the pointers'
//       alignment allow (kernels/cuda/elementwise_plan.h), else version 1
// Both have the contracts below, and the same results bit for bit.
#pragma once
#include <cstdint>

#include "kernels/half.h"

// Declared in every build; defined only where CUDA is compiled, and core/ calls them only
// under `if constexpr (kWithCuda)` (core/device.h).
namespace mmg::cuda {

// out = f(x). Float types (float, double): every op. Integer types (int32_t, int64_t,
// uint8_t): abs, relu and clamp only (the ops that keep integers integral).
//   pow: x^p0 (p0 = 2 is x·x and p0 = 1 is x, exactly);  clamp: min(max(x, p0), p1)
enum class UnaryOp : int { neg, exp, log, sqrt, rsqrt, abs, tanh, sigmoid, relu, pow, clamp };

// out[i] = f(x[i]) over n contiguous elements.
template <class T>
void unary(UnaryOp op, const T* x, T* out, int64_t n, double p0 = 0.0, double p1 = 0.0);

// out = a ∘ b. The comparisons (eq ... ge) write bool; the rest write T.
// T: float, double, int32_t, int64_t, uint8_t; pow for float and double only.
enum class BinaryOp : int { add, sub, mul, div, pow, maximum, minimum, eq, ne, lt, le, gt, ge };

bool is_comparison(BinaryOp op);

// out[i] = a[i] ∘ b[i] over `shape` (ndim dims, n elements), a and b with their strides
// (0 along broadcast dims), out contiguous. R = bool for comparisons, else T.
template <class T, class R>
void binary(BinaryOp op, const T* a, const int64_t* a_strides, const T* b, const int64_t* b_strides, R* out,
            int ndim, const int64_t* shape, int64_t n);

// out[i] = c[i] ? a[i] : b[i], operands strided as in binary, out contiguous.
// T: float, double, bf16, f16, int32_t, int64_t, uint8_t, bool.
template <class T>
void where(const bool* c, const int64_t* c_strides, const T* a, const int64_t* a_strides, const T* b,
           const int64_t* b_strides, T* out, int ndim, const int64_t* shape, int64_t n);

// Version 2 of unary and binary: same arguments, same contracts.
template <class T>
void unary_v2(UnaryOp op, const T* x, T* out, int64_t n, double p0 = 0.0, double p1 = 0.0);
template <class T, class R>
void binary_v2(BinaryOp op, const T* a, const int64_t* a_strides, const T* b, const int64_t* b_strides, R* out,
               int ndim, const int64_t* shape, int64_t n);

}  // namespace mmg::cuda
