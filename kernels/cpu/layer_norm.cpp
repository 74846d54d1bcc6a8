// Layer normalisation on the CPU: rows in parallel, two passes per row.
//
// The variance takes the two-pass form Σ(x − μ)² rather than Σx² − nμ²: the latter
// subtracts two large, nearly equal numbers when |μ| ≫ σ and can even go negative.
#include "kernels/layer_norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/parallel.h"

namespace mmg::cpu {

// Rows per parallel chunk: about 16k elements, so small tensors stay on one thread.
static int64_t row_grain(int64_t cols) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1));
}

// y = γ ⊙ (x − μ)·rstd + β, one row at a time.
template <class T>
void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd,
                        int64_t rows, int64_t cols, T eps) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      T mu = 0;
      for (int64_t j = 0; j < cols; ++j) mu += xr[j];
      mu /= T(cols);
      T var = 0;
      for (int64_t j = 0; j < cols; ++j) var += (xr[j] - mu) * (xr[j] - mu);
      var /= T(cols);
      T rs = T(1) / std::sqrt(var + eps);
      for (int64_t j = 0; j < cols; ++j) {
        T xhat = (xr[j] - mu) * rs;
        yr[j] = (gamma ? gamma[j] : T(1)) * xhat + (beta ? beta[j] : T(0));
      }
      if (mean) mean[r] = mu;
      if (rstd) rstd[r] = rs;
    }
  });
}

// dx for one row. y_j = γ_j x̂_j + β_j, and x̂ depends on every x_k through μ and rstd:
// ∂x̂_j/∂x_k = rstd (δ_jk − 1/n − x̂_j x̂_k / n). Contracting with g = γ ⊙ dy gives
// dx_k = rstd (g_k − mean(g) − x̂_k mean(g ⊙ x̂)).
template <class T>
static void layer_norm_backward_row(const T* xr, const T* gamma, T mu, T rs, const T* dyr,
                                    T* dxr, int64_t cols) {
  T sum_g = 0, sum_gx = 0;
  for (int64_t j = 0; j < cols; ++j) {
    T g = (gamma ? gamma[j] : T(1)) * dyr[j];
    sum_g += g;
    sum_gx += g * (xr[j] - mu) * rs;
  }
  T mean_g = sum_g / T(cols), mean_gx = sum_gx / T(cols);
  for (int64_t j = 0; j < cols; ++j) {
    T g = (gamma ? gamma[j] : T(1)) * dyr[j];
    T xhat = (xr[j] - mu) * rs;
    dxr[j] = rs * (g - mean_g - xhat * mean_gx);
  }
}

// Row blocks for the dγ/dβ reduction. The count depends only on `rows`, never on the
// thread count, which is what makes the sums reproducible across machines and settings.
static constexpr int64_t kMaxBlocks = 64;

template <class T>
void layer_norm_backward(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy,
                         T* dx, T* dgamma, T* dbeta, int64_t rows, int64_t cols) {
  const bool want_params = dgamma || dbeta;
  const int64_t blocks = std::min(rows, kMaxBlocks);
  // partial[b] holds block b's Σ dy x̂ (first cols) and Σ dy (next cols).
  std::vector<T> partial(want_params ? static_cast<size_t>(blocks * 2 * cols) : 0, T(0));

  const int64_t rows_per_block = blocks > 0 ? (rows + blocks - 1) / blocks : 1;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(rows_per_block * cols, 1));
  parallel_for(blocks, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      int64_t r0 = b * rows / blocks, r1 = (b + 1) * rows / blocks;
      T* pg = want_params ? partial.data() + b * 2 * cols : nullptr;
      T* pb = want_params ? pg + cols : nullptr;
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = x + r * cols;
        const T* dyr = dy + r * cols;
        if (dx) layer_norm_backward_row(xr, gamma, mean[r], rstd[r], dyr, dx + r * cols, cols);
        if (want_params) {
          for (int64_t j = 0; j < cols; ++j) {
            pg[j] += dyr[j] * (xr[j] - mean[r]) * rstd[r];
            pb[j] += dyr[j];
          }
        }
      }
    }
  });
  if (!want_params) return;

  // Fixed-order reduction over the blocks, columns in parallel.
  parallel_for(cols, std::max<int64_t>(1, 16384 / std::max<int64_t>(blocks, 1)),
               [&](int64_t c0, int64_t c1) {
    for (int64_t j = c0; j < c1; ++j) {
      T sg = 0, sb = 0;
      for (int64_t b = 0; b < blocks; ++b) {
        sg += partial[b * 2 * cols + j];
        sb += partial[b * 2 * cols + cols + j];
      }
      if (dgamma) dgamma[j] = sg;
      if (dbeta) dbeta[j] = sb;
    }
  });
}

template void layer_norm_forward<float>(const float*, const float*, const float*, float*, float*,
                                        float*, int64_t, int64_t, float);
template void layer_norm_forward<double>(const double*, const double*, const double*, double*,
                                         double*, double*, int64_t, int64_t, double);
template void layer_norm_backward<float>(const float*, const float*, const float*, const float*,
                                         const float*, float*, float*, float*, int64_t, int64_t);
template void layer_norm_backward<double>(const double*, const double*, const double*,
                                          const double*, const double*, double*, double*, double*,
                                          int64_t, int64_t);

}  // namespace mmg::cpu
