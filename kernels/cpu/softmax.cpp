// Row softmax and log-softmax on the CPU: one row at a time, rows in parallel.
//
// Each row takes the max-subtraction form: with m = max_j x_j every exponent x_j − m is
// <= 0, so exp never overflows and the largest term is exactly 1 (the sum is >= 1, its
// log finite). The row math runs in A = acc_t<T>: T itself for float and double; for bf16
// and f16 each row is widened to float, computed as a float row, and rounded once as it is
// stored (kernels/cpu/widen_rows.h), so a 16-bit softmax is exactly the rounded float one.
#include "kernels/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/widen_rows.h"

namespace mmg::cpu {

// Rows per parallel chunk: about 16k elements, so small tensors stay on one thread.
static int64_t row_grain(int64_t cols) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1));
}

template <class A>
static A row_max(const A* x, int64_t cols) {
  A m = -std::numeric_limits<A>::infinity();
  for (int64_t j = 0; j < cols; ++j) m = std::max(m, x[j]);
  return m;
}

// ---- one row, in A ----

// y = exp(x − m) / Σ exp(x − m)
template <class A>
static void softmax_row(const A* x, A* y, int64_t cols) {
  A m = row_max(x, cols);
  A sum = 0;
  for (int64_t j = 0; j < cols; ++j) {
    y[j] = std::exp(x[j] - m);
    sum += y[j];
  }
  A inv = A(1) / sum;
  for (int64_t j = 0; j < cols; ++j) y[j] *= inv;
}

// The Jacobian is ∂y_i/∂x_j = y_i (δ_ij − y_j), so dx_j = Σ_i dy_i ∂y_i/∂x_j
// = y_j (dy_j − Σ_i dy_i y_i): one dot product per row instead of a cols×cols matrix.
template <class A>
static void softmax_backward_row(const A* y, const A* dy, A* dx, int64_t cols) {
  A dot = 0;
  for (int64_t j = 0; j < cols; ++j) dot += dy[j] * y[j];
  for (int64_t j = 0; j < cols; ++j) dx[j] = y[j] * (dy[j] - dot);
}

// y = x − (m + log Σ exp(x − m))
template <class A>
static void log_softmax_row(const A* x, A* y, int64_t cols) {
  A m = row_max(x, cols);
  A sum = 0;
  for (int64_t j = 0; j < cols; ++j) sum += std::exp(x[j] - m);
  A log_norm = m + std::log(sum);
  for (int64_t j = 0; j < cols; ++j) y[j] = x[j] - log_norm;
}

// ∂y_i/∂x_j = δ_ij − softmax_j and softmax = exp(y), so dx_j = dy_j − exp(y_j) Σ_i dy_i.
template <class A>
static void log_softmax_backward_row(const A* y, const A* dy, A* dx, int64_t cols) {
  A sum = 0;
  for (int64_t j = 0; j < cols; ++j) sum += dy[j];
  for (int64_t j = 0; j < cols; ++j) dx[j] = dy[j] - std::exp(y[j]) * sum;
}

// ---- the rows of a tensor ----

// out_row = row_fn(in_row) for every row, in A = acc_t<T>.
template <class T, class RowFn>
static void forward_rows(const T* x, T* y, int64_t rows, int64_t cols, RowFn row_fn) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    std::vector<acc_t<T>> xb, yb;  // used for 16-bit T only
    for (int64_t r = r0; r < r1; ++r) {
      const acc_t<T>* xr = widen_row(x + r * cols, cols, xb);
      acc_t<T>* yr = result_row(y + r * cols, cols, yb);
      row_fn(xr, yr, cols);
      store_row(yr, y + r * cols, cols);
    }
  });
}

// dx_row = row_fn(y_row, dy_row) for every row. dy is widened before dx is written, so dx may
// alias dy.
template <class T, class RowFn>
static void backward_rows(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols, RowFn row_fn) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    std::vector<acc_t<T>> yb, dyb, dxb;
    for (int64_t r = r0; r < r1; ++r) {
      const acc_t<T>* yr = widen_row(y + r * cols, cols, yb);
      const acc_t<T>* dyr = widen_row(dy + r * cols, cols, dyb);
      acc_t<T>* dxr = result_row(dx + r * cols, cols, dxb);
      row_fn(yr, dyr, dxr, cols);
      store_row(dxr, dx + r * cols, cols);
    }
  });
}

template <class T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t cols) {
  forward_rows(x, y, rows, cols, softmax_row<acc_t<T>>);
}

template <class T>
void softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
  backward_rows(y, dy, dx, rows, cols, softmax_backward_row<acc_t<T>>);
}

template <class T>
void log_softmax_forward(const T* x, T* y, int64_t rows, int64_t cols) {
  forward_rows(x, y, rows, cols, log_softmax_row<acc_t<T>>);
}

template <class T>
void log_softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
  backward_rows(y, dy, dx, rows, cols, log_softmax_backward_row<acc_t<T>>);
}

#define MMG_SOFTMAX_INSTANTIATE(T)                                                \
  template void softmax_forward<T>(const T*, T*, int64_t, int64_t);               \
  template void softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t);    \
  template void log_softmax_forward<T>(const T*, T*, int64_t, int64_t);           \
  template void log_softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t);
MMG_SOFTMAX_INSTANTIATE(float)
MMG_SOFTMAX_INSTANTIATE(double)
MMG_SOFTMAX_INSTANTIATE(bf16)
MMG_SOFTMAX_INSTANTIATE(f16)
#undef MMG_SOFTMAX_INSTANTIATE

}  // namespace mmg::cpu
