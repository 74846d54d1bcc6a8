// Row softmax and log-softmax, forward and backward.
//
// Every entry point works on `rows` contiguous rows of `cols` elements (the softmax runs
// over the last, contiguous dim; the op layer moves another dim last first). Outputs are
// overwritten, never accumulated into. Rows are independent and run in parallel.
//
// A row whose entries are all -inf has no defined softmax: it comes out NaN, as in
// PyTorch. (Attention masks keys with its own key_mask instead, see kernels/attention.h.)
//
// T: float, double, bf16, f16. The math runs in acc_t<T> (kernels/acc_type.h): a bf16/f16
// row is widened to float as it is read, its max, sum and exponentials are float, and each
// output element is rounded to T once — exactly the float kernel's result, rounded. The
// backward reads the 16-bit y and dy the same way.
#pragma once
#include <cstdint>

#include "kernels/half.h"

namespace mmg::cpu {

// y_i = exp(x_i − m) / Σ_j exp(x_j − m),  m = max_j x_j  (subtracting m keeps exp finite)
template <class T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t cols);

// dx_i = y_i · (dy_i − Σ_j dy_j y_j)   (y from the forward; dx may alias dy)
template <class T>
void softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols);

// y_i = x_i − m − log Σ_j exp(x_j − m),  m = max_j x_j
template <class T>
void log_softmax_forward(const T* x, T* y, int64_t rows, int64_t cols);

// dx_i = dy_i − exp(y_i) · Σ_j dy_j   (y = log_softmax output; dx may alias dy)
template <class T>
void log_softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols);

}  // namespace mmg::cpu

// ---- CUDA (kernels/cuda/softmax.cu) ----
// Row softmax and log-softmax on a CUDA device: plain C++ declarations with the contracts of
// the CPU kernels above (formulas, T, acc_t<T> math with one rounding at the store, outputs
// overwritten, dx may alias dy, a row of all −inf comes out NaN), on device memory of the
// current device.
//
// Two versions (the kernel family "softmax", core/kernel_versions.h; the op picks one):
//   v1  softmax_forward, ...:     three passes over the row (max, sum, write), scalar loads
//   v2  softmax_forward_v2, ...:  online max and sum in one pass (then the write), 16-byte
//                                 loads and stores (4 floats, 8 bf16/f16) where the rows
//                                 are whole packs and aligned
// Both have the contracts above.
// Declared in every build; defined only where CUDA is compiled, and core/ calls them only
// under `if constexpr (kWithCuda)` (core/device.h).
namespace mmg::cuda {

template <class T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t cols);
template <class T>
void softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols);
template <class T>
void log_softmax_forward(const T* x, T* y, int64_t rows, int64_t cols);
template <class T>
void log_softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols);

template <class T>
void softmax_forward_v2(const T* x, T* y, int64_t rows, int64_t cols);
template <class T>
void softmax_backward_v2(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols);
template <class T>
void log_softmax_forward_v2(const T* x, T* y, int64_t rows, int64_t cols);
template <class T>
void log_softmax_backward_v2(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols);

}  // namespace mmg::cuda
