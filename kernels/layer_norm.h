// Layer normalisation over the last dim, forward and backward.
//
// x is `rows` contiguous rows of `cols` elements; each row is normalised on its own:
//   μ = (1/n) Σ_j x_j,   σ² = (1/n) Σ_j (x_j − μ)²   (biased variance, as PyTorch),
//   rstd = 1/√(σ² + eps),   x̂_j = (x_j − μ)·rstd,   y_j = γ_j x̂_j + β_j
// with n = cols. gamma/beta [cols] may be nullptr: no scale (γ = 1) / no shift (β = 0).
// Outputs are overwritten, never accumulated into.
#pragma once
#include <cstdint>

namespace mmg::cpu {

// Writes y [rows, cols], and per row mean[r] = μ and rstd[r] (the backward needs both;
// either may be nullptr when no backward will follow).
template <class T>
void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd,
                        int64_t rows, int64_t cols, T eps);

// With g_j = γ_j dy_j (the gradient reaching x̂):
//   dx_j = rstd · (g_j − mean_k(g_k) − x̂_j · mean_k(g_k x̂_k))
//   dγ_j = Σ_rows dy_j x̂_j,   dβ_j = Σ_rows dy_j
// mean/rstd are the forward's. dx, dgamma, dbeta may each be nullptr (not wanted).
// dγ/dβ are summed over fixed row blocks and then the blocks in order, so the result is
// the same bit for bit whatever the thread count.
template <class T>
void layer_norm_backward(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy,
                         T* dx, T* dgamma, T* dbeta, int64_t rows, int64_t cols);

}  // namespace mmg::cpu
