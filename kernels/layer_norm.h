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

namespace mmg {

// no_deduce_t<P> is P in a position a call never deduces P from: std::type_identity_t,
// spelled out because nvcc compiles this header (for kernels/cuda/layer_norm.cu) as C++17.
template <class P>
struct no_deduce {
  using type = P;
};
template <class P>
using no_deduce_t = typename no_deduce<P>::type;

}  // namespace mmg

namespace mmg::cpu {

// Writes y [rows, cols], and per row mean[r] = μ and rstd[r] (the backward needs both;
// either may be nullptr when no backward will follow).
// (P is never deduced: it is T unless named, as in layer_norm_forward<bf16, float>.)
template <class T, class P = T>
void layer_norm_forward(const T* x, const no_deduce_t<P>* gamma, const no_deduce_t<P>* beta,
                        T* y, acc_t<T>* mean, acc_t<T>* rstd, int64_t rows, int64_t cols, acc_t<T> eps);

// With g_j = γ_j dy_j (the gradient reaching x̂):
//   dx_j = rstd · (g_j − mean_k(g_k) − x̂_j · mean_k(g_k x̂_k))
//   dγ_j = Σ_rows dy_j x̂_j,   dβ_j = Σ_rows dy_j
// mean/rstd are the forward's. dx, dgamma, dbeta may each be nullptr (not wanted).
// dγ/dβ are summed over fixed row blocks and then the blocks in order, so the result is
// the same bit for bit whatever the thread count.
template <class T, class P = T>
void layer_norm_backward(const T* x, const no_deduce_t<P>* gamma, const acc_t<T>* mean,
                         const acc_t<T>* rstd, const T* dy, T* dx, no_deduce_t<P>* dgamma,
                         no_deduce_t<P>* dbeta, int64_t rows, int64_t cols);

}  // namespace mmg::cpu

// ---- CUDA (kernels/cuda/layer_norm.cu) ----
// Layer normalisation over the last dim on a CUDA device: plain C++ declarations with the
// contracts above:
//   μ = (1/n) Σ_j x_j,  σ² = (1/n) Σ_j (x_j − μ)²,  rstd = 1/√(σ² + eps),
//   x̂_j = (x_j − μ)·rstd,  y_j = γ_j x̂_j + β_j
//   dx_j = rstd · (g_j − mean_k(g_k) − x̂_j · mean_k(g_k x̂_k)),  g = γ ⊙ dy
//   dγ_j = Σ_rows dy_j x̂_j,  dβ_j = Σ_rows dy_j
// gamma/beta may be nullptr (γ = 1, β = 0); mean/rstd may be nullptr in the forward; dx,
// dgamma, dbeta may each be nullptr. Device memory of the current device.
//
// Types, as the CPU kernels above: x, y, dy, dx are T (float, double, bf16,
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
// Declared in every build; defined only where CUDA is compiled, and core/ calls them only
// under `if constexpr (kWithCuda)` (core/device.h).
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
