// Elementwise kernels: out[i] = f(a[i]), f(a[i], b[i]) and f(c[i], a[i], b[i]) over broadcast
// operands.
//
// `f` is any callable (a lambda per op, written in core/ops). Operands are walked with their
// own strides, stride 0 along broadcast dims, so a [N,1] + [1,M] sum reads each input once
// per output without materialising the broadcast. The output is contiguous.
//
// How the walk stays fast: the dims are first merged (MergedDims, kernels/strided.h), so a
// contiguous operand pair is one long row, and a [B,S,D] ⊙ [D] product is B·S rows of D.
// Each row is then one tight loop with the operands' innermost strides; the common cases
// (both 1, or one operand 0 — a scalar or a row broadcast along the row) get loops of their
// own in which every stride is a constant, which the compiler vectorises. The Odometer only
// steps once per row, not once per element.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels/cpu/parallel.h"
#include "kernels/strided.h"

namespace mmg::cpu {

constexpr int64_t kElementwiseGrain = 1 << 15;  // below this, threads cost more than they save

template <class A, class R, class F>
void unary_kernel(const A* x, R* out, int64_t n, F f) {
  parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) out[i] = f(x[i]);
  });
}

// Runs row(offsets, i, len) over the n elements of a merged walk, split over threads: the
// output elements [i, i+len) lie in one innermost row, and offsets[k] is where operand k's
// element i lives. A thread's range may start and end in the middle of a row.
template <int K, class Row>
void for_each_row(const MergedDims<K>& m, int64_t n, Row row) {
  const int64_t L = m.shape[m.ndim - 1];  // the innermost row's length
  parallel_for(n, kElementwiseGrain, [&](int64_t lo, int64_t hi) {
    Odometer<K> outer(m.ndim - 1, m.shape, m.stride_ptrs());  // walks the rows
    outer.seek(lo / L);
    int64_t col = lo % L;
    for (int64_t i = lo; i < hi; col = 0, outer.next()) {
      const int64_t len = std::min(L - col, hi - i);
      std::array<int64_t, K> off;
      for (int k = 0; k < K; ++k) off[k] = outer.offset[k] + col * m.strides[k][m.ndim - 1];
      row(off, i, len);
      i += len;
    }
  });
}

// out[0..n) = f(a[i·sa], b[i·sb]): one row, with constant-stride loops for the common cases.
template <class A, class B, class R, class F>
inline void binary_row(const A* a, int64_t sa, const B* b, int64_t sb, R* out, int64_t n, F& f) {
  if (sa == 1 && sb == 1) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = f(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const B y = *b;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = f(a[i], y);
  } else if (sa == 0 && sb == 1) {
    const A x = *a;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = f(x, b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = f(a[i * sa], b[i * sb]);
  }
}

// out[i] = f(a[i], b[i]) over `shape` (ndim dims, n elements), a and b with their strides.
template <class A, class B, class R, class F>
void binary_kernel(const A* a, const int64_t* a_strides, const B* b, const int64_t* b_strides, R* out, int ndim,
                   const int64_t* shape, int64_t n, F f) {
  if (n == 0) return;
  const MergedDims<2> m(ndim, shape, {a_strides, b_strides});
  const int64_t sa = m.strides[0][m.ndim - 1], sb = m.strides[1][m.ndim - 1];
  for_each_row(m, n, [&](const std::array<int64_t, 2>& off, int64_t i, int64_t len) {
    binary_row(a + off[0], sa, b + off[1], sb, out + i, len, f);
  });
}

// out[i] = f(c[i], a[i], b[i]) (where(cond, a, b) and the like), same walk as binary_kernel.
template <class C, class A, class B, class R, class F>
void ternary_kernel(const C* c, const int64_t* c_strides, const A* a, const int64_t* a_strides, const B* b,
                    const int64_t* b_strides, R* out, int ndim, const int64_t* shape, int64_t n, F f) {
  if (n == 0) return;
  const MergedDims<3> m(ndim, shape, {c_strides, a_strides, b_strides});
  const int64_t sc = m.strides[0][m.ndim - 1], sa = m.strides[1][m.ndim - 1], sb = m.strides[2][m.ndim - 1];
  for_each_row(m, n, [&](const std::array<int64_t, 3>& off, int64_t i, int64_t len) {
    const C* cr = c + off[0];
    const A* ar = a + off[1];
    const B* br = b + off[2];
    R* o = out + i;
    if (sc == 1 && sa == 1 && sb == 1) {
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) o[j] = f(cr[j], ar[j], br[j]);
    } else if (sc == 1 && sa == 1 && sb == 0) {  // where(mask, x, scalar)
      const B y = *br;
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) o[j] = f(cr[j], ar[j], y);
    } else if (sc == 1 && sa == 0 && sb == 1) {  // where(mask, scalar, x)
      const A x = *ar;
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) o[j] = f(cr[j], x, br[j]);
    } else {
      for (int64_t j = 0; j < len; ++j) o[j] = f(cr[j * sc], ar[j * sa], br[j * sb]);
    }
  });
}

}  // namespace mmg::cpu
