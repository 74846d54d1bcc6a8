// Reductions on a CUDA device (kernels/cuda/reduce.cu): plain C++ declarations. The same
// contracts as the CPU row kernels of kernels/reduce.h, on device memory of the current
// device:
//   sum_rows  out[r] = Σ_c x[r, c]                  x contiguous [rows, cols]
//   sum_mid   out[o, k] = Σ_j x[o, j, k]            x contiguous [outer, n, inner]
//   max_rows  values[r] = max_c x[r, c], indices[r] = the first c holding it; the first NaN
//             wins (min_rows alike). cols >= 1.
//   var_rows / std_rows, logsumexp_rows, norm_rows: the contracts of kernels/reduce.h
//             (kernels/cuda/reduce_stats.cu), accumulated in double as on the CPU.
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

// mean[r] = (1/n) Σ_c x[r,c],  out[r] = Σ_c (x[r,c] − mean[r])² / max(0, n − correction)
// (two passes over the row, in double); std_rows writes √var. `mean` may be null.
// T: float, double.
template <class T>
void var_rows(const T* x, T* out, T* mean, int64_t rows, int64_t cols, int64_t correction);
template <class T>
void std_rows(const T* x, T* out, T* mean, int64_t rows, int64_t cols, int64_t correction);

// out[r] = m + log Σ_c exp(x[r,c] − m), m the row max (NaN ignored; the shift is 0 when m is
// ±inf); shift[r] (may be null) = out[r] with −inf replaced by 0. T: float, double.
template <class T>
void logsumexp_rows(const T* x, T* out, T* shift, int64_t rows, int64_t cols);

// out[r] = (Σ_c |x[r,c]|^p)^(1/p), p > 0; p = inf: max_c |x[r,c]| (a NaN wins). T: float, double.
template <class T>
void norm_rows(const T* x, T* out, int64_t rows, int64_t cols, double p);

}  // namespace mmg::cuda
