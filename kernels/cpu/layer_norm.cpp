// Layer normalisation on the CPU: rows in parallel, two passes per row.
//
// The row sums are `omp simd` reductions: the compiler keeps a vector of partial sums and
// adds them up at the end. That is a different order of additions than one left to right
// (the results differ in the last bits), and several times faster on rows of 64: a single
// running sum waits for each addition before the next.
//
// The variance takes the two-pass form Σ(x − μ)² rather than Σx² − nμ²: the latter
// subtracts two large, nearly equal numbers when |μ| ≫ σ and can even go negative.
//
// The row math runs in A = acc_t<T> on rows of A: the rows themselves for float and double;
// for bf16/f16, rows widened to float and results rounded once as they are stored
// (kernels/cpu/widen_rows.h). γ is widened to A once for all rows; dγ/dβ are summed in A
// and rounded to P at the end.
#include "kernels/layer_norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/widen_rows.h"

namespace mmg::cpu {

// Rows per parallel chunk: about 16k elements, so small tensors stay on one thread.
static int64_t row_grain(int64_t cols) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1));
}

// γ or β as A: nullptr stays nullptr (no affine), an A vector is used as it is.
template <class A, class P>
static const A* params_as(const P* p, int64_t cols, std::vector<A>& buf) {
  if constexpr (std::is_same_v<A, P>) {
    return p;
  } else {
    if (p == nullptr) return nullptr;
    buf.resize(static_cast<size_t>(cols));
    for (int64_t j = 0; j < cols; ++j) buf[j] = static_cast<A>(static_cast<float>(p[j]));
    return buf.data();
  }
}

// y = γ ⊙ (x − μ)·rstd + β for one row, in A.
template <class A>
static void layer_norm_row(const A* xr, const A* gamma, const A* beta, A* yr, A* mean, A* rstd, int64_t cols,
                           A eps) {
  A mu = 0;
#pragma omp simd reduction(+ : mu)
  for (int64_t j = 0; j < cols; ++j) mu += xr[j];
  mu /= A(cols);
  A var = 0;
#pragma omp simd reduction(+ : var)
  for (int64_t j = 0; j < cols; ++j) var += (xr[j] - mu) * (xr[j] - mu);
  var /= A(cols);
  A rs = A(1) / std::sqrt(var + eps);
  // The affine case as a loop of its own: with the null tests inside, GCC (-O2, which does not
  // unswitch loops) left this loop scalar.
  if (gamma && beta) {
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) yr[j] = gamma[j] * ((xr[j] - mu) * rs) + beta[j];
  } else {
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) {
      A xhat = (xr[j] - mu) * rs;
      yr[j] = (gamma ? gamma[j] : A(1)) * xhat + (beta ? beta[j] : A(0));
    }
  }
  if (mean) *mean = mu;
  if (rstd) *rstd = rs;
}

template <class T, class P>
void layer_norm_forward(const T* x, const no_deduce_t<P>* gamma, const no_deduce_t<P>* beta, T* y,
                        acc_t<T>* mean, acc_t<T>* rstd, int64_t rows, int64_t cols, acc_t<T> eps) {
  using A = acc_t<T>;
  std::vector<A> gb, bb;
  const A* g = params_as<A>(gamma, cols, gb);
  const A* b = params_as<A>(beta, cols, bb);
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    std::vector<A> xbuf, ybuf;  // used for 16-bit T only
    for (int64_t r = r0; r < r1; ++r) {
      const A* xr = widen_row(x + r * cols, cols, xbuf);
      A* yr = result_row(y + r * cols, cols, ybuf);
      layer_norm_row(xr, g, b, yr, mean ? mean + r : nullptr, rstd ? rstd + r : nullptr, cols, eps);
      store_row(yr, y + r * cols, cols);
    }
  });
}

// dx for one row. y_j = γ_j x̂_j + β_j, and x̂ depends on every x_k through μ and rstd:
// ∂x̂_j/∂x_k = rstd (δ_jk − 1/n − x̂_j x̂_k / n). Contracting with g = γ ⊙ dy gives
// dx_k = rstd (g_k − mean(g) − x̂_k mean(g ⊙ x̂)).
template <class A>
static void layer_norm_backward_row(const A* xr, const A* gamma, A mu, A rs, const A* dyr, A* dxr, int64_t cols) {
  A sum_g = 0, sum_gx = 0;
#pragma omp simd reduction(+ : sum_g, sum_gx)
  for (int64_t j = 0; j < cols; ++j) {
    A g = (gamma ? gamma[j] : A(1)) * dyr[j];
    sum_g += g;
    sum_gx += g * (xr[j] - mu) * rs;
  }
  A mean_g = sum_g / A(cols), mean_gx = sum_gx / A(cols);
#pragma omp simd
  for (int64_t j = 0; j < cols; ++j) {
    A g = (gamma ? gamma[j] : A(1)) * dyr[j];
    A xhat = (xr[j] - mu) * rs;
    dxr[j] = rs * (g - mean_g - xhat * mean_gx);
  }
}

// Row blocks for the dγ/dβ reduction. The count depends only on `rows`, never on the
// thread count, which is what makes the sums reproducible across machines and settings.
static constexpr int64_t kMaxBlocks = 64;

template <class T, class P>
void layer_norm_backward(const T* x, const no_deduce_t<P>* gamma, const acc_t<T>* mean,
                         const acc_t<T>* rstd, const T* dy, T* dx, no_deduce_t<P>* dgamma,
                         no_deduce_t<P>* dbeta, int64_t rows, int64_t cols) {
  using A = acc_t<T>;
  std::vector<A> gbuf;
  const A* gam = params_as<A>(gamma, cols, gbuf);
  const bool want_params = dgamma || dbeta;
  const int64_t blocks = std::min(rows, kMaxBlocks);
  // partial[b] holds block b's Σ dy x̂ (first cols) and Σ dy (next cols).
  std::vector<A> partial(want_params ? static_cast<size_t>(blocks * 2 * cols) : 0, A(0));

  const int64_t rows_per_block = blocks > 0 ? (rows + blocks - 1) / blocks : 1;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(rows_per_block * cols, 1));
  parallel_for(blocks, grain, [&](int64_t b0, int64_t b1) {
    std::vector<A> xbuf, dybuf, dxbuf;  // used for 16-bit T only
    for (int64_t b = b0; b < b1; ++b) {
      int64_t r0 = b * rows / blocks, r1 = (b + 1) * rows / blocks;
      A* pg = want_params ? partial.data() + b * 2 * cols : nullptr;
      A* pb = want_params ? pg + cols : nullptr;
      for (int64_t r = r0; r < r1; ++r) {
        const A* xr = widen_row(x + r * cols, cols, xbuf);
        const A* dyr = widen_row(dy + r * cols, cols, dybuf);
        if (dx) {
          A* dxr = result_row(dx + r * cols, cols, dxbuf);
          layer_norm_backward_row(xr, gam, mean[r], rstd[r], dyr, dxr, cols);
          store_row(dxr, dx + r * cols, cols);
        }
        if (want_params) {
#pragma omp simd
          for (int64_t j = 0; j < cols; ++j) {
            pg[j] += dyr[j] * (xr[j] - mean[r]) * rstd[r];
            pb[j] += dyr[j];
          }
        }
      }
    }
  });
  if (!want_params) return;

  // Fixed-order reduction over the blocks, columns in parallel; one rounding to P.
  parallel_for(cols, std::max<int64_t>(1, 16384 / std::max<int64_t>(blocks, 1)), [&](int64_t c0, int64_t c1) {
    for (int64_t j = c0; j < c1; ++j) {
      A sg = 0, sb = 0;
      for (int64_t b = 0; b < blocks; ++b) {
        sg += partial[b * 2 * cols + j];
        sb += partial[b * 2 * cols + cols + j];
      }
      if (dgamma) dgamma[j] = P(sg);
      if (dbeta) dbeta[j] = P(sb);
    }
  });
}

// x, y, dx in T; γ, β, dγ, dβ in P: the same type, or f32 parameters with 16-bit activations.
#define MMG_LAYER_NORM_INSTANTIATE(T, P)                                                                        \
  template void layer_norm_forward<T, P>(const T*, const P*, const P*, T*, acc_t<T>*, acc_t<T>*, int64_t,   \
                                         int64_t, acc_t<T>);                                                  \
  template void layer_norm_backward<T, P>(const T*, const P*, const acc_t<T>*, const acc_t<T>*, const T*, T*, \
                                          P*, P*, int64_t, int64_t);
MMG_LAYER_NORM_INSTANTIATE(float, float)
MMG_LAYER_NORM_INSTANTIATE(double, double)
MMG_LAYER_NORM_INSTANTIATE(bf16, bf16)
MMG_LAYER_NORM_INSTANTIATE(bf16, float)
MMG_LAYER_NORM_INSTANTIATE(f16, f16)
MMG_LAYER_NORM_INSTANTIATE(f16, float)
#undef MMG_LAYER_NORM_INSTANTIATE

}  // namespace mmg::cpu
