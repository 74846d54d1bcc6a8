// Layer normalisation over the last dim, forward and backward.
//
// x is `rows` contiguous rows of `cols` elements; each row is normalised on its own:
//   μ = (1/n) Σ_j x_j,   σ² = (1/n) Σ_j (x_j − μ)²   (biased variance, as PyTorch),
//   rstd = 1/√(σ² + eps),   x̂_j = (x_j − μ)·rstd,   y_j = γ_j x̂_j + β_j
// with n = cols. gamma/beta [cols] may be nullptr: no scale (γ = 1) / no shift (β = 0).
// Outputs are overwritten, never accumulated into.
//
// Types: x, y, dy, dx are T (float, double, bf16, f16); γ, β, dγ, dβ are P, which is T or,
// for a 16-bit T, float (PyTorch's mixed layer_norm: bf16 activations, f32 parameters); the
// math, mean, rstd and eps are acc_t<T> (kernels/acc_type.h): float for 16-bit T. A 16-bit
// row is widened to float as it is read and each output rounded once as it is stored, so
// the result is exactly the float kernel's on the widened inputs, rounded; dγ/dβ are summed
// in float over all rows and rounded to P once.
#pragma once
#include <cstdint>
#include <type_traits>

#include "kernels/acc_type.h"

namespace mmg::cpu {

// Writes y [rows, cols], and per row mean[r] = μ and rstd[r] (the backward needs both;
// either may be nullptr when no backward will follow).
// (P is never deduced: it is T unless named, as in layer_norm_forward<bf16, float>.)
template <class T, class P = T>
void layer_norm_forward(const T* x, const std::type_identity_t<P>* gamma, const std::type_identity_t<P>* beta,
                        T* y, acc_t<T>* mean, acc_t<T>* rstd, int64_t rows, int64_t cols, acc_t<T> eps);

// With g_j = γ_j dy_j (the gradient reaching x̂):
//   dx_j = rstd · (g_j − mean_k(g_k) − x̂_j · mean_k(g_k x̂_k))
//   dγ_j = Σ_rows dy_j x̂_j,   dβ_j = Σ_rows dy_j
// mean/rstd are the forward's. dx, dgamma, dbeta may each be nullptr (not wanted).
// dγ/dβ are summed over fixed row blocks and then the blocks in order, so the result is
// the same bit for bit whatever the thread count.
template <class T, class P = T>
void layer_norm_backward(const T* x, const std::type_identity_t<P>* gamma, const acc_t<T>* mean,
                         const acc_t<T>* rstd, const T* dy, T* dx, std::type_identity_t<P>* dgamma,
                         std::type_identity_t<P>* dbeta, int64_t rows, int64_t cols);

}  // namespace mmg::cpu
