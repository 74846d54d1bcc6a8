// Layer normalisation over the last dim on a CUDA device (kernels/cuda/layer_norm.cu): plain
// C++ declarations with the contracts of kernels/layer_norm.h:
//   μ = (1/n) Σ_j x_j,  σ² = (1/n) Σ_j (x_j − μ)²,  rstd = 1/√(σ² + eps),
//   x̂_j = (x_j − μ)·rstd,  y_j = γ_j x̂_j + β_j
//   dx_j = rstd · (g_j − mean_k(g_k) − x̂_j · mean_k(g_k x̂_k)),  g = γ ⊙ dy
//   dγ_j = Σ_rows dy_j x̂_j,  dβ_j = Σ_rows dy_j
// gamma/beta may be nullptr (γ = 1, β = 0); mean/rstd may be nullptr in the forward; dx,
// dgamma, dbeta may each be nullptr. Device memory of the current device.
//
// Types, as the CPU kernels (kernels/layer_norm.h): x, y, dy, dx are T (float, double, bf16,
// f16); γ, β, dγ, dβ are P (T, or float beside a 16-bit T); mean, rstd, eps and the
// workspace are A = acc_t<T> (float for 16-bit T), and so is all the math: 16-bit elements
// are widened as they are read and rounded once as they are stored; dγ/dβ are summed in A
// and rounded to P at the end. Call with both types named: layer_norm_forward<bf16, float>.
//
// Two versions (the kernel family "layer_norm", core/kernel_versions.h; the op picks one):
//   v1  layer_norm_forward, layer_norm_backward:  two-pass mean and variance, scalar loads
//   v2  the *_v2 functions:  Welford mean and variance in one pass, 16-byte loads and stores
//       (4 floats, 8 bf16/f16) where the rows are whole packs and aligned; dγ/dβ as v1
//       (the same workspace)
// Both have the contracts above.
#pragma once
#include <cstdint>

#include "kernels/acc_type.h"

namespace mmg::cuda {

template <class T, class P = T>
void layer_norm_forward(const T* x, const P* gamma, const P* beta, T* y, acc_t<T>* mean, acc_t<T>* rstd,
                        int64_t rows, int64_t cols, acc_t<T> eps);

// Elements (of acc_t<T>) of the scratch buffer layer_norm_backward needs for dγ/dβ (its
// per-row-block partial sums); the caller allocates it, the kernels allocate nothing.
int64_t layer_norm_backward_workspace(int64_t rows, int64_t cols);

template <class T, class P = T>
void layer_norm_backward(const T* x, const P* gamma, const acc_t<T>* mean, const acc_t<T>* rstd, const T* dy, T* dx,
                         P* dgamma, P* dbeta, int64_t rows, int64_t cols, acc_t<T>* workspace);

template <class T, class P = T>
void layer_norm_forward_v2(const T* x, const P* gamma, const P* beta, T* y, acc_t<T>* mean, acc_t<T>* rstd,
                           int64_t rows, int64_t cols, acc_t<T> eps);
template <class T, class P = T>
void layer_norm_backward_v2(const T* x, const P* gamma, const acc_t<T>* mean, const acc_t<T>* rstd, const T* dy,
                            T* dx, P* dgamma, P* dbeta, int64_t rows, int64_t cols, acc_t<T>* workspace);

}  // namespace mmg::cuda
