// Elementwise kernels: out[i] = f(a[i]) and out[i] = f(a[i], b[i]) over broadcast operands.
//
// `f` is any callable (a lambda per op, written in core/ops). Operands are walked with their
// own strides, stride 0 along broadcast dims, so a [N,1] + [1,M] sum reads each input once
// per output without materialising the broadcast. The output is contiguous. When every
// operand is contiguous the loop is a plain indexed loop that the compiler vectorises.
#pragma once
#include <cstdint>

#include "kernels/cpu/parallel.h"
#include "kernels/strided.h"

namespace mmg::cpu {

constexpr int64_t kElementwiseGrain = 1 << 15;  // below this, threads cost more than they save

template <class A, class R, class F>
void unary_kernel(const A* x, R* out, int64_t n, F f) {
  parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = f(x[i]);
  });
}

template <class A, class B, class R, class F>
void binary_kernel(const A* a, const int64_t* a_strides, const B* b, const int64_t* b_strides, R* out, int ndim,
                   const int64_t* shape, int64_t n, bool contiguous, F f) {
  if (contiguous) {
    parallel_for(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) out[i] = f(a[i], b[i]);
    });
    return;
  }
  parallel_for(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    Odometer<2> it(ndim, shape, {a_strides, b_strides});
    it.seek(lo);
    for (int64_t i = lo; i < hi; ++i, it.next()) out[i] = f(a[it.offset[0]], b[it.offset[1]]);
  });
}

template <class C, class A, class B, class R, class F>
void ternary_kernel(const C* c, const int64_t* c_strides, const A* a, const int64_t* a_strides, const B* b,
                    const int64_t* b_strides, R* out, int ndim, const int64_t* shape, int64_t n, F f) {
  parallel_for(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    Odometer<3> it(ndim, shape, {c_strides, a_strides, b_strides});
    it.seek(lo);
    for (int64_t i = lo; i < hi; ++i, it.next()) out[i] = f(c[it.offset[0]], a[it.offset[1]], b[it.offset[2]]);
  });
}

}  // namespace mmg::cpu
