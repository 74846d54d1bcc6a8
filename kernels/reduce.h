// Reductions. Most inputs are viewed as [rows, cols] (the op moves the reduced dims last and
// makes them contiguous) and each row reduces to one value. sum_mid is the exception: it
// reduces the middle dim of [outer, n, inner] in place, so reducing the leading dims of a
// contiguous tensor (a bias gradient: dim 0 of [N, D]) needs no transposing copy.
//
// Float rows accumulate in double. A long row is cut into fixed-size chunks that are
// summarised in parallel and merged left to right, so results do not depend on the thread
// count. NaN propagates: a row holding a NaN reduces to NaN (max/min: and its index).
#pragma once
#include <cstdint>

namespace mmg::cpu {

// out[r] = Σ_c x[r, c]. T: float, double, int32_t, int64_t (integers add in int64).
template <class T>
void sum_rows(const T* x, T* out, int64_t rows, int64_t cols);

// out[o, k] = Σ_j x[o, j, k] for x contiguous [outer, n, inner]. T as sum_rows.
template <class T>
void sum_mid(const T* x, T* out, int64_t outer, int64_t n, int64_t inner);

// values[r] = max_c x[r, c], indices[r] = the first c holding it; the first NaN wins.
// T: float, double, int32_t, int64_t, uint8_t. cols >= 1.
template <class T>
void max_rows(const T* x, T* values, int64_t* indices, int64_t rows, int64_t cols);
template <class T>
void min_rows(const T* x, T* values, int64_t* indices, int64_t rows, int64_t cols);

// Variance with a correction (Bessel's: 1), computed stably: each chunk is summarised in two
// passes (mean, then Σ(x − mean)²) and chunks merge with Chan's formula.
//   mean[r] = (1/n) Σ_c x[r,c],   out[r] = Σ_c (x[r,c] − mean[r])² / max(0, n − correction)
// n − correction <= 0 divides by 0: inf, or NaN when Σ(x − mean)² = 0 (as PyTorch).
// `mean` may be null. std_rows writes √var. T: float, double.
template <class T>
void var_rows(const T* x, T* out, T* mean, int64_t rows, int64_t cols, int64_t correction);
template <class T>
void std_rows(const T* x, T* out, T* mean, int64_t rows, int64_t cols, int64_t correction);

// out[r] = log Σ_c exp(x[r,c]), shifted by the row max m so no exp overflows:
//   out = m + log Σ exp(x − m).
// A row of −inf gives −inf (the shift is 0 when m is ±inf), a row holding +inf gives +inf.
// `shift` (may be null) receives out with −inf replaced by 0: the backward computes
// exp(x − shift), which is then 0 rather than NaN in an all −inf row. T: float, double.
template <class T>
void logsumexp_rows(const T* x, T* out, T* shift, int64_t rows, int64_t cols);

// out[r] = ‖x[r, :]‖_p = (Σ_c |x[r,c]|^p)^(1/p) for p > 0; p = inf gives max_c |x[r,c]|.
// p = 1 and 2 have their own loops (no pow). T: float, double.
template <class T>
void norm_rows(const T* x, T* out, int64_t rows, int64_t cols, double p);

}  // namespace mmg::cpu

// ---- CUDA (kernels/cuda/reduce.cu, kernels/cuda/reduce_stats.cu) ----
// Reductions on a CUDA device: plain C++ declarations. The same contracts as the CPU row
// kernels above, on device memory of the current device:
//   sum_rows  out[r] = Σ_c x[r, c]                  x contiguous [rows, cols]
//   sum_mid   out[o, k] = Σ_j x[o, j, k]            x contiguous [outer, n, inner]
//   max_rows  values[r] = max_c x[r, c], indices[r] = the first c holding it; the first NaN
//             wins (min_rows alike). cols >= 1.
//   var_rows / std_rows, logsumexp_rows, norm_rows: the contracts above
//             (kernels/cuda/reduce_stats.cu), accumulated in double as on the CPU.
// Float sums accumulate in double (as on the CPU), integer sums in int64_t.
// Declared in every build; defined only where CUDA is compiled, and core/ calls them only
// under `if constexpr (kWithCuda)` (core/device.h).
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
