// Layer normalisation over the last dim on a CUDA device (kernels/cuda/layer_norm.cu): plain
// C++ declarations with the contracts of kernels/layer_norm.h:
//   μ = (1/n) Σ_j x_j,  σ² = (1/n) Σ_j (x_j − μ)²,  rstd = 1/√(σ² + eps),
//   x̂_j = (x_j − μ)·rstd,  y_j = γ_j x̂_j + β_j
//   dx_j = rstd · (g_j − mean_k(g_k) − x̂_j · mean_k(g_k x̂_k)),  g = γ ⊙ dy
//   dγ_j = Σ_rows dy_j x̂_j,  dβ_j = Σ_rows dy_j
// gamma/beta may be nullptr (γ = 1, β = 0); mean/rstd may be nullptr in the forward; dx,
// dgamma, dbeta may each be nullptr. T: float, double (sums in T, as on the CPU). Device
// memory of the current device.
//
// Two versions (the kernel family "layer_norm", core/kernel_versions.h; the op picks one):
//   v1  layer_norm_forward, layer_norm_backward:  two-pass mean and variance, scalar loads
//   v2  the *_v2 functions:  Welford mean and variance in one pass, float4 loads and stores
//       where the rows are aligned; dγ/dβ as v1 (the same workspace)
// Both have the contracts above.
#pragma once
#include <cstdint>

namespace mmg::cuda {

template <class T>
void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int64_t rows,
                        int64_t cols, T eps);

// Elements of the scratch buffer layer_norm_backward needs for dγ/dβ (its per-row-block
// partial sums); the caller allocates it, the kernels allocate nothing.
int64_t layer_norm_backward_workspace(int64_t rows, int64_t cols);

template <class T>
void layer_norm_backward(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy, T* dx, T* dgamma,
                         T* dbeta, int64_t rows, int64_t cols, T* workspace);

template <class T>
void layer_norm_forward_v2(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int64_t rows,
                           int64_t cols, T eps);
template <class T>
void layer_norm_backward_v2(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy, T* dx, T* dgamma,
                            T* dbeta, int64_t rows, int64_t cols, T* workspace);

}  // namespace mmg::cuda
