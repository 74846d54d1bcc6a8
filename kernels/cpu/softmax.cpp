// Row softmax and log-softmax on the CPU: one row at a time, rows in parallel.
//
// Each row takes the max-subtraction form: with m = max_j x_j every exponent x_j − m is
// <= 0, so exp never overflows and the largest term is exactly 1 (the sum is >= 1, its
// log finite). Accumulation is in T.
#include "kernels/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/parallel.h"

namespace mmg::cpu {

// Rows per parallel chunk: about 16k elements, so small tensors stay on one thread.
static int64_t row_grain(int64_t cols) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1));
}

template <class T>
static T row_max(const T* x, int64_t cols) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < cols; ++j) m = std::max(m, x[j]);
  return m;
}

// y = exp(x − m) / Σ exp(x − m)
template <class T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t cols) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      T m = row_max(xr, cols);
      T sum = 0;
      for (int64_t j = 0; j < cols; ++j) {
        yr[j] = std::exp(xr[j] - m);
        sum += yr[j];
      }
      T inv = T(1) / sum;
      for (int64_t j = 0; j < cols; ++j) yr[j] *= inv;
    }
  });
}

// The Jacobian is ∂y_i/∂x_j = y_i (δ_ij − y_j), so dx_j = Σ_i dy_i ∂y_i/∂x_j
// = y_j (dy_j − Σ_i dy_i y_i): one dot product per row instead of a cols×cols matrix.
template <class T>
void softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* yr = y + r * cols;
      const T* dyr = dy + r * cols;
      T* dxr = dx + r * cols;
      T dot = 0;
      for (int64_t j = 0; j < cols; ++j) dot += dyr[j] * yr[j];
      for (int64_t j = 0; j < cols; ++j) dxr[j] = yr[j] * (dyr[j] - dot);
    }
  });
}

// y = x − (m + log Σ exp(x − m))
template <class T>
void log_softmax_forward(const T* x, T* y, int64_t rows, int64_t cols) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      T m = row_max(xr, cols);
      T sum = 0;
      for (int64_t j = 0; j < cols; ++j) sum += std::exp(xr[j] - m);
      T log_norm = m + std::log(sum);
      for (int64_t j = 0; j < cols; ++j) yr[j] = xr[j] - log_norm;
    }
  });
}

// ∂y_i/∂x_j = δ_ij − softmax_j and softmax = exp(y), so dx_j = dy_j − exp(y_j) Σ_i dy_i.
template <class T>
void log_softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* yr = y + r * cols;
      const T* dyr = dy + r * cols;
      T* dxr = dx + r * cols;
      T sum = 0;
      for (int64_t j = 0; j < cols; ++j) sum += dyr[j];
      for (int64_t j = 0; j < cols; ++j) dxr[j] = dyr[j] - std::exp(yr[j]) * sum;
    }
  });
}

template void softmax_forward<float>(const float*, float*, int64_t, int64_t);
template void softmax_forward<double>(const double*, double*, int64_t, int64_t);
template void softmax_backward<float>(const float*, const float*, float*, int64_t, int64_t);
template void softmax_backward<double>(const double*, const double*, double*, int64_t, int64_t);
template void log_softmax_forward<float>(const float*, float*, int64_t, int64_t);
template void log_softmax_forward<double>(const double*, double*, int64_t, int64_t);
template void log_softmax_backward<float>(const float*, const float*, float*, int64_t, int64_t);
template void log_softmax_backward<double>(const double*, const double*, double*, int64_t, int64_t);

}  // namespace mmg::cpu
