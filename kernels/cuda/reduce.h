// Reductions on a CUDA device (kernels/cuda/reduce.cu): plain C++ declarations. The same
// contracts as the CPU row kernels of kernels/reduce.h, on device memory of the current
// device:
//   sum_rows  out[r] = Σ_c x[r, c]                  x contiguous [rows, cols]
//   sum_mid   out[o, k] = Σ_j x[o, j, k]            x contiguous [outer, n, inner]
//   max_rows  values[r] = max_c x[r, c], indices[r] = the first c holding it; the first NaN
//             wins (min_rows alike). cols >= 1.
// Float sums accumulate in double (as on the CPU), integer sums in int64_t.
#pragma once
#include <cstdint>

namespace mmg::cuda {

// T: float, double, int64_t.
template <class T>
void sum_rows(const T* x, T* out, int64_t rows, int64_t cols);
template <class T>
void sum_mid(const T* x, T* out, int64_t outer, int64_t n, int64_t inner);

// T: float, double, int32_t, int64_t, uint8_t.
template <class T>
void max_rows(const T* x, T* values, int64_t* indices, int64_t rows, int64_t cols);
template <class T>
void min_rows(const T* x, T* values, int64_t* indices, int64_t rows, int64_t cols);

}  // namespace mmg::cuda
